-- Key scopes and dashboard sessions.
--
-- A key may do only what its scopes name: `ingest` (the webhook), `read` (the
-- read API and viewing the dashboard) and `admin` (keys and environments, in
-- the dashboard). Keys that exist before this migration keep what they could
-- do (`ingest` and `read`); a key created afterwards gets `ingest` unless its
-- creator asks for more, so a CI secret cannot read the workspace's history.
ALTER TABLE api_keys ADD COLUMN scopes text[] NOT NULL DEFAULT '{ingest,read}';
ALTER TABLE api_keys ALTER COLUMN scopes SET DEFAULT '{ingest}';
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scopes_known
    CHECK (cardinality(scopes) >= 1 AND scopes <@ '{ingest,read,admin}'::text[]);

-- A dashboard sign-in. The browser holds a random token in a signed cookie;
-- only its SHA-256 is stored, so this table cannot be replayed into a
-- session. A session lives until it expires, its owner signs out, or its key
-- is revoked (checked on every request); it grants what its key's scopes
-- grant at the time of the request.
CREATE TABLE dashboard_sessions (
    token_sha256  bytea PRIMARY KEY CHECK (length(token_sha256) = 32),
    key_id        uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expires_at);
CREATE INDEX dashboard_sessions_key ON dashboard_sessions (key_id);

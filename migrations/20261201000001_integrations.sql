-- Native intake (issue 16): receivers for a code host's own deployment
-- events, one per workspace and provider, at
-- /api/v1/integrations/{provider}/{id}.
--
-- No secret is stored. A receiver's secret is
-- HMAC-SHA256(VIBEMON_INTEGRATION_KEY, "vibemon-integration-v1:" || id || ":" || salt),
-- derived again on each delivery from the key in the environment of ingest
-- and `vibemon`: a dump of this table signs nothing (ARCHITECTURE.md).
CREATE TABLE integrations (
    id                   uuid PRIMARY KEY,
    workspace_id         uuid NOT NULL REFERENCES workspaces (id),
    provider             text NOT NULL CHECK (provider IN ('github', 'gitlab')),
    name                 text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- Random, not secret: lets a receiver be re-created with a new secret.
    secret_salt          bytea NOT NULL CHECK (length(secret_salt) = 16),
    -- The code host's environment name -> an environment name here.
    environment_map      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(environment_map) = 'object'),
    -- Whether a name that is neither mapped nor known creates the environment.
    create_environments  boolean NOT NULL DEFAULT false,
    created_at           timestamptz NOT NULL DEFAULT now(),
    last_used_at         timestamptz,
    revoked_at           timestamptz
);
CREATE INDEX integrations_workspace ON integrations (workspace_id, created_at);

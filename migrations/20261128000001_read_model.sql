-- The read model: reference data written by `vibemon`, projections written by
-- the projector. Applied by `vibemon migrate` (sqlx migrations, idempotent).
--
-- Projected tables carry no foreign key to reference data on purpose: the
-- read model is a pure function of the topic, and a rebuild replays the topic
-- into a database that may hold no workspaces or environments at all.

CREATE TABLE workspaces (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE environments (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id),
    -- Case-sensitive: `text` compares with the deterministic default collation.
    name          text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, name)
);

CREATE TABLE api_keys (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- The public lookup part of the key (`vm_<prefix>_<secret>`), so a
    -- presented key is verified against exactly one row.
    prefix        text NOT NULL UNIQUE,
    -- argon2id PHC string; the plaintext is never stored.
    hash          text NOT NULL CHECK (hash LIKE '$argon2id$%'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id, created_at);

-- Deployment history: one row per deployment id. Every column but
-- `projected_at` is a function of the events for that id, whatever order
-- they were applied in.
CREATE TABLE deployments (
    id              uuid PRIMARY KEY,
    workspace_id    uuid NOT NULL,
    environment_id  uuid NOT NULL,
    environment     text NOT NULL,
    repo_full_name  text NOT NULL,
    branch          text,
    commit_sha      text,
    status          text NOT NULL,
    source          text NOT NULL,
    deployed_at     timestamptz NOT NULL,
    extra_data      jsonb NOT NULL,
    external_id     text,
    -- When the first report of this deployment was received.
    created_at      timestamptz NOT NULL,
    -- When the report that set the current state was received.
    updated_at      timestamptz NOT NULL,
    -- The report that set the current state; with status_rank, deployed_at and
    -- updated_at it orders reports so a newer one is never overwritten.
    status_rank     smallint NOT NULL,
    last_event_id   uuid NOT NULL,
    reports         integer NOT NULL,
    projected_at    timestamptz NOT NULL DEFAULT now()
);
-- History listing, newest first, per workspace and optionally environment.
CREATE INDEX deployments_ws_time ON deployments (workspace_id, deployed_at DESC, id DESC);
CREATE INDEX deployments_ws_env_time ON deployments (workspace_id, environment_id, deployed_at DESC, id DESC);
-- "What was running at T": successful deployments per repository, by time.
CREATE INDEX deployments_success_asof ON deployments
    (workspace_id, environment_id, repo_full_name, deployed_at DESC, id DESC)
    WHERE status = 'success';

-- Audit trail: append-only, one row per accepted event.
CREATE TABLE deployment_audit (
    event_id         uuid PRIMARY KEY,
    deployment_id    uuid NOT NULL,
    workspace_id     uuid NOT NULL,
    environment_id   uuid NOT NULL,
    api_key_id       uuid NOT NULL,
    api_key_name     text NOT NULL,
    source           text NOT NULL,
    status           text NOT NULL,
    received_at      timestamptz NOT NULL,
    payload          jsonb NOT NULL,
    kafka_topic      text NOT NULL,
    kafka_partition  integer NOT NULL,
    kafka_offset     bigint NOT NULL,
    projected_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deployment_audit_deployment ON deployment_audit (deployment_id, received_at);

-- Per (workspace, environment, repository): the latest successful deployment
-- by deployed_at (ties broken by deployment id). A late, older success never
-- replaces a newer one.
CREATE TABLE current_deployments (
    workspace_id    uuid NOT NULL,
    environment_id  uuid NOT NULL,
    repo_full_name  text NOT NULL,
    deployment_id   uuid NOT NULL,
    commit_sha      text,
    branch          text,
    deployed_at     timestamptz NOT NULL,
    projected_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, environment_id, repo_full_name)
);

-- Where each projector consumer group stands: the next offset to read per
-- partition, written in the same transaction as the rows it produced.
CREATE TABLE projector_checkpoints (
    consumer_group  text NOT NULL,
    topic           text NOT NULL,
    partition       integer NOT NULL,
    next_offset     bigint NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);

-- bench/peers/schema.sql: the table the FastAPI + asyncpg peer writes each
-- webhook into, the seed's design. Shaped like `deployments` (id, the
-- reported fields, extra_data as jsonb) with its history index; created by
-- bench/src/peers.rs in the peer's own database before the peer starts.
CREATE TABLE IF NOT EXISTS peer_deployments (
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
    created_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS peer_deployments_ws_env_time
    ON peer_deployments (workspace_id, environment_id, deployed_at DESC, id DESC);

-- What changed (issue 15): the commits each deployment shipped, each
-- successful deployment's predecessor and rollbacks, and where each commit
-- first shipped. Like every projected table, a pure function of the topic:
-- a rebuild gives the same rows (see docs/dora.md for the definitions).

-- The commits the reports of a deployment listed (`commits`, event
-- version 2), one row per (deployment, sha). When two reports of one
-- deployment list the same commit with different details, the report with
-- the greatest event id gives them, whatever order they arrive in.
CREATE TABLE deployment_commits (
    deployment_id  uuid NOT NULL,
    sha            text NOT NULL CHECK (sha ~ '^[0-9a-f]{40}$'),
    committed_at   timestamptz NOT NULL,
    authored_at    timestamptz,
    author         text,
    subject        text,
    event_id       uuid NOT NULL,
    PRIMARY KEY (deployment_id, sha)
);
-- Where else a commit was listed, for "first shipped".
CREATE INDEX deployment_commits_sha ON deployment_commits (sha, deployment_id);

-- One row per successful deployment, in the order of its environment and
-- repository by (deployed_at, id):
-- - `predecessor_id`: the successful deployment just before it;
-- - `rollback_to`: set when it is a rollback, i.e. its commit differs from
--   its predecessor's and was deployed successfully before the predecessor;
--   the latest such earlier deployment (what it went back to);
-- - `rolled_back_by`: the first rollback after it that went back to a
--   deployment before it.
CREATE TABLE deployment_lineage (
    deployment_id           uuid PRIMARY KEY,
    workspace_id            uuid NOT NULL,
    environment_id          uuid NOT NULL,
    repo_full_name          text NOT NULL,
    deployed_at             timestamptz NOT NULL,
    commit_sha              text,
    predecessor_id          uuid,
    predecessor_commit_sha  text,
    rollback_to             uuid,
    rolled_back_by          uuid
);
CREATE INDEX deployment_lineage_env_time ON deployment_lineage
    (workspace_id, environment_id, deployed_at, deployment_id);
CREATE INDEX deployment_lineage_repo_time ON deployment_lineage
    (workspace_id, environment_id, repo_full_name, deployed_at, deployment_id);
-- Time to restore: the next successful deployment that was not rolled back.
CREATE INDEX deployment_lineage_good ON deployment_lineage
    (workspace_id, environment_id, repo_full_name, deployed_at, deployment_id)
    WHERE rolled_back_by IS NULL;

-- "Was this commit deployed here before?": successful deployments by commit.
CREATE INDEX deployments_success_commit ON deployments
    (workspace_id, environment_id, repo_full_name, commit_sha, deployed_at DESC, id DESC)
    WHERE status = 'success' AND commit_sha IS NOT NULL;
-- Change failure rate and time to restore read failed deployments by time.
CREATE INDEX deployments_failed_time ON deployments
    (workspace_id, environment_id, deployed_at, id)
    WHERE status = 'failed';

-- Per (workspace, environment, repository, commit): the first successful
-- deployment that listed it, by (deployed_at, id), and the commit time it
-- listed. A commit counts for lead time once, here; a deployment whose
-- report lists no commits ships none, so a repository's first deployment
-- never brings its whole history.
CREATE TABLE shipped_commits (
    workspace_id    uuid NOT NULL,
    environment_id  uuid NOT NULL,
    repo_full_name  text NOT NULL,
    sha             text NOT NULL,
    deployment_id   uuid NOT NULL,
    deployed_at     timestamptz NOT NULL,
    committed_at    timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, environment_id, repo_full_name, sha)
);
CREATE INDEX shipped_commits_env_time ON shipped_commits
    (workspace_id, environment_id, deployed_at);
CREATE INDEX shipped_commits_repo_time ON shipped_commits
    (workspace_id, environment_id, repo_full_name, deployed_at);

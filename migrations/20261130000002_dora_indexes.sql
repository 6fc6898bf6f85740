-- The DORA metrics (store/src/dora.rs) read one environment's lineage,
-- failed deployments and shipped commits over a window: for 90 days of an
-- environment with 20,000 deployments, 17,000 lineage rows and 50,000
-- shipped commits (docs/read-api-plans.md). The projector writes these rows
-- in time order across all environments, so one environment's rows lie one or
-- two to a heap page and reading them from the heap costs a page each.
-- Covering the columns the query reads lets it answer from the index alone
-- (an index-only scan: the insert-mostly tables stay all-visible under
-- autovacuum). Same keys as before, so every other use of these indexes keeps
-- its order; the old indexes go, so writes maintain no extra index.

DROP INDEX deployment_lineage_env_time;
CREATE INDEX deployment_lineage_env_time ON deployment_lineage
    (workspace_id, environment_id, deployed_at, deployment_id)
    INCLUDE (repo_full_name, rollback_to, rolled_back_by);

DROP INDEX deployment_lineage_repo_time;
CREATE INDEX deployment_lineage_repo_time ON deployment_lineage
    (workspace_id, environment_id, repo_full_name, deployed_at, deployment_id)
    INCLUDE (rollback_to, rolled_back_by);

DROP INDEX shipped_commits_env_time;
CREATE INDEX shipped_commits_env_time ON shipped_commits
    (workspace_id, environment_id, deployed_at)
    INCLUDE (committed_at);

DROP INDEX shipped_commits_repo_time;
CREATE INDEX shipped_commits_repo_time ON shipped_commits
    (workspace_id, environment_id, repo_full_name, deployed_at)
    INCLUDE (committed_at);

DROP INDEX deployments_failed_time;
CREATE INDEX deployments_failed_time ON deployments
    (workspace_id, environment_id, deployed_at, id)
    INCLUDE (repo_full_name)
    WHERE status = 'failed';

-- Hardening of the read model (issue 12).
--
-- `request_fingerprint`: for an event that carried an Idempotency-Key, the
-- sha256 of the webhook body it came from (Kafka header
-- `vibemon_request_fingerprint`). A later event with the same id and another
-- fingerprint is a reuse of the key for a different report: the first one
-- stays applied and the reuse is recorded in `idempotency_conflicts`.
ALTER TABLE deployment_audit ADD COLUMN request_fingerprint text;

-- Every reuse of an Idempotency-Key for a different body that reached the
-- topic (through another ingest replica, or after a restart). The event that
-- was applied is in `deployment_audit`; the one that was not is here, with
-- where it sits in Kafka, so an operator can read it back.
CREATE TABLE idempotency_conflicts (
    event_id              uuid NOT NULL,
    kept_fingerprint      text,
    rejected_fingerprint  text,
    rejected_payload      jsonb NOT NULL,
    kafka_topic           text NOT NULL,
    kafka_partition       integer NOT NULL,
    kafka_offset          bigint NOT NULL,
    detected_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kafka_topic, kafka_partition, kafka_offset)
);
CREATE INDEX idempotency_conflicts_event ON idempotency_conflicts (event_id);

-- The `sha256:` digest of the value of the record just before each
-- checkpoint. On assignment the projector reads that record back: another
-- value means the topic was recreated or restored and its offsets no longer
-- match what this database applied, so it stops instead of skipping.
ALTER TABLE projector_checkpoints ADD COLUMN last_record_sha256 text;

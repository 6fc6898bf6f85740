-- The W3C `traceparent` of the request behind each applied event, from the
-- record's `ce_traceparent` header (CloudEvents distributed tracing), so an
-- SRE looking at a row can open its trace. Null for records written before
-- ingest set the header, and for records without a well-formed one. When an
-- event was written twice (an Idempotency-Key retry through another replica)
-- the row keeps the traceparent of the record applied first, as it keeps the
-- rest of that record. Adding a nullable column without a default rewrites
-- nothing.
ALTER TABLE deployment_audit ADD COLUMN traceparent text;

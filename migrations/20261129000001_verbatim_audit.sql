-- The audit ledger keeps each event as it is on the topic: the record's bytes,
-- in a `json` column. `json` stores the text after a syntax check, where
-- `jsonb` parses and rebuilds every document on write; the ledger is written
-- once per event and read a few rows at a time, so it pays to parse on read.
-- Rows written before this keep the text of their `jsonb` value.
ALTER TABLE deployment_audit ALTER COLUMN payload TYPE json USING payload::json;

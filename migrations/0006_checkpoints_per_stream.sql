-- A checkpoint belongs to one JetStream stream, and to the PostgreSQL cluster whose transaction
-- ids it holds (docs/operations.md).
--   stream_sequence: the stream's last sequence when the checkpoint was written; every message
--     up to it holds an event at or before the checkpoint. On takeover the relay walks the
--     messages after it and moves the checkpoint only across an unbroken run of the log.
--   cluster_id: pg_control_system().system_identifier of the cluster that wrote it. A dump
--     restored into another cluster restarts transaction ids, so the checkpoint means nothing
--     there: the relay stops publishing and says so rather than skip or reorder events.
ALTER TABLE checkpoints
    ADD COLUMN stream_sequence bigint,
    ADD COLUMN cluster_id      bigint;

-- The one checkpoint so far was the relay's, for the default stream.
UPDATE checkpoints SET name = 'nats:ROOMS' WHERE name = 'nats';

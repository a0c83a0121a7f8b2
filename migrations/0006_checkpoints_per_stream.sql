-- A checkpoint belongs to one JetStream stream, and to the PostgreSQL cluster whose transaction
-- ids it holds (docs/operations.md).
--   stream_sequence: the stream's last sequence when the checkpoint was written; every message
--     up to it holds an event at or before the checkpoint. On takeover the relay walks the
--     messages after it and moves the checkpoint only across an unbroken run of the log.
--   cluster_id: pg_control_system().system_identifier of the cluster that wrote it, to tell in
--     the logs when the database moved (pg_upgrade, a restore). What decides whether the relay
--     can go on is whether the log's transaction ids are all in this cluster's past.
ALTER TABLE checkpoints
    ADD COLUMN stream_sequence bigint,
    ADD COLUMN cluster_id      bigint;

-- The checkpoint named `nats` (from before) is left as it is: a relay adopts it for the stream
-- it publishes to, which only it knows (NATS_STREAM), and a relay of the previous version that
-- still runs during a rolling deploy keeps writing it.

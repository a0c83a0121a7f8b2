-- NOTIFY on every commit serialized committing transactions (PostgreSQL holds a database-wide
-- lock from pre-commit until the commit is flushed for each NOTIFYing transaction), which
-- halved throughput (docs/benchmarks.md). Now committers NOTIFY only while the relay is idle
-- and has asked to be woken, which under load is rarely.
CREATE TABLE relay_wakeup (
    only_row boolean NOT NULL DEFAULT true,
    armed    boolean NOT NULL DEFAULT false,
    CONSTRAINT relay_wakeup_pkey PRIMARY KEY (only_row),
    CONSTRAINT relay_wakeup_one_row CHECK (only_row)
);
INSERT INTO relay_wakeup DEFAULT VALUES;

DROP TRIGGER events_notify ON events;

CREATE OR REPLACE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT armed FROM relay_wakeup) THEN
        PERFORM pg_notify('events_committed', '');
    END IF;
    RETURN NULL;
END;
$$;

-- Deferred to commit, so the flag is read when this transaction already holds its xid: a relay
-- that arms after this read waits for the transaction to end before looking (src/relay.rs).
CREATE CONSTRAINT TRIGGER events_notify
    AFTER INSERT ON events
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION events_notify();

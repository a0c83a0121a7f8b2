-- GET /users/me/rooms: a host's rooms, newest first, paged by (created_at, id).
CREATE INDEX rooms_host_id_created_at ON rooms (host_id, created_at DESC, id DESC);

-- Idempotency-Key on POST /rooms: the first request of each caller and key, recorded in the
-- command's own transaction (after its events, so the transaction takes its id at the events
-- insert), and the response it got, recorded once it is known.
CREATE TABLE idempotency_keys (
    caller     text        NOT NULL,
    key        text        NOT NULL,
    -- The request body, canonical (keys sorted): a different body with the same key is a 422.
    request    text        NOT NULL,
    room_id    text        NOT NULL,
    -- The first response's body, byte for byte; NULL until it is known.
    response   text,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- A violation of this key means "this caller used this key before": answer as the first.
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (caller, key)
);

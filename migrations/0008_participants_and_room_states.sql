-- Who is in each room: joined and waiting participants (an inline projection; those who left
-- or were denied are deleted). GET /rooms/{id}/participants lists them in joined_at order.
CREATE TABLE participants (
    id           text        NOT NULL,
    room_id      text        NOT NULL,
    -- The signed-in user; NULL for guests.
    user_id      text,
    display_name text        NOT NULL,
    avatar_url   text,
    role         text        NOT NULL CHECK (role IN ('host', 'member', 'guest')),
    status       text        NOT NULL CHECK (status IN ('joined', 'waiting')),
    muted        boolean     NOT NULL,
    -- When they joined (or were admitted); for the waiting room, when they arrived.
    joined_at    timestamptz NOT NULL,
    CONSTRAINT participants_pkey PRIMARY KEY (id)
);
CREATE INDEX participants_room_status_joined_at ON participants (room_id, status, joined_at, id);

-- Each room's aggregate state after its last event, written in the command's transaction (an
-- inline projection, rebuilt by replay like any other): a command loads this row instead of
-- every event of a long room. cqrs-es 0.5's snapshot store applies events twice, so it is not
-- used (docs/architecture.md).
CREATE TABLE room_states (
    room_id  text   NOT NULL,
    sequence bigint NOT NULL,
    state    jsonb  NOT NULL,
    CONSTRAINT room_states_pkey PRIMARY KEY (room_id)
);

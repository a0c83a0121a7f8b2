-- The room view: written in the same transaction as the room's events (inline projection),
-- so it never misses a committed event. Rebuildable from the log at any time.
CREATE TABLE rooms (
    id                        text        NOT NULL,
    code                      text        NOT NULL,
    name                      text        NOT NULL,
    host_id                   text        NOT NULL,
    host_display_name         text        NOT NULL,
    host_avatar_url           text,
    is_active                 boolean     NOT NULL,
    is_locked                 boolean     NOT NULL,
    started_at                timestamptz NOT NULL,
    created_at                timestamptz NOT NULL,
    updated_at                timestamptz NOT NULL,
    ended_at                  timestamptz,
    settings_id               text,
    allow_chat                boolean,
    allow_screen_share        boolean,
    allow_guest_access        boolean,
    waiting_room              boolean,
    mute_participants_on_join boolean,
    max_participants          integer,
    -- Sequence of the last event applied to this row.
    version                   bigint      NOT NULL,
    CONSTRAINT rooms_pkey PRIMARY KEY (id),
    -- Room codes are unique across rooms. The command's transaction writes this row, so a
    -- violation of this named constraint means "code taken, draw another".
    CONSTRAINT rooms_code_key UNIQUE (code)
);

CREATE INDEX rooms_host_id_created_at ON rooms (host_id, created_at DESC);

-- pgbench: one POST /rooms/code/{code}/join by a signed-in user who is not yet in the room, as
-- the service runs it (src/http/participants.rs join_room: rooms::find_by_code; then
-- src/commands.rs execute_to_completion: room_states::load, then the event store's transaction
-- with the inline projections participants and room_states; the answer is made from the event,
-- with no read-back): the same ten statements, in the same order, on the same tables, triggers
-- and indexes. Captured with log_statement=all from commit 2dc131f. The rooms projection runs
-- no statement for a ParticipantJoined.
--
-- Variables (pgbench -D): rooms = how many rooms bench.py seeded (fewer than 26^3), clients =
-- pgbench -c. Room r has the id '00000000-0000-4000-8000-' || lpad(r, 12, '0') and the code
-- 'aaa-aaa-' and r's last three base-26 digits as letters (bench.py write_rooms_log). Client c
-- joins only the rooms r = c + 1 + clients * k, so two clients never append to the same room:
-- pgbench aborts a client on the unique violation of a second append at the same sequence
-- (the service queues commands on one room instead).
\set r :client_id + 1 + :clients * random(0, :rooms / :clients - 1)
\set c1 (:r / 676) % 26
\set c2 (:r / 26) % 26
\set c3 :r % 26
-- a new participant (36 characters, unique per client) and a new user each time
\set p random(0, 9999999999)
-- 1. the room by its code (rooms::find_by_code, pooled connection).
SELECT id, code, name, host_id, host_display_name, host_avatar_url, is_active,
  is_locked, started_at, created_at, updated_at, ended_at, settings_id, allow_chat,
  allow_screen_share, allow_guest_access, waiting_room, mute_participants_on_join,
  max_participants, version
  FROM rooms WHERE code = 'aaa-aaa-' || chr(97 + :c1) || chr(97 + :c2) || chr(97 + :c3)
\gset
-- 2. load: the room's state row, then the events after it, if any (room_states::load, on one
-- pooled connection); there are none here, as in the service's runs.
SELECT sequence, state FROM room_states WHERE room_id = :id
\gset
SELECT sequence, payload FROM events
  WHERE aggregate_type = 'Room' AND aggregate_id = :id AND sequence > :sequence AND sequence < 9223372036854775807
  ORDER BY sequence;
-- decide: one ParticipantJoined at the next sequence (computed here, not by a statement).
\set next :sequence + 1
-- 3. the transaction (src/db.rs Tx: BEGIN as a plain statement).
BEGIN;
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT * FROM UNNEST(
  ARRAY['Room']::text[],
  ARRAY[:id]::text[],
  ARRAY[:next]::bigint[],
  ARRAY['ParticipantJoined']::text[],
  ARRAY['1.0.0']::text[],
  ARRAY['{"ParticipantJoined": {"at": "2026-03-03T10:30:00.000Z", "role": "member", "muted": false, "roomId": "' || :id || '", "userId": "pgbench-user-' || lpad(:client_id::text, 2, '0') || lpad(:p::text, 10, '0') || '", "avatarUrl": null, "displayName": "pgbench-user-' || lpad(:client_id::text, 2, '0') || lpad(:p::text, 10, '0') || '", "participantId": "00000000-0000-7000-8000-' || lpad(:client_id::text, 2, '0') || lpad(:p::text, 10, '0') || '"}}']::jsonb[],
  ARRAY['{"userId": "pgbench-user-' || lpad(:client_id::text, 2, '0') || lpad(:p::text, 10, '0') || '", "requestId": "00000000-0000-4000-8000-000000000000"}']::jsonb[]);
-- the participants projection: the new participant, upserted.
INSERT INTO participants (id, room_id, user_id, display_name, avatar_url, role, status, muted, joined_at)
SELECT * FROM UNNEST(
  ARRAY['00000000-0000-7000-8000-' || lpad(:client_id::text, 2, '0') || lpad(:p::text, 10, '0')]::text[],
  ARRAY[:id]::text[],
  ARRAY['pgbench-user-' || lpad(:client_id::text, 2, '0') || lpad(:p::text, 10, '0')]::text[],
  ARRAY['pgbench-user-' || lpad(:client_id::text, 2, '0') || lpad(:p::text, 10, '0')]::text[],
  ARRAY[NULL]::text[], ARRAY['member']::text[], ARRAY['joined']::text[], ARRAY[false]::bool[],
  ARRAY[now()]::timestamptz[])
ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, joined_at = EXCLUDED.joined_at;
-- the room_states projection: the state row, locked, and the events between it and this one
-- (none), then the new state. The service serializes the aggregate with the participant added;
-- here jsonb_set adds the same entry to the state read in 2, so the row grows with each join as
-- the service's does.
SELECT sequence, state FROM room_states WHERE room_id = :id FOR UPDATE;
SELECT sequence, payload FROM events
  WHERE aggregate_type = 'Room' AND aggregate_id = :id AND sequence > :sequence AND sequence < :next
  ORDER BY sequence;
INSERT INTO room_states (room_id, sequence, state)
SELECT * FROM UNNEST(ARRAY[:id]::text[], ARRAY[:next]::int8[],
  ARRAY[jsonb_set(:state::jsonb,
    ARRAY['participants', '00000000-0000-7000-8000-' || lpad(:client_id::text, 2, '0') || lpad(:p::text, 10, '0')],
    jsonb_build_object('role', 'member', 'status', 'joined',
      'userId', 'pgbench-user-' || lpad(:client_id::text, 2, '0') || lpad(:p::text, 10, '0')))]::jsonb[])
ON CONFLICT (room_id) DO UPDATE SET sequence = EXCLUDED.sequence, state = EXCLUDED.state;
COMMIT;

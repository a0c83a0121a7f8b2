-- pgbench: one PATCH /rooms/{id}/settings that changes maxParticipants, as the service runs it
-- (src/commands.rs execute_to_completion: room_states::load, then the event store's
-- transaction with the inline projections rooms, participants and room_states, then
-- rooms::find_by_id): the same nine statements, in the same order, on the same tables, triggers
-- and indexes. The participants projection runs no statement for a SettingsUpdated.
--
-- Variables (pgbench -D): rooms = how many rooms bench.py seeded, clients = pgbench -c. Room r
-- has the id '00000000-0000-4000-8000-' || lpad(r, 12, '0') (36 characters, like the
-- service's UUIDs). Client c patches only the rooms r = c + 1 + clients * k, so two clients never
-- work on the same room: pgbench aborts a client on the unique violation that a second append
-- at the same sequence gets (the service queues commands on one room instead).
\set r :client_id + 1 + :clients * random(0, :rooms / :clients - 1)
\set m random(2, 100)
-- 1. load: the room's state row (on a pooled connection, outside the transaction).
SELECT sequence, state FROM room_states
  WHERE room_id = '00000000-0000-4000-8000-' || lpad(:r::text, 12, '0')
\gset
-- 2. decide: one SettingsUpdated at the next sequence (computed here, not by a statement).
\set next :sequence + 1
-- 3. the transaction (src/db.rs Tx: BEGIN as a plain statement).
BEGIN;
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT * FROM UNNEST(
  ARRAY['Room']::text[],
  ARRAY['00000000-0000-4000-8000-' || lpad(:r::text, 12, '0')]::text[],
  ARRAY[:next]::bigint[],
  ARRAY['SettingsUpdated']::text[],
  ARRAY['1.0.0']::text[],
  ARRAY['{"SettingsUpdated": {"roomId": "00000000-0000-4000-8000-000000000000", "changes": {"maxParticipants": ' || :m || '}, "updatedAt": "2026-03-03T10:30:00.000Z"}}']::jsonb[],
  ARRAY['{"userId": "bench-user", "requestId": "00000000-0000-4000-8000-000000000000"}']::jsonb[]);
-- the rooms projection: the room's row, locked, then written back with the event applied.
SELECT id, code, name, host_id, host_display_name, host_avatar_url, is_active,
  is_locked, started_at, created_at, updated_at, ended_at, settings_id, allow_chat,
  allow_screen_share, allow_guest_access, waiting_room, mute_participants_on_join,
  max_participants, version
  FROM rooms WHERE id = '00000000-0000-4000-8000-' || lpad(:r::text, 12, '0') FOR UPDATE
\gset
-- pgbench stores a NULL as an empty string: NULLIF gives the NULL back (the bench rooms have no
-- avatar and have not ended).
INSERT INTO rooms (id, code, name, host_id, host_display_name, host_avatar_url, is_active, is_locked,
  started_at, created_at, updated_at, ended_at, settings_id, allow_chat, allow_screen_share,
  allow_guest_access, waiting_room, mute_participants_on_join, max_participants, version)
SELECT * FROM UNNEST(ARRAY[:id]::text[], ARRAY[:code]::text[], ARRAY[:name]::text[],
  ARRAY[:host_id]::text[], ARRAY[:host_display_name]::text[], ARRAY[NULLIF(:host_avatar_url, '')]::text[],
  ARRAY[:is_active]::bool[], ARRAY[:is_locked]::bool[], ARRAY[:started_at]::timestamptz[],
  ARRAY[:created_at]::timestamptz[], ARRAY[now()]::timestamptz[],
  ARRAY[NULLIF(:ended_at, '')]::timestamptz[], ARRAY[:settings_id]::text[], ARRAY[:allow_chat]::bool[],
  ARRAY[:allow_screen_share]::bool[], ARRAY[:allow_guest_access]::bool[], ARRAY[:waiting_room]::bool[],
  ARRAY[:mute_participants_on_join]::bool[], ARRAY[:m]::int4[], ARRAY[:next]::int8[])
ON CONFLICT (id) DO UPDATE SET
  code = EXCLUDED.code, name = EXCLUDED.name, host_id = EXCLUDED.host_id,
  host_display_name = EXCLUDED.host_display_name, host_avatar_url = EXCLUDED.host_avatar_url,
  is_active = EXCLUDED.is_active, is_locked = EXCLUDED.is_locked,
  started_at = EXCLUDED.started_at, created_at = EXCLUDED.created_at,
  updated_at = EXCLUDED.updated_at, ended_at = EXCLUDED.ended_at,
  settings_id = EXCLUDED.settings_id, allow_chat = EXCLUDED.allow_chat,
  allow_screen_share = EXCLUDED.allow_screen_share,
  allow_guest_access = EXCLUDED.allow_guest_access, waiting_room = EXCLUDED.waiting_room,
  mute_participants_on_join = EXCLUDED.mute_participants_on_join,
  max_participants = EXCLUDED.max_participants, version = EXCLUDED.version;
-- the room_states projection: the state row, locked, then the new state (the service serializes
-- the aggregate; here the same JSON, about the same size, is spelled out).
SELECT sequence, state FROM room_states
  WHERE room_id = '00000000-0000-4000-8000-' || lpad(:r::text, 12, '0') FOR UPDATE;
INSERT INTO room_states (room_id, sequence, state)
SELECT * FROM UNNEST(ARRAY[:id]::text[], ARRAY[:next]::int8[],
  ARRAY['{"id": "' || :id || '", "ended": false, "host_id": "bench-user", "settings": {"allowChat": true, "waitingRoom": false, "maxParticipants": ' || :m || ', "allowGuestAccess": true, "allowScreenShare": true, "muteParticipantsOnJoin": false}, "is_locked": false, "participants": {}}']::jsonb[])
ON CONFLICT (room_id) DO UPDATE SET sequence = EXCLUDED.sequence, state = EXCLUDED.state;
COMMIT;
-- 4. the response: the room read back (rooms::find_by_id, on a pooled connection).
SELECT id, code, name, host_id, host_display_name, host_avatar_url, is_active,
  is_locked, started_at, created_at, updated_at, ended_at, settings_id, allow_chat,
  allow_screen_share, allow_guest_access, waiting_room, mute_participants_on_join,
  max_participants, version
  FROM rooms WHERE id = '00000000-0000-4000-8000-' || lpad(:r::text, 12, '0');

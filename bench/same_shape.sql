-- pgbench: the transaction of one create-room command, as the service runs it
-- (src/event_store.rs, src/read_models/): two events in one INSERT ... UNNEST, then the room
-- view upsert and the room's state row (the participants projection writes nothing for a
-- create), with the same statements, triggers and indexes.
\set n random(1, 9000000000000000000)
BEGIN;
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT * FROM UNNEST(
  ARRAY['Room', 'Room']::text[],
  ARRAY['pgb-' || :client_id || '-' || :n, 'pgb-' || :client_id || '-' || :n]::text[],
  ARRAY[1, 2]::bigint[],
  ARRAY['RoomCreated', 'SettingsConfigured']::text[],
  ARRAY['1.0.0', '1.0.0']::text[],
  ARRAY['{"RoomCreated": {"roomId": "x", "code": "abc-def-ghi", "name": "Bench room", "host": {"id": "u", "displayName": "u", "avatarUrl": null}, "isActive": true, "isLocked": false, "createdAt": "2026-03-03T10:30:00.000Z"}}',
        '{"SettingsConfigured": {"settingsId": "s", "roomId": "x", "allowChat": true, "allowScreenShare": true, "allowGuestAccess": true, "waitingRoom": false, "muteParticipantsOnJoin": false, "maxParticipants": 10, "configuredAt": "2026-03-03T10:30:00.000Z"}}']::jsonb[],
  ARRAY['{"requestId": "r", "userId": "u"}', '{"requestId": "r", "userId": "u"}']::jsonb[]);
INSERT INTO rooms (id, code, name, host_id, host_display_name, host_avatar_url, is_active, is_locked,
  started_at, created_at, updated_at, ended_at, settings_id, allow_chat, allow_screen_share,
  allow_guest_access, waiting_room, mute_participants_on_join, max_participants, version)
SELECT * FROM UNNEST(ARRAY['pgb-' || :client_id || '-' || :n], ARRAY[md5(:client_id || '-' || :n)],
  ARRAY['Bench room'], ARRAY['u'], ARRAY['u'], ARRAY[NULL::text], ARRAY[true], ARRAY[false],
  ARRAY[now()], ARRAY[now()], ARRAY[now()], ARRAY[NULL::timestamptz], ARRAY['s'], ARRAY[true],
  ARRAY[true], ARRAY[true], ARRAY[false], ARRAY[false], ARRAY[10], ARRAY[2::bigint])
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
INSERT INTO room_states (room_id, sequence, state)
SELECT * FROM UNNEST(ARRAY['pgb-' || :client_id || '-' || :n], ARRAY[2::bigint],
  ARRAY['{"id": "x", "host_id": "u", "settings": {"allowChat": true, "allowScreenShare": true, "allowGuestAccess": true, "waitingRoom": false, "muteParticipantsOnJoin": false, "maxParticipants": 10}, "is_locked": false, "ended": false, "participants": {}}'::jsonb])
ON CONFLICT (room_id) DO UPDATE SET sequence = EXCLUDED.sequence, state = EXCLUDED.state;
COMMIT;

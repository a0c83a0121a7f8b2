-- No query reads rooms by host yet (GET /users/me/rooms is not built), and every create paid
-- to maintain this index. Bring it back with the endpoint that needs it.
DROP INDEX rooms_host_id_created_at;

// One typed call of every operation of the NeuronMeet rooms API, through openapi-fetch and the
// `paths` types that openapi-typescript (default settings) generates from the service's OpenAPI
// document into ./schema.d.ts (tests/tools/check-client.sh puts it there). Compiling this file
// with `tsc --strict` checks that the document gives a usable client; running it with BASE_URL
// and TOKEN (a user's bearer token) plays a short scenario against a live service and exits 1,
// naming the step, at the first unexpected status or shape.
//
// Every `client.METHOD("/path"` of the document must appear below: check-client.sh verifies it.

import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

type Schemas = components["schemas"];
type FullRoom = Schemas["FullRoom"];
type Joined = Schemas["Joined"];
type Participant = Schemas["ParticipantBody"];
type Problem = Schemas["Problem"];

// ---- small assertion helpers -------------------------------------------------------------

let passed = 0;

class ScenarioError extends Error {}

function check(condition: unknown, what: string): asserts condition {
    if (!condition) throw new ScenarioError(what);
    passed += 1;
}

function show(value: unknown): string {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    return text === undefined ? "(no body)" : text.length > 600 ? `${text.slice(0, 600)}…` : text;
}

/** The answer of an openapi-fetch call, whatever the operation. */
type Answer<D, E> = { data?: D; error?: E; response: Response };

/** Awaits a call, checks its status, and returns the answer. */
async function expectStatus<D, E>(what: string, call: Promise<Answer<D, E>>, status: number) {
    let answer: Answer<D, E>;
    try {
        answer = await call;
    } catch (e) {
        const cause = e instanceof Error && e.cause instanceof Error ? `: ${e.cause.message}` : "";
        throw new ScenarioError(`${what}: no answer (${e instanceof Error ? e.message : String(e)}${cause})`);
    }
    const got = answer.response.status;
    if (got !== status) {
        throw new ScenarioError(
            `${what}: expected HTTP ${status}, got ${got}: ${show(answer.error ?? answer.data)}`,
        );
    }
    passed += 1;
    return answer;
}

/** A successful call's body, which must be there. */
async function expectData<D, E>(what: string, call: Promise<Answer<D, E>>, status: number): Promise<D> {
    const { data } = await expectStatus(what, call, status);
    check(data !== undefined && data !== null, `${what}: HTTP ${status} without a body`);
    return data;
}

/** A failed call's RFC 9457 problem, which must name the same status. */
async function expectProblem<D>(
    what: string,
    call: Promise<Answer<D, Problem>>,
    status: number,
): Promise<Problem> {
    const { error, response } = await expectStatus(what, call, status);
    check(error !== undefined, `${what}: HTTP ${status} without a problem body`);
    check(
        response.headers.get("content-type")?.startsWith("application/problem+json"),
        `${what}: content-type ${response.headers.get("content-type")}, not application/problem+json`,
    );
    check(
        error.status === status && typeof error.type === "string" && typeof error.title === "string",
        `${what}: not a problem for ${status}: ${show(error)}`,
    );
    return error;
}

function expectRoom(what: string, room: FullRoom, expected: Partial<FullRoom>) {
    for (const [key, value] of Object.entries(expected)) {
        const actual = room[key as keyof FullRoom];
        check(
            JSON.stringify(actual) === JSON.stringify(value),
            `${what}: ${key} is ${show(actual)}, expected ${show(value)}`,
        );
    }
    check(/^[a-z]{3}-[a-z]{3}-[a-z]{3}$/.test(room.code), `${what}: code ${room.code}`);
    check(room.settings.roomId === room.id, `${what}: settings.roomId ${room.settings.roomId}`);
}

/** The `sub` of a JWT (the host's user id), read without checking the signature. */
function subjectOf(jwt: string): string {
    let sub: unknown;
    try {
        sub = JSON.parse(Buffer.from(jwt.split(".")[1] ?? "", "base64url").toString()).sub;
    } catch {
        throw new ScenarioError("TOKEN is not a JWT");
    }
    check(typeof sub === "string", "TOKEN: no `sub` in the JWT payload");
    return sub;
}

function ids(participants: Participant[]): string[] {
    return participants.map((p) => p.id);
}

// ---- the scenario ------------------------------------------------------------------------

async function main(baseUrl: string, token: string): Promise<void> {
    // `anon` calls without a token (public endpoints, guests); `host` with the user's token.
    const anon = createClient<paths>({ baseUrl });
    const host = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${token}` } });
    const as = (joinToken: string) => ({ Authorization: `Bearer ${joinToken}` });
    const sub = subjectOf(token);

    // Operations and documentation.
    const health = await expectData("GET /healthz", anon.GET("/healthz"), 200);
    check(health.status === "ok", `GET /healthz: ${show(health)}`);

    const ready = await expectData("GET /readyz", anon.GET("/readyz"), 200);
    check(ready.status === "ready", `GET /readyz: status ${show(ready.status)}`);
    check(ready.database.status === "ok", `GET /readyz: database ${show(ready.database)}`);
    check(typeof ready.relay.status === "string", `GET /readyz: relay ${show(ready.relay)}`);

    const metrics = await expectData("GET /metrics", anon.GET("/metrics", { parseAs: "text" }), 200);
    check(metrics.includes("http_requests_total"), "GET /metrics: no http_requests_total");

    const spec = await expectData("GET /openapi.json", anon.GET("/openapi.json"), 200);
    check(spec.openapi === "3.1.0", `GET /openapi.json: openapi ${show(spec.openapi)}`);

    const docs = await expectStatus("GET /docs", anon.GET("/docs", { redirect: "manual" }), 308);
    const page = docs.response.headers.get("Location");
    check(page === "/docs/index.html", `GET /docs: Location ${page}`);
    const index = await expectData(
        "GET /docs/index.html",
        anon.GET("/docs/{file}", { params: { path: { file: "index.html" } }, parseAs: "text" }),
        200,
    );
    check(/<html/i.test(index), "GET /docs/index.html: not an HTML page");
    await expectProblem(
        "GET /docs/no-such-file.js",
        anon.GET("/docs/{file}", { params: { path: { file: "no-such-file.js" } } }),
        404,
    );

    // Create a room with only a name; the defaults apply. A repeat with the same
    // Idempotency-Key answers the first response again.
    const key = `calls-${Date.now()}-${Math.random().toString(36).slice(2)}`;
    const create = () =>
        host.POST("/rooms", {
            params: { header: { "Idempotency-Key": key } },
            body: { name: "Only a name" },
        });
    const created = await expectStatus("POST /rooms", create(), 201);
    check(created.data !== undefined, "POST /rooms: no body");
    const room: FullRoom = created.data;
    expectRoom("POST /rooms", room, {
        name: "Only a name",
        hostId: sub,
        isActive: true,
        isLocked: false,
        endedAt: null,
    });
    check(
        room.settings.maxParticipants === 50 && room.settings.waitingRoom === false,
        `POST /rooms: default settings expected, got ${show(room.settings)}`,
    );
    const location = created.response.headers.get("Location");
    check(location === `/rooms/${room.id}`, `POST /rooms: Location ${location}`);
    const { id, code } = room;

    const replay = await expectStatus("POST /rooms again (same Idempotency-Key)", create(), 201);
    check(replay.data?.id === id, `POST /rooms replay: another room ${show(replay.data)}`);
    check(
        replay.response.headers.get("Idempotent-Replayed") === "true",
        "POST /rooms replay: no Idempotent-Replayed: true",
    );

    const invalid = await expectProblem(
        "POST /rooms with an empty name",
        host.POST("/rooms", { body: { name: "", maxParticipants: 1 } }),
        400,
    );
    const failing = (invalid.errors ?? []).map((e) => e.field).sort();
    check(
        JSON.stringify(failing) === JSON.stringify(["maxParticipants", "name"]),
        `POST /rooms invalid: fields ${show(invalid.errors)}`,
    );
    await expectProblem(
        "POST /rooms without a token",
        anon.POST("/rooms", { body: { name: "No token" } }),
        401,
    );

    // Read it back, by id and by code.
    const byId = await expectData(
        "GET /rooms/{id}",
        host.GET("/rooms/{id}", { params: { path: { id } } }),
        200,
    );
    check(JSON.stringify(byId) === JSON.stringify(room), `GET /rooms/{id}: ${show(byId)} differs`);
    await expectProblem(
        "GET /rooms/{id} without a token",
        anon.GET("/rooms/{id}", { params: { path: { id } } }),
        401,
    );

    const pub = await expectData(
        "GET /rooms/code/{code}",
        anon.GET("/rooms/code/{code}", { params: { path: { code } } }),
        200,
    );
    check(
        pub.id === id && pub.name === room.name && pub.isActive && !pub.settings.waitingRoom,
        `GET /rooms/code/{code}: ${show(pub)}`,
    );
    check(!("hostId" in pub), "GET /rooms/code/{code}: the public view shows hostId");
    await expectProblem(
        "GET /rooms/code/{code} unknown",
        anon.GET("/rooms/code/{code}", { params: { path: { code: "zzz-zzz-zzz" } } }),
        404,
    );

    // The host turns the waiting room on and chat off.
    const patched = await expectData(
        "PATCH /rooms/{id}/settings",
        host.PATCH("/rooms/{id}/settings", {
            params: { path: { id } },
            body: { waitingRoom: true, allowChat: false },
        }),
        200,
    );
    check(
        patched.settings.waitingRoom && !patched.settings.allowChat && patched.settings.maxParticipants === 50,
        `PATCH /rooms/{id}/settings: ${show(patched.settings)}`,
    );

    // My rooms.
    const mine = await expectData(
        "GET /users/me/rooms",
        host.GET("/users/me/rooms", { params: { query: { status: "active", limit: 100 } } }),
        200,
    );
    check(
        mine.items.some((r) => r.id === id && r.settings.waitingRoom),
        `GET /users/me/rooms: room ${id} missing or stale`,
    );
    check(
        mine.items.every((r) => r.isActive && r.hostId === sub),
        "GET /users/me/rooms?status=active: a room not active or not mine",
    );

    // The host joins at once (no body: a user needs none); two guests wait.
    const hostJoin: Joined = await expectData(
        "POST /rooms/code/{code}/join (host)",
        host.POST("/rooms/code/{code}/join", { params: { path: { code } } }),
        201,
    );
    check(
        hostJoin.participant.role === "host" && hostJoin.participant.status === "joined",
        `join (host): ${show(hostJoin.participant)}`,
    );
    const guestJoin = (displayName: string) =>
        anon.POST("/rooms/code/{code}/join", { params: { path: { code } }, body: { displayName } });
    const grace = await expectData("POST /rooms/code/{code}/join (guest Grace)", guestJoin("Grace"), 202);
    const linus = await expectData("POST /rooms/code/{code}/join (guest Linus)", guestJoin("Linus"), 202);
    for (const g of [grace, linus]) {
        check(
            g.participant.role === "guest" &&
                g.participant.status === "waiting" &&
                typeof g.waitingPass === "string" &&
                g.joinToken === undefined,
            `join (guest): ${show(g)}`,
        );
    }
    await expectProblem(
        "POST /rooms/code/{code}/join (guest without a name)",
        anon.POST("/rooms/code/{code}/join", { params: { path: { code } }, body: {} }),
        400,
    );

    const waiting = await expectData(
        "GET /rooms/{id}/participants?status=waiting",
        host.GET("/rooms/{id}/participants", { params: { path: { id }, query: { status: "waiting" } } }),
        200,
    );
    check(
        JSON.stringify(ids(waiting.items)) === JSON.stringify([grace.participant.id, linus.participant.id]),
        `waiting room: ${show(waiting.items)}`,
    );

    const pids = (pid: string) => ({ params: { path: { id, pid } } });
    const admitted = await expectData(
        "POST /rooms/{id}/participants/{pid}/admit",
        host.POST("/rooms/{id}/participants/{pid}/admit", pids(grace.participant.id)),
        200,
    );
    check(admitted.status === "joined", `admit: ${show(admitted)}`);
    const denied = await expectData(
        "POST /rooms/{id}/participants/{pid}/deny",
        host.POST("/rooms/{id}/participants/{pid}/deny", pids(linus.participant.id)),
        200,
    );
    check(denied.status === "denied", `deny: ${show(denied)}`);
    await expectProblem(
        "POST /rooms/{id}/participants/{pid}/deny (not waiting)",
        host.POST("/rooms/{id}/participants/{pid}/deny", pids(grace.participant.id)),
        409,
    );
    const nobodyWaiting = await expectData(
        "POST /rooms/{id}/waiting/deny-all",
        host.POST("/rooms/{id}/waiting/deny-all", { params: { path: { id } } }),
        200,
    );
    check(nobodyWaiting.denied === 0, `deny-all: ${show(nobodyWaiting)}`);

    // Grace, now in, gets her join token with her waiting pass, sees who is in with it, then
    // leaves.
    const graceNow = await expectData(
        "GET /rooms/{id}/participants/{pid} (Grace's waiting pass)",
        anon.GET("/rooms/{id}/participants/{pid}", { ...pids(grace.participant.id), headers: as(grace.waitingPass!) }),
        200,
    );
    check(
        graceNow.participant.status === "joined" && typeof graceNow.joinToken === "string",
        `participant (Grace): ${show(graceNow)}`,
    );
    const graceToken = graceNow.joinToken!;
    // Her waiting feed, now that she is in: `admitted` at once, then its end.
    const graceFeed = await expectData(
        "GET /rooms/{id}/participants/{pid}/live",
        anon.GET("/rooms/{id}/participants/{pid}/live", {
            ...pids(grace.participant.id),
            headers: as(grace.waitingPass!),
            parseAs: "text",
        }),
        200,
    );
    check(graceFeed.includes("event: admitted"), `waiting feed: ${show(graceFeed)}`);
    const joined = await expectData(
        "GET /rooms/{id}/participants (Grace's join token)",
        anon.GET("/rooms/{id}/participants", { params: { path: { id } }, headers: as(graceToken) }),
        200,
    );
    check(
        JSON.stringify(ids(joined.items)) === JSON.stringify([hostJoin.participant.id, grace.participant.id]),
        `participants: ${show(joined.items)}`,
    );
    await expectStatus(
        "DELETE /rooms/{id}/participants/{pid} (Grace leaves)",
        anon.DELETE("/rooms/{id}/participants/{pid}", { ...pids(grace.participant.id), headers: as(graceToken) }),
        204,
    );
    const left = await expectData(
        "GET /rooms/{id}/participants (after Grace left)",
        host.GET("/rooms/{id}/participants", { params: { path: { id } } }),
        200,
    );
    check(
        JSON.stringify(ids(left.items)) === JSON.stringify([hostJoin.participant.id]),
        `participants after leaving: ${show(left.items)}`,
    );

    // The room's history, then the host ends it (twice: the second changes nothing).
    const history = await expectData(
        "GET /rooms/{id}/events",
        host.GET("/rooms/{id}/events", { params: { path: { id }, query: { after: 0, limit: 500 } } }),
        200,
    );
    const types = history.items.map((e) => e.type);
    check(
        types[0] === "RoomCreated" && types[1] === "SettingsConfigured" && types.includes("SettingsUpdated"),
        `events: ${show(types)}`,
    );
    check(
        history.items.every((e, i) => e.sequence === i + 1 && e.data.roomId === id),
        `events: sequences or roomIds off: ${show(history.items.map((e) => [e.sequence, e.data.roomId]))}`,
    );
    check(history.nextAfter === null, `events: nextAfter ${history.nextAfter}`);

    const ended = await expectData(
        "DELETE /rooms/{id}",
        host.DELETE("/rooms/{id}", { params: { path: { id } } }),
        200,
    );
    check(!ended.isActive && typeof ended.endedAt === "string", `DELETE /rooms/{id}: ${show(ended)}`);
    const endedAgain = await expectData(
        "DELETE /rooms/{id} again",
        host.DELETE("/rooms/{id}", { params: { path: { id } } }),
        200,
    );
    check(endedAgain.endedAt === ended.endedAt, `DELETE /rooms/{id} again: ${show(endedAgain)}`);
    // The room's feed from its beginning: the whole history, ending with RoomEnded.
    const feed = await expectData(
        "GET /rooms/{id}/live?after=0",
        host.GET("/rooms/{id}/live", { params: { path: { id }, query: { after: 0 } }, parseAs: "text" }),
        200,
    );
    check(
        feed.includes("event: RoomCreated") && feed.trimEnd().split("\n\n").pop()!.includes("event: RoomEnded"),
        `room feed: ${show(feed)}`,
    );

    await expectProblem("POST /rooms/code/{code}/join (ended)", guestJoin("Late"), 410);
    await expectProblem(
        "PATCH /rooms/{id}/settings (ended)",
        host.PATCH("/rooms/{id}/settings", { params: { path: { id } }, body: { isLocked: true } }),
        409,
    );
    const endedRooms = await expectData(
        "GET /users/me/rooms?status=ended",
        host.GET("/users/me/rooms", { params: { query: { status: "ended" } } }),
        200,
    );
    check(endedRooms.items.some((r) => r.id === id && !r.isActive), "my ended rooms: room missing");
}

const baseUrl = process.env.BASE_URL;
const token = process.env.TOKEN;
if (!baseUrl || !token) {
    console.error("usage: BASE_URL=http://127.0.0.1:8080 TOKEN=<user bearer token> node calls.js");
    process.exit(2);
}
main(baseUrl.replace(/\/+$/, ""), token).then(
    () => console.log(`client scenario: ${passed} checks passed against ${baseUrl}`),
    (e: unknown) => {
        const message = e instanceof ScenarioError ? e.message : e instanceof Error ? e.stack : String(e);
        console.error(`client scenario FAILED after ${passed} checks: ${message}`);
        process.exit(1);
    },
);

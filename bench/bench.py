#!/usr/bin/env python3
"""The benchmark of POST /rooms, PATCH /rooms/{id}/settings, joins (over many rooms, the one-room
storm across two instances, a long room), relay, replay and memory; run by
bench/run, which starts the private PostgreSQL and nats-server this uses. Standard library only.
Figures are printed and written as measured: nothing here edits them."""

import asyncio
import base64
import hashlib
import hmac
import http.client
import itertools
import json
import math
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ADMIN_URL = os.environ["BENCH_DATABASE_URL"]  # a server whose user may create databases
NATS_URL = os.environ["NATS_URL"]
NATS_PORT = NATS_URL.rsplit(":", 1)[-1].split("/")[0]
BIN = os.environ["BENCH_BIN"]
PGDATA = os.environ.get("BENCH_PGDATA", "")
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
CONCURRENCIES = [int(c) for c in os.environ.get("BENCH_CONCURRENCIES", "1,8,32,128").split(",")]
REPLAY_ROOMS = int(os.environ.get("BENCH_REPLAY_ROOMS", "60000"))
# PATCH /rooms/{id}/settings: how many rooms are patched at random, at how many connections.
PATCH_ROOMS = int(os.environ.get("BENCH_PATCH_ROOMS", "10000"))
PATCH_CONNECTIONS = 32
# POST /rooms/code/{code}/join: by a different user each, on random rooms among JOIN_ROOMS
# (maxParticipants 100, so that none fills), at how many connections; JOIN_TOKENS users minted.
JOIN_ROOMS = int(os.environ.get("BENCH_JOIN_ROOMS", "2000"))
JOIN_CONNECTIONS = 32
JOIN_TOKENS = int(os.environ.get("BENCH_JOIN_TOKENS", "60000"))
# The one-room storm: STORM_USERS users join one room of STORM_LIMIT places, from
# STORM_CONNECTIONS connections split across two service instances on one database.
STORM_USERS, STORM_LIMIT, STORM_CONNECTIONS = 1000, 100, 64
# A long room: LONG_EVENTS events of join/leave churn, then LONG_JOINS joins (each followed by a
# leave) on it and as many on a fresh room, alternately, one at a time.
LONG_EVENTS = int(os.environ.get("BENCH_LONG_EVENTS", "10000"))
LONG_JOINS = int(os.environ.get("BENCH_LONG_JOINS", "200"))
# BENCH_ONLY=patch runs only the PATCH measurement (and its pgbench), BENCH_ONLY=joins only the
# joins; either merges its entry into OUT.
ONLY = os.environ.get("BENCH_ONLY", "")
if ONLY not in ("", "patch", "joins", "hot", "overload", "slow", "leader_kill", "live", "limits"):
    raise SystemExit(f"BENCH_ONLY={ONLY!r}: expected empty (everything), patch, joins, hot, overload, slow, leader_kill, live or limits")
# Live feeds: LIVE_FEEDS feeds over LIVE_ROOMS rooms on two instances while LIVE_RATE commands/s
# (PATCHes, alternating instances) run for DURATION; then LIVE_IDLE idle feeds on one instance.
LIVE_FEEDS, LIVE_ROOMS, LIVE_RATE = 1000, 100, 200
LIVE_IDLE = int(os.environ.get("BENCH_LIVE_IDLE", "10000"))
# Slow sockets: SLOW_BODIES sockets trickle a POST /rooms body a byte a second (reconnecting when
# answered) and HALF_HEADS send half a request head (reconnecting when closed), while wrk
# creates rooms from 8 connections; the same wrk run without them is the baseline.
SLOW_BODIES, HALF_HEADS = 300, 300
# Leader kill: a three-node NATS cluster (sync_interval: always, the stream R3) under POST /rooms
# at LEADER_KILL_CONNECTIONS for LEADER_KILL_SECONDS; its stream leader is stopped at each of
# LEADER_KILL_AT (seconds into the run) with the signal beside it, and started again once
# publishing has resumed.
NATS_SERVER = os.environ.get("BENCH_NATS_SERVER", "nats-server")
LEADER_KILL_SECONDS = int(os.environ.get("BENCH_LEADER_KILL_SECONDS", "45"))
LEADER_KILL_CONNECTIONS = 8
LEADER_KILL_AT = ((6, "KILL"), (20, "KILL"), (34, "TERM"))
# Overload: capacity measured closed-loop (wrk, 32 connections), then POST /rooms offered
# open-loop (oha -q: a fixed rate whatever the answers) at these multiples of it, from
# OVERLOAD_CONNECTIONS connections, for OVERLOAD_SECONDS each.
OVERLOAD_MULTIPLES = (1, 2, 3, 10)
OVERLOAD_CONNECTIONS = 1000
OVERLOAD_SECONDS = int(os.environ.get("BENCH_OVERLOAD_SECONDS", "15"))
# Rate limits (BENCH_ONLY=limits): POST /rooms, member joins (user tokens) and guest joins (each
# from an address of its own, in X-Forwarded-For through TRUSTED_PROXIES=127.0.0.1/32) at
# LIMITS_CONNECTIONS, with the limits on (the defaults) and off, alternately, LIMITS_ROUNDS times
# each, every round on a fresh database; then an enumerator (GET /rooms/code/{random code} at full
# speed from one address, ENUM_CONNECTIONS connections) for ENUM_SECONDS, limits on and off.
LIMITS_ROUNDS = int(os.environ.get("BENCH_LIMITS_ROUNDS", "3"))
LIMITS_CONNECTIONS = 32
LIMITS_JOIN_ROOMS = int(os.environ.get("BENCH_LIMITS_JOIN_ROOMS", "1000"))
ENUM_CONNECTIONS = 32
ENUM_SECONDS = int(os.environ.get("BENCH_ENUM_SECONDS", "10"))
# A run counts as quiet when processes outside the benchmark took at most this many cores.
QUIET_CORES = 0.1
RATE_LIMITS_OFF = {name: "off" for name in ("RATE_LIMIT_GUEST_JOINS", "RATE_LIMIT_CODE_LOOKUPS",
                                            "RATE_LIMIT_FAILED_LOOKUPS", "RATE_LIMIT_ROOM_GUEST_JOINS")}
OUT = Path(os.environ.get("BENCH_OUT", "bench/results/latest.json"))
HERE = Path(__file__).resolve().parent


def log(message):
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def psql(url, sql):
    return subprocess.run(["psql", "-qAtX", url, "-c", sql], check=True, capture_output=True, text=True).stdout.strip()


def database(name):
    psql(ADMIN_URL, f"DROP DATABASE IF EXISTS {name}")
    psql(ADMIN_URL, f"CREATE DATABASE {name}")
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
    info = {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "postgresql": psql(ADMIN_URL, "SHOW server_version"),
        "fsync": psql(ADMIN_URL, "SHOW fsync"),
        "synchronous_commit": psql(ADMIN_URL, "SHOW synchronous_commit"),
        "wal_sync_method": psql(ADMIN_URL, "SHOW wal_sync_method"),
    }
    tool = subprocess.run(["bash", "-c", "ls /usr/lib/postgresql/*/bin/pg_test_fsync | tail -1"],
                          capture_output=True, text=True).stdout.strip()
    if tool and PGDATA:
        out = subprocess.run([tool, "-s", "1", "-f", f"{PGDATA}/pg_test_fsync.tmp"],
                             capture_output=True, text=True).stdout
        match = re.search(r"fdatasync\s+([\d.]+) ops/sec\s+(\d+) usecs/op", out)
        if match:
            info["fdatasync_usecs_per_op"] = int(match.group(2))
    return info


def start_service(url, secret=None, binary=None, **settings):
    """A `neuronmeet serve` on a free port; `secret`: its JWT_SECRET (default: a random one);
    `binary`: another build than BIN (an older commit's, say); `settings`: more environment
    (ROOM_BATCHES="false", say)."""
    binary = binary or BIN
    port = free_port()
    env = dict(os.environ, DATABASE_URL=url, NATS_URL=NATS_URL, PORT=str(port),
               JWT_SECRET=secret or secrets.token_hex(32), RUST_LOG="warn", LOG_FORMAT="json")
    env.update(settings)
    process = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(base + "/readyz", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    token = subprocess.run([binary, "token", "--sub", "bench-user", "--name", "Bench", "--ttl", "2h"],
                           env=env, check=True, capture_output=True, text=True).stdout.strip()
    return process, base, token


def wrk(base, token, connections, script="create_room.lua", url_path="/rooms", duration=None,
        env=None, good="created", bad="non_201"):
    """A wrk run of `script`; `good` counts the expected answers (rps is their rate), `bad` the
    others."""
    threads = str(min(2, connections))
    out = subprocess.run(
        ["wrk", "-t", threads, "-c", str(connections), "-d", f"{duration or DURATION}s", "--timeout", "10s",
         "-s", str(HERE / script), base + url_path],
        env=dict(os.environ, BENCH_TOKEN=token, BENCH_LUA_DIR=str(HERE), **(env or {})), check=True,
        capture_output=True, text=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("BENCH_JSON "))
    result = json.loads(line[len("BENCH_JSON "):])
    result["rps"] = round(result[good] / (result["duration_us"] / 1e6), 1)
    result["errors"] = result[bad] + result["socket_errors"] + result["timeouts"]
    return result


def counter(base, name, having=""):
    """The sum of a Prometheus counter over its labels (0 while it has never been incremented);
    with `having`, only over the series whose labels contain that text (`outcome="conflict"`)."""
    text = urllib.request.urlopen(base + "/metrics").read().decode()
    # (label values may hold braces themselves: route="/rooms/code/{code}")
    return sum(float(m.group(2)) for m in re.finditer(r"^" + name + r"(\{.*\})? (\S+)$", text, re.M)
               if having in (m.group(1) or ""))


def histogram(base, name):
    """Cumulative bucket counts of a Prometheus histogram, by upper bound."""
    text = urllib.request.urlopen(base + "/metrics").read().decode()
    buckets = {}
    for match in re.finditer(name + r'_bucket\{le="([^"]+)"\} (\d+)', text):
        buckets[float("inf") if match.group(1) == "+Inf" else float(match.group(1))] = int(match.group(2))
    return buckets


def quantile(before, after, q):
    """The q-quantile of the observations between two scrapes, as the upper bound of the bucket
    it falls in (so it is an upper estimate, never an understatement)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0) for b in bounds]
    total = counts[-1] if counts else 0
    if total == 0:
        return None
    for bound, count in zip(bounds, counts):
        if count >= q * total:
            return bound
    return bounds[-1]


def pgbench_exchanges(rounds=2):
    """pgbench at one client of bench/same_shape.sql as three exchanges: each statement waiting
    for the one before (as sqlx sends them), BEGIN and the statements as one pipeline with COMMIT
    after (as the service sends a write that reads nothing), and everything, COMMIT included, as
    one pipeline (what the service does not do: see docs/benchmarks.md, "Hot rooms").
    Alternately, `rounds` times each; each run's mean latency in ms."""
    url = database("bench_pgbench_exchanges")
    subprocess.run([BIN, "migrate"], env=dict(os.environ, DATABASE_URL=url), check=True, capture_output=True)
    text = (HERE / "same_shape.sql").read_text()
    shapes = {"statement_by_statement": text,
              "pipeline_then_commit": text.replace("BEGIN;", "\\startpipeline\nBEGIN;")
                                          .replace("COMMIT;", "\\endpipeline\nCOMMIT;"),
              "one_pipeline": text.replace("BEGIN;", "\\startpipeline\nBEGIN;")
                                  .replace("COMMIT;", "COMMIT;\n\\endpipeline")}
    result = {shape: [] for shape in shapes}
    for _ in range(rounds):
        for shape, script in shapes.items():
            with tempfile.NamedTemporaryFile("w", suffix=".sql", prefix="bench-exchanges-") as f:
                f.write(script)
                f.flush()
                log(f"pgbench at 1 client, {shape}, for {DURATION}s")
                out = subprocess.run(["pgbench", "-n", "-M", "prepared", "-c", "1", "-T", str(DURATION),
                                      "-f", f.name, url], check=True, capture_output=True, text=True).stdout
            result[shape].append(float(re.search(r"latency average = ([\d.]+) ms", out).group(1)))
    return result


def pgbench(connections):
    url = database("bench_pgbench")
    subprocess.run([BIN, "migrate"], env=dict(os.environ, DATABASE_URL=url), check=True, capture_output=True)
    out = subprocess.run(
        ["pgbench", "-n", "-M", "prepared", "-c", str(connections), "-j", "2", "-T", str(DURATION),
         "-f", str(HERE / "same_shape.sql"), url],
        check=True, capture_output=True, text=True).stdout
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    latency = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))
    return {"connections": connections, "tps": round(tps, 1), "latency_avg_ms": latency}


def write_rooms_log(url, rooms, room_id="'room-' || i", host_id="'u' || (i % 100)", max_participants=50):
    """Writes `rooms` rooms (RoomCreated and SettingsConfigured each) straight into the log;
    `room_id` and `host_id` are SQL expressions of the room's number i. Room i's code is i in
    base 26 as nine letters (a = 0), most significant first: i = 1 is aaa-aaa-aab."""
    psql(url, f"""
        INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
        SELECT 'Room', {room_id}, s.sequence, s.event_type, '1.0.0',
               CASE s.sequence
                 WHEN 1 THEN jsonb_build_object('RoomCreated', jsonb_build_object(
                   'roomId', {room_id}, 'name', 'Room ' || i,
                   'code', regexp_replace(c.letters, '(...)(...)(...)', '\\1-\\2-\\3'),
                   'host', jsonb_build_object('id', {host_id}, 'displayName', 'User', 'avatarUrl', null),
                   'isActive', true, 'isLocked', false, 'createdAt', '2026-03-03T10:30:00.000Z'))
                 ELSE jsonb_build_object('SettingsConfigured', jsonb_build_object(
                   'settingsId', 's-' || i, 'roomId', {room_id}, 'allowChat', true, 'allowScreenShare', true,
                   'allowGuestAccess', true, 'waitingRoom', false, 'muteParticipantsOnJoin', false,
                   'maxParticipants', {max_participants}, 'configuredAt', '2026-03-03T10:30:00.000Z'))
               END,
               '{{}}'::jsonb
          FROM generate_series(1, {rooms}) AS i
               -- i in base 26, as nine letters: a unique code per room
               CROSS JOIN LATERAL (SELECT string_agg(chr(97 + ((i / (26::bigint ^ k)::bigint) % 26)::int), '' ORDER BY k DESC)
                                     FROM generate_series(0, 8) AS k) AS c(letters)
               CROSS JOIN (VALUES (1, 'RoomCreated'), (2, 'SettingsConfigured')) AS s(sequence, event_type)
         ORDER BY i, s.sequence""")


def replay():
    url = database("bench_replay")
    subprocess.run([BIN, "migrate"], env=dict(os.environ, DATABASE_URL=url), check=True, capture_output=True)
    log(f"replay: writing {REPLAY_ROOMS} rooms ({2 * REPLAY_ROOMS} events) to the log")
    write_rooms_log(url, REPLAY_ROOMS)
    out = subprocess.run([BIN, "replay", "--projection", "rooms"], env=dict(os.environ, DATABASE_URL=url),
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"replay failed: {out.stderr}")
    match = re.search(r"replayed (\d+) events into (\d+) rows of rooms in ([\d.]+)s \(([\d.]+) events/s\)", out.stdout)
    return {"events": int(match.group(1)), "rows": int(match.group(2)), "seconds": float(match.group(3)),
            "events_per_second": float(match.group(4))}


def cpu_sample(service_pid=None):
    """CPU time so far (clock ticks) of the benchmark's processes, by group, and of the machine.
    postgres: the bench server's postmaster and its children only; service: the neuronmeet
    process; nats-server: the one on NATS_URL's port; wrk, pgbench, oha: by command name."""
    postmaster = None
    if PGDATA:
        try:
            postmaster = int(Path(PGDATA, "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    groups = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        pid, ppid, ticks = int(entry.name), int(fields[1]), int(fields[11]) + int(fields[12])
        if comm == "postgres" and postmaster in (pid, ppid):
            group = "postgres"
        elif pid == service_pid:
            group = "service"
        elif comm == "nats-server":
            try:
                args = (entry / "cmdline").read_text().split("\0")
            except OSError:
                continue
            if NATS_PORT not in args:
                continue  # not the bench's nats-server
            group = comm
        elif comm in ("wrk", "pgbench", "oha"):
            group = comm
        else:
            continue
        groups[group] = groups.get(group, 0) + ticks
    cpu = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = cpu[3] + cpu[4]  # idle, iowait
    return {"groups": groups, "busy": sum(cpu[:8]) - idle, "idle": idle, "at": time.monotonic()}


def cpu_split(a, b):
    """Cores used by each group between two samples; `other`: the rest of the busy time (other
    processes, interrupts)."""
    tick, seconds = os.sysconf("SC_CLK_TCK"), b["at"] - a["at"]
    cores = lambda ticks: round(ticks / tick / seconds, 2)
    split = {g: cores(b["groups"].get(g, 0) - a["groups"].get(g, 0)) for g in sorted(b["groups"])}
    split["other"] = round(cores(b["busy"] - a["busy"]) - sum(split.values()), 2)
    split["idle"] = cores(b["idle"] - a["idle"])
    return split


class CpuWindow(threading.Thread):
    """Samples CPU from 1 s after a run starts to 1 s before it ends, while its processes (wrk,
    pgbench and its backends) are alive; `split` is then the cores used per group."""

    def __init__(self, service_pid=None, duration=None):
        super().__init__(daemon=True)
        self.service_pid, self.split, self.duration = service_pid, None, duration or DURATION
        self.start()

    def run(self):
        time.sleep(1)
        first = cpu_sample(self.service_pid)
        time.sleep(max(self.duration - 2, 0.5))
        self.split = cpu_split(first, cpu_sample(self.service_pid))

    def result(self):
        self.join()
        return self.split


def relay_delays(before, after):
    return {"relay_delay_p50_ms": (lambda v: v and v * 1000)(quantile(before, after, 0.5)),
            "relay_delay_p99_ms": (lambda v: v and v * 1000)(quantile(before, after, 0.99))}


def create_rooms(base, token, count, max_participants=50, key="id", name="Patch bench room"):
    """Creates `count` rooms through POST /rooms (8 at a time), hosted by the token's `sub`, and
    returns their `key` (id or code), or with key=None the rooms as answered."""
    local = threading.local()
    host, port = base.removeprefix("http://").split(":")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    body = json.dumps({"name": name, "maxParticipants": max_participants})

    def create(_):
        for attempt in range(3):
            try:
                if getattr(local, "conn", None) is None:
                    local.conn = http.client.HTTPConnection(host, int(port), timeout=30)
                local.conn.request("POST", "/rooms", body, headers)
                response = local.conn.getresponse()
                data = response.read()
                if response.status != 201:
                    raise SystemExit(f"seeding: POST /rooms answered {response.status}: {data[:300]!r}")
                room = json.loads(data)
                return room if key is None else room[key]
            except (OSError, http.client.HTTPException):
                local.conn = None
                if attempt == 2:
                    raise

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(create, range(count)))


def relay_caught_up(base, timeout=120):
    """Waits until the relay has published every committed event (relay_lag_events is 0)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(base + "/metrics").read().decode()
        match = re.search(r"^relay_lag_events (\S+)$", text, re.M)
        if match and float(match.group(1)) == 0:
            return
        time.sleep(0.5)
    log(f"the relay still lags after {timeout}s; measuring anyway")


def settings_updates(url):
    return int(psql(url, "SELECT count(*) FROM events WHERE event_type = 'SettingsUpdated'"))


def patch_http(base, token, url, pid):
    """PATCH /rooms/{id}/settings at PATCH_CONNECTIONS, on PATCH_ROOMS rooms created first through
    the API. `url`: the service's database, for counting the events appended."""
    log(f"PATCH: creating {PATCH_ROOMS} rooms through POST /rooms")
    started = time.monotonic()
    ids = create_rooms(base, token, PATCH_ROOMS)
    log(f"PATCH: {len(ids)} rooms created in {time.monotonic() - started:.1f}s")
    with tempfile.NamedTemporaryFile("w", prefix="bench-rooms-", suffix=".txt", delete=False) as f:
        f.write("\n".join(ids) + "\n")
    env = {"BENCH_ROOMS_FILE": f.name}
    patch = dict(script="patch_settings.lua", env=env, good="ok", bad="non_200")
    try:
        relay_caught_up(base)
        # warm-up: the PATCH statements get prepared on every pooled connection
        wrk(base, token, PATCH_CONNECTIONS, duration=min(3, DURATION), **patch)
        relay_caught_up(base)
        before = histogram(base, "relay_publish_delay_seconds")
        conflicts_before = counter(base, "aggregate_conflicts_total")
        events_before = settings_updates(url)
        log(f"PATCH /rooms/{{id}}/settings at concurrency {PATCH_CONNECTIONS} for {DURATION}s")
        cpu = CpuWindow(pid)
        result = wrk(base, token, PATCH_CONNECTIONS, **patch)
        result["cpu_cores"] = cpu.result()
        time.sleep(1)  # let the relay drain before reading its delays
        after = histogram(base, "relay_publish_delay_seconds")
        result.update(relay_delays(before, after))
        result["connections"] = PATCH_CONNECTIONS
        # counted in the database: includes the commands of requests in flight when wrk stopped
        result["events_appended"] = settings_updates(url) - events_before
        result["conflict_retries"] = int(counter(base, "aggregate_conflicts_total") - conflicts_before)
        return result
    finally:
        os.unlink(f.name)


def pgbench_patch(connections):
    """pgbench of bench/patch_shape.sql on PATCH_ROOMS rooms written to a fresh log (2 events
    each, hosted by bench-user), with the read models built by `neuronmeet replay`."""
    url = database("bench_pgbench_patch")
    env = dict(os.environ, DATABASE_URL=url)
    subprocess.run([BIN, "migrate"], env=env, check=True, capture_output=True)
    write_rooms_log(url, PATCH_ROOMS, room_id="'00000000-0000-4000-8000-' || lpad(i::text, 12, '0')",
                    host_id="'bench-user'")
    # every projection: the PATCH path reads room_states and rooms
    out = subprocess.run([BIN, "replay"], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"replay (seeding pgbench's rooms) failed: {out.stderr}")
    cpu = CpuWindow()
    run = subprocess.run(
        ["pgbench", "-n", "-M", "prepared", "-c", str(connections), "-j", "2", "-T", str(DURATION),
         "-D", f"rooms={PATCH_ROOMS}", "-D", f"clients={connections}", "-f", str(HERE / "patch_shape.sql"), url],
        capture_output=True, text=True)
    cpu = cpu.result()
    if run.returncode != 0:
        raise SystemExit(f"pgbench of patch_shape.sql failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    tps = float(re.search(r"tps = ([\d.]+)", run.stdout).group(1))
    latency = float(re.search(r"latency average = ([\d.]+) ms", run.stdout).group(1))
    failed = re.search(r"number of failed transactions: (\d+)", run.stdout)
    return {"connections": connections, "tps": round(tps, 1), "latency_avg_ms": latency,
            "failed": int(failed.group(1)) if failed else None, "cpu_cores": cpu}


def patch_results(http_result, info):
    log(f"pgbench: the PATCH statements at {PATCH_CONNECTIONS} connections for {DURATION}s")
    result = {"started": http_result.pop("started"), "commit": commit(), "machine": info, "duration_s": DURATION,
              "rooms": PATCH_ROOMS, "http": http_result, "pgbench": pgbench_patch(PATCH_CONNECTIONS)}
    result["ratio_to_pgbench"] = round(http_result["rps"] / result["pgbench"]["tps"], 3)
    return result

# --- Joins: over many rooms, the one-room storm, a long room ----------------------------------

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def user_tokens(secret, prefix, count, ttl=7200):
    """HS256 user tokens for the users `prefix`0 .. `prefix`(count - 1), signed with `secret`
    with the claims `neuronmeet token` gives (sub, iat, exp): one user per token."""
    compact = lambda value: b64url(json.dumps(value, separators=(",", ":")).encode())
    head, issued, key = compact({"typ": "JWT", "alg": "HS256"}), int(time.time()), secret.encode()
    tokens = []
    for n in range(count):
        signed = head + "." + compact({"sub": f"{prefix}{n}", "iat": issued, "exp": issued + ttl})
        tokens.append(signed + "." + b64url(hmac.new(key, signed.encode(), hashlib.sha256).digest()))
    return tokens


def loadavg():
    return [round(v, 2) for v in os.getloadavg()]


def count_events(url, event_type, room_id=None):
    room = f" AND aggregate_id = '{room_id}'" if room_id else ""
    return int(psql(url, f"SELECT count(*) FROM events WHERE event_type = '{event_type}'{room}"))


def lines_file(prefix, lines):
    with tempfile.NamedTemporaryFile("w", prefix=prefix, suffix=".txt", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    return f.name


def percentile(values, q):
    """The nearest-rank q-quantile of `values` (sorted here)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)] if ordered else None


def joins_http(base, token, secret, url, pid):
    """POST /rooms/code/{code}/join at JOIN_CONNECTIONS, a different user each, on random rooms
    among JOIN_ROOMS created first through the API with maxParticipants 100. `url`: the service's
    database, for counting the events appended."""
    log(f"joins: creating {JOIN_ROOMS} rooms (maxParticipants 100) through POST /rooms")
    started = time.monotonic()
    codes = create_rooms(base, token, JOIN_ROOMS, max_participants=100, key="code", name="Join bench room")
    log(f"joins: {len(codes)} rooms created in {time.monotonic() - started:.1f}s; minting user tokens")
    files = [lines_file("bench-codes-", codes),
             lines_file("bench-warm-tokens-", user_tokens(secret, "warm-user-", JOIN_TOKENS // 4)),
             lines_file("bench-tokens-", user_tokens(secret, "user-", JOIN_TOKENS))]
    env = lambda tokens: {"BENCH_ROOMS_FILE": files[0], "BENCH_TOKENS_FILE": tokens,
                          "BENCH_THREADS": str(min(2, JOIN_CONNECTIONS))}
    joins = dict(script="join_rooms.lua", url_path="", good="ok", bad="non_201")
    try:
        relay_caught_up(base)
        # warm-up, other users: the join statements get prepared on every pooled connection
        wrk(base, token, JOIN_CONNECTIONS, duration=min(3, DURATION), env=env(files[1]), **joins)
        relay_caught_up(base)
        before = histogram(base, "relay_publish_delay_seconds")
        conflicts_before = counter(base, "aggregate_conflicts_total")
        events_before = count_events(url, "ParticipantJoined")
        log(f"joins over {JOIN_ROOMS} rooms at concurrency {JOIN_CONNECTIONS} for {DURATION}s")
        load_before = loadavg()
        cpu = CpuWindow(pid)
        result = wrk(base, token, JOIN_CONNECTIONS, env=env(files[2]), **joins)
        result["cpu_cores"] = cpu.result()
        result["load_before"], result["load_after"] = load_before, loadavg()
        time.sleep(1)  # let the relay drain before reading its delays
        result.update(relay_delays(before, histogram(base, "relay_publish_delay_seconds")))
        result["connections"] = JOIN_CONNECTIONS
        # counted in the database: includes the commands of requests in flight when wrk stopped
        result["events_appended"] = count_events(url, "ParticipantJoined") - events_before
        result["conflict_retries"] = int(counter(base, "aggregate_conflicts_total") - conflicts_before)
        # warm-up included: no room may have filled, or some joins would be 409s
        result["fullest_room"] = int(psql(url, "SELECT coalesce(max(n), 0) FROM "
                                               "(SELECT count(*) AS n FROM participants GROUP BY room_id) AS c"))
        return result
    finally:
        for name in files:
            os.unlink(name)


def pgbench_join(connections):
    """pgbench of bench/join_shape.sql on JOIN_ROOMS rooms written to a fresh log (2 events
    each, maxParticipants 100, hosted by bench-user), the read models built by `neuronmeet
    replay`."""
    if not connections <= JOIN_ROOMS < 26 ** 3:
        raise SystemExit(f"BENCH_JOIN_ROOMS: join_shape.sql needs {connections} to {26 ** 3 - 1} rooms")
    url = database("bench_pgbench_join")
    env = dict(os.environ, DATABASE_URL=url)
    subprocess.run([BIN, "migrate"], env=env, check=True, capture_output=True)
    write_rooms_log(url, JOIN_ROOMS, room_id="'00000000-0000-4000-8000-' || lpad(i::text, 12, '0')",
                    host_id="'bench-user'", max_participants=100)
    out = subprocess.run([BIN, "replay"], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"replay (seeding pgbench's rooms) failed: {out.stderr}")
    load_before = loadavg()
    cpu = CpuWindow()
    run = subprocess.run(
        ["pgbench", "-n", "-M", "prepared", "-c", str(connections), "-j", "2", "-T", str(DURATION),
         "-D", f"rooms={JOIN_ROOMS}", "-D", f"clients={connections}", "-f", str(HERE / "join_shape.sql"), url],
        capture_output=True, text=True)
    cpu = cpu.result()
    load_after = loadavg()
    if run.returncode != 0:
        raise SystemExit(f"pgbench of join_shape.sql failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    tps = float(re.search(r"tps = ([\d.]+)", run.stdout).group(1))
    latency = float(re.search(r"latency average = ([\d.]+) ms", run.stdout).group(1))
    failed = re.search(r"number of failed transactions: (\d+)", run.stdout)
    return {"connections": connections, "tps": round(tps, 1), "latency_avg_ms": latency,
            "failed": int(failed.group(1)) if failed else None, "cpu_cores": cpu,
            "participants": int(psql(url, "SELECT count(*) FROM participants")),
            "load_before": load_before, "load_after": load_after}


def storm_run(bases, code, tokens, connections):
    """Each of `tokens`' users joins room `code` once. `connections` threads, each with its own
    connection (opened before the start), to each of `bases` in turn, take the next user until
    none is left. Returns, per user: (sent, answered, status, instance, detail), in perf_counter
    seconds; `detail` is the problem's detail of an answer other than 2xx."""
    targets = [b.removeprefix("http://").split(":") for b in bases]
    users, lock = iter(range(len(tokens))), threading.Lock()
    answers = [None] * len(tokens)
    start = threading.Barrier(connections + 1, timeout=60)

    def connect(instance):
        host, port = targets[instance]
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.connect()
        return conn

    def worker(number):
        instance = number % len(bases)
        conn = connect(instance)
        start.wait()
        while True:
            with lock:
                user = next(users, None)
            if user is None:
                break
            sent = time.perf_counter()
            try:
                conn.request("POST", f"/rooms/code/{code}/join", headers={"Authorization": f"Bearer {tokens[user]}"})
                response = conn.getresponse()
                body = response.read()
                status, detail = response.status, None
            except (OSError, http.client.HTTPException) as error:
                status, detail = type(error).__name__, str(error)
                conn.close()
                conn = connect(instance)
            answered = time.perf_counter()
            if isinstance(status, int) and status >= 300:
                try:
                    detail = json.loads(body).get("detail")
                except ValueError:
                    detail = body[:200].decode(errors="replace")
            answers[user] = (sent, answered, status, instance, detail)
        conn.close()

    workers = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(connections)]
    for w in workers:
        w.start()
    start.wait()
    for w in workers:
        w.join()
    return answers


def storm(bases, token, secret, url, users=STORM_USERS, limit=STORM_LIMIT, room=None, warm=True):
    """The one-room storm: `users` users join a room of `limit` places (`room`, {"id", "code"}:
    one made beforehand; by default one created here), from STORM_CONNECTIONS connections
    split across the two instances `bases` (one database). With `warm`, a smaller storm on
    another room comes first (every pooled connection opened and its statements prepared) and
    is not reported."""
    if warm:
        warm_room = create_rooms(bases[0], token, 1, max_participants=STORM_LIMIT, key="code", name="Warm-up storm")[0]
        storm_run(bases, warm_room, user_tokens(secret, "warm-storm-user-", 2 * STORM_LIMIT), STORM_CONNECTIONS)
    if room is None:
        room = create_rooms(bases[0], token, 1, max_participants=limit, key=None, name="Storm room")[0]
    tokens = user_tokens(secret, f"storm-user-{room['id']}-", users)
    relay_caught_up(bases[0])
    metrics = lambda: [{"conflicts": counter(b, "aggregate_conflicts_total"),
                        "gave_up": counter(b, "commands_total", 'outcome="conflict"'),
                        "published": counter(b, "relay_published_total")} for b in bases]
    before = metrics()
    log(f"storm: {users} users join one room of {limit} from {STORM_CONNECTIONS} connections "
        f"across {len(bases)} instances")
    load_before = loadavg()
    answers = storm_run(bases, room["code"], tokens, STORM_CONNECTIONS)
    load_after = loadavg()
    relay_caught_up(bases[0])
    after = metrics()
    done = [a for a in answers if a]
    latencies = [a[1] - a[0] for a in done]
    statuses, details = {}, {}
    by_instance = [{} for _ in bases]
    for _, _, status, instance, detail in done:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        by_instance[instance][str(status)] = by_instance[instance].get(str(status), 0) + 1
        if detail is not None:
            details[f"{status} {detail}"] = details.get(f"{status} {detail}", 0) + 1
    ms = lambda seconds: round(seconds * 1000, 1)
    request = urllib.request.Request(f"{bases[1]}/rooms/{room['id']}/participants",
                                     headers={"Authorization": f"Bearer {token}"})
    listed = json.loads(urllib.request.urlopen(request).read())["items"]
    return {"users": users, "max_participants": limit, "connections": STORM_CONNECTIONS,
            "instances": len(bases), "answered": len(done),
            "settle_ms": ms(max(a[1] for a in done) - min(a[0] for a in done)),
            "p50_ms": ms(percentile(latencies, 0.5)), "p99_ms": ms(percentile(latencies, 0.99)),
            "max_ms": ms(max(latencies)), "statuses": statuses, "statuses_by_instance": by_instance,
            "latency_by_instance_ms": [
                {"p50": ms(percentile(mine, 0.5)), "p99": ms(percentile(mine, 0.99)), "max": ms(max(mine))}
                for mine in ([a[1] - a[0] for a in done if a[3] == i] for i in range(len(bases)))],
            "refusals": details,
            "participants_listed": len(listed),
            "joined_events": count_events(url, "ParticipantJoined", room["id"]),
            "relay_published": int(sum(a["published"] - b["published"] for a, b in zip(after, before))),
            "conflict_retries_by_instance": [int(a["conflicts"] - b["conflicts"] - (a["gave_up"] - b["gave_up"]))
                                             for a, b in zip(after, before)],
            "gave_up_by_instance": [int(a["gave_up"] - b["gave_up"]) for a, b in zip(after, before)],
            "load_before": load_before, "load_after": load_after}


def long_room(base, token, secret, url):
    """Join latency on a room with LONG_EVENTS events of join/leave churn against a fresh room:
    LONG_JOINS joins on each, alternately, one at a time on one connection, each by a new user
    and followed by that user's leave (so both rooms stay empty); 20 of each first, not
    reported. The churn is written by SQL, as the test
    a_room_with_ten_thousand_events_still_decides_from_its_state_row does, and room_states and
    participants are then rebuilt with `neuronmeet replay`."""
    long, fresh = create_rooms(base, token, 2, max_participants=100, key=None, name="Long bench room")
    start = int(psql(url, f"SELECT max(sequence) FROM events WHERE aggregate_id = '{long['id']}'"))
    log(f"long room: writing {LONG_EVENTS} events of join/leave churn after its {start}")
    psql(url, f"""
        INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
        SELECT 'Room', '{long['id']}', {start} + n, t, '1.0.0',
               CASE WHEN t = 'ParticipantJoined' THEN jsonb_build_object(t, jsonb_build_object(
                      'roomId', '{long['id']}', 'participantId', 'p-' || (n + 1) / 2, 'userId', 'u-' || (n + 1) / 2,
                      'displayName', 'U', 'avatarUrl', NULL, 'role', 'member', 'muted', false,
                      'at', '2026-03-03T10:30:00.000Z'))
                    ELSE jsonb_build_object(t, jsonb_build_object(
                      'roomId', '{long['id']}', 'participantId', 'p-' || n / 2, 'reason', 'left',
                      'at', '2026-03-03T10:30:00.000Z')) END,
               '{{}}'
          FROM generate_series(1, {LONG_EVENTS}) AS n,
               LATERAL (SELECT CASE WHEN n % 2 = 1 THEN 'ParticipantJoined' ELSE 'ParticipantLeft' END AS t) AS k""")
    for projection in ("room_states", "participants"):
        out = subprocess.run([BIN, "replay", "--projection", projection], env=dict(os.environ, DATABASE_URL=url),
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"replay --projection {projection} failed: {out.stderr}")
        log("long room: " + out.stdout.strip())
    state_sequence = lambda room: int(psql(url, f"SELECT sequence FROM room_states WHERE room_id = '{room['id']}'"))
    sequences_before = {"long": state_sequence(long), "fresh": state_sequence(fresh)}
    relay_caught_up(base)  # the relay publishes the churn too
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    warmup = 20
    users = {name: user_tokens(secret, f"{name}-user-", warmup + LONG_JOINS) for name in ("long", "fresh")}
    rooms = {"long": long, "fresh": fresh}
    latencies, statuses = {"long": [], "fresh": []}, {}

    def join_and_leave(name, n):
        room, auth = rooms[name], {"Authorization": f"Bearer {users[name][n]}"}
        sent = time.perf_counter()
        conn.request("POST", f"/rooms/code/{room['code']}/join", headers=auth)
        response = conn.getresponse()
        body = response.read()
        took = time.perf_counter() - sent
        leave = None
        if response.status == 201:
            conn.request("DELETE", f"/rooms/{room['id']}/participants/{json.loads(body)['participant']['id']}",
                         headers=auth)
            answer = conn.getresponse()
            answer.read()
            leave = answer.status
        return took, response.status, leave

    for n in range(warmup):
        for name in ("long", "fresh"):
            join_and_leave(name, n)
    log(f"long room: {LONG_JOINS} joins and leaves on each room, alternately")
    load_before = loadavg()
    for n in range(warmup, warmup + LONG_JOINS):
        for name in (("long", "fresh") if n % 2 == 0 else ("fresh", "long")):
            took, joined, left = join_and_leave(name, n)
            latencies[name].append(took)
            key = f"{name}: join {joined}, leave {left}"
            statuses[key] = statuses.get(key, 0) + 1
    load_after = loadavg()
    conn.close()
    ms = lambda seconds: round(seconds * 1000, 2)
    result = {"events_written": LONG_EVENTS, "joins": LONG_JOINS, "sequences_before": sequences_before,
              "sequences_after": {"long": state_sequence(long), "fresh": state_sequence(fresh)},
              "long_events": int(psql(url, f"SELECT count(*) FROM events WHERE aggregate_id = '{long['id']}'")),
              "statuses": statuses, "load_before": load_before, "load_after": load_after}
    for name in ("long", "fresh"):
        result[f"{name}_p50_ms"] = ms(percentile(latencies[name], 0.5))
        result[f"{name}_p99_ms"] = ms(percentile(latencies[name], 0.99))
    result["p50_ratio"] = round(result["long_p50_ms"] / result["fresh_p50_ms"], 2)
    return result


def joins_results(info):
    """The joins: over many rooms (and its pgbench), the storm, the long room. Each on a fresh
    database, with its own service processes, all signing tokens with one secret."""
    secret = secrets.token_hex(32)
    result = {"started": now(), "commit": commit(), "machine": info, "duration_s": DURATION, "rooms": JOIN_ROOMS}
    url = database("bench_service_joins")
    process, base, token = start_service(url, secret)
    try:
        result["http"] = joins_http(base, token, secret, url, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
    log(f"pgbench: the join statements at {JOIN_CONNECTIONS} connections for {DURATION}s")
    result["pgbench"] = pgbench_join(JOIN_CONNECTIONS)
    result["ratio_to_pgbench"] = round(result["http"]["rps"] / result["pgbench"]["tps"], 3)

    url = database("bench_storm")
    services = [start_service(url, secret) for _ in range(2)]
    try:
        result["storm"] = storm([s[1] for s in services], services[0][2], secret, url)
        # the long room on the first instance alone
        services[1][0].terminate()
        services[1][0].wait(timeout=30)
        result["long_room"] = long_room(services[0][1], services[0][2], secret, url)
    finally:
        for process, _, _ in services:
            process.terminate()
            process.wait(timeout=30)

    # The same storm with blind retries: no turns per room, so concurrent joins conflict,
    # are decided again after a jittered pause, and conflict again.
    url = database("bench_storm_blind")
    services = [start_service(url, secret, ROOM_BATCHES="false") for _ in range(2)]
    try:
        result["storm_blind"] = storm([s[1] for s in services], services[0][2], secret, url)
    finally:
        for process, _, _ in services:
            process.terminate()
            process.wait(timeout=30)
    result["storm_speedup"] = round(result["storm_blind"]["settle_ms"] / result["storm"]["settle_ms"], 2)
    return result


# --- Hot rooms (BENCH_ONLY=hot): a crowd on one room, batched against the naive composition ---

HOT_BIG = 1000
# BENCH_BASELINE_BIN: a build of an earlier commit (BENCH_BASELINE_COMMIT names it), whose c=1
# creates and joins the hot part measures in the same run, before and after this build's.
BASELINE_BIN = os.environ.get("BENCH_BASELINE_BIN")
BASELINE_COMMIT = os.environ.get("BENCH_BASELINE_COMMIT", "baseline")
# BENCH_C1_ROUNDS: how many times each build's c=1 figures are taken (alternately; the median is
# reported beside each round's).
C1_ROUNDS = int(os.environ.get("BENCH_C1_ROUNDS", "3"))
HOT_BIG_ROOM = {"id": "0190f000-0000-7000-8000-000000001000", "code": "aaa-aaa-aab"}


def big_room(url):
    """A room of HOT_BIG places, written straight into the log (the API caps rooms at 100; the
    decisions read the limit from the room's settings, whatever it is) and its projections
    rebuilt with `neuronmeet replay`."""
    env = dict(os.environ, DATABASE_URL=url)
    subprocess.run([BIN, "migrate"], env=env, check=True, capture_output=True)
    write_rooms_log(url, 1, room_id=f"'{HOT_BIG_ROOM['id']}'", host_id="'bench-user'", max_participants=HOT_BIG)
    for projection in ("rooms", "participants", "room_states"):
        subprocess.run([BIN, "replay", "--projection", projection], env=env, check=True, capture_output=True)
    return HOT_BIG_ROOM


def c1_joins(base, token, secret):
    """POST /rooms/code/{code}/join from one connection for DURATION, a different user each, on
    random rooms among 200 of maxParticipants 100 (3 s of other users first, not reported)."""
    codes = create_rooms(base, token, 200, max_participants=100, key="code", name="c=1 join room")
    files = [lines_file("bench-c1-codes-", codes),
             lines_file("bench-c1-warm-", user_tokens(secret, "c1-warm-", 6000)),
             lines_file("bench-c1-tokens-", user_tokens(secret, "c1-user-", 20000))]
    env = lambda tokens: {"BENCH_ROOMS_FILE": files[0], "BENCH_TOKENS_FILE": tokens, "BENCH_THREADS": "1"}
    joins = dict(script="join_rooms.lua", url_path="", good="ok", bad="non_201")
    try:
        wrk(base, token, 1, duration=3, env=env(files[1]), **joins)
        return wrk(base, token, 1, env=env(files[2]), **joins)
    finally:
        for name in files:
            os.unlink(name)


def c1_latencies(binary, secret, label):
    """POST /rooms and joins at concurrency 1 on one fresh instance of `binary`."""
    url = database("bench_c1")
    process, base, token = start_service(url, secret, binary=binary)
    try:
        log(f"{label}: POST /rooms at concurrency 1 for {DURATION}s")
        wrk(base, token, 1, duration=3)
        create = wrk(base, token, 1)
        log(f"{label}: joins at concurrency 1 for {DURATION}s")
        return {"c1_create": create, "c1_join": c1_joins(base, token, secret)}
    finally:
        process.terminate()
        process.wait(timeout=30)


def c32_creates(binary, secret, label):
    """POST /rooms at concurrency 32 on one fresh instance of `binary` (3 s at 8 first)."""
    url = database("bench_c32")
    process, base, token = start_service(url, secret, binary=binary)
    try:
        wrk(base, token, 8, duration=3)
        log(f"POST /rooms at concurrency 32 for {DURATION}s, {label}")
        return wrk(base, token, 32)
    finally:
        process.terminate()
        process.wait(timeout=30)


def hot_rooms(info):
    """The storms of 100 and 1,000 users into a room of 100 and of HOT_BIG users into a room of
    HOT_BIG places (two instances, STORM_CONNECTIONS connections), then POST /rooms and a join
    at concurrency 1 on one instance: with per-room batches, and with ROOM_BATCHES=false (each
    command decided and appended alone, a conflict decided again at once: the naive
    composition's behaviour, through this service's event store). Each mode on a fresh
    database with its own two processes."""
    secret = secrets.token_hex(32)
    result = {"started": now(), "commit": commit(), "machine": info, "duration_s": DURATION}
    for mode, settings in (("batched", {}), ("naive", {"ROOM_BATCHES": "false"})):
        url = database(f"bench_hot_{mode}")
        big = big_room(url)
        services = [start_service(url, secret, **settings) for _ in range(2)]
        try:
            bases, token = [s[1] for s in services], services[0][2]
            runs = {"storm_100": storm(bases, token, secret, url, users=100, limit=100),
                    "storm_1000": storm(bases, token, secret, url, users=1000, limit=100, warm=False),
                    "room_of_1000": storm(bases, token, secret, url, users=HOT_BIG, limit=HOT_BIG, room=big,
                                          warm=False)}
            big_run = runs["room_of_1000"]
            big_run["joins_per_s"] = round(big_run["joined_events"] / (big_run["settle_ms"] / 1000), 1)
        finally:
            for process, _, _ in services:
                process.terminate()
                process.wait(timeout=30)
        result[mode] = runs
    # c=1 alone on the machine, this build and (if given) the baseline, alternately
    rounds = [("this", BIN)] + ([("baseline", BASELINE_BIN)] if BASELINE_BIN else [])
    for round_number in range(1, C1_ROUNDS + 1):
        for label, binary in rounds:
            result.setdefault(f"c1_{label}", []).append(c1_latencies(binary, secret, f"c=1 {label} #{round_number}"))
    for label, _ in rounds:
        runs = result[f"c1_{label}"]
        result[f"c1_{label}_median_p50_ms"] = {
            kind: round(statistics.median(run[f"c1_{kind}"]["p50_us"] for run in runs) / 1000, 2)
            for kind in ("create", "join")}
    if BASELINE_BIN:
        result["baseline_commit"] = BASELINE_COMMIT
    # POST /rooms at 32 against pgbench of the same transaction shape (and the baseline, if
    # given), alternately, three times
    result["c32_vs_pgbench"] = []
    for round_number in (1, 2, 3):
        http_runs = {label: c32_creates(binary, secret, f"{label}, round {round_number}") for label, binary in rounds}
        log(f"pgbench, the same shape, 32 clients for {DURATION}s, round {round_number}")
        pg = pgbench(32)
        http_run = http_runs["this"]
        row = {"rps": http_run["rps"], "p99_us": http_run["p99_us"], "errors": http_run["errors"],
               "pgbench_tps": pg["tps"], "ratio": round(http_run["rps"] / pg["tps"], 3)}
        if "baseline" in http_runs:
            row["baseline_rps"] = http_runs["baseline"]["rps"]
            row["baseline_ratio"] = round(http_runs["baseline"]["rps"] / pg["tps"], 3)
        result["c32_vs_pgbench"].append(row)
    result["c32_ratio_median"] = sorted(r["ratio"] for r in result["c32_vs_pgbench"])[1]
    result["pgbench_exchanges_ms"] = pgbench_exchanges()
    result["speedup"] = {run: round(result["naive"][run]["settle_ms"] / result["batched"][run]["settle_ms"], 2)
                         for run in ("storm_100", "storm_1000", "room_of_1000")}
    return result


def print_hot(r):
    print(f"\nHot rooms, started {r['started']}, built from {r['commit']}; two instances, "
          f"{STORM_CONNECTIONS} connections; naive = ROOM_BATCHES=false (each command alone, conflicts "
          f"decided again at once):\n")
    print("| run | batched: settle ms (p50 / p99 ms) | naive: settle ms (p50 / p99 ms) | naive / batched |")
    print("|---|---|---|---|")
    for run, title in (("storm_100", "100 users into a room of 100"), ("storm_1000", "1,000 users into a room of 100"),
                       ("room_of_1000", f"{HOT_BIG} users into a room of {HOT_BIG}")):
        cell = lambda s: f"{s['settle_ms']} ({s['p50_ms']} / {s['p99_ms']}); {s['statuses']}"
        print(f"| {title} | {cell(r['batched'][run])} | {cell(r['naive'][run])} | {r['speedup'][run]}x |")
    for mode in ("batched", "naive"):
        big = r[mode]["room_of_1000"]
        print(f"{mode}: room of {HOT_BIG}: {big['joined_events']} joined in {big['settle_ms']} ms = "
              f"{big['joins_per_s']} joins/s; conflict retries by instance "
              f"{big['conflict_retries_by_instance']}, gave up {big['gave_up_by_instance']}")
        for run in ("storm_100", "storm_1000"):
            s = r[mode][run]
            print(f"{mode}: {run}: conflict retries by instance {s['conflict_retries_by_instance']}, gave up "
                  f"{s['gave_up_by_instance']}; {load_text(s)}")
    for run in r.get("c32_vs_pgbench", []):
        baseline = (f"; {r.get('baseline_commit')}: {run['baseline_rps']}/s, ratio {run['baseline_ratio']}"
                    if "baseline_rps" in run else "")
        print(f"POST /rooms at 32: {run['rps']}/s (p99 {run['p99_us'] / 1000:.1f} ms, errors {run['errors']}); "
              f"pgbench same shape: {run['pgbench_tps']} tps; ratio {run['ratio']}{baseline}")
    if "c32_ratio_median" in r:
        print(f"median ratio of three: {r['c32_ratio_median']}")
    for shape, latencies in r.get("pgbench_exchanges_ms", {}).items():
        print(f"pgbench at 1 client, same shape, {shape}: mean latency {' / '.join(map(str, latencies))} ms")
    for label in ("this", "baseline"):
        for run in r.get(f"c1_{label}", []):
            c, j = run["c1_create"], run["c1_join"]
            name = r["commit"] if label == "this" else r.get("baseline_commit")
            print(f"c=1, {name}: POST /rooms p50 {c['p50_us'] / 1000:.2f} ms, p99 {c['p99_us'] / 1000:.2f} ms, "
                  f"{c['rps']}/s; join p50 {j['p50_us'] / 1000:.2f} ms, p99 {j['p99_us'] / 1000:.2f} ms, {j['rps']}/s")
        if f"c1_{label}_median_p50_ms" in r:
            m = r[f"c1_{label}_median_p50_ms"]
            print(f"c=1, {name}: median p50 of {len(r[f'c1_{label}'])} rounds: POST /rooms {m['create']} ms, "
                  f"join {m['join']} ms")


def load_text(x):
    return (f"load average {' '.join(map(str, x['load_before']))} before, "
            f"{' '.join(map(str, x['load_after']))} after")


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def commit():
    """The commit the binary was built from (bench/run builds the working tree: `-dirty` when it
    differs from the commit)."""
    out = subprocess.run(["git", "-C", str(HERE.parent), "describe", "--always", "--dirty"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def labelled_histogram(base, name, labels):
    """Cumulative bucket counts of one labelled series of a Prometheus histogram."""
    text = urllib.request.urlopen(base + "/metrics").read().decode()
    buckets = {}
    for match in re.finditer(name + r'_bucket\{([^}]*)\} (\d+)', text):
        fields = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(fields.get(k) == v for k, v in labels.items()):
            le = fields["le"]
            buckets[float("inf") if le == "+Inf" else float(le)] = int(match.group(2))
    return buckets


def oha(base, token, rate, seconds):
    """POST /rooms offered open-loop at `rate` per second for `seconds`: each answer's status and
    latency (oha's CSV), the latency corrected for coordinated omission (from when the request
    was due, not from when a connection was free to send it)."""
    out = subprocess.run(
        ["oha", "--no-tui", "--output-format", "csv", "--latency-correction",
         "-c", str(OVERLOAD_CONNECTIONS), "-q", str(rate), "-z", f"{seconds}s", "-t", "10s", "-m", "POST",
         "-H", f"Authorization: Bearer {token}", "-H", "Content-Type: application/json",
         "-d", '{"name": "Overload bench room"}', base + "/rooms"],
        check=True, capture_output=True, text=True).stdout
    answers = []
    for line in out.splitlines()[1:]:
        fields = line.split(",")
        answers.append((int(fields[6]), float(fields[4])))
    return answers


def overload(base, token, pid):
    """Goodput and latency of POST /rooms at 1x, 2x, 3x and 10x the capacity, offered open-loop."""
    wrk(base, token, 32, duration=3)  # warm-up
    capacity = wrk(base, token, 32)["rps"]
    log(f"capacity (closed loop, 32 connections): {capacity} rooms/s")
    rows = []
    for multiple in OVERLOAD_MULTIPLES:
        rate = round(capacity * multiple)
        log(f"offering {rate} POST /rooms per second ({multiple}x) from {OVERLOAD_CONNECTIONS} connections "
            f"for {OVERLOAD_SECONDS}s")
        shed_before = counter(base, "http_requests_shed_total", 'reason="overload"')
        busy_before = counter(base, "http_requests_shed_total", 'reason="pool_busy"')
        admitted_before = labelled_histogram(base, "http_request_duration_seconds",
                                             {"method": "POST", "route": "/rooms"})
        cpu = CpuWindow(pid, OVERLOAD_SECONDS)
        answers = oha(base, token, rate, OVERLOAD_SECONDS)
        load_ = cpu.result()
        admitted_after = labelled_histogram(base, "http_request_duration_seconds",
                                            {"method": "POST", "route": "/rooms"})
        statuses = {}
        for status, _ in answers:
            statuses[status] = statuses.get(status, 0) + 1
        created = statuses.get(201, 0)
        created_ms = [seconds * 1000 for status, seconds in answers if status == 201]
        refused_ms = [seconds * 1000 for status, seconds in answers if status == 503]
        rows.append({
            "multiple": multiple, "offered_per_s": rate, "created": created,
            "goodput_per_s": round(created / OVERLOAD_SECONDS, 1),
            "goodput_of_capacity": round(created / OVERLOAD_SECONDS / capacity, 3),
            "statuses": statuses, "unanswered": rate * OVERLOAD_SECONDS - len(answers),
            "refused_overload": counter(base, "http_requests_shed_total", 'reason="overload"') - shed_before,
            "refused_pool_busy": counter(base, "http_requests_shed_total", 'reason="pool_busy"') - busy_before,
            "created_p50_ms": round1(percentile(created_ms, 0.50)),
            "created_p99_ms": round1(percentile(created_ms, 0.99)),
            "refused_p50_ms": round1(percentile(refused_ms, 0.50)),
            "refused_p99_ms": round1(percentile(refused_ms, 0.99)),
            "service_admitted_p99_ms": ms(quantile(admitted_before, admitted_after, 0.99)),
            "cpu": load_,
        })
    return {"capacity_per_s": capacity, "connections": OVERLOAD_CONNECTIONS, "seconds": OVERLOAD_SECONDS,
            "rows": rows}


class NatsCluster:
    """Three nats-servers on 127.0.0.1 (free client, route and monitoring ports), JetStream with
    sync_interval: always, stores in a temporary folder."""

    def __init__(self, size=3):
        self.dir = tempfile.mkdtemp(prefix="neuronmeet-bench-cluster-")
        ports = [(free_port(), free_port(), free_port()) for _ in range(size)]
        self.nodes = {}
        for i, (port, route, monitor) in enumerate(ports):
            name = f"n{i + 1}"
            routes = ", ".join(f"nats-route://127.0.0.1:{r}" for _, r, _ in ports if r != route)
            config = Path(self.dir, f"{name}.conf")
            config.write_text(
                f'server_name: {name}\nlisten: "127.0.0.1:{port}"\nhttp: "127.0.0.1:{monitor}"\n'
                f'log_file: "{self.dir}/{name}.log"\n'
                f'jetstream {{\n  store_dir: "{self.dir}/{name}"\n  sync_interval: always\n}}\n'
                f'cluster {{\n  name: neuronmeet-bench\n  listen: "127.0.0.1:{route}"\n  routes: [{routes}]\n}}\n')
            self.nodes[name] = {"port": port, "monitor": monitor, "config": config, "process": None}
            self.start(name)

    def start(self, name):
        node = self.nodes[name]
        node["process"] = subprocess.Popen([NATS_SERVER, "-c", str(node["config"])],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self, name, signal_name):
        process = self.nodes[name]["process"]
        process.send_signal(getattr(__import__("signal"), "SIG" + signal_name))
        process.wait(timeout=30)
        self.nodes[name]["process"] = None

    def url(self):
        return ",".join(f"nats://127.0.0.1:{n['port']}" for n in self.nodes.values())

    def stream_leader(self, stream="ROOMS"):
        """The stream's leader as a running node's monitoring reports it (None meanwhile)."""
        for node in self.nodes.values():
            if node["process"] is None:
                continue
            try:
                jsz = json.load(urllib.request.urlopen(
                    f"http://127.0.0.1:{node['monitor']}/jsz?accounts=true&streams=true", timeout=0.5))
            except (OSError, ValueError):
                continue
            for account in jsz.get("account_details") or []:
                for detail in account.get("stream_detail") or []:
                    if detail.get("name") == stream:
                        return (detail.get("cluster") or {}).get("leader")
        return None

    def stream_messages(self, stream="ROOMS"):
        """How many messages the stream's leader holds."""
        for name, node in self.nodes.items():
            if node["process"] is None:
                continue
            jsz = json.load(urllib.request.urlopen(
                f"http://127.0.0.1:{node['monitor']}/jsz?accounts=true&streams=true", timeout=2))
            for account in jsz.get("account_details") or []:
                for detail in account.get("stream_detail") or []:
                    if detail.get("name") == stream and (detail.get("cluster") or {}).get("leader") == name:
                        return detail["state"]["messages"]
        return None

    def close(self):
        for node in self.nodes.values():
            if node["process"] is not None:
                node["process"].kill()
                node["process"].wait()
        subprocess.run(["rm", "-rf", self.dir], check=False)


def published_moves(base, stop):
    """When relay_published_total moved, sampled every 20 ms until `stop` is set."""
    moves = []
    last = None
    while not stop.is_set():
        try:
            published = counter(base, "relay_published_total")
        except OSError:
            published = last
        if published != last:
            moves.append((time.monotonic(), published))
            last = published
        time.sleep(0.02)
    return moves


def stall_across(moves, at):
    """The longest time the published count stood still across `at` (the gap the kill falls in,
    or one of the two after it: a batch acknowledged just before the kill can end the first)."""
    gaps = [b[0] - a[0] for a, b in zip(moves, moves[1:]) if b[0] > at][:3]
    return max(gaps, default=None)


def leader_kill(info):
    """POST /rooms through a NATS cluster whose stream leader is stopped three times."""
    cluster = NatsCluster()
    url = database("bench_leader_kill")
    process = None
    try:
        process, base, token = start_service(url, NATS_URL=cluster.url(), NATS_STREAM_REPLICAS="3")
        create_rooms(base, token, 1)
        deadline = time.monotonic() + 60
        while counter(base, "relay_published_total") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        stop = threading.Event()
        moves = []
        sampler = threading.Thread(target=lambda: moves.extend(published_moves(base, stop)), daemon=True)
        sampler.start()
        published_before = counter(base, "relay_published_total")
        started = time.monotonic()
        load = ThreadPoolExecutor(1).submit(wrk, base, token, LEADER_KILL_CONNECTIONS,
                                            duration=LEADER_KILL_SECONDS)
        kills = []
        for at, signal_name in LEADER_KILL_AT:
            time.sleep(max(0.0, started + at - time.monotonic()))
            leader = cluster.stream_leader()
            before = counter(base, "relay_published_total")
            stopped_at = time.monotonic()
            log(f"stopping the stream leader {leader} with SIG{signal_name}")
            cluster.stop(leader, signal_name)
            elected = None
            while time.monotonic() - stopped_at < 60:
                if elected is None:
                    new = cluster.stream_leader()
                    if new and new != leader:
                        elected = time.monotonic() - stopped_at
                if elected is not None and counter(base, "relay_published_total") > before + 100:
                    break
                time.sleep(0.05)
            cluster.start(leader)
            kills.append({"signal": signal_name, "leader": leader, "at": stopped_at,
                          "elected_after_s": round(elected, 2) if elected is not None else None})
        http_result = load.result()
        duration = time.monotonic() - started
        published = counter(base, "relay_published_total") - published_before
        relay_caught_up(base)
        stop.set()
        sampler.join()
        for kill in kills:
            stall = stall_across(moves, kill.pop("at"))
            kill["stall_s"] = round(stall, 2) if stall is not None else None
        events = int(psql(url, "SELECT count(*) FROM events"))
        return {"started": now(), "commit": commit(), "machine": info,
                "nats_server": subprocess.run([NATS_SERVER, "--version"], capture_output=True, text=True).stdout.strip(),
                "connections": LEADER_KILL_CONNECTIONS, "seconds": LEADER_KILL_SECONDS,
                "rooms_per_s": http_result["rps"], "errors": http_result.get("errors"),
                "events_published_per_s": round(published / duration, 1),
                "events_logged": events, "stream_messages": cluster.stream_messages(),
                "kills": kills,
                "longest_stall_s": max((k["stall_s"] or 0 for k in kills), default=None)}
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
        cluster.close()


def print_leader_kill(r):
    print(f"\nLeader kill: {r['nats_server']}, three nodes on this machine (sync_interval: always, stream R3), "
          f"POST /rooms at {r['connections']} connections for {r['seconds']} s: {r['rooms_per_s']} rooms/s, "
          f"{r['events_published_per_s']} events/s published (errors: {r['errors']})")
    print("| stream leader stopped with | new leader after s | publishing stalled s |")
    print("|---|---:|---:|")
    for k in r["kills"]:
        print(f"| SIG{k['signal']} ({k['leader']}) | {k['elected_after_s']} | {k['stall_s']} |")
    print(f"longest stall: {r['longest_stall_s']} s; events logged {r['events_logged']}, "
          f"messages in the stream {r['stream_messages']}")


def round1(value):
    return None if value is None else round(value, 1)


def ms(seconds):
    return None if seconds is None else round(seconds * 1000, 1)


def print_overload(o):
    print(f"\nOverload: POST /rooms offered open-loop (oha -q, latency corrected) from {o['connections']} "
          f"connections for {o['seconds']} s at multiples of the capacity, {o['capacity_per_s']} rooms/s "
          f"(wrk, 32 connections, closed loop):")
    print("| offered | per s | created/s | of capacity | 201 p50 / p99 ms | 503 (limit / pool busy) | "
          "503 p50 / p99 ms | other answers, unanswered | service p99 of admitted ms | cores: service, postgres, oha |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|---:|---|")
    for r in o["rows"]:
        statuses = {int(k): v for k, v in r["statuses"].items()}  # JSON keeps the keys as text
        others = {k: v for k, v in statuses.items() if k not in (201, 503)}
        cores = r["cpu"]
        print(f"| {r['multiple']}x | {r['offered_per_s']} | {r['goodput_per_s']} | {r['goodput_of_capacity']:.0%} | "
              f"{r['created_p50_ms']} / {r['created_p99_ms']} | "
              f"{statuses.get(503, 0)} ({r['refused_overload']:.0f} / {r['refused_pool_busy']:.0f}) | "
              f"{r['refused_p50_ms']} / {r['refused_p99_ms']} | {others or 'none'}, {r['unanswered']} | "
              f"{r['service_admitted_p99_ms']} | {cores.get('service')}, {cores.get('postgres')}, {cores.get('oha')} |")


def run_overload(info):
    url = database("bench_overload")
    process, base, token = start_service(url)
    try:
        return dict(overload(base, token, process.pid), started=now(), commit=commit(), machine=info)
    finally:
        process.terminate()
        process.wait(timeout=30)


def replace_entry(key, result, info, show):
    """A BENCH_ONLY run: `result` replaces the `key` entry of OUT, whose other entries (earlier
    runs) are kept; then it is printed with the machine."""
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    results[key] = result
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print_machine(info, DURATION)
    show(result)
    print(f"summary: {OUT} (its `{key}` entry; the other entries are from earlier runs)")


def main_overload_only(info):
    replace_entry("overload", run_overload(info), info, print_overload)


class SlowSockets:
    """The slow-socket attack, on an asyncio loop of its own thread, until `stop`."""

    def __init__(self, port):
        self.port, self.answered, self.closed = port, 0, 0
        self.loop = asyncio.new_event_loop()
        self.stopping = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.run(),), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(timeout=30)

    async def run(self):
        self.stopping = asyncio.Event()
        tasks = [asyncio.create_task(self.slow_body()) for _ in range(SLOW_BODIES)]
        tasks += [asyncio.create_task(self.half_head()) for _ in range(HALF_HEADS)]
        await self.stopping.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def slow_body(self):
        body = b'{"name": "slow loris"}'
        # POST /rooms: bodies are read before anything else (a join would meet the guest-join
        # rate limit first, answered at once, and measure the limiter instead).
        head = (b"POST /rooms HTTP/1.1\r\nHost: bench\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(head)
                for byte in body:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    try:
                        if await asyncio.wait_for(reader.read(1), 1.0):
                            self.answered += 1
                        break  # answered, or closed: connect again
                    except asyncio.TimeoutError:
                        pass
                writer.close()
            except OSError:
                await asyncio.sleep(0.1)

    async def half_head(self):
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(b"GET /rooms/code/abc-def-ghi HTTP/1.1\r\nHost: be")
                await writer.drain()
                await reader.read()  # until the server closes it
                self.closed += 1
                writer.close()
            except OSError:
                await asyncio.sleep(0.1)


def slow_clients(base, token):
    """Ordinary creates (wrk, 8 connections) without, then with, the slow-socket attack."""
    wrk(base, token, 8, duration=3)  # warm-up
    port = int(base.rsplit(":", 1)[1])
    runs = {}
    for attacked in (False, True):
        log(f"POST /rooms at concurrency 8 for {DURATION}s" + (
            f", with {SLOW_BODIES} slow bodies and {HALF_HEADS} half heads" if attacked else ""))
        if attacked:
            with SlowSockets(port) as attack:
                time.sleep(2)  # the attack under way before the measurement
                result = wrk(base, token, 8)
            result.update(slow_bodies_answered=attack.answered, half_heads_closed=attack.closed)
        else:
            result = wrk(base, token, 8)
        answered = result["created"] + result["errors"]
        result["ok_ratio"] = round(result["created"] / answered, 4) if answered else None
        runs["attacked" if attacked else "baseline"] = result
    runs["concurrency_limit_after"] = counter(base, "http_concurrency_limit")
    runs["shed_slow_body"] = counter(base, "http_requests_shed_total", 'reason="slow_body"')
    return runs


def print_slow(r):
    print("\nSlow sockets: POST /rooms from 8 connections (wrk), without and with "
          f"{SLOW_BODIES} sockets trickling a POST /rooms body a byte a second and {HALF_HEADS} sending half a head:")
    print("| run | created/s | answered normally | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in ("baseline", "attacked"):
        x = r[name]
        print(f"| {name} | {x['rps']} | {x['ok_ratio']:.2%} | {x['p50_us'] / 1000:.2f} | "
              f"{x['p99_us'] / 1000:.2f} | {x['errors']} |")
    a = r["attacked"]
    print(f"slow bodies answered (408): {a['slow_bodies_answered']}, half heads closed: "
          f"{a['half_heads_closed']}, 408s counted by the service: {r['shed_slow_body']:.0f}, "
          f"concurrency limit after: {r['concurrency_limit_after']:.0f}")


def run_slow(info):
    url = database("bench_slow")
    process, base, token = start_service(url)
    try:
        return dict(slow_clients(base, token), started=now(), commit=commit(), machine=info)
    finally:
        process.terminate()
        process.wait(timeout=30)


def main_slow_only(info):
    replace_entry("slow_clients", run_slow(info), info, print_slow)


async def http_call(reader, writer, method, path, token, body=None):
    """One request on a kept-alive connection: (status, body)."""
    payload = json.dumps(body).encode() if body is not None else b""
    writer.write((f"{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n").encode() + payload)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    return status, await reader.readexactly(length)


async def open_feed(port, path, token):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"feed {path}: {head[:40]!r}")
    return reader, writer


async def read_feed(reader, room, arrivals):
    """Records when each event of `room` arrives: arrivals[(room, sequence)] -> [times]."""
    sequence = None
    while True:
        line = await reader.readline()
        if not line:
            return
        if line.startswith(b"id:"):
            sequence = int(line[3:].strip())
        elif line == b"\n" and sequence is not None:
            arrivals.setdefault((room, sequence), []).append(time.monotonic())
            sequence = None


async def live_latency(ports, token, room_ids):
    arrivals, acks, done, tasks, writers = {}, {}, {}, [], []
    for i in range(LIVE_FEEDS):
        room = room_ids[i % len(room_ids)]
        reader, writer = await open_feed(ports[i % 2], f"/rooms/{room}/live", token)
        writers.append(writer)
        tasks.append(asyncio.create_task(read_feed(reader, room, arrivals)))
    log(f"{LIVE_FEEDS} feeds open; {LIVE_RATE} PATCHes/s for {DURATION}s")
    conns = [await asyncio.open_connection("127.0.0.1", port) for port in ports for _ in range(8)]
    queue = asyncio.Queue(maxsize=1000)

    async def worker(reader, writer):
        while True:
            room, flip = await queue.get()
            status, body = await http_call(reader, writer, "PATCH", f"/rooms/{room}/settings", token,
                                           {"allowChat": flip})
            if status == 200:
                # A room's PATCHes are 0.5 s apart, one at a time: its k-th is its event 2 + k
                # (after RoomCreated and SettingsConfigured; each one changes allowChat).
                done[room] = done.get(room, 0) + 1
                acks[(room, 2 + done[room])] = time.monotonic()
            queue.task_done()

    workers = [asyncio.create_task(worker(r, w)) for r, w in conns]
    started, sent = time.monotonic(), 0
    while time.monotonic() - started < DURATION:
        due = started + sent / LIVE_RATE
        await asyncio.sleep(max(0, due - time.monotonic()))
        await queue.put((room_ids[sent % len(room_ids)], sent // len(room_ids) % 2 == 1))
        sent += 1
    await queue.join()
    await asyncio.sleep(2)  # the last events on their way
    for task in tasks + workers:
        task.cancel()
    for writer in writers + [w for _, w in conns]:
        writer.close()
    latencies = [max(0.0, t - acks[key]) * 1000 for key, times in arrivals.items() if key in acks for t in times]
    expected = sum(LIVE_FEEDS // len(room_ids) for _ in acks)
    return {"feeds": LIVE_FEEDS, "rooms": len(room_ids), "commands_per_s": LIVE_RATE, "commands": len(acks),
            "deliveries": len(latencies), "deliveries_expected": expected,
            "p50_ms": round1(percentile(latencies, 0.50)), "p99_ms": round1(percentile(latencies, 0.99)),
            "max_ms": round1(max(latencies) if latencies else None)}


async def idle_feeds(port, pid, token, room_ids):
    feeds = []
    for i in range(LIVE_IDLE):
        feeds.append(await open_feed(port, f"/rooms/{room_ids[i % len(room_ids)]}/live", token))
    log(f"{LIVE_IDLE} idle feeds open; sampling the service for 10 s")
    await asyncio.sleep(2)
    ticks = lambda: sum(int(x) for x in Path(f"/proc/{pid}/stat").read_text().split()[13:15])
    before, at = ticks(), time.monotonic()
    await asyncio.sleep(10)
    cpu = (ticks() - before) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - at)
    rss = int(re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024
    for _, writer in feeds:
        writer.close()
    return {"feeds": LIVE_IDLE, "rss_mib": round(rss, 1), "cpu_of_a_core": round(cpu, 4)}


def run_live(info):
    url = database("bench_live")
    secret = secrets.token_hex(32)
    # The host's token opens every feed here: no per-holder limit.
    settings = dict(MAX_CONNECTIONS="20000", LIVE_MAX_STREAMS_EACH=str(LIVE_IDLE))
    first, base_a, token = start_service(url, secret, **settings)
    second, base_b, _ = start_service(url, secret, **settings)
    try:
        room_ids = [json.loads(urllib.request.urlopen(urllib.request.Request(
            base_a + "/rooms", data=b"{}", method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})).read())["id"]
            for _ in range(LIVE_ROOMS)]
        ports = [int(base_a.rsplit(":", 1)[1]), int(base_b.rsplit(":", 1)[1])]
        latency = asyncio.run(live_latency(ports, token, room_ids))
        idle = asyncio.run(idle_feeds(ports[0], first.pid, token, room_ids))
        return {"latency": latency, "idle": idle, "started": now(), "commit": commit(), "machine": info}
    finally:
        for process in (first, second):
            process.terminate()
            process.wait(timeout=30)


def print_live(r):
    lat, idle = r["latency"], r["idle"]
    print(f"\nLive feeds: {lat['feeds']} feeds over {lat['rooms']} rooms on two instances, "
          f"{lat['commands_per_s']} PATCHes/s (alternating instances) for {DURATION} s:")
    print("| deliveries (expected) | commit-to-delivery p50 ms | p99 ms | max ms |")
    print("|---:|---:|---:|---:|")
    print(f"| {lat['deliveries']} ({lat['deliveries_expected']}) | {lat['p50_ms']} | {lat['p99_ms']} | {lat['max_ms']} |")
    print(f"{idle['feeds']} idle feeds on one instance: RSS {idle['rss_mib']} MiB, "
          f"{idle['cpu_of_a_core']:.2%} of a core at rest")


def main_live_only(info):
    replace_entry("live", run_live(info), info, print_live)

# --- Rate limits: their cost on the hot path, and an enumerator ---------------------------------

def limits_round(mode):
    """POST /rooms, member joins and guest joins at LIMITS_CONNECTIONS on a fresh service with the
    rate limits `mode` ("on": the defaults, "off": every one off, the middleware not installed)."""
    secret = secrets.token_hex(32)
    url = database("bench_limits")
    settings = dict(TRUSTED_PROXIES="127.0.0.1/32", **(RATE_LIMITS_OFF if mode == "off" else {}))
    process, base, token = start_service(url, secret=secret, **settings)
    files = []
    try:
        codes = create_rooms(base, token, LIMITS_JOIN_ROOMS, max_participants=100, key="code",
                             name="Limits bench room")
        files = [lines_file("bench-codes-", codes),
                 lines_file("bench-warm-tokens-", user_tokens(secret, "warm-user-", 5000)),
                 lines_file("bench-tokens-", user_tokens(secret, "user-", 30000))]
        env = lambda tokens: {"BENCH_ROOMS_FILE": files[0], "BENCH_TOKENS_FILE": tokens,
                              "BENCH_THREADS": str(min(2, LIMITS_CONNECTIONS))}
        joins = dict(url_path="", good="ok", bad="non_201")
        wrk(base, token, LIMITS_CONNECTIONS, duration=3)  # warm-up: creates, then joins
        wrk(base, token, LIMITS_CONNECTIONS, duration=3, env=env(files[1]), script="join_rooms.lua", **joins)
        row = {"mode": mode, "load_before": loadavg()}
        runs = (("create", {}),
                ("member_joins", dict(env=env(files[2]), script="join_rooms.lua", **joins)),
                ("guest_joins", dict(env=env(files[2]), script="join_guests.lua", **joins)))
        for name, options in runs:
            log(f"limits {mode}: {name} at concurrency {LIMITS_CONNECTIONS} for {DURATION}s")
            cpu = CpuWindow(process.pid)
            result = wrk(base, token, LIMITS_CONNECTIONS, **options)
            result["cpu_cores"] = cpu.result()
            row[name] = result
        row["load_after"] = loadavg()
        row["rate_limited"] = counter(base, "rate_limited_total")
        # no room may have filled, or some joins would be 409s
        row["fullest_room"] = int(psql(url, "SELECT coalesce(max(n), 0) FROM "
                                            "(SELECT count(*) AS n FROM participants GROUP BY room_id) AS c"))
        return row
    finally:
        for name in files:
            os.unlink(name)
        process.terminate()
        process.wait(timeout=30)


def enumeration(mode):
    """An enumerator at full speed from one address, the rate limits `mode` ("on", "off"): how
    many of its lookups reached the database (answered 404, each one query), second by second
    (from the service's metrics, scraped about once a second)."""
    url = database("bench_enumerate")
    process, base, token = start_service(url, **(RATE_LIMITS_OFF if mode == "off" else {}))
    try:
        create_rooms(base, token, 100, key="code", name="Enumeration bench room")
        reached = lambda: counter(base, "http_requests_total", 'route="/rooms/code/{code}",status="404"')
        samples, stop = [], threading.Event()

        def sample():
            started = time.monotonic()
            while not stop.is_set():
                samples.append((time.monotonic() - started, reached(), counter(base, "rate_limited_total")))
                stop.wait(1.0)

        sampler = threading.Thread(target=sample, daemon=True)
        log(f"enumeration, limits {mode}: GET /rooms/code/{{random code}} from one address, "
            f"{ENUM_CONNECTIONS} connections, {ENUM_SECONDS}s")
        sampler.start()
        cpu = CpuWindow(process.pid, ENUM_SECONDS)
        result = wrk(base, token, ENUM_CONNECTIONS, script="enumerate.lua", url_path="", duration=ENUM_SECONDS,
                     good="requests", bad="others")
        result["cpu_cores"] = cpu.result()
        stop.set()
        sampler.join()
        samples.append((samples[-1][0] + 1, reached(), counter(base, "rate_limited_total")))
        start = samples[0][1]
        after_first = next(n for t, n, _ in samples if t >= 1.0)
        result.update(
            mode=mode,
            reached_database=int(samples[-1][1] - start),
            reached_in_first_second=int(after_first - start),
            reached_after_first_second=int(samples[-1][1] - after_first),
            reached_per_second=[int(b[1] - a[1]) for a, b in zip(samples, samples[1:])],
            refused_per_second=[int(b[2] - a[2]) for a, b in zip(samples, samples[1:])],
        )
        return result
    finally:
        process.terminate()
        process.wait(timeout=30)


def spread(values):
    mean = sum(values) / len(values)
    return {"mean": round(mean, 1), "min": min(values), "max": max(values), "runs": values,
            "spread": round((max(values) - min(values)) / mean, 3) if mean else None}


def run_limits(info):
    started = now()
    rounds = []
    for n in range(LIMITS_ROUNDS):
        for mode in (("off", "on") if n % 2 == 0 else ("on", "off")):
            rounds.append(limits_round(mode))
    summary = {}
    for name in ("create", "member_joins", "guest_joins"):
        by_mode = {mode: spread([r[name]["rps"] for r in rounds if r["mode"] == mode]) for mode in ("off", "on")}
        p99 = {mode: spread([r[name]["p99_us"] / 1000 for r in rounds if r["mode"] == mode]) for mode in ("off", "on")}
        summary[name] = dict(by_mode, p99_ms=p99,
                             on_vs_off=round(by_mode["on"]["mean"] / by_mode["off"]["mean"] - 1, 3))
    return {"started": started, "commit": commit(), "machine": info, "duration_s": DURATION,
            "connections": LIMITS_CONNECTIONS, "rounds": rounds, "hot_path": summary,
            "enumeration": {mode: enumeration(mode) for mode in ("on", "off")}}


def print_limits(r):
    print(f"\nRate limits, the hot path: {r['connections']} connections, {r['duration_s']} s per run, "
          f"limits on (the defaults) and off alternately, {len(r['rounds']) // 2} rounds each, a fresh database each:")
    print("| run | off: mean (min to max) /s | on: mean (min to max) /s | on vs off | "
          "spread of off | p99 ms off / on (means) |")
    print("|---|---:|---:|---:|---:|---:|")
    names = {"create": "POST /rooms", "member_joins": "joins, members (user tokens)",
             "guest_joins": "joins, guests (an address each)"}
    for name, title in names.items():
        s = r["hot_path"][name]
        cell = lambda x: f"{x['mean']} ({x['min']} to {x['max']})"
        print(f"| {title} | {cell(s['off'])} | {cell(s['on'])} | {s['on_vs_off']:+.1%} | {s['off']['spread']:.1%} | "
              f"{s['p99_ms']['off']['mean']} / {s['p99_ms']['on']['mean']} |")
    print("each run, in order: rate/s (cores used by processes outside the benchmark meanwhile, which the "
          "2 cores were shared with):")
    for name, title in names.items():
        runs = ", ".join(f"{row['mode']} {row[name]['rps']:.0f} ({row[name]['cpu_cores'].get('other')})"
                         for row in r["rounds"])
        print(f"  {title}: {runs}")
    print(f"only the runs during which processes outside the benchmark used at most {QUIET_CORES} core:")
    for name, title in names.items():
        quiet = {mode: [row[name]["rps"] for row in r["rounds"] if row["mode"] == mode
                        and (row[name]["cpu_cores"].get("other") or 0) <= QUIET_CORES] for mode in ("off", "on")}
        if quiet["off"] and quiet["on"]:
            off, on = spread(quiet["off"]), spread(quiet["on"])
            print(f"  {title}: off {off['mean']} ({off['min']} to {off['max']}, {len(quiet['off'])} runs), "
                  f"on {on['mean']} ({on['min']} to {on['max']}, {len(quiet['on'])} runs): "
                  f"{on['mean'] / off['mean'] - 1:+.1%}")
        else:
            print(f"  {title}: too few quiet runs ({len(quiet['off'])} off, {len(quiet['on'])} on)")
    others = sorted({k for row in r["rounds"] for name in names for k in row[name].get("non_201_by_status", {})})
    print(f"refused by a limit in the hot-path runs: {sum(row['rate_limited'] for row in r['rounds']):.0f}; "
          f"fullest room: {max(row['fullest_room'] for row in r['rounds'])}; other answers: {others or 'none'}")
    print(f"\nEnumeration: GET /rooms/code/{{random code}} at full speed from one address, "
          f"{ENUM_CONNECTIONS} connections:")
    print("| limits | requests/s | reached the database (404) | in the first second | after it | "
          "refused (429) | p50 / p99 ms | service cores |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for mode in ("on", "off"):
        e = r["enumeration"][mode]
        print(f"| {mode} | {e['rps']} | {e['reached_database']} | {e['reached_in_first_second']} | "
              f"{e['reached_after_first_second']} | {e['refused']} | {e['p50_us'] / 1000:.2f} / {e['p99_us'] / 1000:.2f} | "
              f"{e['cpu_cores'].get('service')} |")
        print(f"  reached the database, second by second: {e['reached_per_second']}")


def main_limits_only(info):
    replace_entry("limits", run_limits(info), info, print_limits)


def main():
    info = machine()
    log("machine: " + json.dumps(info))
    if ONLY == "limits":
        main_limits_only(info)
        return
    if ONLY == "slow":
        main_slow_only(info)
        return
    if ONLY == "live":
        main_live_only(info)
        return
    if ONLY == "overload":
        main_overload_only(info)
        return
    if ONLY == "patch":
        main_patch_only(info)
        return
    if ONLY == "joins":
        main_joins_only(info)
        return
    if ONLY == "hot":
        replace_entry("hot", hot_rooms(info), info, print_hot)
        return
    if ONLY == "leader_kill":
        replace_entry("leader_kill", leader_kill(info), info, print_leader_kill)
        return
    results = {"machine": info, "duration_s": DURATION, "http": [], "started": now(), "commit": commit()}

    url = database("bench_service")
    process, base, token = start_service(url)
    try:
        wrk(base, token, 8)  # warm-up: connections, prepared statements, JIT-free paths
        for connections in CONCURRENCIES:
            before = histogram(base, "relay_publish_delay_seconds")
            log(f"POST /rooms at concurrency {connections} for {DURATION}s")
            result = wrk(base, token, connections)
            time.sleep(1)  # let the relay drain before reading its delays
            after = histogram(base, "relay_publish_delay_seconds")
            result.update(relay_delays(before, after))
            results["http"].append(dict(result, connections=connections))
        status = Path(f"/proc/{process.pid}/status").read_text()
        results["service_peak_rss_mib"] = round(int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024, 1)
        patch_started = now()
        patch = dict(patch_http(base, token, url, process.pid), started=patch_started)
    finally:
        process.terminate()
        process.wait(timeout=30)

    log(f"pgbench: the same transaction shape at 32 connections for {DURATION}s")
    results["pgbench"] = pgbench(32)
    results["patch"] = patch_results(patch, info)
    results["replay"] = replay()
    results["joins"] = joins_results(info)
    results["hot"] = hot_rooms(info)
    results["overload"] = run_overload(info)
    results["slow_clients"] = run_slow(info)
    results["leader_kill"] = leader_kill(info)

    at32 = next((r for r in results["http"] if r["connections"] == 32), None)
    if at32:
        results["ratio_to_pgbench_at_32"] = round(at32["rps"] / results["pgbench"]["tps"], 3)

    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)


def main_patch_only(info):
    """BENCH_ONLY=patch: the PATCH measurement alone, on a fresh service database. Its result
    replaces the `patch` entry of OUT, whose other entries (an earlier full run) are kept."""
    started = now()
    url = database("bench_service")
    process, base, token = start_service(url)
    try:
        patch = dict(patch_http(base, token, url, process.pid), started=started)
    finally:
        process.terminate()
        process.wait(timeout=30)
    replace_entry("patch", patch_results(patch, info), info, print_patch)


def main_joins_only(info):
    """BENCH_ONLY=joins: the joins alone, on fresh databases. Their result replaces the `joins`
    entry of OUT, whose other entries (earlier runs) are kept."""
    replace_entry("joins", joins_results(info), info, print_joins)


def print_machine(m, duration):
    print(f"\nmachine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB; PostgreSQL {m['postgresql']}, "
          f"fsync={m['fsync']}, synchronous_commit={m['synchronous_commit']}, wal_sync_method={m['wal_sync_method']}, "
          f"fdatasync {m.get('fdatasync_usecs_per_op', '?')} us/op; {duration} s per run\n")


def relay_cells(h):
    fmt = lambda v: "-" if v is None else f"≤{v:g}"
    return f"{fmt(h['relay_delay_p50_ms'])} | {fmt(h['relay_delay_p99_ms'])}"


def print_http_table(unit, runs):
    """wrk runs as a table: rate in `unit`, latencies, errors, the relay's delay."""
    print(f"| concurrency | {unit} | p50 ms | p99 ms | max ms | errors | relay delay p50 ms | relay delay p99 ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for h in runs:
        print(f"| {h['connections']} | {h['rps']} | {h['p50_us'] / 1000:.1f} | {h['p99_us'] / 1000:.1f} | "
              f"{h['max_us'] / 1000:.1f} | {h['errors']} | {relay_cells(h)} |")


def cores_text(split):
    return ", ".join(f"{group} {value:.2f}" for group, value in split.items())


def print_patch(r):
    h, p = r["http"], r["pgbench"]
    print(f"\nPATCH /rooms/{{id}}/settings (maxParticipants), random rooms among {r['rooms']}, "
          f"started {r['started']}, built from {r['commit']}:\n")
    print_http_table("requests/s", [h])
    statuses = ", ".join(f"{s}: {n}" for s, n in sorted(h["non_200_by_status"].items())) or "none"
    print(f"\n200s: {h['ok']} of {h['requests']} (non-200 by status: {statuses}; socket errors {h['socket_errors']}, "
          f"timeouts {h['timeouts']}); SettingsUpdated events appended: {h['events_appended']} "
          f"(counted in the database before and after, so with the requests still in flight when wrk "
          f"stopped); conflict retries: {h['conflict_retries']}")
    failed = "?" if p["failed"] is None else p["failed"]
    print(f"pgbench, the PATCH statements, {p['connections']} connections: {p['tps']} tps "
          f"(latency avg {p['latency_avg_ms']} ms, failed {failed})")
    print(f"PATCH at {h['connections']} / pgbench: {r['ratio_to_pgbench']:.0%}")
    print(f"CPU in cores of {r['machine']['cores']}, from 1 s after the start to 1 s before the end: "
          f"PATCH run: {cores_text(h['cpu_cores'])}; pgbench: {cores_text(p['cpu_cores'])}")


def print_joins(r):
    h, p, l = r["http"], r["pgbench"], r["long_room"]
    load = lambda x: f"load average {' '.join(map(str, x['load_before']))} before, {' '.join(map(str, x['load_after']))} after"
    print(f"\nJoins (POST /rooms/code/{{code}}/join, a different user each), random rooms among {r['rooms']} "
          f"of maxParticipants 100, started {r['started']}, built from {r['commit']}:\n")
    print_http_table("requests/s", [h])
    statuses = ", ".join(f"{s_}: {n}" for s_, n in sorted(h["non_201_by_status"].items())) or "none"
    print(f"\n201s: {h['ok']} of {h['requests']} (non-201 by status: {statuses}; socket errors {h['socket_errors']}, "
          f"timeouts {h['timeouts']}; token wraps {h['token_wraps']}); ParticipantJoined events appended: "
          f"{h['events_appended']} (counted in the database before and after); conflict retries: "
          f"{h['conflict_retries']}; fullest room: {h['fullest_room']} participants; {load(h)}")
    failed = "?" if p["failed"] is None else p["failed"]
    print(f"pgbench, the join statements, {p['connections']} connections: {p['tps']} tps "
          f"(latency avg {p['latency_avg_ms']} ms, failed {failed}); {load(p)}")
    print(f"joins at {h['connections']} / pgbench: {r['ratio_to_pgbench']:.0%}")
    print(f"CPU in cores of {r['machine']['cores']}, from 1 s after the start to 1 s before the end: "
          f"joins run: {cores_text(h['cpu_cores'])}; pgbench: {cores_text(p['cpu_cores'])}")
    codes = lambda counts: ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    for title, s in (("Storm", r["storm"]), ("Storm with blind retries (ROOM_BATCHES=false)", r.get("storm_blind"))):
        if s is None:
            continue
        print(f"\n{title}: {s['users']} users join one room of maxParticipants {s['max_participants']} from "
              f"{s['connections']} connections across {s['instances']} instances:")
        print(f"settled in {s['settle_ms']} ms (first request sent to last answer); answers p50 {s['p50_ms']} ms, "
              f"p99 {s['p99_ms']} ms, max {s['max_ms']} ms; answered {s['answered']} of {s['users']}")
        print(f"statuses: {codes(s['statuses'])}; by instance: "
              + "; ".join(f"#{i + 1} {codes(c)}" for i, c in enumerate(s["statuses_by_instance"])))
        print("answers by instance: " + "; ".join(f"#{i + 1} p50 {t['p50']} ms, p99 {t['p99']} ms, max {t['max']} ms"
                                                  for i, t in enumerate(s["latency_by_instance_ms"])))
        print("refusals: " + "; ".join(f"{n} × {d}" for d, n in sorted(s["refusals"].items())))
        print(f"participants listed: {s['participants_listed']}; ParticipantJoined events: {s['joined_events']}; "
              f"published by the relay meanwhile: {s['relay_published']}")
        print(f"conflict retries by instance: {s['conflict_retries_by_instance']}; commands that gave up on "
              f"conflicts: {s['gave_up_by_instance']}; {load(s)}")
    if "storm_speedup" in r:
        print(f"\nturns per room settle the storm {r['storm_speedup']}x faster than blind retries")
    print(f"\nLong room: {l['events_written']} events of join/leave churn (state row at sequence "
          f"{l['sequences_before']['long']}) against a fresh room (state row at sequence "
          f"{l['sequences_before']['fresh']}), {l['joins']} joins and leaves on each, one at a time, after 20 not counted:")
    print(f"join p50: long {l['long_p50_ms']} ms, fresh {l['fresh_p50_ms']} ms, long / fresh {l['p50_ratio']}; "
          f"p99: long {l['long_p99_ms']} ms, fresh {l['fresh_p99_ms']} ms")
    print(f"statuses: {codes(l['statuses'])}; after: the long room has {l['long_events']} events, state rows at "
          f"{l['sequences_after']['long']} (long) and {l['sequences_after']['fresh']} (fresh); {load(l)}")


def print_table(r):
    print_machine(r["machine"], r["duration_s"])
    print_http_table("rooms/s", r["http"])
    p = r["pgbench"]
    print(f"\npgbench, same transaction shape, 32 connections: {p['tps']} tps (latency avg {p['latency_avg_ms']} ms)")
    if "ratio_to_pgbench_at_32" in r:
        print(f"POST /rooms at 32 / pgbench: {r['ratio_to_pgbench_at_32']:.0%}")
    rp = r["replay"]
    print(f"replay: {rp['events']} events into {rp['rows']} rows in {rp['seconds']} s = {rp['events_per_second']:.0f} events/s")
    print(f"service peak RSS: {r['service_peak_rss_mib']} MiB")
    if "patch" in r:
        print_patch(r["patch"])
    if "joins" in r:
        print_joins(r["joins"])
    if "hot" in r:
        print_hot(r["hot"])
    if "overload" in r:
        print_overload(r["overload"])
    if "slow_clients" in r:
        print_slow(r["slow_clients"])
    if "leader_kill" in r:
        print_leader_kill(r["leader_kill"])
    print(f"summary: {OUT}")


if __name__ == "__main__":
    main()

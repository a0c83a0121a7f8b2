#!/usr/bin/env python3
"""The benchmark of POST /rooms, relay, replay and memory; run by bench/run, which starts the
private PostgreSQL and nats-server this uses. Standard library only. Figures are printed and
written as measured: nothing here edits them."""

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ADMIN_URL = os.environ["BENCH_DATABASE_URL"]  # a server whose user may create databases
NATS_URL = os.environ["NATS_URL"]
BIN = os.environ["BENCH_BIN"]
PGDATA = os.environ.get("BENCH_PGDATA", "")
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
CONCURRENCIES = [int(c) for c in os.environ.get("BENCH_CONCURRENCIES", "1,8,32,128").split(",")]
REPLAY_ROOMS = int(os.environ.get("BENCH_REPLAY_ROOMS", "60000"))
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


def start_service(url):
    port = free_port()
    env = dict(os.environ, DATABASE_URL=url, NATS_URL=NATS_URL, PORT=str(port),
               JWT_SECRET=secrets.token_hex(32), RUST_LOG="warn", LOG_FORMAT="json")
    process = subprocess.Popen([BIN, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(base + "/readyz", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    token = subprocess.run([BIN, "token", "--sub", "bench-user", "--name", "Bench", "--ttl", "2h"],
                           env=env, check=True, capture_output=True, text=True).stdout.strip()
    return process, base, token


def wrk(base, token, connections):
    threads = str(min(2, connections))
    out = subprocess.run(
        ["wrk", "-t", threads, "-c", str(connections), "-d", f"{DURATION}s", "--timeout", "10s",
         "-s", str(HERE / "create_room.lua"), base + "/rooms"],
        env=dict(os.environ, BENCH_TOKEN=token), check=True, capture_output=True, text=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("BENCH_JSON "))
    result = json.loads(line[len("BENCH_JSON "):])
    result["rps"] = round(result["created"] / (result["duration_us"] / 1e6), 1)
    result["errors"] = result["non_201"] + result["socket_errors"] + result["timeouts"]
    return result


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


def replay():
    url = database("bench_replay")
    subprocess.run([BIN, "migrate"], env=dict(os.environ, DATABASE_URL=url), check=True, capture_output=True)
    log(f"replay: writing {REPLAY_ROOMS} rooms ({2 * REPLAY_ROOMS} events) to the log")
    psql(url, f"""
        INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
        SELECT 'Room', 'room-' || i, s.sequence, s.event_type, '1.0.0',
               CASE s.sequence
                 WHEN 1 THEN jsonb_build_object('RoomCreated', jsonb_build_object(
                   'roomId', 'room-' || i, 'name', 'Room ' || i,
                   'code', regexp_replace(c.letters, '(...)(...)(...)', '\\1-\\2-\\3'),
                   'host', jsonb_build_object('id', 'u' || (i % 100), 'displayName', 'User', 'avatarUrl', null),
                   'isActive', true, 'isLocked', false, 'createdAt', '2026-03-03T10:30:00.000Z'))
                 ELSE jsonb_build_object('SettingsConfigured', jsonb_build_object(
                   'settingsId', 's-' || i, 'roomId', 'room-' || i, 'allowChat', true, 'allowScreenShare', true,
                   'allowGuestAccess', true, 'waitingRoom', false, 'muteParticipantsOnJoin', false,
                   'maxParticipants', 50, 'configuredAt', '2026-03-03T10:30:00.000Z'))
               END,
               '{{}}'::jsonb
          FROM generate_series(1, {REPLAY_ROOMS}) AS i
               -- i in base 26, as nine letters: a unique code per room
               CROSS JOIN LATERAL (SELECT string_agg(chr(97 + ((i / (26::bigint ^ k)::bigint) % 26)::int), '' ORDER BY k DESC)
                                     FROM generate_series(0, 8) AS k) AS c(letters)
               CROSS JOIN (VALUES (1, 'RoomCreated'), (2, 'SettingsConfigured')) AS s(sequence, event_type)
         ORDER BY i, s.sequence""")
    out = subprocess.run([BIN, "replay", "--projection", "rooms"], env=dict(os.environ, DATABASE_URL=url),
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"replay failed: {out.stderr}")
    match = re.search(r"replayed (\d+) events into (\d+) rows of rooms in ([\d.]+)s \(([\d.]+) events/s\)", out.stdout)
    return {"events": int(match.group(1)), "rows": int(match.group(2)), "seconds": float(match.group(3)),
            "events_per_second": float(match.group(4))}


def main():
    info = machine()
    log("machine: " + json.dumps(info))
    results = {"machine": info, "duration_s": DURATION, "http": [], "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    process, base, token = start_service(database("bench_service"))
    try:
        wrk(base, token, 8)  # warm-up: connections, prepared statements, JIT-free paths
        for connections in CONCURRENCIES:
            before = histogram(base, "relay_publish_delay_seconds")
            log(f"POST /rooms at concurrency {connections} for {DURATION}s")
            result = wrk(base, token, connections)
            time.sleep(1)  # let the relay drain before reading its delays
            after = histogram(base, "relay_publish_delay_seconds")
            result["relay_delay_p50_ms"] = (lambda v: v and v * 1000)(quantile(before, after, 0.5))
            result["relay_delay_p99_ms"] = (lambda v: v and v * 1000)(quantile(before, after, 0.99))
            results["http"].append(dict(result, connections=connections))
        status = Path(f"/proc/{process.pid}/status").read_text()
        results["service_peak_rss_mib"] = round(int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024, 1)
    finally:
        process.terminate()
        process.wait(timeout=30)

    log(f"pgbench: the same transaction shape at 32 connections for {DURATION}s")
    results["pgbench"] = pgbench(32)
    results["replay"] = replay()

    at32 = next((r for r in results["http"] if r["connections"] == 32), None)
    if at32:
        results["ratio_to_pgbench_at_32"] = round(at32["rps"] / results["pgbench"]["tps"], 3)

    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)


def print_table(r):
    m = r["machine"]
    print(f"\nmachine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB; PostgreSQL {m['postgresql']}, "
          f"fsync={m['fsync']}, synchronous_commit={m['synchronous_commit']}, wal_sync_method={m['wal_sync_method']}, "
          f"fdatasync {m.get('fdatasync_usecs_per_op', '?')} us/op; {r['duration_s']} s per run\n")
    print("| concurrency | rooms/s | p50 ms | p99 ms | max ms | errors | relay delay p50 ms | relay delay p99 ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for h in r["http"]:
        fmt = lambda v: "-" if v is None else f"≤{v:g}"
        print(f"| {h['connections']} | {h['rps']} | {h['p50_us'] / 1000:.1f} | {h['p99_us'] / 1000:.1f} | "
              f"{h['max_us'] / 1000:.1f} | {h['errors']} | {fmt(h['relay_delay_p50_ms'])} | {fmt(h['relay_delay_p99_ms'])} |")
    p = r["pgbench"]
    print(f"\npgbench, same transaction shape, 32 connections: {p['tps']} tps (latency avg {p['latency_avg_ms']} ms)")
    if "ratio_to_pgbench_at_32" in r:
        print(f"POST /rooms at 32 / pgbench: {r['ratio_to_pgbench_at_32']:.0%}")
    rp = r["replay"]
    print(f"replay: {rp['events']} events into {rp['rows']} rows in {rp['seconds']} s = {rp['events_per_second']:.0f} events/s")
    print(f"service peak RSS: {r['service_peak_rss_mib']} MiB")
    print(f"summary: {OUT}")


if __name__ == "__main__":
    main()

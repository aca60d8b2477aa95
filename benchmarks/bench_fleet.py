"""Fleet benchmark (docs/architecture.md §10, #26): how far one PostgreSQL carries N workers writing stories at once.

Run:  python benchmarks/bench_fleet.py                       (about 6 minutes)
      python benchmarks/bench_fleet.py --workers 1,2,4,8,16,32 --seconds 25 --json out.json [--pg URL]

For each N, N worker processes (forked from this one: no start-up imports) run stories end to end with
``Studio.run`` against one PostgreSQL database (fresh per N) and a local blob folder, while one reader
process asks for the memory at a shot and the audit of stories finished beforehand. The backends sleep
(``sleepy_backends.py``: VLM 0.05 s, image 0.3 s, video 0.6 s per call, preview outputs underneath): no
model, a worker waits the way it would on a GPU. Each process times, in itself, every ``EventStore.append``
(one transaction: a batch of events), every branch-lease claim and heartbeat, and every read; only what
falls in the measured window (``--seconds``, after a ``--warmup``) counts, then the processes are killed.

Reported per N: stories finished, events/s and appends/s, p50/p99 append latency, lease claims/s and
heartbeats/s (TTL ``--ttl``: a heartbeat every TTL/3), the reader's p50/p99 for memory-at-a-shot and
audit (``--reads`` a second, on a fixed schedule), the machine's CPU busy share, and PostgreSQL's own CPU
(its processes: cores, and milliseconds per event appended, readers' queries included). Also: events,
PostgreSQL bytes and blob bytes per story. The PostgreSQL started here (the tests' loopback server) runs
with fsync on, as a real one does; ``--pg URL`` measures another (give one whose databases may be created).

Read the numbers with the machine: N processes share its cores with PostgreSQL. Where the CPU is busy
all the time, a larger N measures contention for the cores, not what PostgreSQL could take.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ["CODIRECTOR_PLUGINS"] = "sleepy_backends"
os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])

from bench_scale import config, write_stories  # noqa: E402  (the same stories and sleepy config)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---------------------------------------------------------------------------- the processes (forked)


class Samples:
    """What one process measured: (monotonic end time, seconds, count) per kind; written to a file at the end."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[float, float, int]]] = {}

    def add(self, kind: str, started: float, count: int = 1) -> None:
        now = time.perf_counter()
        self.rows.setdefault(kind, []).append((time.monotonic(), now - started, count))

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps({k: list(v) for k, v in list(self.rows.items())}))


def instrument(samples: Samples) -> None:
    """Time every append (its events counted), lease claim and heartbeat made in this process."""
    from codirector.store.event_store import EventStore
    from codirector.store.leases import BranchLease

    append, claim, renew = EventStore.append, BranchLease.acquire, BranchLease._renew

    def timed_append(self: Any, story_id: str, branch: str, drafts: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        out = append(self, story_id, branch, drafts, **kwargs)
        samples.add("append", t, len(drafts))
        return out

    def timed_claim(self: Any) -> Any:
        t = time.perf_counter()
        out = claim(self)
        samples.add("claim", t)
        return out

    def timed_renew(self: Any) -> Any:
        t = time.perf_counter()
        out = renew(self)
        samples.add("heartbeat", t)
        return out

    EventStore.append = timed_append  # type: ignore[method-assign]
    BranchLease.acquire = timed_claim  # type: ignore[method-assign]
    BranchLease._renew = timed_renew  # type: ignore[method-assign]


def run_until_killed(body: Any, samples: Samples, out: Path, until: float) -> None:
    """Run ``body`` on a thread; at monotonic time ``until`` write the samples and end the process at once."""
    import threading

    def safe() -> None:
        try:
            body()
        except BaseException as e:  # noqa: BLE001  (reported, the process ends at ``until`` anyway)
            samples.rows.setdefault("error", []).append((time.monotonic(), 0.0, 1))
            print(f"pid {os.getpid()}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)

    threading.Thread(target=safe, daemon=True).start()
    time.sleep(max(0.0, until - time.monotonic()))
    samples.dump(out)
    os._exit(0)


def writer(index: int, root: Path, db: str, blobs: str, stories: list[Path], cfg: Path, out: Path,
           until: float) -> None:
    from codirector.engine.studio import Studio

    samples = Samples()
    instrument(samples)
    studio = Studio(home=root / f"w{index}", db=db, blobs=blobs)

    def body() -> None:
        k = 0
        while True:
            path = stories[(index + k) % len(stories)]
            t = time.perf_counter()
            studio.run(path, config=cfg, story_id=f"w{index}-{k}")
            samples.add("story", t)
            k += 1

    run_until_killed(body, samples, out, until)


def reader(root: Path, db: str, blobs: str, finished: list[str], rate: float, out: Path, until: float) -> None:
    from codirector.engine.studio import Studio

    samples = Samples()
    studio = Studio(home=root / "reader", db=db, blobs=blobs)

    def body() -> None:  # ``rate`` reads a second, half of each kind, on a fixed schedule (a studio's users)
        k = 0
        due = time.monotonic()
        while True:
            due += 1 / rate
            time.sleep(max(0.0, due - time.monotonic()))
            sid = finished[(k // 2) % len(finished)]
            t = time.perf_counter()
            if k % 2 == 0:
                studio.memory(sid, at_shot=2)
                samples.add("memory", t)
            else:
                studio.audit(sid)
                samples.add("audit", t)
            k += 1

    run_until_killed(body, samples, out, until)


def fork(target: Any, *args: Any) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            target(*args)
        finally:
            os._exit(1)
    return pid


# ---------------------------------------------------------------------------- the driver


def postgres(given: str | None, root: Path) -> tuple[Any, Any]:
    """(a function making a fresh database URL, the server to stop or None): ``--pg``'s server, else one started
    here with the tests' loopback helper, fsync on and room for many connections."""
    import psycopg

    if given:
        def fresh_given() -> str:
            name = "fleet_" + uuid.uuid4().hex[:8]
            with psycopg.connect(given, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            return given.rsplit("/", 1)[0] + "/" + name
        return fresh_given, None
    sys.path.insert(0, str(HERE.parent / "tests"))
    from support import PostgresServer, pg_bindir  # the tests' loopback server

    bindir = pg_bindir()
    if bindir is None:
        raise SystemExit("no PostgreSQL binaries here (apt-get install postgresql), and no --pg URL given")

    class DurableServer(PostgresServer):
        """The tests' server with fsync on (as in production) and room for every worker's connections."""

        def start(self) -> DurableServer:
            self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "codirector", "--auth=trust",
                      "-E", "UTF8")
            opts = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c max_connections=300"
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.base / "log"),
                      "-w", "start")
            return self

    server = DurableServer(bindir).start()

    def fresh() -> str:
        return server.create_database("fleet_" + uuid.uuid4().hex[:8])

    return fresh, server


def postgres_cpu() -> dict[int, float]:
    """CPU seconds so far of every PostgreSQL process on this machine (by pid)."""
    import psutil

    out = {}
    for p in psutil.process_iter(["name", "cpu_times"]):
        if p.info["name"] and p.info["name"].startswith("postgres") and p.info["cpu_times"] is not None:
            out[p.pid] = p.info["cpu_times"].user + p.info["cpu_times"].system
    return out


def measure(n: int, args: argparse.Namespace, root: Path, fresh_db: Any, stories: list[Path], cfg: Path,
            seeded: list[str]) -> dict[str, Any]:
    import psutil

    from codirector.engine.studio import Studio

    db = fresh_db()
    blobs = str(root / f"blobs-{n}")
    base = Studio(home=root / f"seed-{n}", db=db, blobs=blobs)
    base.init()
    for i, sid in enumerate(seeded):  # finished stories for the reader
        base.run(stories[i % len(stories)], config=cfg, story_id=sid)
    base.close()
    per_story = footprint(db, blobs, len(seeded))
    out = root / f"n{n}"
    out.mkdir()
    start = time.monotonic()
    warmup = args.warmup + 0.25 * n  # N processes open their stores and take their first leases
    window = (start + warmup, start + warmup + args.seconds)
    until = window[1]
    pids = [fork(writer, i, out, db, blobs, stories, cfg, out / f"w{i}.json", until) for i in range(n)]
    pids.append(fork(reader, out, db, blobs, seeded, args.reads, out / "reader.json", until))
    time.sleep(max(0.0, window[0] - time.monotonic()))
    psutil.cpu_percent(None)
    pg_before = postgres_cpu()
    time.sleep(max(0.0, window[1] - 0.3 - time.monotonic()))
    busy = psutil.cpu_percent(None)
    pg_after = postgres_cpu()
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            print(f"  a process ended with {os.waitstatus_to_exitcode(status)}", file=sys.stderr)
    seconds = args.seconds

    def inside(kind: str, files: list[Path]) -> list[tuple[float, float, int]]:
        rows = []
        for f in files:
            if f.exists():
                rows += [r for r in json.loads(f.read_text()).get(kind, []) if window[0] <= r[0] <= window[1]]
        return rows

    writers = [out / f"w{i}.json" for i in range(n)]
    appends = inside("append", writers)
    events = sum(r[2] for r in appends)
    lat = [r[1] * 1000 for r in appends]
    memory = [r[1] * 1000 for r in inside("memory", [out / "reader.json"])]
    audit = [r[1] * 1000 for r in inside("audit", [out / "reader.json"])]
    pg_cpu = sum(t - pg_before.get(pid, 0.0) for pid, t in pg_after.items())

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v, 2)

    return {
        "workers": n, "seconds": seconds,
        "stories": len(inside("story", writers)),
        "events_per_s": round(events / seconds, 1), "appends_per_s": round(len(appends) / seconds, 1),
        "append_p50_ms": ms(percentile(lat, 0.5)), "append_p99_ms": ms(percentile(lat, 0.99)),
        "claims_per_s": round(len(inside("claim", writers)) / seconds, 2),
        "heartbeats_per_s": round(len(inside("heartbeat", writers)) / seconds, 2),
        "memory_p50_ms": ms(percentile(memory, 0.5)), "memory_p99_ms": ms(percentile(memory, 0.99)),
        "audit_p50_ms": ms(percentile(audit, 0.5)), "audit_p99_ms": ms(percentile(audit, 0.99)),
        "reads_per_s": round((len(memory) + len(audit)) / seconds, 2),
        "cpu_busy_pct": round(busy, 1), "postgres_cores": round(pg_cpu / seconds, 2),
        "postgres_cpu_ms_per_event": round(1000 * pg_cpu / events, 2) if events else None,
        "errors": len(inside("error", writers)), **per_story,
    }


def footprint(db: str, blobs: str, stories: int) -> dict[str, float]:
    """Per finished story (the seeded ones, before any worker starts): events, PostgreSQL bytes of the events
    table with its indexes and TOAST, and blob bytes (content-addressed: what stories share is stored once)."""
    from sqlalchemy import text

    from codirector.store.db import make_engine

    engine = make_engine(db)
    with engine.connect() as conn:
        events = conn.execute(text("SELECT count(*) FROM events")).scalar() or 0
        table = conn.execute(text("SELECT pg_total_relation_size('events')")).scalar() or 0
    engine.dispose()
    blob_bytes = sum(f.stat().st_size for f in Path(blobs).rglob("*") if f.is_file())
    return {"events_per_story": round(events / stories, 1), "pg_bytes_per_story": round(table / stories),
            "blob_bytes_per_story": round(blob_bytes / stories)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="1,2,4,8,16,32")
    ap.add_argument("--seconds", type=float, default=25.0, help="measured window per N (default 25)")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds before the window (default 5)")
    ap.add_argument("--shots", type=int, default=3)
    ap.add_argument("--reads", type=float, default=10.0, help="reader's memory/audit reads a second (default 10)")
    ap.add_argument("--ttl", type=float, default=6.0, help="branch-lease TTL in seconds (default 6: a beat each 2 s)")
    ap.add_argument("--pg", help="a PostgreSQL server URL to create databases on (default: start one here)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    os.environ["CODIRECTOR_LEASE_TTL"] = f"{args.ttl:g}"
    import logging

    logging.getLogger("codirector").setLevel(logging.ERROR)  # the killed runs' leases are not news
    counts = [int(w) for w in args.workers.split(",")]
    root = Path(tempfile.mkdtemp(prefix="codirector-fleet-"))
    fresh_db, server = postgres(args.pg, root)
    import codirector.engine.studio  # noqa: F401  (imported once, before the forks)
    import codirector.store.leases  # noqa: F401

    stories = write_stories(root / "stories", 8, args.shots)
    cfg = config(root)
    seeded = [f"seed-{i}" for i in range(2)]
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    machine = f"{platform.platform()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"
    print(f"bench_fleet {when} on {machine}", flush=True)
    rows = []
    try:
        for n in counts:
            row = measure(n, args, root, fresh_db, stories, cfg, seeded)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        if server is not None:
            server.stop()
    events_per_story = rows[0]["events_per_story"]
    base = rows[0]["events_per_s"] / rows[0]["workers"] if rows and rows[0]["events_per_s"] else None
    print("\n| N | stories | events/s | appends/s | append p50 / p99 ms | claims/s | heartbeats/s "
          "| memory p50 / p99 ms | audit p50 / p99 ms | events/s per worker vs N=1 | CPU busy "
          "| PostgreSQL CPU: cores, ms/event |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        r["per_worker_efficiency"] = round(r["events_per_s"] / (r["workers"] * base), 2) if base else None
        print(f"| {r['workers']} | {r['stories']} | {r['events_per_s']} | {r['appends_per_s']} | "
              f"{r['append_p50_ms']} / {r['append_p99_ms']} | {r['claims_per_s']} | {r['heartbeats_per_s']} | "
              f"{r['memory_p50_ms']} / {r['memory_p99_ms']} | {r['audit_p50_ms']} / {r['audit_p99_ms']} | "
              f"{r['per_worker_efficiency']} | {r['cpu_busy_pct']}% | {r['postgres_cores']}, "
              f"{r['postgres_cpu_ms_per_event']} |")
    bend = next((r["workers"] for r in rows if r["per_worker_efficiency"] is not None
                 and r["per_worker_efficiency"] < 0.8), None)
    print(f"\nper story ({args.shots} shots): {events_per_story:.0f} events, {rows[0]['pg_bytes_per_story']} bytes in "
          f"PostgreSQL (the events table with indexes), {rows[0]['blob_bytes_per_story']} blob bytes (preview frames)")
    print(f"bends at N={bend} (events/s per worker below 80% of N=1's)" if bend else "no bend within these N")
    if args.json:
        Path(args.json).write_text(json.dumps({"when": when, "machine": machine, "ttl_s": args.ttl,
                                               "events_per_story": events_per_story, "rows": rows}, indent=2))


if __name__ == "__main__":
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    main()

"""Store benchmark: append throughput, memory at a position, filtered vector search.

Run:  python benchmarks/bench_store.py            (100,000 events; several minutes on 2 cores)
      python benchmarks/bench_store.py --events 20000 --vectors 20000 --json out.json

Every number is measured in this one run on this machine, and every baseline runs in the same
process, interleaved with what it is compared to (batch by batch, query by query), so that a
shared machine's drifting load falls on both sides alike:
- append (SQLite): codirector's ``EventStore.append`` (canonical JSON, hash chain, expected-position
  claim, one transaction per batch) against raw ``sqlite3`` ``executemany`` of the same rows, built
  beforehand, into the same table (codirector's own schema and pragmas: the storage's own cost is
  on both sides; a bare table without the foreign key is reported too), and against the
  eventsourcing library's SQLite recorder (its mapper + ``insert_events``).
- append (PostgreSQL): the same against raw ``psycopg`` ``executemany`` of the same rows into the
  same table, on a loopback server started the way the tests start theirs (skipped, with a note,
  where no server binaries exist).
- memory at a random position of one long branch: snapshot + tail against the plain fold.
- p50/p95 of an exact top-8 search over 512-d vectors, filtered to the ids a branch can see,
  against the plain FAISS flat scan (unfiltered) of the persisted index; "repeat" queries one
  visible set again and again (a shot's retrieval), "new set" draws a new visible set every query.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np

from codirector.engine.views.memory import MemoryReader
from codirector.events import (
    EmbeddingRef,
    EntityRegistered,
    KeyframeGenerated,
    ModelCalled,
    ViewAdded,
    ViewSource,
)
from codirector.events.base import GENESIS, Draft, seal
from codirector.store.event_store import EventStore
from codirector.store.vector_index import VectorIndex, normalised

BATCH = 100
COLUMNS = "story_id, branch, position, type, shot, record, hash"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def timed(run: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


def story_drafts(n: int, seed: int = 0) -> list[Draft]:
    """A long story's events with the loop's mix: ~5% registrations, ~10% views, the rest decisions and calls."""
    rng = random.Random(seed)
    drafts: list[Draft] = []
    names: list[str] = []
    for i in range(n):
        shot = i // 20 + 1
        r = rng.random()
        if r < 0.05 or not names:
            name = f"entity_{len(names)}"
            base = rng.choice(names) if names and rng.random() < 0.3 else None
            ref = EmbeddingRef(id=rng.getrandbits(62), blob=f"{rng.getrandbits(256):064x}", model="open_clip:ViT-B-32")
            drafts.append(EntityRegistered(name=name, kind="character", description=f"description of {name} " * 4,
                                           base_entity=base, origin="memory_controller", text_embedding=ref).at(shot))
            names.append(name)
        elif r < 0.15:
            ref = EmbeddingRef(id=rng.getrandbits(62), blob=f"{rng.getrandbits(256):064x}", model="open_clip:ViT-B-32")
            drafts.append(ViewAdded(entity=rng.choice(names), blob=f"{rng.getrandbits(256):064x}",
                                    source=ViewSource(kind="video_frame", shot=shot, frame_index=rng.randrange(81)),
                                    embedding=ref).at(shot))
        elif r < 0.6:
            drafts.append(ModelCalled(kind="vlm", backend="openai", model="gpt-4.1", agent="keyframe_analyzer",
                                      request_key=f"{rng.getrandbits(256):064x}", request={"prompt_chars": 1800},
                                      response={"decision": "accept", "reasons": ["ok"]}, duration_ms=812.5,
                                      usage={"prompt_tokens": 1200, "completion_tokens": 80}).at(shot))
        else:
            drafts.append(KeyframeGenerated(round=1, prompt="Mia at the lighthouse door, evening " * 3,
                                            reference_blobs=[f"{rng.getrandbits(256):064x}"], seed=rng.getrandbits(31),
                                            backend="openai", model="gpt-image-1",
                                            blob=f"{rng.getrandbits(256):064x}", width=832, height=480).at(shot))
    return drafts


# ----------------------------------------------------------------------------- append


def sealed_rows(drafts: list[Draft]) -> list[tuple[Any, ...]]:
    """The rows codirector writes for ``drafts`` (payload text and hashes computed here, untimed)."""
    rows, prev = [], GENESIS
    for i, d in enumerate(drafts):
        ev, record = seal(d, story_id="bench", branch="main", position=i + 1, prev_hash=prev,
                          recorded_at="2026-11-30T00:00:00.000000Z")
        prev = ev.hash
        rows.append(("bench", "main", i + 1, ev.type, ev.shot, record, ev.hash))
    return rows


Batch = Callable[[int], None]  # write batch number i (events i*BATCH+1 .. (i+1)*BATCH)
Writer = tuple[Batch, Callable[[], None]]  # (write a batch, finish)


def codirector_writer(url: str, drafts: list[Draft]) -> Writer:
    store = EventStore.open(url, create=True)
    store.create_story("bench")

    def batch(i: int) -> None:
        store.append("bench", "main", drafts[i * BATCH : (i + 1) * BATCH], expected_position=i * BATCH)

    def done() -> None:
        assert store.head("bench") == len(drafts)
        store.close()

    return batch, done


def codirector_schema(url: str) -> None:
    """codirector's own tables (migrations: keys, indexes, foreign keys, triggers) and the story's row."""
    store = EventStore.open(url, create=True)
    store.create_story("bench")
    store.close()


def raw_sqlite_writer(path: Path, rows: list[tuple[Any, ...]], *, bare: bool = False) -> Writer:
    """``sqlite3`` ``executemany`` of the rows into codirector's own events table (``bare``: a plain table)."""
    if not bare:
        codirector_schema(f"sqlite:///{path}")
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=FULL"):  # codirector's pragmas
        conn.execute(f"PRAGMA {pragma}")
    if bare:  # the same columns, keys and indexes; no foreign key
        conn.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, story_id TEXT NOT NULL, branch TEXT NOT NULL, "
                     "position INTEGER NOT NULL, type TEXT NOT NULL, shot INTEGER, record TEXT NOT NULL, "
                     "hash TEXT NOT NULL, UNIQUE (story_id, branch, position))")
        conn.execute("CREATE INDEX ix_type ON events (story_id, branch, type, position)")
    sql = f"INSERT INTO events ({COLUMNS}) VALUES (?,?,?,?,?,?,?)"

    def batch(i: int) -> None:
        conn.execute("BEGIN")
        conn.executemany(sql, rows[i * BATCH : (i + 1) * BATCH])
        conn.execute("COMMIT")

    return batch, conn.close


def raw_psycopg_writer(url: str, rows: list[tuple[Any, ...]]) -> Writer:
    """``psycopg`` ``executemany`` of the rows into codirector's own events table, one transaction per batch."""
    import psycopg

    codirector_schema(url)
    conn = psycopg.connect(url)
    sql = f"INSERT INTO events ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)"

    def batch(i: int) -> None:
        with conn.cursor() as cur:
            cur.executemany(sql, rows[i * BATCH : (i + 1) * BATCH])
        conn.commit()

    return batch, conn.close


@cache
def _eventsourcing_event_class() -> Any:
    """One domain event class for all runs (eventsourcing registers classes by topic)."""
    from eventsourcing.domain import DomainEvent

    @dataclass(frozen=True)
    class Happened(DomainEvent):
        payload: dict[str, Any]

    return Happened


def eventsourcing_writer(path: Path, drafts: list[Draft]) -> Writer | None:
    """The eventsourcing library's SQLite recorder, fed through its own mapper and JSON transcoder."""
    try:
        from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, Mapper, UUIDAsHex
        from eventsourcing.sqlite import SQLiteAggregateRecorder, SQLiteDatastore
    except ImportError:
        return None
    happened, originator = _eventsourcing_event_class(), uuid.uuid4()
    domain = [happened(originator_id=originator, originator_version=i + 1, timestamp=datetime.now(UTC),
                       payload=d.event.payload()) for i, d in enumerate(drafts)]
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DatetimeAsISO())
    mapper: Any = Mapper(transcoder=transcoder)
    recorder = SQLiteAggregateRecorder(SQLiteDatastore(str(path)))
    recorder.create_table()

    def batch(i: int) -> None:
        recorder.insert_events([mapper.to_stored_event(e) for e in domain[i * BATCH : (i + 1) * BATCH]])

    return batch, lambda: None


def interleaved(writers: dict[str, Writer], batches: int) -> dict[str, float]:
    """Seconds each writer spends on ``batches`` batches, taking turns batch by batch (rotating who goes first)."""
    spent = dict.fromkeys(writers, 0.0)
    names = list(writers)
    for i in range(batches):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            t = time.perf_counter()
            writers[name][0](i)
            spent[name] += time.perf_counter() - t
    for _, done in writers.values():
        done()
    return spent


def bench_append(make: Callable[[int], dict[str, Writer]], events: int, repeat: int) -> dict[str, Any]:
    """``repeat`` interleaved runs of fresh writers: median events/s each, and the median of each run's
    ratio against codirector (paired: both sides of a ratio ran side by side)."""
    runs = [interleaved(make(r), events // BATCH) for r in range(repeat)]
    out: dict[str, Any] = {f"{k}_events_per_s": statistics.median(events / r[k] for r in runs) for k in runs[0]}
    out |= {f"ratio_vs_{k}": statistics.median(r[k] / r["codirector"] for r in runs) for k in runs[0]
            if k != "codirector"}
    return out | {"runs": runs}


def bench_append_sqlite(drafts: list[Draft], d: Path, repeat: int) -> dict[str, Any]:
    rows = sealed_rows(drafts)

    def make(r: int) -> dict[str, Writer]:
        es = eventsourcing_writer(d / f"es{r}.db", drafts)
        return {"codirector": codirector_writer(f"sqlite:///{d / f'ours{r}.db'}", drafts),
                "raw_sqlite3": raw_sqlite_writer(d / f"raw{r}.db", rows),
                "raw_sqlite3_bare": raw_sqlite_writer(d / f"bare{r}.db", rows, bare=True)} | (
                    {"eventsourcing": es} if es is not None else {})

    return bench_append(make, len(drafts), repeat)


def bench_append_postgres(drafts: list[Draft], repeat: int) -> dict[str, Any]:
    """codirector against raw psycopg on a throwaway loopback server (the tests' ``PostgresServer``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from support import PostgresServer, pg_bindir

    bindir = pg_bindir()
    if bindir is None:
        return {"skipped": "no PostgreSQL server binaries (initdb, pg_ctl) on this machine"}
    server, rows = PostgresServer(bindir).start(), sealed_rows(drafts)
    try:
        return bench_append(lambda r: {"codirector": codirector_writer(server.create_database(f"ours{r}"), drafts),
                                       "raw_psycopg": raw_psycopg_writer(server.create_database(f"raw{r}"), rows)},
                            len(drafts), repeat)
    finally:
        server.stop()


# ----------------------------------------------------------------------------- memory at position


def bench_memory(drafts: list[Draft], path: Path, trials: int) -> dict[str, Any]:
    store = EventStore.open(f"sqlite:///{path}", create=True)
    store.create_story("mem")
    for i in range(0, len(drafts), 1000):
        store.append("mem", "main", drafts[i : i + 1000], expected_position=i)
    n = len(drafts)
    cached = MemoryReader(store, snapshot_after=10**9)
    t = time.perf_counter()
    for p in range(1000, n + 1, 1000):  # a snapshot every 1,000 positions (what the loop keeps up)
        cached.snapshot("mem", "main", cached.at("mem", "main", p))
    build = time.perf_counter() - t
    gc.collect()
    gc.freeze()  # the benchmark's own long-lived setup objects are not what a query should pay GC for
    rng = random.Random(7)
    positions = [rng.randint(1, n) for _ in range(trials)]
    plain = MemoryReader(store, use_snapshots=False)
    with_snap, without = [], []
    for p in positions:
        t = time.perf_counter()
        a = cached.at("mem", "main", p)
        with_snap.append(time.perf_counter() - t)
    for p in positions[: max(3, trials // 5)]:
        t = time.perf_counter()
        b = plain.at("mem", "main", p)
        without.append(time.perf_counter() - t)
        assert b.to_json() == cached.at("mem", "main", p).to_json()
    store.close()
    return {
        "events": n,
        "entities_at_head": len(a.entities) if positions[-1] == n else None,
        "snapshot_build_s": build,
        "with_snapshots_ms": {"p50": percentile(with_snap, 50) * 1e3, "p95": percentile(with_snap, 95) * 1e3},
        "without_snapshots_ms": {"p50": percentile(without, 50) * 1e3, "p95": percentile(without, 95) * 1e3},
    }


# ----------------------------------------------------------------------------- search


def bench_search(n: int, dim: int, trials: int, path: Path) -> dict[str, Any]:
    """Top-8 among the visible ids against the plain FAISS flat scan of the persisted index, query by query."""
    import faiss

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    ids = rng.choice(2**62, size=n, replace=False).astype(np.int64)
    index = VectorIndex(path, dim=dim)
    index.add(ids, x)
    index.save()
    flat = faiss.read_index(str(path))  # the persisted projection, IndexIDMap2(IndexFlatIP), as FAISS reads it
    faiss.omp_set_num_threads(1)

    def query() -> np.ndarray:
        return rng.standard_normal((1, dim)).astype(np.float32)

    def exact(q: np.ndarray, allowed: set[int]) -> list[tuple[int, float]]:
        """The reference: every allowed vector scored by the flat scan, ties broken by smaller id."""
        scores, found = flat.search(normalised(q), n)
        hits = [(int(i), float(s)) for i, s in zip(found[0], scores[0], strict=True) if int(i) in allowed]
        return sorted(hits, key=lambda h: (-h[1], h[0]))[:8]

    out: dict[str, Any] = {}
    for fraction in (0.01, 0.1, 0.3, 1.0):
        allowed = set(ids[rng.random(n) < fraction].tolist())
        for _ in range(2):
            q = query()
            assert index.search(q, 8, allowed) == exact(q, allowed), "filtered search differs from the exact scan"
        ours: list[float] = []
        base: list[float] = []
        for t in range(trials):  # one visible set, queried again and again; the flat scan in between
            q = query()
            pair = [(ours, partial(index.search, q, 8, allowed)), (base, partial(flat.search, q, 8))]
            for times, run in pair if t % 2 else pair[::-1]:
                times.append(timed(run))
        row = {"visible": len(allowed), "p50_ms": percentile(ours, 50) * 1e3, "p95_ms": percentile(ours, 95) * 1e3,
               "flat_p50_ms": percentile(base, 50) * 1e3}
        if fraction <= 0.1:  # a new visible set for every query: nothing gathered in advance
            fresh: list[float] = []
            base2: list[float] = []
            for _ in range(trials // 2):
                new, q = set(ids[rng.random(n) < fraction].tolist()), query()
                fresh.append(timed(partial(index.search, q, 8, new)))
                base2.append(timed(partial(flat.search, q, 8)))
            row |= {"new_set_p50_ms": percentile(fresh, 50) * 1e3, "new_set_flat_p50_ms": percentile(base2, 50) * 1e3}
        out[f"{fraction:.0%}"] = row
    return out


# ----------------------------------------------------------------------------- report


def table(args: argparse.Namespace, results: dict[str, Any]) -> str:
    a, pg, m, s = (results[k] for k in ("append", "append_postgres", "memory_at_position", "filtered_search"))
    rows: list[tuple[str, ...]] = []  # measure, codirector, baseline, ratio, target
    for db, r, contenders in (("SQLite", a, (("raw_sqlite3", "raw sqlite3 executemany, same table", ">= 0.7x"),
                                              ("raw_sqlite3_bare", "raw sqlite3 executemany, bare table", ""),
                                              ("eventsourcing", "eventsourcing SQLite recorder", ">= 1.2x"))),
                              ("PostgreSQL (loopback)", pg, (("raw_psycopg", "raw psycopg executemany, same table",
                                                              ">= 0.6x"),))):
        if "skipped" in r:
            rows.append((f"append, {db}", f"skipped: {r['skipped']}", "", "", ">= 0.6x"))
        for key, label, target in contenders:
            if f"ratio_vs_{key}" in r:
                rows.append((f"append, {db}, events/s", f"{r['codirector_events_per_s']:,.0f}",
                             f"{label} {r[f'{key}_events_per_s']:,.0f}", f"{r[f'ratio_vs_{key}']:.2f}x", target))
    w, wo = m["with_snapshots_ms"], m["without_snapshots_ms"]
    rows.append((f"memory at a random position of a {m['events']:,}-event branch",
                 f"p50 {w['p50']:.1f} ms, p95 {w['p95']:.1f} ms", f"plain fold p50 {wo['p50']:.1f} ms",
                 f"{wo['p50'] / w['p50']:.1f}x faster", ">= 10x"))
    targets, flat = {"1%": "<= 0.05x", "10%": "<= 0.25x"}, "FAISS flat scan, unfiltered: p50"
    for frac, r in s.items():
        rows.append((f"exact top-8, {frac} visible ({r['visible']:,}), repeat queries",
                     f"p50 {r['p50_ms']:.2f} ms, p95 {r['p95_ms']:.2f} ms", f"{flat} {r['flat_p50_ms']:.2f} ms",
                     f"{r['p50_ms'] / r['flat_p50_ms']:.3f}x", targets.get(frac, "")))
        if "new_set_p50_ms" in r:
            rows.append((f"exact top-8, {frac} visible, a new visible set each query",
                         f"p50 {r['new_set_p50_ms']:.2f} ms", f"{flat} {r['new_set_flat_p50_ms']:.2f} ms",
                         f"{r['new_set_p50_ms'] / r['new_set_flat_p50_ms']:.3f}x", targets.get(frac, "")))
    head = [f"## codirector store benchmark ({args.events:,} events in batches of {BATCH}; "
            f"{args.vectors:,} x {args.dim}-d vectors)", "",
            "| measure | codirector | baseline (same run) | ratio | target |", "|---|---|---|---|---|"]
    return "\n".join(head + ["| " + " | ".join(r) + " |" for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="append runs per database (the median counts)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    drafts = story_drafts(args.events)
    gc.collect()
    gc.freeze()  # the benchmark's own long-lived setup objects are not what a write or a query should pay GC for
    results: dict[str, Any] = {"events": args.events, "batch": BATCH}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        results["append"] = bench_append_sqlite(drafts, d, args.repeat)
        results["append_postgres"] = bench_append_postgres(drafts, args.repeat)
        results["memory_at_position"] = bench_memory(drafts, d / "mem.db", args.trials)
        results["filtered_search"] = bench_search(args.vectors, args.dim, args.trials, d / "v.faiss")
    print("\n" + table(args, results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

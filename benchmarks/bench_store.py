"""Store benchmark: append throughput, memory at a position, filtered vector search.

Run:  python benchmarks/bench_store.py            (100,000 events; a few minutes on 2 cores)
      python benchmarks/bench_store.py --events 20000 --json out.json

Every number is measured in this one run on this machine; the baselines run in the same process:
- append: codirector's EventStore (hash chain, optimistic concurrency, canonical JSON) against raw
  ``sqlite3`` ``executemany`` of equivalent, pre-built rows (same columns, indexes and pragmas)
  and against the eventsourcing library's SQLite recorder (its mapper + ``insert_events``).
- memory at a random position of one long branch, folded from the log with and without snapshots.
- p50/p95 of a top-8 search over 100,000 512-d vectors, filtered to the ids a branch can see.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np

from codirector.engine.memory import MemoryReader
from codirector.events import (
    EmbeddingRef,
    EntityRegistered,
    KeyframeGenerated,
    ModelCalled,
    ViewAdded,
    ViewSource,
)
from codirector.events.base import Draft, seal
from codirector.store.event_store import EventStore
from codirector.store.vector_index import VectorIndex

BATCH = 100


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


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


def bench_codirector_append(drafts: list[Draft], path: Path) -> float:
    store = EventStore.open(f"sqlite:///{path}", create=True)
    store.create_story("bench")
    t = time.perf_counter()
    for i in range(0, len(drafts), BATCH):
        store.append("bench", "main", drafts[i : i + BATCH], expected_position=i)
    elapsed = time.perf_counter() - t
    assert store.head("bench") == len(drafts)
    store.close()
    return elapsed


def bench_raw_sqlite(drafts: list[Draft], path: Path) -> float:
    """Equivalent rows (same payload text, hashes computed beforehand) through sqlite3 executemany."""
    rows = []
    prev = "0" * 64
    for i, d in enumerate(drafts):
        ev, record = seal(d, story_id="bench", branch="main", position=i + 1, prev_hash=prev, recorded_at="t")
        prev = ev.hash
        rows.append(("bench", "main", i + 1, ev.type, ev.shot, record, ev.hash))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    # the same columns, keys and indexes as codirector's events table
    conn.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, story_id TEXT NOT NULL, branch TEXT NOT NULL, "
                 "position INTEGER NOT NULL, type TEXT NOT NULL, shot INTEGER, record TEXT NOT NULL, "
                 "hash TEXT NOT NULL, UNIQUE (story_id, branch, position))")
    conn.execute("CREATE INDEX ix_type ON events (story_id, branch, type, position)")
    sql = "INSERT INTO events (story_id, branch, position, type, shot, record, hash) VALUES (?,?,?,?,?,?,?)"
    t = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        conn.execute("BEGIN")
        conn.executemany(sql, rows[i : i + BATCH])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t
    conn.close()
    return elapsed


_HAPPENED: Any = None


def _eventsourcing_event_class() -> Any:
    """One domain event class for all runs (eventsourcing registers classes by topic)."""
    global _HAPPENED
    if _HAPPENED is None:
        from eventsourcing.domain import DomainEvent

        @dataclass(frozen=True)
        class Happened(DomainEvent):
            payload: dict[str, Any]

        _HAPPENED = Happened
    return _HAPPENED


def bench_eventsourcing(drafts: list[Draft], path: Path) -> float | None:
    """The eventsourcing library's SQLite recorder, fed through its own mapper and JSON transcoder."""
    try:
        from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, Mapper, UUIDAsHex
        from eventsourcing.sqlite import SQLiteAggregateRecorder, SQLiteDatastore
    except ImportError:
        return None
    Happened = _eventsourcing_event_class()
    originator = uuid.uuid4()
    from datetime import datetime

    domain = [Happened(originator_id=originator, originator_version=i + 1, timestamp=datetime.now(UTC),
                       payload=d.event.payload()) for i, d in enumerate(drafts)]
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DatetimeAsISO())
    mapper = Mapper(transcoder=transcoder)
    recorder = SQLiteAggregateRecorder(SQLiteDatastore(str(path)))
    recorder.create_table()
    t = time.perf_counter()
    for i in range(0, len(domain), BATCH):
        recorder.insert_events([mapper.to_stored_event(e) for e in domain[i : i + BATCH]])
    return time.perf_counter() - t


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
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    ids = rng.choice(2**62, size=n, replace=False).astype(np.int64)
    index = VectorIndex(path, dim=dim)
    index.add(ids, x)
    out: dict[str, Any] = {}
    index.search(rng.standard_normal((1, dim)).astype(np.float32), 8, set(ids.tolist()))  # warm the caches
    baseline = []
    for _ in range(trials):  # the plain FAISS flat scan, unfiltered: the baseline
        q = rng.standard_normal((1, dim)).astype(np.float32)
        t = time.perf_counter()
        index._index.search(q, 8)
        baseline.append(time.perf_counter() - t)
    out["faiss_flat_unfiltered"] = {"visible": n, "p50_ms": percentile(baseline, 50) * 1e3,
                                    "p95_ms": percentile(baseline, 95) * 1e3}
    for fraction in (0.01, 0.1, 0.3, 0.5, 0.9, 1.0):
        allowed = set(ids[rng.random(n) < fraction].tolist())
        times = []
        for _ in range(trials):
            q = rng.standard_normal((1, dim)).astype(np.float32)
            t = time.perf_counter()
            hits = index.search(q, 8, allowed)
            times.append(time.perf_counter() - t)
            assert len(hits) == 8
        out[f"{int(fraction * 100)}%"] = {"visible": len(allowed), "p50_ms": percentile(times, 50) * 1e3,
                                          "p95_ms": percentile(times, 95) * 1e3}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="append runs per contender (median counts)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    drafts = story_drafts(args.events)
    results: dict[str, Any] = {"events": args.events, "batch": BATCH}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        # each contender runs --repeat times, interleaved, on a fresh file; the median counts
        runs: dict[str, list[float]] = {"ours": [], "raw": [], "es": []}
        for r in range(args.repeat):
            runs["ours"].append(bench_codirector_append(drafts, d / f"ours{r}.db"))
            runs["raw"].append(bench_raw_sqlite(drafts, d / f"raw{r}.db"))
            t_es = bench_eventsourcing(drafts, d / f"es{r}.db")
            if t_es is not None:
                runs["es"].append(t_es)
        ours = statistics.median(runs["ours"])
        raw = statistics.median(runs["raw"])
        es = statistics.median(runs["es"]) if runs["es"] else None
        results["append"] = {
            "codirector_events_per_s": args.events / ours,
            "raw_sqlite3_events_per_s": args.events / raw,
            "eventsourcing_events_per_s": None if es is None else args.events / es,
            "ratio_vs_raw_sqlite3": raw / ours,
            "ratio_vs_eventsourcing": None if es is None else es / ours,
        }
        results["memory_at_position"] = bench_memory(drafts, d / "mem.db", args.trials)
        results["filtered_search"] = bench_search(args.vectors, args.dim, args.trials, d / "v.faiss")

    a, m, s = results["append"], results["memory_at_position"], results["filtered_search"]
    print(f"\n## codirector store benchmark ({args.events:,} events, batches of {BATCH})\n")
    print("| measure | value | baseline | ratio | target |")
    print("|---|---|---|---|---|")
    print(f"| append, events/s | {a['codirector_events_per_s']:,.0f} | raw sqlite3 executemany "
          f"{a['raw_sqlite3_events_per_s']:,.0f} | {a['ratio_vs_raw_sqlite3']:.2f}x | >= 0.5x |")
    if a["eventsourcing_events_per_s"] is not None:
        print(f"| append, events/s | {a['codirector_events_per_s']:,.0f} | eventsourcing SQLite recorder "
              f"{a['eventsourcing_events_per_s']:,.0f} | {a['ratio_vs_eventsourcing']:.2f}x | >= 1x |")
    w, wo = m["with_snapshots_ms"], m["without_snapshots_ms"]
    print(f"| memory at a random position, with snapshots | p50 {w['p50']:.1f} ms, p95 {w['p95']:.1f} ms | "
          f"plain fold p50 {wo['p50']:.1f} ms, p95 {wo['p95']:.1f} ms | {wo['p50'] / w['p50']:.0f}x faster | "
          f"<= 20 ms |")
    base = s.pop("faiss_flat_unfiltered")
    for frac, r in s.items():
        print(f"| top-8 search, {args.vectors:,} x {args.dim}-d, {frac} visible ({r['visible']:,}) | "
              f"p50 {r['p50_ms']:.2f} ms, p95 {r['p95_ms']:.2f} ms | FAISS flat scan, unfiltered: p50 "
              f"{base['p50_ms']:.2f} ms | {base['p50_ms'] / r['p50_ms']:.1f}x | p50 <= 10 ms |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

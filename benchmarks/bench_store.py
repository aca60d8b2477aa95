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
- memory at a random position of one long branch: snapshot + tail against the plain fold, each
  query reading its snapshot from the database (a fresh process's cost); scrubbing with decoded
  snapshots kept in the process is reported beside it.
- p50/p95 of an exact top-8 search over 512-d vectors, filtered to the ids a branch can see,
  against the plain FAISS flat scan (unfiltered) of the persisted index. The rows are laid out
  as a story's runs write them (main, then branches running four at a time, a shot's vectors at
  a time) and a visible set is what one branch sees at one position (``StoryTree``); "repeat"
  queries one visible set again and again (a shot's retrieval), "new set" draws a new branch and
  position every query, and the adversarial "random" sets scatter as many ids over the index.
  Each query is timed as the engine makes it (``engine.loop.vectors.shortlist``): the memory
  state's visible vectors (``MemoryBank.visible``, kept sorted by the fold) give their rows in the
  index (looked up on the state's first search, kept for the next), then the search over those
  rows. "repeat" is one memory state (the lookup paid once), "next shot" that state plus one
  shot's 16 new vectors (only those looked up), "new set" a state the index has not seen (the
  lookup paid in full every query); see ``_store_cases``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from _store_cases import (
    BATCH,
    StoryTree,
    Writer,
    codirector_writer,
    eventsourcing_writer,
    memory_state,
    next_shot,
    random_rows,
    raw_psycopg_writer,
    raw_sqlite_writer,
    sealed_rows,
    story_drafts,
)

from codirector.engine.views.memory import MemoryReader
from codirector.engine.views.visible import VisibleVectors
from codirector.events.base import Draft
from codirector.store.event_store import EventStore
from codirector.store.vector_index import VectorIndex, normalised


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def ms(seconds: list[float]) -> dict[str, float]:
    return {"p50": percentile(seconds, 50) * 1e3, "p95": percentile(seconds, 95) * 1e3}


def timed(run: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------- append


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
    """Memory at a random position: the honest per-query cost in one process, against the plain fold.

    ``cold``: every query reads and decodes its snapshot from the database (``keep_decoded=False``),
    as a fresh process would; this is the measure the target is for. ``scrubbing``: the studio's
    case, one reader stepping back and forth around one position (decoded snapshots kept in the
    process). Snapshots every 1,000 positions, as the loop keeps them; the tail after a snapshot
    is folded on every query.
    """
    store = EventStore.open(f"sqlite:///{path}", create=True)
    store.create_story("mem")
    for i in range(0, len(drafts), 1000):
        store.append("mem", "main", drafts[i : i + 1000], expected_position=i)
    n = len(drafts)
    writer = MemoryReader(store, snapshot_after=10**9, keep_decoded=False)
    t = time.perf_counter()
    for p in range(1000, n + 1, 1000):
        writer.snapshot("mem", "main", writer.at("mem", "main", p))
    build = time.perf_counter() - t
    gc.collect()
    gc.freeze()  # the benchmark's own long-lived setup objects are not what a query should pay GC for
    rng = random.Random(7)
    positions = [rng.randint(1, n) for _ in range(trials)]
    cold = MemoryReader(store, snapshot_after=10**9, keep_decoded=False)
    plain = MemoryReader(store, use_snapshots=False)
    with_snap, without = [], []
    for i, p in enumerate(positions):  # interleaved: a plain fold every fifth query, at the same position
        t = time.perf_counter()
        bank = cold.at("mem", "main", p)
        with_snap.append(time.perf_counter() - t)
        if i % 5 == 0:
            t = time.perf_counter()
            folded = plain.at("mem", "main", p)
            without.append(time.perf_counter() - t)
            assert folded.to_json() == bank.to_json(), f"memory at {p} differs from the plain fold"
    scrub = MemoryReader(store, snapshot_after=10**9)
    around = positions[0]
    steps = [min(n, max(1, around + rng.randint(-400, 400))) for _ in range(trials)]
    scrubbing = [timed(partial(scrub.at, "mem", "main", p)) for p in steps]
    entities = len(cold.at("mem", "main", n))
    store.close()
    return {"events": n, "entities_at_head": entities, "snapshot_build_s": build,
            "with_snapshots_ms": ms(with_snap), "without_snapshots_ms": ms(without), "scrubbing_ms": ms(scrubbing)}


# ----------------------------------------------------------------------------- search


def visible_state(ids: np.ndarray, rows: Callable[..., np.ndarray], *args: Any) -> VisibleVectors:
    """A memory state that sees the ids of the rows ``rows(*args)`` picks, as the fold leaves it."""
    return memory_state(ids[rows(*args)])


def bench_search(n: int, dim: int, trials: int, path: Path) -> dict[str, Any]:
    """Top-8 among the visible ids against the plain FAISS flat scan of the persisted index, query by query.

    For 1 % and 10 % the index rows are laid out as a story with branches writes them
    (``StoryTree``), and a visible set is what one branch sees at one position; the adversarial
    ``random`` sets scatter the same number of ids uniformly over the index.
    """
    import faiss

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    ids = rng.choice(2**62, size=n, replace=False).astype(np.int64)  # ids[r] is row r: added in this order
    index = VectorIndex(path, dim=dim)
    index.add(ids, x)
    index.save()
    flat = faiss.read_index(str(path))  # the persisted projection, IndexIDMap2(IndexFlatIP), as FAISS reads it
    faiss.omp_set_num_threads(1)

    def query() -> np.ndarray:
        return rng.standard_normal((1, dim)).astype(np.float32)

    def exact(q: np.ndarray, visible: VisibleVectors) -> list[tuple[int, float]]:
        """The reference: every allowed vector scored by the flat scan, ties broken by smaller id."""
        allowed = set(visible.owners())
        scores, found = flat.search(normalised(q), n)
        hits = [(int(i), float(s)) for i, s in zip(found[0], scores[0], strict=True) if int(i) in allowed]
        return sorted(hits, key=lambda h: (-h[1], h[0]))[:8]

    def engine_search(q: np.ndarray, visible: VisibleVectors) -> list[tuple[int, float]]:
        """What ``engine.loop.vectors.shortlist`` does with the ids a memory can see (timed whole)."""
        return index.search(q, 8, visible.rows(index))

    def paired(sets: Callable[[], VisibleVectors], count: int) -> tuple[list[float], list[float]]:
        """Our search of ``sets()`` and the flat scan, alternating which goes first."""
        ours: list[float] = []
        base: list[float] = []
        for t in range(count):
            allowed, q = sets(), query()
            pair: list[tuple[list[float], Callable[[], object]]] = [
                (ours, partial(engine_search, q, allowed)), (base, partial(flat.search, q, 8))]
            for times, run in pair if t % 2 else pair[::-1]:
                times.append(timed(run))
        return ours, base

    def row(visible: int, ours: list[float], base: list[float]) -> dict[str, Any]:
        return {"visible": visible, "p50_ms": percentile(ours, 50) * 1e3, "p95_ms": percentile(ours, 95) * 1e3,
                "flat_p50_ms": percentile(base, 50) * 1e3}

    out: dict[str, Any] = {}
    for fraction in (0.01, 0.1, 0.3, 1.0):  # 30 % and 100 %: the pre-scan path; the layout does not matter
        size = int(n * fraction)
        tree = StoryTree.build(n, size) if fraction <= 0.1 else None
        random_set = partial(visible_state, ids, random_rows, rng, n, fraction)
        branch_set = partial(visible_state, ids, tree.visible_rows, rng, size) if tree else random_set
        for sets in (branch_set, random_set):
            for _ in range(2):
                allowed, q = sets(), query()
                want = exact(q, allowed)
                assert index.search(q, 8, set(allowed.owners())) == want, "filtered search differs from the exact scan"
                assert engine_search(q, allowed) == want, "filtered search differs from the exact scan"
        kind = "branch" if tree else "random"
        fixed = branch_set()
        out[f"{fraction:.0%} {kind}, repeat"] = row(fixed.ids().size, *paired(lambda: fixed, trials))  # noqa: B023
        if tree:
            engine_search(query(), fixed)  # its rows found, as the shot before left them
            hidden = np.setdiff1d(ids, fixed.ids())
            later = partial(lambda state, pool: next_shot(state, rng.choice(pool, 16, replace=False)), fixed, hidden)
            check = later()
            q = query()
            assert engine_search(q, check) == exact(q, check), "filtered search differs from the exact scan"
            out[f"{fraction:.0%} branch, next shot"] = row(size + 16, *paired(later, trials))
            out[f"{fraction:.0%} branch, new set"] = row(size, *paired(branch_set, trials))
            out[f"{fraction:.0%} random, new set"] = row(size, *paired(random_set, trials))
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
    w, wo, sc = m["with_snapshots_ms"], m["without_snapshots_ms"], m["scrubbing_ms"]
    rows.append((f"memory at a random position of a {m['events']:,}-event branch, each query from the database",
                 f"p50 {w['p50']:.1f} ms, p95 {w['p95']:.1f} ms", f"plain fold p50 {wo['p50']:.1f} ms",
                 f"{wo['p50'] / w['p50']:.1f}x faster", ">= 10x"))
    rows.append(("the same, scrubbing around one position (decoded snapshots kept in the process)",
                 f"p50 {sc['p50']:.2f} ms, p95 {sc['p95']:.2f} ms", "", "", ""))
    targets, flat = {"1%": "<= 0.05x", "10%": "<= 0.25x"}, "FAISS flat scan, unfiltered: p50"
    labels = {"branch, repeat": "what one branch sees, queried again and again",
              "branch, next shot": "what one branch sees a shot later (16 new vectors since its last search)",
              "branch, new set": "what a branch sees, a new branch/position each query",
              "random, new set": "adversarial: scattered uniformly, a new set each query",
              "random, repeat": "scattered uniformly, queried again and again"}
    for key, r in s.items():
        frac, kind = key.split(" ", 1)
        rows.append((f"exact top-8, {frac} visible ({r['visible']:,}), {labels[kind]}",
                     f"p50 {r['p50_ms']:.2f} ms, p95 {r['p95_ms']:.2f} ms", f"{flat} {r['flat_p50_ms']:.2f} ms",
                     f"{r['p50_ms'] / r['flat_p50_ms']:.3f}x", targets.get(frac, "")))
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

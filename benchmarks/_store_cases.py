"""Cases for ``bench_store.py``: the story it appends, the writers it races, the vector layouts it searches.

Kept apart so that the benchmark itself reads as what it measures and how it compares.

The search cases hand the index exactly what the engine hands it (``engine.loop.vectors.shortlist``):
a memory state's ``VisibleVectors`` (``MemoryBank.visible``: the visible embedding ids, sorted,
kept by the fold as events arrive, so building it is not a query's cost), whose rows in the index
are looked up on the state's first search and kept for later ones (``VisibleVectors.rows``), then
``VectorIndex.search`` over those rows. ``memory_state`` builds such a state from ids; there is
no benchmark-only path.
"""

from __future__ import annotations

import random
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from codirector.engine.views.visible import VisibleVectors
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

BATCH = 100
COLUMNS = "story_id, branch, position, type, shot, record, hash"


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


# ----------------------------------------------------------------------------- writers


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


# ----------------------------------------------------------------------------- vector layouts


@dataclass(frozen=True)
class StoryTree:
    """Where a story's vectors sit in its index, as a run writes them (row order = insertion order).

    ``main`` ran first and wrote rows ``[0, main_rows)``. Then ``branches`` branches ran,
    ``parallel`` at a time, each forked from ``main``; a running branch appends a shot's vectors
    (``chunk`` rows) at a time, so the rows of branches running together interleave chunk by chunk.
    ``own[b]`` are branch b's rows in the order it wrote them.
    """

    main_rows: int
    own: list[np.ndarray]

    @classmethod
    def build(cls, n: int, lineage: int, *, parallel: int = 4, chunk: int = 16, seed: int = 0) -> StoryTree:
        """``n`` rows in all: ``main`` holds ``lineage`` of them, each branch ``lineage // 2``."""
        rng = np.random.default_rng(seed)
        per_branch = max(1, lineage // 2)
        count = (n - lineage) // per_branch
        own: list[list[int]] = [[] for _ in range(count)]
        row = lineage
        for first in range(0, count, parallel):
            group = list(range(first, min(count, first + parallel)))
            left = dict.fromkeys(group, per_branch)
            while left:
                b = int(rng.choice(list(left)))  # whichever runner finishes its shot next
                take = min(chunk, left[b])
                own[b].extend(range(row, row + take))
                row += take
                left[b] -= take
                if not left[b]:
                    del left[b]
        return cls(lineage, [np.asarray(o, dtype=np.int64) for o in own])

    def visible_rows(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """What one branch sees at one position: ``main`` up to its fork, then its own rows so far;
        ``size`` rows in all (the fork is drawn so that the branch has written the rest)."""
        b = int(rng.integers(len(self.own)))
        own = min(len(self.own[b]), size)
        fork = int(rng.integers(size - own, min(size, self.main_rows) + 1))
        return np.concatenate([np.arange(fork, dtype=np.int64), self.own[b][: size - fork]])


def memory_state(ids: np.ndarray) -> VisibleVectors:
    """The visible vectors of a memory that sees ``ids``, as the fold leaves them (one state, its
    rows not yet looked up in any index: what a branch read at a new position holds)."""
    visible = VisibleVectors()
    for vid in ids.tolist():
        visible.add(vid, "entity", None)
    visible.ids()  # merged, as a bank's first use leaves it; the row lookup is left to the timed search
    return visible


def next_shot(state: VisibleVectors, new_ids: np.ndarray) -> VisibleVectors:
    """``state`` a shot later: a copy (as ``apply`` makes) to which the fold added one shot's vectors.
    Merging them, and looking up only them against ``state``'s rows, is left to the timed search."""
    later = state.copy()
    for vid in new_ids.tolist():
        later.add(vid, "entity", None)
    return later


def random_rows(rng: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    """The adversarial case: a visible set scattered uniformly over the whole index."""
    return np.flatnonzero(rng.random(n) < fraction)

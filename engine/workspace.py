"""``Workspace``: the storage every engine service works on, built from three values (docs/architecture.md §10).

    ws = Workspace.open(db_url, blobs_url, cache_dir)   # blobs_url: a path, s3://bucket/prefix, gs://...
    ws.store      the event store (the log; SQLite or PostgreSQL)
    ws.blobs      the content-addressed blob store (local folder or object store, by URL)
    ws.index(sid) the story's vector index, a per-machine cache caught up with the log on first use
    with ws.lease(sid, branch): ...   # this process runs the branch; a second runner gets BranchBusy

Invariants:
- A Workspace holds handles, never state of its own: everything is read from the log and the blobs,
  so a worker on another machine builds an equal one from the same ``db_url`` and ``blobs`` location.
- The vector index in ``cache_dir`` is a projection: missing or behind, it is rebuilt from the log
  before it is used; deleting the cache loses nothing.
- Engine services take a ``Workspace`` (never the ``Studio`` facade), so a job runs without one.
- Branch leases live in the database (``store.leases``), so they coordinate every process and
  machine sharing ``db_url``; ``lease`` is re-entrant within one Workspace (``run FILE`` takes the
  main branch's lease before the story exists and keeps it while the branch runs).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from codirector.errors import StoreError
from codirector.store.blobs import BlobStore, open_blobs
from codirector.store.event_store import EventStore
from codirector.store.leases import BranchLease, Leases
from codirector.store.vector_index import VECTOR_EVENT_TYPES, VectorIndex, expected_entries, index_path, sync


@dataclass
class Workspace:
    """The event store, the blob store and this machine's vector-index cache."""

    store: EventStore
    blobs: BlobStore
    cache_dir: Path
    lease_ttl: float | None = None  # None: CODIRECTOR_LEASE_TTL, else 60 s
    _held: dict[tuple[str, str], BranchLease] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def open(cls, db_url: str, blobs_url: str | os.PathLike[str], cache_dir: str | os.PathLike[str], *,
             lease_ttl: float | None = None) -> Workspace:
        """Open an existing database (run ``codirector init`` to create one) and the blob store by URL."""
        if db_url.startswith("sqlite") and not Path(db_url.split("///", 1)[-1]).exists():
            raise StoreError(
                f"no codirector database at {db_url.split('///', 1)[-1]}",
                hint="run `codirector init` first, or pass --home DIR / set CODIRECTOR_HOME to an existing home",
            )
        return cls(store=EventStore.open(db_url), blobs=open_blobs(blobs_url), cache_dir=Path(cache_dir),
                   lease_ttl=lease_ttl)

    @property
    def leases(self) -> Leases:
        return Leases(self.store.engine)

    @contextmanager
    def lease(self, story_id: str, branch: str, *, wait: float | None = None) -> Iterator[BranchLease]:
        """Hold the branch's lease for the block (renewed in the background, released on any exit).

        ``wait``: None raises ``BranchBusy`` at once if another process holds it; seconds (``math.inf``
        for no limit) waits for it. Taking a lease this Workspace already holds is a no-op.
        """
        key = (story_id, branch)
        if key in self._held:
            yield self._held[key]
            return
        with BranchLease(self.leases, story_id, branch, ttl=self.lease_ttl, wait=wait) as held:
            self._held[key] = held
            try:
                yield held
            finally:
                del self._held[key]

    def held(self, story_id: str, branch: str) -> BranchLease | None:
        """The lease this Workspace holds on the branch (inside a ``lease`` block), else None."""
        return self._held.get((story_id, branch))

    @property
    def vectors_dir(self) -> Path:
        return self.cache_dir / "vectors"

    def release_leases(self) -> None:
        """Give back every lease this Workspace holds now (from another thread: an interrupted pool's driver)."""
        for held in list(self._held.values()):
            held.release()

    def close(self) -> None:
        self.store.close()

    def story_ids(self) -> set[str]:
        return {s.id for s in self.store.stories()}

    def index(self, story_id: str) -> VectorIndex:
        """The story's vector index, caught up with the log (and saved if it was behind)."""
        entries = expected_entries(self.store.read_story(story_id, types=VECTOR_EVENT_TYPES))
        index = VectorIndex(index_path(self.vectors_dir, story_id))
        folder = self.vectors_dir  # the nearest folder that exists: a new cache is made where one may write
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if sync(index, entries, self.blobs) and os.access(folder, os.W_OK):
            index.save()  # (a cache folder this user may not write, as on a read-only home: kept in memory)
        return index

    def rebuild_index(self, story_id: str) -> tuple[VectorIndex, Path]:
        """Rebuild one story's vector index from the log, replacing the cached file atomically."""
        self.store.story(story_id)
        self.vectors_dir.mkdir(parents=True, exist_ok=True)
        path = index_path(self.vectors_dir, story_id)
        entries = expected_entries(self.store.read_story(story_id, types=VECTOR_EVENT_TYPES))
        tmp = path.with_suffix(".rebuild")
        tmp.unlink(missing_ok=True)
        index = VectorIndex(tmp)
        sync(index, entries, self.blobs)
        if entries:
            index.save()
            os.replace(tmp, path)
        else:
            path.unlink(missing_ok=True)
        return index, path

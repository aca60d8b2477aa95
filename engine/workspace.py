"""``Workspace``: the storage every engine service works on, built from three values (DESIGN §10).

    ws = Workspace.open(db_url, blobs_dir, cache_dir)
    ws.store      the event store (the log; SQLite or PostgreSQL)
    ws.blobs      the content-addressed blob store
    ws.index(sid) the story's vector index, a per-machine cache caught up with the log on first use

Invariants:
- A Workspace holds handles, never state of its own: everything is read from the log and the blobs,
  so a worker on another machine builds an equal one from the same ``db_url`` and ``blobs`` location.
- The vector index in ``cache_dir`` is a projection: missing or behind, it is rebuilt from the log
  before it is used; deleting the cache loses nothing.
- Engine services take a ``Workspace`` (never the ``Studio`` facade), so a job runs without one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from codirector.errors import StoreError
from codirector.store.blobs import BlobStore
from codirector.store.event_store import EventStore
from codirector.store.vector_index import VECTOR_EVENT_TYPES, VectorIndex, expected_entries, index_path, sync


@dataclass
class Workspace:
    """The event store, the blob store and this machine's vector-index cache."""

    store: EventStore
    blobs: BlobStore
    cache_dir: Path

    @classmethod
    def open(cls, db_url: str, blobs_dir: str | os.PathLike[str], cache_dir: str | os.PathLike[str]) -> Workspace:
        """Open an existing database (run ``codirector init`` to create one)."""
        if db_url.startswith("sqlite") and not Path(db_url.split("///", 1)[-1]).exists():
            raise StoreError(
                f"no codirector database at {db_url.split('///', 1)[-1]}",
                hint="run `codirector init` first, or pass --home DIR / set CODIRECTOR_HOME to an existing home",
            )
        return cls(store=EventStore.open(db_url), blobs=BlobStore(Path(blobs_dir)), cache_dir=Path(cache_dir))

    @property
    def vectors_dir(self) -> Path:
        return self.cache_dir / "vectors"

    def close(self) -> None:
        self.store.close()

    def story_ids(self) -> set[str]:
        return {s.id for s in self.store.stories()}

    def index(self, story_id: str) -> VectorIndex:
        """The story's vector index, caught up with the log (and saved if it was behind)."""
        entries = expected_entries(self.store.read_story(story_id, types=VECTOR_EVENT_TYPES))
        index = VectorIndex(index_path(self.vectors_dir, story_id))
        if sync(index, entries, self.blobs):
            index.save()
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

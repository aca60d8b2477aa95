"""The snapshot cache: a projection's state at a position, kept beside the log.

Invariants:
- A cache, never a source of truth: deleting every snapshot loses nothing (``drop``), and a reader
  that finds none folds the log from the start. Whoever writes a state (``engine.views.memory``)
  is tested to give exactly the plain fold; ``codirector verify`` compares each one with it.
- A snapshot is stored under the branch that owns its position and found along a lineage the way
  events are: a branch sees its ancestors' snapshots up to each fork, never a sibling's or its
  own future's.
- Written once per (story, branch, kind, position): a second save there keeps the first.
"""

from __future__ import annotations

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from codirector.events.base import utc_now
from codirector.store.db import connection, is_read_only, retried
from codirector.store.event_store import EventStore
from codirector.store.lineage import within
from codirector.store.tables import SnapshotRow

SNAPSHOTS = SnapshotRow.__table__  # type: ignore[attr-defined]


class SnapshotCache:
    """Cached projection states in the ``snapshots`` table of an ``EventStore``'s database."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.engine = store.engine

    @retried  # a lost connection is retried (store.db); each is a read or an idempotent write
    def save(self, story_id: str, branch: str, kind: str, position: int, schema_version: int, state: str) -> None:
        """Cache a projection's state at ``position``; an existing snapshot there is kept. A database this
        user may only read (``store.db.is_read_only``) caches nothing: queries on a read-only home still work."""
        if is_read_only(self.engine):
            return
        try:
            with connection(self.engine, write=True) as conn:
                exists = conn.execute(
                    select(SNAPSHOTS.c.position).where(
                        SNAPSHOTS.c.story_id == story_id, SNAPSHOTS.c.branch == branch,
                        SNAPSHOTS.c.kind == kind, SNAPSHOTS.c.position == position,
                    )
                ).first()
                if exists is None:
                    conn.execute(
                        insert(SNAPSHOTS).values(
                            story_id=story_id, branch=branch, kind=kind, position=position,
                            schema_version=schema_version, state=state, created_at=utc_now(),
                        )
                    )
        except IntegrityError:
            pass  # a concurrent writer cached the same state first

    def latest(
        self, story_id: str, branch: str, kind: str, *, upto: int, schema_version: int
    ) -> tuple[int, str] | None:
        """The newest cached state visible on ``branch`` at or before ``upto``: (position, state)."""
        found = self.newest(story_id, branch, kind, upto=upto, schema_version=schema_version)
        if found is None:
            return None
        state = self.state(story_id, found[0], kind, found[1])
        return None if state is None else (found[1], state)

    @retried
    def newest(
        self, story_id: str, branch: str, kind: str, *, upto: int, schema_version: int
    ) -> tuple[str, int] | None:
        """Where the newest cached state visible on ``branch`` at or before ``upto`` is kept:
        (owning branch, position). Cheap: the state itself is not read (``state``)."""
        segments = self.store.lineage(story_id, branch)
        with connection(self.engine) as conn:
            row = conn.execute(
                select(SNAPSHOTS.c.branch, SNAPSHOTS.c.position)
                .where(
                    within(SNAPSHOTS, story_id, segments, upto=upto),
                    SNAPSHOTS.c.kind == kind, SNAPSHOTS.c.schema_version == schema_version,
                )
                .order_by(SNAPSHOTS.c.position.desc())
                .limit(1)
            ).first()
        return (row.branch, row.position) if row is not None else None

    @retried
    def state(self, story_id: str, branch: str, kind: str, position: int) -> str | None:
        """The state cached under (``branch``, ``position``), or None if there is none (any more)."""
        with connection(self.engine) as conn:
            value = conn.execute(
                select(SNAPSHOTS.c.state).where(
                    SNAPSHOTS.c.story_id == story_id, SNAPSHOTS.c.branch == branch,
                    SNAPSHOTS.c.kind == kind, SNAPSHOTS.c.position == position,
                )
            ).scalar()
        return None if value is None else str(value)

    @retried
    def all(self, story_id: str, kind: str) -> list[tuple[str, int, int, str]]:
        """Every cached state of a story: (branch, position, schema_version, state), by branch and position."""
        with connection(self.engine) as conn:
            rows = conn.execute(
                select(SNAPSHOTS.c.branch, SNAPSHOTS.c.position, SNAPSHOTS.c.schema_version, SNAPSHOTS.c.state)
                .where(SNAPSHOTS.c.story_id == story_id, SNAPSHOTS.c.kind == kind)
                .order_by(SNAPSHOTS.c.branch, SNAPSHOTS.c.position)
            ).all()
        return [(r.branch, r.position, r.schema_version, r.state) for r in rows]

    @retried
    def drop(self, story_id: str | None = None) -> int:
        """Delete the cached states of one story (or of all); returns how many were deleted."""
        with connection(self.engine, write=True) as conn:
            stmt = delete(SNAPSHOTS)
            if story_id is not None:
                stmt = stmt.where(SNAPSHOTS.c.story_id == story_id)
            return int(conn.execute(stmt).rowcount or 0)

"""The event store: append-only, per-branch positions, branches that share their parent's prefix.

Invariants (each has a test in ``tests/store``):
- ``append(story, branch, drafts, expected_position=P)`` writes positions P+1..P+n in one
  transaction, or raises ``VersionConflict`` and writes nothing. Two writers can never both win:
  the branch row's ``head_position`` is updated only ``WHERE head_position = P``.
- Each event's ``prev_hash`` is the hash of the event before it in the branch's lineage, so the
  chain of a branch continues its parent's chain at the fork.
- ``read(story, branch)`` returns the parent's events up to the fork, then the branch's own,
  ordered by position (1..head, contiguous). Forking copies nothing.
- Story ids, branch names and every other value travel as bound parameters; no user text is
  ever spliced into SQL.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, insert, or_, select
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError, OperationalError

from codirector.errors import (
    BranchNotFound,
    RunStateError,
    StoreError,
    StoryNotFound,
    VersionConflict,
    did_you_mean,
)
from codirector.events.base import GENESIS, Draft, RecordedEvent, from_record, seal, utc_now
from codirector.store.db import make_engine, require_current, upgrade
from codirector.store.home import mask_url
from codirector.store.tables import BranchRow, EventRow, SnapshotRow, StoryRow

EVENTS = EventRow.__table__  # type: ignore[attr-defined]
BRANCHES = BranchRow.__table__  # type: ignore[attr-defined]
STORIES = StoryRow.__table__  # type: ignore[attr-defined]
SNAPSHOTS = SnapshotRow.__table__  # type: ignore[attr-defined]

MAIN = "main"
_EVENT_COLUMNS = ("story_id", "branch", "position", "type", "shot", "record", "hash")
MAX_NAME = 200


@dataclass(frozen=True)
class BranchInfo:
    """A branch: its parent and fork position (None/0 for main), and its head."""

    story_id: str
    name: str
    parent: str | None
    fork_position: int
    head_position: int
    head_hash: str
    created_at: str


@dataclass(frozen=True)
class StoryInfo:
    """A story and its branches."""

    id: str
    title: str
    created_at: str
    branches: tuple[BranchInfo, ...]


@dataclass(frozen=True)
class Segment:
    """Part of a branch's lineage: ``branch``'s own events with lo < position <= hi."""

    branch: str
    lo: int
    hi: int | None


def check_name(value: str, what: str) -> str:
    """A story id or branch name, or ``CodirectorError`` saying what is wrong with it."""
    if not isinstance(value, str) or not value.strip():
        raise RunStateError(f"{what} must be a non-empty string, got {value!r}")
    if len(value) > MAX_NAME:
        raise RunStateError(f"{what} is {len(value)} characters long; the limit is {MAX_NAME}")
    bad = [c for c in value if unicodedata.category(c) in ("Cc", "Cs")]
    if bad:
        raise RunStateError(
            f"{what} {value!r} contains control character {bad[0]!r}",
            hint="use printable characters only (quotes, slashes and spaces are fine)",
        )
    return value


def _row_to_event(row: Row[Any]) -> RecordedEvent:
    return from_record(row.record, row.hash)


def _branch_info(row: Row[Any]) -> BranchInfo:
    return BranchInfo(
        story_id=row.story_id,
        name=row.name,
        parent=row.parent,
        fork_position=row.fork_position,
        head_position=row.head_position,
        head_hash=row.head_hash,
        created_at=row.created_at,
    )


class EventStore:
    """The log of every story, on SQLite (default) or PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._forks: dict[tuple[str, str], tuple[str | None, int]] = {}
        m = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._sql = {
            "claim": f"UPDATE branches SET head_position = {m} WHERE story_id = {m} AND name = {m} "
                     f"AND head_position = {m} RETURNING head_hash",
            "insert": f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) "
                      f"VALUES ({', '.join([m] * len(_EVENT_COLUMNS))})",
            "set_hash": f"UPDATE branches SET head_hash = {m} WHERE story_id = {m} AND name = {m}",
        }

    @classmethod
    def open(cls, url: str, *, create: bool = False) -> EventStore:
        """Open the database at ``url``; with ``create`` migrate it to head first."""
        engine = make_engine(url)
        if create:
            upgrade(engine)
        else:
            require_current(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # ------------------------------------------------------------------ stories and branches

    def create_story(
        self, story_id: str, *, title: str = "", events: Sequence[Draft] = ()
    ) -> list[RecordedEvent]:
        """Create a story with its ``main`` branch and append ``events`` as positions 1..n."""
        check_name(story_id, "story id")
        now = utc_now()
        try:
            with self._begin() as conn:
                conn.execute(insert(STORIES).values(id=story_id, title=title, created_at=now))
                conn.execute(
                    insert(BRANCHES).values(
                        story_id=story_id, name=MAIN, parent=None, fork_position=0,
                        head_position=0, head_hash=GENESIS, created_at=now,
                    )
                )
                return self._append(conn, story_id, MAIN, events, 0)
        except IntegrityError as e:
            raise RunStateError(
                f"a story with id {story_id!r} already exists",
                hint="pick another --story-id, or continue it with `codirector resume`",
            ) from e

    def stories(self) -> list[StoryInfo]:
        """Every story with its branches, oldest first."""
        with self._connect() as conn:
            stories = conn.execute(select(STORIES).order_by(STORIES.c.created_at, STORIES.c.id)).all()
            branches = conn.execute(select(BRANCHES).order_by(BRANCHES.c.created_at, BRANCHES.c.name)).all()
        by_story: dict[str, list[BranchInfo]] = {}
        for b in branches:
            by_story.setdefault(b.story_id, []).append(_branch_info(b))
        return [
            StoryInfo(id=s.id, title=s.title, created_at=s.created_at, branches=tuple(by_story.get(s.id, [])))
            for s in stories
        ]

    def story(self, story_id: str) -> StoryInfo:
        """One story, or ``StoryNotFound`` suggesting close ids."""
        with self._connect() as conn:
            row = conn.execute(select(STORIES).where(STORIES.c.id == story_id)).first()
            if row is None:
                known = conn.execute(select(STORIES.c.id)).scalars().all()
                raise StoryNotFound(
                    f"no story {story_id!r} in this database", hint=did_you_mean(story_id, known, "story")
                )
            branches = conn.execute(
                select(BRANCHES).where(BRANCHES.c.story_id == story_id).order_by(BRANCHES.c.created_at)
            ).all()
        return StoryInfo(row.id, row.title, row.created_at, tuple(_branch_info(b) for b in branches))

    def branch(self, story_id: str, name: str = MAIN) -> BranchInfo:
        """One branch, or ``StoryNotFound`` / ``BranchNotFound`` suggesting close names."""
        with self._connect() as conn:
            return self._branch(conn, story_id, name)

    def head(self, story_id: str, branch: str = MAIN) -> int:
        """The last position of the branch (its lineage included)."""
        return self.branch(story_id, branch).head_position

    def create_branch(
        self,
        story_id: str,
        name: str,
        *,
        parent: str = MAIN,
        at_position: int,
        events: Sequence[Draft] = (),
    ) -> BranchInfo:
        """Fork ``name`` from ``parent`` after ``at_position``; append ``events`` to it atomically."""
        check_name(name, "branch name")
        with self._begin() as conn:
            parent_info = self._branch(conn, story_id, parent)
            if not 0 <= at_position <= parent_info.head_position:
                raise RunStateError(
                    f"cannot fork {parent!r} at position {at_position}: it has positions 1..{parent_info.head_position}"
                )
            existing = conn.execute(
                select(BRANCHES.c.name).where(BRANCHES.c.story_id == story_id, BRANCHES.c.name == name)
            ).first()
            if existing is not None:
                raise RunStateError(
                    f"story {story_id!r} already has a branch named {name!r}", hint="choose another --name"
                )
            fork_hash = GENESIS
            if at_position > 0:
                fork_hash = self._hash_at(conn, story_id, parent, at_position)
            conn.execute(
                insert(BRANCHES).values(
                    story_id=story_id, name=name, parent=parent, fork_position=at_position,
                    head_position=at_position, head_hash=fork_hash, created_at=utc_now(),
                )
            )
            self._append(conn, story_id, name, events, at_position)
            return self._branch(conn, story_id, name)

    # ------------------------------------------------------------------ writing

    def append(
        self, story_id: str, branch: str, drafts: Sequence[Draft], *, expected_position: int
    ) -> list[RecordedEvent]:
        """Append ``drafts`` after ``expected_position`` or raise ``VersionConflict`` writing nothing."""
        with self._begin() as conn:
            return self._append(conn, story_id, branch, drafts, expected_position)

    def _append(
        self, conn: Connection, story_id: str, branch: str, drafts: Sequence[Draft], expected: int
    ) -> list[RecordedEvent]:
        if not drafts:
            return []
        n = len(drafts)
        # Claiming the positions comes first: the UPDATE takes the write lock (SQLite) / the row
        # lock (PostgreSQL), so the head hash it returns cannot change under us. Plain SQL: this is
        # the hot path. No row back means another writer moved the head: nothing is written.
        prev = conn.exec_driver_sql(self._sql["claim"], (expected + n, story_id, branch, expected)).scalar()
        if prev is None:
            actual = self._branch(conn, story_id, branch).head_position
            raise VersionConflict(
                f"append to {story_id!r}/{branch!r} expected last position {expected}, but it is {actual}",
                expected=expected,
                actual=actual,
            )
        recorded_at = utc_now()
        sealed: list[RecordedEvent] = []
        rows: list[tuple[Any, ...]] = []
        for i, draft in enumerate(drafts):
            ev, record = seal(
                draft, story_id=story_id, branch=branch, position=expected + 1 + i,
                prev_hash=prev, recorded_at=recorded_at,
            )
            prev = ev.hash
            sealed.append(ev)
            rows.append((story_id, branch, ev.position, ev.type, ev.shot, record, ev.hash))
        # A driver-level executemany: appending is the hot path, and the row shape is fixed.
        conn.exec_driver_sql(self._sql["insert"], rows)
        conn.exec_driver_sql(self._sql["set_hash"], (prev, story_id, branch))
        return sealed

    # ------------------------------------------------------------------ reading

    def read(
        self,
        story_id: str,
        branch: str = MAIN,
        *,
        after: int = 0,
        upto: int | None = None,
        types: Iterable[str] | None = None,
        shot: int | None = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """Events visible on ``branch`` (its lineage), ``after < position <= upto``, in order."""
        with self._connect() as conn:
            segments = self._lineage(conn, story_id, branch)
            query = select(EVENTS).where(self._visible(story_id, segments))
            if after:
                query = query.where(EVENTS.c.position > after)
            if upto is not None:
                query = query.where(EVENTS.c.position <= upto)
            if types is not None:
                query = query.where(EVENTS.c.type.in_(list(types)))
            if shot is not None:
                query = query.where(EVENTS.c.shot == shot)
            query = query.order_by(EVENTS.c.position)
            if limit is not None:
                query = query.limit(limit)
            rows = conn.execute(query).all()
        return [_row_to_event(r) for r in rows]

    def read_own(self, story_id: str, branch: str) -> list[RecordedEvent]:
        """Only the events written to ``branch`` itself (not its parent's prefix)."""
        with self._connect() as conn:
            rows = conn.execute(
                select(EVENTS)
                .where(EVENTS.c.story_id == story_id, EVENTS.c.branch == branch)
                .order_by(EVENTS.c.position)
            ).all()
        return [_row_to_event(r) for r in rows]

    def read_story(self, story_id: str, *, types: Iterable[str] | None = None) -> list[RecordedEvent]:
        """Events of every branch of a story (for projections that span branches, like the index)."""
        with self._connect() as conn:
            query = select(EVENTS).where(EVENTS.c.story_id == story_id)
            if types is not None:
                query = query.where(EVENTS.c.type.in_(list(types)))
            rows = conn.execute(query.order_by(EVENTS.c.position, EVENTS.c.branch)).all()
        return [_row_to_event(r) for r in rows]

    def lineage(self, story_id: str, branch: str = MAIN) -> list[Segment]:
        """The branch's lineage, oldest ancestor first."""
        with self._connect() as conn:
            return self._lineage(conn, story_id, branch)

    def count(self, story_id: str | None = None) -> int:
        with self._connect() as conn:
            query = select(func.count()).select_from(EVENTS)
            if story_id is not None:
                query = query.where(EVENTS.c.story_id == story_id)
            return int(conn.execute(query).scalar_one())

    # ------------------------------------------------------------------ snapshots (a cache)

    def save_snapshot(
        self, story_id: str, branch: str, kind: str, position: int, schema_version: int, state: str
    ) -> None:
        """Cache a projection's state at ``position``; an existing snapshot there is kept."""
        try:
            with self._begin() as conn:
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

    def latest_snapshot(
        self, story_id: str, branch: str, kind: str, *, upto: int, schema_version: int
    ) -> tuple[int, str] | None:
        """The newest cached state visible on ``branch`` at or before ``upto``."""
        with self._connect() as conn:
            segments = self._lineage(conn, story_id, branch)
            conds = []
            for seg in segments:
                hi = upto if seg.hi is None else min(seg.hi, upto)
                conds.append(
                    and_(SNAPSHOTS.c.branch == seg.branch, SNAPSHOTS.c.position > seg.lo, SNAPSHOTS.c.position <= hi)
                )
            row = conn.execute(
                select(SNAPSHOTS.c.position, SNAPSHOTS.c.state)
                .where(
                    SNAPSHOTS.c.story_id == story_id, SNAPSHOTS.c.kind == kind,
                    SNAPSHOTS.c.schema_version == schema_version, or_(*conds),
                )
                .order_by(SNAPSHOTS.c.position.desc())
                .limit(1)
            ).first()
        return (row.position, row.state) if row is not None else None

    def snapshots(self, story_id: str, kind: str) -> list[tuple[str, int, int, str]]:
        """Every cached state of a story: (branch, position, schema_version, state), by position."""
        with self._connect() as conn:
            rows = conn.execute(
                select(SNAPSHOTS.c.branch, SNAPSHOTS.c.position, SNAPSHOTS.c.schema_version, SNAPSHOTS.c.state)
                .where(SNAPSHOTS.c.story_id == story_id, SNAPSHOTS.c.kind == kind)
                .order_by(SNAPSHOTS.c.branch, SNAPSHOTS.c.position)
            ).all()
        return [(r.branch, r.position, r.schema_version, r.state) for r in rows]

    def drop_snapshots(self, story_id: str | None = None) -> int:
        from sqlalchemy import delete

        with self._begin() as conn:
            stmt = delete(SNAPSHOTS)
            if story_id is not None:
                stmt = stmt.where(SNAPSHOTS.c.story_id == story_id)
            return int(conn.execute(stmt).rowcount or 0)

    # ------------------------------------------------------------------ raw rows, for verify

    def raw_rows(self, story_id: str, branch: str) -> list[Row[Any]]:
        """The branch's own rows exactly as stored (record text unparsed), by position."""
        with self._connect() as conn:
            return list(
                conn.execute(
                    select(EVENTS)
                    .where(EVENTS.c.story_id == story_id, EVENTS.c.branch == branch)
                    .order_by(EVENTS.c.position, EVENTS.c.seq)
                ).all()
            )

    # ------------------------------------------------------------------ helpers

    def _branch(self, conn: Connection, story_id: str, name: str) -> BranchInfo:
        row = conn.execute(
            select(BRANCHES).where(BRANCHES.c.story_id == story_id, BRANCHES.c.name == name)
        ).first()
        if row is not None:
            return _branch_info(row)
        if conn.execute(select(STORIES.c.id).where(STORIES.c.id == story_id)).first() is None:
            known = conn.execute(select(STORIES.c.id)).scalars().all()
            raise StoryNotFound(f"no story {story_id!r} in this database", hint=did_you_mean(story_id, known, "story"))
        known = conn.execute(select(BRANCHES.c.name).where(BRANCHES.c.story_id == story_id)).scalars().all()
        raise BranchNotFound(
            f"story {story_id!r} has no branch {name!r}", hint=did_you_mean(name, known, "branch")
        )

    def _fork_of(self, conn: Connection, story_id: str, name: str) -> tuple[str | None, int]:
        key = (story_id, name)
        if key not in self._forks:
            info = self._branch(conn, story_id, name)
            self._forks[key] = (info.parent, info.fork_position)
        return self._forks[key]

    def _lineage(self, conn: Connection, story_id: str, branch: str) -> list[Segment]:
        segments: list[Segment] = []
        current: str | None = branch
        hi: int | None = None
        seen: set[str] = set()
        while current is not None:
            if current in seen:
                raise StoreError(f"branch lineage of {story_id!r}/{branch!r} has a cycle at {current!r}")
            seen.add(current)
            parent, fork = self._fork_of(conn, story_id, current)
            segments.append(Segment(current, fork, hi))
            hi = fork if hi is None else min(hi, fork)
            current = parent
        segments.reverse()
        return segments

    @staticmethod
    def _visible(story_id: str, segments: list[Segment]) -> Any:
        conds = []
        for seg in segments:
            cond = and_(EVENTS.c.branch == seg.branch, EVENTS.c.position > seg.lo)
            if seg.hi is not None:
                cond = and_(cond, EVENTS.c.position <= seg.hi)
            conds.append(cond)
        return and_(EVENTS.c.story_id == story_id, or_(*conds))

    def _hash_at(self, conn: Connection, story_id: str, branch: str, position: int) -> str:
        segments = self._lineage(conn, story_id, branch)
        row = conn.execute(
            select(EVENTS.c.hash).where(self._visible(story_id, segments), EVENTS.c.position == position)
        ).first()
        if row is None:
            raise RunStateError(f"{story_id!r}/{branch!r} has no event at position {position}")
        return str(row.hash)

    def _connect(self) -> Any:
        return _guard(self.engine.connect(), self.engine)

    def _begin(self) -> Any:
        return _guard(self.engine.begin(), self.engine)


@contextmanager
def _guard(cm: Any, engine: Engine) -> Iterator[Connection]:
    """Run a connection block, turning driver ``OperationalError`` into ``StoreError`` with a fix."""
    try:
        with cm as conn:
            yield conn
    except OperationalError as e:
        raise _store_error(e, engine) from e


def _store_error(e: OperationalError, engine: Engine) -> StoreError:
    text = str(e.orig)
    where = mask_url(str(engine.url))
    if "locked" in text or "busy" in text:
        return StoreError(
            f"the database at {where} is locked by another process ({text})",
            hint="wait for the other codirector process to finish, or use another --home",
        )
    if "no such table" in text or "does not exist" in text:
        return StoreError(f"the database at {where} is not initialised ({text})", hint="run `codirector init`")
    return StoreError(f"database error at {where}: {text}", hint="check --db / CODIRECTOR_DB and the server")

"""The event store: append-only, per-branch positions, branches that share their parent's prefix.

Invariants (each has a test in ``tests/store``):
- ``append(story, branch, drafts, expected_position=P)`` writes positions P+1..P+n in one
  transaction, or raises ``VersionConflict`` and writes nothing. Two writers can never both win:
  the branch row's head is moved only ``WHERE head_position = P AND head_hash = <hash at P>``
  (``store.appending``: the batch is sealed first, the transaction only claims and inserts).
- Each event's ``prev_hash`` is the hash of the event before it in the branch's lineage, so the
  chain of a branch continues its parent's chain at the fork.
- ``read(story, branch)`` returns the parent's events up to the fork, then the branch's own,
  ordered by position (1..head, contiguous). Forking copies nothing.
- Story ids, branch names and every other value travel as bound parameters; no user text is
  ever spliced into SQL.
- A lost connection (PostgreSQL restarted, a socket dropped) is retried with backoff for a bounded
  time (``store.db.retrying``), then ``StoreUnreachable``. An append whose commit outcome is unknown
  is resolved by reading the branch: the event at its last position carrying the sealed batch's last
  hash (the chain makes it unique) means it landed; else it is tried again with the same sealed rows
  and expected head, which the claim lets through at most once. Never appended twice, never lost.
Which rows a lineage sees is ``store.lineage``; cached projection states are ``store.snapshots``.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError

from codirector.errors import (
    BranchBusy,
    BranchNotFound,
    IntegrityViolation,
    InvalidArgument,
    RunStateError,
    StoreUnreachable,
    StoryNotFound,
    VersionConflict,
    did_you_mean,
)
from codirector.events.base import GENESIS, Draft, RecordedEvent, from_record, utc_now
from codirector.store.appending import BatchSQL, claim_and_insert, seal_all
from codirector.store.db import connection, make_engine, raw_transaction, require_current, retried, retrying, upgrade
from codirector.store.leases import Leases
from codirector.store.lineage import BranchInfo, Segment, StoryInfo, branch_info, walk, within
from codirector.store.tables import BranchRow, EventRow, StoryRow

EVENTS = EventRow.__table__  # type: ignore[attr-defined]
BRANCHES = BranchRow.__table__  # type: ignore[attr-defined]
STORIES = StoryRow.__table__  # type: ignore[attr-defined]

__all__ = ["MAIN", "BranchInfo", "EventStore", "Segment", "StoryInfo", "check_name"]

MAIN = "main"
MAX_NAME = 200
_log = logging.getLogger(__name__)


# Bidirectional-text controls: a name holding one displays in another order than it is stored (U+202E
# shows "main\u202egnp.exe" as "mainexe.png"), so a label could pose as another. Refused in names.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Branches that listings hide (engine.loop: a replay's scratch branch, a forgotten story's mark); "did you
# mean" hints never offer them.
HIDDEN_BRANCH_PREFIXES = ("replay~", "forgotten~")


def unsafe_character(value: str) -> str | None:
    """The first control or bidirectional-text character in ``value`` (as it would be named), else None."""
    for c in value:
        if c in BIDI_CONTROLS:
            return f"bidirectional-text control U+{ord(c):04X}"
        if unicodedata.category(c) in ("Cc", "Cs"):
            return f"control character {c!r}"
    return None


def check_name(value: str, what: str) -> str:
    """A story id or branch name, or ``InvalidArgument`` saying what is wrong with it."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{what} must be a non-empty string, got {value!r}")
    if len(value) > MAX_NAME:
        raise InvalidArgument(f"{what} is {len(value)} characters long; the limit is {MAX_NAME}")
    bad = unsafe_character(value)
    if bad:
        raise InvalidArgument(
            f"{what} {value!r} contains {bad}",
            hint="use printable characters only, with no direction controls (quotes, slashes and spaces are fine)",
        )
    return value


def _row_to_event(row: Row[Any]) -> RecordedEvent:
    return from_record(row.record, row.hash)


class _NotClaimed(Exception):
    """The head was not where the batch was sealed for: roll back and find out why."""


class EventStore:
    """The log of every story, on SQLite (default) or PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._forks: dict[tuple[str, str], tuple[str | None, int]] = {}
        self._heads: dict[tuple[str, str], tuple[int, str]] = {}  # (story, branch) -> head this store wrote
        self._sql = BatchSQL.for_dialect(engine.dialect.name, engine.dialect.paramstyle)
        self._driver = engine.dialect.loaded_dbapi

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
        sealed, rows = seal_all(story_id, MAIN, events, 0, GENESIS) if events else ([], [])
        unknown = False  # a try lost its connection: its commit may have landed

        def attempt() -> None:
            nonlocal unknown
            if unknown and self._created(story_id, sealed):
                return
            try:
                with self._begin() as conn:
                    conn.execute(insert(STORIES).values(id=story_id, title=title, created_at=now))
                    conn.execute(
                        insert(BRANCHES).values(
                            story_id=story_id, name=MAIN, parent=None, fork_position=0,
                            head_position=0, head_hash=GENESIS, created_at=now,
                        )
                    )
                    if rows and not claim_and_insert(conn.connection.dbapi_connection, self._driver, self._sql,
                                                     story_id, MAIN, 0, GENESIS, rows):
                        raise _NotClaimed()  # the transaction rolls back
            except StoreUnreachable:
                unknown = True
                raise

        try:
            retrying(self.engine, attempt, f"creating story {story_id!r}")
        except IntegrityError as e:
            raise RunStateError(
                f"a story with id {story_id!r} already exists",
                hint="pick another --story-id, or continue it with `codirector resume`",
            ) from e
        self._heads[(story_id, MAIN)] = (len(sealed), sealed[-1].hash) if sealed else (0, GENESIS)
        return sealed

    @retried
    def stories(self) -> list[StoryInfo]:
        """Every story with its branches, oldest first."""
        with self._connect() as conn:
            stories = conn.execute(select(STORIES).order_by(STORIES.c.created_at, STORIES.c.id)).all()
            branches = conn.execute(select(BRANCHES).order_by(BRANCHES.c.created_at, BRANCHES.c.name)).all()
        by_story: dict[str, list[BranchInfo]] = {}
        for b in branches:
            by_story.setdefault(b.story_id, []).append(branch_info(b))
        return [
            StoryInfo(id=s.id, title=s.title, created_at=s.created_at, branches=tuple(by_story.get(s.id, [])))
            for s in stories
        ]

    @retried
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
        return StoryInfo(row.id, row.title, row.created_at, tuple(branch_info(b) for b in branches))

    @retried
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
        tried: list[RecordedEvent] | None = None  # what the last try sealed, once it lost its connection

        def attempt() -> BranchInfo:
            nonlocal tried
            if tried is not None:
                found = self._forked(story_id, name, parent, at_position, tried)
                if found is not None:
                    return found
            sealed: list[RecordedEvent] = []
            try:
                return self._create_branch(story_id, name, parent, at_position, events, sealed)
            except StoreUnreachable:
                tried = sealed
                raise

        info = retrying(self.engine, attempt, f"creating branch {story_id!r}/{name!r}")
        self._heads[(story_id, name)] = (info.head_position, info.head_hash)
        return info

    def _create_branch(self, story_id: str, name: str, parent: str, at_position: int, events: Sequence[Draft],
                       sealed: list[RecordedEvent]) -> BranchInfo:
        """One try of ``create_branch``, in one transaction; ``sealed`` receives the events it sealed."""
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
            sealed[:] = self._append(conn, story_id, name, events, at_position, fork_hash)
            return self._branch(conn, story_id, name)

    def _forked(self, story_id: str, name: str, parent: str, at_position: int,
                sealed: list[RecordedEvent]) -> BranchInfo | None:
        """The branch, if a try whose outcome is unknown created it: forked from ``parent`` at ``at_position`` with
        its head at the last event that try sealed (no events: at the fork); else None."""
        try:
            info = self.branch(story_id, name)
        except BranchNotFound:
            return None
        ours = info.parent == parent and info.fork_position == at_position and (
            info.head_hash == sealed[-1].hash if sealed else info.head_position == at_position)
        return info if ours else None

    def _created(self, story_id: str, sealed: list[RecordedEvent]) -> bool:
        """Whether a try of ``create_story`` whose outcome is unknown landed: its last event is in the log (no
        events: the story's ``main`` is there, with nothing on it)."""
        if sealed:
            return self._landed(story_id, MAIN, sealed[-1])
        with self._connect() as conn:
            head: int | None = conn.execute(select(BRANCHES.c.head_position).where(
                BRANCHES.c.story_id == story_id, BRANCHES.c.name == MAIN)).scalar()
        return head == 0

    @retried
    def _landed(self, story_id: str, branch: str, last: RecordedEvent) -> bool:
        """Whether ``last`` (the last event of a batch whose commit outcome is unknown) is in the branch: the event
        at its position carries its hash, which chains every event before it, so the whole batch landed."""
        with self._connect() as conn:
            found: str | None = conn.execute(select(EVENTS.c.hash).where(
                EVENTS.c.story_id == story_id, EVENTS.c.branch == branch, EVENTS.c.position == last.position)).scalar()
        return found == last.hash

    # ------------------------------------------------------------------ writing

    def append(
        self, story_id: str, branch: str, drafts: Sequence[Draft], *, expected_position: int,
        lease_owner: str | None = None,
    ) -> list[RecordedEvent]:
        """Append ``drafts`` after ``expected_position`` or raise ``VersionConflict`` writing nothing.

        ``lease_owner``: write only while the branch lease names this owner, else ``BranchBusy``
        (the lease was taken over) and nothing is written.

        The events are sealed (canonical JSON, hash chain) before the transaction opens, from the
        head this store last wrote or read; the transaction only claims the head and inserts, on
        the pooled driver connection itself (``db.raw_transaction``).
        """
        if not drafts:
            return []
        key = (story_id, branch)
        known = self._heads.get(key)
        remembered = known is not None and known[0] == expected_position
        prev = known[1] if known is not None and remembered else self._head_hash(story_id, branch, expected_position)
        sealed, rows = seal_all(story_id, branch, drafts, expected_position, prev)
        unknown = False  # a try lost its connection: its commit may have landed

        def attempt() -> bool:
            """True if a try whose outcome was unknown had landed after all; False when this try committed."""
            nonlocal unknown
            if unknown and self._landed(story_id, branch, sealed[-1]):
                return True
            try:
                with raw_transaction(self.engine) as dbapi:
                    if not claim_and_insert(dbapi, self._driver, self._sql, story_id, branch, expected_position,
                                            prev, rows, lease_owner):
                        raise _NotClaimed()
            except StoreUnreachable:
                unknown = True
                raise
            return False

        try:
            if retrying(self.engine, attempt, f"appending to {story_id}/{branch}"):
                _log.warning("the commit of %d event(s) to %s/%s at position %d was not acknowledged (the connection "
                             "was lost); the branch holds them, so they were not written again",
                             len(rows), story_id, branch, expected_position + 1)
        except _NotClaimed:  # rolled back: nothing was written
            self._heads.pop(key, None)
            if lease_owner is not None:
                self._require_lease(story_id, branch, lease_owner)
            if self.head(story_id, branch) != expected_position:
                self._head_hash(story_id, branch, expected_position)  # raises VersionConflict
            if remembered:  # the remembered head hash was out of date: read it and try again
                return self.append(story_id, branch, drafts, expected_position=expected_position,
                                   lease_owner=lease_owner)
            raise IntegrityViolation(
                f"the head hash of {story_id!r}/{branch!r} changed at position {expected_position}",
                hint="the branches table was altered outside codirector; run `codirector verify`",
            ) from None
        self._heads[key] = (expected_position + len(rows), sealed[-1].hash)
        return sealed

    def _require_lease(self, story_id: str, branch: str, owner: str) -> None:
        """``BranchBusy`` unless the branch lease row still names ``owner``."""
        held = Leases(self.engine).get(story_id, branch)
        if held is None or held.owner != owner:
            by = held.holder() if held is not None else "another runner (which has since released it)"
            raise BranchBusy(
                f"this run lost the lease on {story_id}/{branch} to {by}, so nothing more was written: "
                "another runner took the branch while this one was paused or cut off",
                hint=f"the new holder continues it; `codirector resume {story_id} --branch {branch} --wait` "
                     "continues after it")

    def _append(
        self, conn: Connection, story_id: str, branch: str, drafts: Sequence[Draft], expected: int, prev: str
    ) -> list[RecordedEvent]:
        """Seal and write inside the caller's transaction (a new story or branch, whose head is known)."""
        if not drafts:
            return []
        sealed, rows = seal_all(story_id, branch, drafts, expected, prev)
        if not claim_and_insert(conn.connection.dbapi_connection, self._driver, self._sql, story_id, branch,
                                expected, prev, rows):
            raise _NotClaimed()  # the caller's transaction rolls back
        return sealed

    @retried
    def _head_hash(self, story_id: str, branch: str, expected: int) -> str:
        """The branch's head hash, or ``VersionConflict`` if its head is not at ``expected``."""
        with self._connect() as conn:
            info = self._branch(conn, story_id, branch)
        if info.head_position != expected:
            raise VersionConflict(
                f"append to {story_id!r}/{branch!r} expected last position {expected}, but it is {info.head_position}",
                expected=expected,
                actual=info.head_position,
            )
        return info.head_hash

    # ------------------------------------------------------------------ reading

    @retried
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
            query = select(EVENTS).where(within(EVENTS, story_id, segments))
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

    @retried
    def read_own(self, story_id: str, branch: str) -> list[RecordedEvent]:
        """Only the events written to ``branch`` itself (not its parent's prefix)."""
        with self._connect() as conn:
            rows = conn.execute(
                select(EVENTS)
                .where(EVENTS.c.story_id == story_id, EVENTS.c.branch == branch)
                .order_by(EVENTS.c.position)
            ).all()
        return [_row_to_event(r) for r in rows]

    @retried
    def read_story(self, story_id: str, *, types: Iterable[str] | None = None) -> list[RecordedEvent]:
        """Events of every branch of a story (for projections that span branches, like the index)."""
        with self._connect() as conn:
            query = select(EVENTS).where(EVENTS.c.story_id == story_id)
            if types is not None:
                query = query.where(EVENTS.c.type.in_(list(types)))
            rows = conn.execute(query.order_by(EVENTS.c.position, EVENTS.c.branch)).all()
        return [_row_to_event(r) for r in rows]

    @retried
    def lineage(self, story_id: str, branch: str = MAIN) -> list[Segment]:
        """The branch's lineage, oldest ancestor first."""
        with self._connect() as conn:
            return self._lineage(conn, story_id, branch)

    @retried
    def count(self, story_id: str | None = None) -> int:
        with self._connect() as conn:
            query = select(func.count()).select_from(EVENTS)
            if story_id is not None:
                query = query.where(EVENTS.c.story_id == story_id)
            return int(conn.execute(query).scalar_one())

    # ------------------------------------------------------------------ raw rows, for verify

    @retried
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
        """The branch's row; ``StoryNotFound`` or ``BranchNotFound`` (with close names) when there is none.

        Outside a transaction each statement reads the database as it is then: a story created (with
        its ``main``, in one transaction) between the first read and the story check is found, not
        reported as a story without that branch.
        """
        query = select(BRANCHES).where(BRANCHES.c.story_id == story_id, BRANCHES.c.name == name)
        row = conn.execute(query).first()
        if row is not None:
            return branch_info(row)
        if conn.execute(select(STORIES.c.id).where(STORIES.c.id == story_id)).first() is None:
            known = conn.execute(select(STORIES.c.id)).scalars().all()
            raise StoryNotFound(f"no story {story_id!r} in this database", hint=did_you_mean(story_id, known, "story"))
        row = conn.execute(query).first()  # the story is there now: read the branch as it stands with it
        if row is not None:
            return branch_info(row)
        known = conn.execute(select(BRANCHES.c.name).where(BRANCHES.c.story_id == story_id)).scalars().all()
        if not name.startswith(HIDDEN_BRANCH_PREFIXES):
            known = [k for k in known if not k.startswith(HIDDEN_BRANCH_PREFIXES)]
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
        return walk(story_id, branch, lambda name: self._fork_of(conn, story_id, name))

    def _hash_at(self, conn: Connection, story_id: str, branch: str, position: int) -> str:
        segments = self._lineage(conn, story_id, branch)
        row = conn.execute(
            select(EVENTS.c.hash).where(within(EVENTS, story_id, segments), EVENTS.c.position == position)
        ).first()
        if row is None:
            raise RunStateError(f"{story_id!r}/{branch!r} has no event at position {position}")
        return str(row.hash)

    def _connect(self) -> Any:
        return connection(self.engine)

    def _begin(self) -> Any:
        return connection(self.engine, write=True)

"""``codirector verify``: recompute the hash chain, check every referenced blob and the index.

Invariant checked: for each branch, its own rows are positions fork+1..head with no gap, each
row's ``prev_hash`` is the previous row's ``hash`` (the parent's event at the fork for the first),
its key columns agree with its record, and ``hash == sha256(prev_hash + record)`` over the exact
stored bytes. The first
row that fails is named; later rows of that branch are not trusted and not listed. Blobs are
re-hashed in whichever store ``--blobs`` names (a folder or a bucket); the vector index (this
machine's cache) must hold exactly the vectors the log names, equal to their blobs.

Unreferenced blobs are not damage: a blob is written before the event that names it (DESIGN §4,
invariant 4), so a run stopped in between leaves a blob no event names. When every story is verified,
those are listed apart (``VerifyReport.unreferenced``) and do not fail the check; ``codirector gc``
removes them. A blob counts as referenced when any stored row of any story names it, a damaged row
included, so nothing a damaged log may still need is ever offered for collection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from codirector.errors import IntegrityViolation
from codirector.events.base import RecordedEvent, from_record, record_hash, referenced_blobs
from codirector.store.blobs import BlobInfo, BlobStore
from codirector.store.event_store import EventStore
from codirector.store.vector_index import VECTOR_EVENT_TYPES, VectorIndex, check, expected_entries, index_path


@dataclass(frozen=True)
class Problem:
    """One thing wrong: where (story, branch, position) and what."""

    story_id: str
    branch: str | None
    position: int | None
    kind: str  # chain | blob | index | snapshot
    what: str

    def line(self) -> str:
        where = self.story_id if self.branch is None else f"{self.story_id}/{self.branch}"
        at = f" position {self.position}" if self.position is not None else ""
        return f"{where}{at}: {self.what}"


@dataclass
class VerifyReport:
    stories: int = 0
    branches: int = 0
    events: int = 0
    blobs: int = 0
    vectors: int = 0
    problems: list[Problem] = field(default_factory=list)
    unreferenced: list[BlobInfo] | None = None  # None: not looked for (one story verified, or the list failed)

    @property
    def ok(self) -> bool:
        """No damage. Unreferenced blobs are not damage."""
        return not self.problems

    @property
    def unreferenced_bytes(self) -> int:
        return sum(b.size for b in self.unreferenced or [])

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "stories": self.stories,
            "branches": self.branches,
            "events": self.events,
            "blobs": self.blobs,
            "vectors": self.vectors,
            "problems": [p.__dict__ for p in self.problems],
            "unreferenced": None if self.unreferenced is None else {
                "blobs": len(self.unreferenced), "bytes": self.unreferenced_bytes,
                "digests": [b.digest for b in self.unreferenced],
            },
        }


@dataclass(frozen=True)
class References:
    """Every blob digest the stored rows name, and how many rows could not be read (their names are unknown)."""

    digests: frozenset[str]
    unreadable: int


def referenced_digests(store: EventStore) -> References:
    """The blobs named by any stored row of any story and branch, damaged rows included (read leniently)."""
    found: set[str] = set()
    unreadable = 0
    for info in store.stories():
        for b in info.branches:
            for row in store.raw_rows(info.id, b.name):
                try:
                    record = orjson.loads(row.record)
                except (orjson.JSONDecodeError, TypeError):
                    unreadable += 1
                    continue
                found.update(referenced_blobs(record.get("payload") if isinstance(record, dict) else record))
    return References(frozenset(found), unreadable)


def unreferenced_blobs(store: EventStore, blobs: BlobStore) -> tuple[list[BlobInfo], References]:
    """Blobs in the store that no row names. The store is listed BEFORE the rows are read, so a blob whose
    event is appended meanwhile is seen as referenced."""
    listed = list(blobs.inventory())
    refs = referenced_digests(store)
    return [b for b in listed if b.digest not in refs.digests], refs


def verify_chain(store: EventStore, story_id: str, report: VerifyReport) -> dict[str, list[RecordedEvent]]:
    """Check every branch's chain; returns each branch's own events that passed."""
    info = store.story(story_id)
    report.stories += 1
    good: dict[str, list[RecordedEvent]] = {}
    hashes: dict[tuple[str, int], str] = {}
    # parents before children: a branch's fork hash comes from its parent's checked rows
    pending = list(info.branches)
    ordered = []
    done: set[str | None] = {None}
    while pending:
        progressed = False
        for b in list(pending):
            if b.parent in done:
                ordered.append(b)
                done.add(b.name)
                pending.remove(b)
                progressed = True
        if not progressed:
            for b in pending:
                what = f"parent branch {b.parent!r} is missing"
                report.problems.append(Problem(story_id, b.name, None, "chain", what))
            break
    for b in ordered:
        report.branches += 1
        passed: list[RecordedEvent] = []
        good[b.name] = passed
        if b.fork_position == 0:
            prev = "0" * 64
        else:
            prev = _hash_in_lineage(store, story_id, b.parent or "main", b.fork_position, hashes)
        expected = b.fork_position + 1
        rows = store.raw_rows(story_id, b.name)
        report.events += len(rows)
        problem = None
        for row in rows:
            if row.position != expected:
                problem = Problem(story_id, b.name, expected, "chain",
                                  f"event missing (the next stored position is {row.position})")
                break
            try:
                ev = from_record(row.record, row.hash)
                keys = (ev.story_id, ev.branch, ev.position, ev.type, ev.shot)
            except (orjson.JSONDecodeError, AttributeError, TypeError):
                problem = Problem(story_id, b.name, row.position, "chain", "record is not a valid event envelope")
                break
            if keys != (row.story_id, row.branch, row.position, row.type, row.shot):
                problem = Problem(story_id, b.name, row.position, "chain",
                                  "row key columns disagree with the stored record (rows moved or edited)")
                break
            if ev.prev_hash != prev:
                problem = Problem(story_id, b.name, row.position, "chain",
                                  "prev_hash does not match the previous event (rows deleted, reordered or altered)")
                break
            if record_hash(prev, row.record) != row.hash:
                problem = Problem(story_id, b.name, row.position, "chain",
                                  f"content does not match its hash ({row.type} altered)")
                break
            prev = row.hash
            hashes[(b.name, row.position)] = row.hash
            passed.append(ev)
            expected += 1
        if problem is None and expected - 1 != b.head_position:
            problem = Problem(story_id, b.name, expected, "chain",
                              f"events missing: the branch head is position {b.head_position}")
        if problem is None and b.head_hash != prev:
            problem = Problem(story_id, b.name, b.head_position, "chain",
                              "branch head hash does not match its last event")
        if problem is not None:
            report.problems.append(problem)
    return good


def _hash_in_lineage(
    store: EventStore, story_id: str, branch: str, position: int, hashes: dict[tuple[str, int], str]
) -> str:
    for seg in reversed(store.lineage(story_id, branch)):
        if position > seg.lo and (seg.hi is None or position <= seg.hi):
            return hashes.get((seg.branch, position), "?")
    return "?"


def verify_blobs(
    story_id: str, good: dict[str, list[RecordedEvent]], blobs: BlobStore, report: VerifyReport,
    cache: dict[str, str | None],
) -> None:
    for branch, events in good.items():
        for ev in events:
            for digest in sorted(referenced_blobs(ev.payload)):
                if digest not in cache:
                    try:
                        cache[digest] = blobs.check(digest)
                    except Exception as e:  # a malformed digest in a payload
                        cache[digest] = str(e)
                    report.blobs += 1
                if cache[digest] is not None:
                    report.problems.append(
                        Problem(story_id, branch, ev.position, "blob",
                                f"{ev.type} names blob {digest[:12]}…, which is {cache[digest]}")
                    )
                    break


def verify_index(store: EventStore, story_id: str, blobs: BlobStore, vectors_dir: Any, report: VerifyReport) -> None:
    entries = expected_entries(store.read_story(story_id, types=VECTOR_EVENT_TYPES))
    path = index_path(vectors_dir, story_id)
    if not entries and not path.exists():
        return
    if not path.exists():
        what = f"the vector index is missing ({len(entries)} vectors expected); run `codirector reindex`"
        report.problems.append(Problem(story_id, None, None, "index", what))
        return
    index = VectorIndex(path)
    report.vectors += len(index)
    try:
        lines = check(index, entries, blobs)
    except IntegrityViolation as e:  # a damaged embedding blob: the blob check names it
        lines = [f"the index cannot be compared with the log ({e.message})"]
    for line in lines:
        report.problems.append(Problem(story_id, None, None, "index", line + "; run `codirector reindex`"))


def verify(store: EventStore, blobs: BlobStore, vectors_dir: Any, story_id: str | None = None) -> VerifyReport:
    """Check one story, or every story in the database."""
    report = VerifyReport()
    ids = [story_id] if story_id is not None else [s.id for s in store.stories()]
    cache: dict[str, str | None] = {}
    for sid in ids:
        good = verify_chain(store, sid, report)
        verify_blobs(sid, good, blobs, report, cache)
        verify_index(store, sid, blobs, vectors_dir, report)
    if story_id is None:  # blobs are shared by every story: only the whole log says which are unreferenced
        report.unreferenced, _ = unreferenced_blobs(store, blobs)
    return report

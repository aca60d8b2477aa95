"""Looking after a workspace: the story listing, the backends table, rebuilding caches and verifying.

Invariants: nothing here writes an event. ``reindex`` only rebuilds caches (the vector index file
and memory snapshots), which are projections of the log; ``verify`` first catches this machine's
index cache up with the log (docs/architecture.md §10: the cache is per worker), so what it reports is damage,
never a cache that is merely behind. ``collect_garbage`` (``codirector gc``) is the one place that removes
blobs, and only unreferenced ones: blobs no stored row names, older than ``min_age`` (a blob is written
before its event, so a young one may belong to a run in flight).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from codirector.engine.loop.rerun import is_forgotten
from codirector.engine.loop.runs import is_scratch
from codirector.engine.results import (
    BackendsReport,
    BackendStatus,
    BranchStatus,
    IndexRebuilt,
    ReindexResult,
    StoryListing,
    StorySummary,
)
from codirector.engine.views.memory import (
    MEMORY_EVENT_TYPES,
    MEMORY_SNAPSHOT_KIND,
    MEMORY_SNAPSHOT_SCHEMA,
    MemoryBank,
    mutate,
)
from codirector.engine.workspace import Workspace
from codirector.errors import BranchBusy, IntegrityViolation
from codirector.generators.profiles import resolve
from codirector.store.blobs import BlobInfo
from codirector.store.event_store import EventStore
from codirector.store.snapshots import SnapshotCache
from codirector.store.verify import Problem, VerifyReport, unreferenced_blobs, verify

_STATUS_TYPES = ["StoryCompleted", "ShotCompleted", "BranchCreated", "BranchRanked"]


def list_stories(ws: Workspace, *, include_replays: bool = False, include_forgotten: bool = False,
                 story_id: str | None = None) -> StoryListing:
    """Every story (or only ``story_id``; ``StoryNotFound`` if there is none) with its branches, each
    branch's status and lease (who runs it now; replay scratch branches and forgotten stories hidden).
    ``running`` is true while a live lease is held by a process that still exists (a holder on this machine whose
    process has ended is not running); an expired one is still shown. One read per branch."""
    out = []
    leases = {(x.story_id, x.branch): x for x in ws.leases.all()}
    for story in ws.store.stories() if story_id is None else [ws.store.story(story_id)]:
        if not include_forgotten and is_forgotten(story):
            continue
        branches: list[BranchStatus] = []
        for b in story.branches:
            if is_scratch(b.name) and not include_replays:
                continue
            marks = ws.store.read(story.id, b.name, types=_STATUS_TYPES)  # the lineage's: shots done before the fork
            own = [e for e in marks if e.position > b.fork_position]
            done = any(e.type == "StoryCompleted" for e in own)
            ranked = any(e.type == "BranchRanked" for e in own)
            shots = {e.shot for e in marks if e.type == "ShotCompleted" and e.shot is not None}
            lease = leases.get((story.id, b.name))
            branches.append(BranchStatus(
                name=b.name, parent=b.parent, fork_position=b.fork_position, events=b.head_position,
                shots_completed=len(shots),
                status="completed" if done else "ranked" if ranked else (
                    "empty" if b.head_position == 0 else "in progress"),
                created_at=b.created_at, running=lease is not None and lease.live and not lease.gone, lease=lease,
            ))
        out.append(StorySummary(story.id, story.title, story.created_at, branches))
    return StoryListing(out)


def backends_report(profile: str | None = None, config: str | os.PathLike[str] | None = None) -> BackendsReport:
    """Registered backends, what each needs, and whether it can run here (``codirector backends``)."""
    from codirector.generators import registry

    cfg = resolve(profile, config) if (profile or config) else None
    rows: list[BackendStatus] = []
    for b in registry.backends():
        options: dict[str, Any] = {}
        selected = False
        if cfg is not None:
            table = cfg.backend(b.kind)
            if table.backend == b.name:
                selected = True
                options = table.options
        ok, why = registry.usable(b.kind, b.name, options)
        rows.append(BackendStatus(b.kind, b.name, b.summary, b.needs, ok, why, selected,
                                  registry.capabilities(b.kind, b.name, options)))
    return BackendsReport(rows, checked_profile=cfg is not None)


def reindex(ws: Workspace, story_id: str | None = None) -> ReindexResult:
    """Rebuild vector indexes from the log (every story, or one) and drop the memory snapshots."""
    ids = [story_id] if story_id is not None else [s.id for s in ws.store.stories()]
    out: list[IndexRebuilt] = []
    for sid in ids:
        index, path = ws.rebuild_index(sid)
        dropped = SnapshotCache(ws.store).drop(sid)  # a cache too: rebuilt on the next reads
        out.append(IndexRebuilt(sid, len(index), index.dim, str(path), dropped))
    return ReindexResult(out)


def verify_workspace(ws: Workspace, story_id: str | None = None) -> VerifyReport:
    """Hash chain, blobs, vector index and snapshots; ``report.ok`` is False on any damage."""
    if story_id is not None:
        ws.store.story(story_id)
    ids = [story_id] if story_id is not None else [s.id for s in ws.store.stories()]
    for sid in ids:
        try:  # the index is this machine's cache (architecture §10): caught up first, so only damage is reported
            ws.index(sid)
        except IntegrityViolation:
            pass  # an unreadable index file or a damaged embedding blob: the checks below name it
    report = verify(ws.store, ws.blobs, ws.vectors_dir, story_id)
    for sid in ids:
        for branch, position in stale_snapshots(ws.store, sid):
            report.problems.append(Problem(sid, branch, position, "snapshot",
                                           "cached memory snapshot differs from the log; run `codirector reindex`"))
    return report


def stale_snapshots(store: EventStore, story_id: str) -> list[tuple[str, int]]:
    """Memory snapshots that differ from the plain fold at their position: (branch, position)."""
    bad: list[tuple[str, int]] = []
    by_branch: dict[str, list[tuple[int, int, str]]] = {}
    for branch, position, schema, state in SnapshotCache(store).all(story_id, MEMORY_SNAPSHOT_KIND):
        by_branch.setdefault(branch, []).append((position, schema, state))
    for branch, snaps in by_branch.items():
        events = store.read(story_id, branch, upto=max(p for p, _, _ in snaps), types=MEMORY_EVENT_TYPES)
        bank, i = MemoryBank(), 0
        for position, schema, state in snaps:
            while i < len(events) and events[i].position <= position:
                mutate(bank, events[i])
                i += 1
            bank.position = position
            if schema != MEMORY_SNAPSHOT_SCHEMA:
                continue  # an old format is never read, so it cannot mislead
            try:
                same = MemoryBank.from_json(state).to_json() == bank.to_json()
            except (ValueError, TypeError, IndexError, KeyError):
                same = False
            if not same:
                bad.append((branch, position))
    return bad


DEFAULT_GC_MIN_AGE = 3600.0  # seconds: blobs younger than this are never collected


@dataclass
class GcReport:
    """``codirector gc``: the unreferenced blobs found (``candidates``), those kept for being younger than
    ``min_age``, and whether the candidates were removed (``deleted``) or only listed (a dry run)."""

    store: str
    min_age: float
    deleted: bool
    candidates: list[BlobInfo] = field(default_factory=list)
    young: list[BlobInfo] = field(default_factory=list)
    referenced: int = 0

    @property
    def bytes(self) -> int:
        return sum(b.size for b in self.candidates)

    def to_json(self) -> dict[str, Any]:
        return {
            "store": self.store, "min_age": self.min_age, "dry_run": not self.deleted, "deleted": self.deleted,
            "referenced": self.referenced, "blobs": len(self.candidates), "bytes": self.bytes,
            "unreferenced": [{"digest": b.digest, "size": b.size, "modified": b.modified} for b in self.candidates],
            "kept_young": [b.digest for b in self.young],
        }


def collect_garbage(ws: Workspace, *, delete: bool = False, min_age: float | None = None) -> GcReport:
    """List (and with ``delete``, remove) the blobs no stored row of any story names and that are older than
    ``min_age`` seconds (default one hour). While a branch lease is live a run may be between writing a blob
    and appending its event: then only an explicit ``min_age`` lets this go on (``BranchBusy`` otherwise).
    A log with unreadable rows is refused (their blobs are unknown): ``IntegrityViolation``."""
    live = [x for x in ws.leases.all() if x.live and not x.gone]
    if live and min_age is None:
        names = ", ".join(f"{x.story_id}/{x.branch}" for x in live[:5]) + (" …" if len(live) > 5 else "")
        raise BranchBusy(f"{len(live)} branch(es) are being run now ({names}): a run may have written a blob "
                         "whose event is not appended yet",
                         hint="run gc when they have finished, or pass --min-age SECONDS to collect only blobs "
                              "older than that (e.g. --min-age 3600)")
    age = DEFAULT_GC_MIN_AGE if min_age is None else min_age
    candidates, refs = unreferenced_blobs(ws.store, ws.blobs)
    if refs.unreadable:
        raise IntegrityViolation(f"{refs.unreadable} stored events cannot be read, so the blobs they name are "
                                 "unknown; gc removes nothing",
                                 hint="run `codirector verify` and restore the database from a backup first")
    cutoff = time.time() - age
    old = [b for b in candidates if age <= 0 or (b.modified is not None and b.modified <= cutoff)]  # age unknown: kept
    report = GcReport(ws.blobs.describe(), age, delete, candidates=old,
                      young=[b for b in candidates if b not in old], referenced=len(refs.digests))
    if delete:
        for b in old:
            ws.blobs.delete(b.digest)
    return report

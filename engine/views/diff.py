"""Branch diffs: where two branches of a story part, and how their shots and memory differ.

A projection of the log built from the two branches' audits and memory folds (both read typed,
upcast events), so a diff never says more than the audit does. ``BranchDiff.to_json()`` is the
stable ``codirector diff --json`` document: its shot entries are keyed by the branch names.

Invariant: the rows both lineages see up to their fork (``shared_upto``) are read and folded
once, and each branch's tail is folded on a copy of that fold (``Fork``). Folds are per event,
so this equals folding each whole branch on its own (a test compares the two), at the cost of
one branch plus the other's tail. Of the audit's handlers only those of ``OUTCOME_TYPES`` run:
they set every field a ``ShotOutcome`` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from codirector.engine.views.audit import fold_shots
from codirector.engine.views.evidence import ShotAudit
from codirector.engine.views.memory import fold
from codirector.engine.workspace import Workspace
from codirector.events import MEMORY_EVENT_TYPES, RecordedEvent
from codirector.store.event_store import EventStore
from codirector.store.lineage import Segment

OUTCOME_TYPES = frozenset({"ShotStarted", "KeyframeGenerated", "KeyframeSelected", "VideoGenerated", "ShotCompleted"})


@dataclass(frozen=True)
class ShotOutcome:
    """What a shot came out as on one branch: the prompt its keyframe was made from, and the results
    (read from the audit fields the ``OUTCOME_TYPES`` handlers set, and no others)."""

    keyframe_prompt: str | None
    keyframe_blob: str | None
    video_blob: str | None
    completed: bool

    @staticmethod
    def of(s: ShotAudit | None) -> ShotOutcome | None:
        if s is None:
            return None
        chosen = s.selected_round()
        return ShotOutcome(keyframe_prompt=(chosen.prompt if chosen else None) or s.keyframe_prompt,
                           keyframe_blob=s.selected.blob if s.selected else None,
                           video_blob=s.video.blob if s.video else None, completed=s.completed)

    def to_json(self) -> dict[str, Any]:
        return {"keyframe_prompt": self.keyframe_prompt, "keyframe_blob": self.keyframe_blob,
                "video_blob": self.video_blob, "completed": self.completed}


@dataclass(frozen=True)
class ShotDiff:
    """One shot on both branches (None where a branch has no such shot)."""

    shot: int
    same: bool
    in_a: ShotOutcome | None
    in_b: ShotOutcome | None

    def to_json(self, a: str, b: str) -> dict[str, Any]:
        return {"shot": self.shot, "same": self.same, a: None if self.in_a is None else self.in_a.to_json(),
                b: None if self.in_b is None else self.in_b.to_json()}


@dataclass(frozen=True)
class EntityChange:
    """An entity both branches hold with different descriptions, bases or views."""

    name: str
    views_a: int
    views_b: int
    description_changed: bool

    def to_json(self, a: str, b: str) -> dict[str, Any]:
        return {"name": self.name, "views": {a: self.views_a, b: self.views_b},
                "description_changed": self.description_changed}


@dataclass(frozen=True)
class BranchDiff:
    """Where branches ``a`` and ``b`` part and how they differ."""

    story: str
    a: str
    b: str
    parted_at_position: int
    first_differing_shot: int | None
    shots: tuple[ShotDiff, ...]
    only_in_a: tuple[str, ...]
    only_in_b: tuple[str, ...]
    changed: tuple[EntityChange, ...]

    def to_json(self) -> dict[str, Any]:
        """The stable ``codirector diff --json`` document."""
        a, b = self.a, self.b
        return {
            "story": self.story, "a": a, "b": b, "parted_at_position": self.parted_at_position,
            "first_differing_shot": self.first_differing_shot, "shots": [s.to_json(a, b) for s in self.shots],
            "memory": {"only_in_a": list(self.only_in_a), "only_in_b": list(self.only_in_b),
                       "changed": [c.to_json(a, b) for c in self.changed]},
        }


def shared_upto(lineage_a: Sequence[Segment], lineage_b: Sequence[Segment], head_a: int, head_b: int) -> int:
    """The last position at which both lineages still read the same rows (0 when they share none)."""
    shared = 0
    for x, y in zip(lineage_a, lineage_b, strict=False):
        if (x.branch, x.lo) != (y.branch, y.lo):
            break
        shared = min(h for h in (x.hi, y.hi, head_a, head_b) if h is not None)
        if x.hi != y.hi:  # one of them forks off inside this segment
            break
    return min(shared, head_a, head_b)


@dataclass(frozen=True)
class Fork:
    """Two branches' events, each row read once: what both see up to ``shared_upto``, then each one's own."""

    shared: Sequence[RecordedEvent]
    tail_a: Sequence[RecordedEvent]
    tail_b: Sequence[RecordedEvent]

    @staticmethod
    def read(store: EventStore, story_id: str, a: str, b: str) -> Fork:
        upto = shared_upto(store.lineage(story_id, a), store.lineage(story_id, b),
                           store.head(story_id, a), store.head(story_id, b))
        shared = store.read(story_id, a, upto=upto) if upto else []
        return Fork(shared, store.read(story_id, a, after=upto), store.read(story_id, b, after=upto))

    @property
    def events_a(self) -> list[RecordedEvent]:
        return [*self.shared, *self.tail_a]

    @property
    def events_b(self) -> list[RecordedEvent]:
        return [*self.shared, *self.tail_b]

    def parted_at(self) -> int:
        """The position of the last event both branches hold (the same event id at the same place)."""
        parted = self.shared[-1].position if self.shared else 0
        for x, y in zip(self.tail_a, self.tail_b, strict=False):
            if x.id != y.id:
                break
            parted = x.position
        return parted


def diff_fork(fork: Fork, story_id: str, a: str, b: str) -> BranchDiff:
    """Where two branches part, and how their shots and memory differ, from their events read as a ``Fork``."""
    common = fold_shots(fork.shared, types=OUTCOME_TYPES)
    sa = {s.shot: s for s in fold_shots(fork.tail_a, common, types=OUTCOME_TYPES).records()}
    sb = {s.shot: s for s in fold_shots(fork.tail_b, common, types=OUTCOME_TYPES).records()}
    shots: list[ShotDiff] = []
    first_diff = None
    for shot in sorted(set(sa) | set(sb)):
        va, vb = ShotOutcome.of(sa.get(shot)), ShotOutcome.of(sb.get(shot))
        same = va == vb
        if not same and first_diff is None:
            first_diff = shot
        shots.append(ShotDiff(shot, same, va, vb))
    m0 = fold(e for e in fork.shared if e.type in MEMORY_EVENT_TYPES)
    ma = fold((e for e in fork.tail_a if e.type in MEMORY_EVENT_TYPES), m0)
    mb = fold((e for e in fork.tail_b if e.type in MEMORY_EVENT_TYPES), m0)
    changed = []
    for name in sorted(set(ma.names()) & set(mb.names())):
        x, y = ma.get(name), mb.get(name)
        if (x.description, x.base_entity, [v.blob for v in x.views]) != (y.description, y.base_entity,
                                                                            [v.blob for v in y.views]):
            changed.append(EntityChange(name, len(x.views), len(y.views), x.description != y.description))
    return BranchDiff(story=story_id, a=a, b=b, parted_at_position=fork.parted_at(), first_differing_shot=first_diff,
                      shots=tuple(shots), only_in_a=tuple(n for n in ma.names() if n not in mb),
                      only_in_b=tuple(n for n in mb.names() if n not in ma), changed=tuple(changed))


def diff_branches(ws: Workspace, story_id: str, a: str, b: str) -> BranchDiff:
    """Where two branches part, and how their shots and memory differ."""
    return diff_fork(Fork.read(ws.store, story_id, a, b), story_id, a, b)


__all__ = ["OUTCOME_TYPES", "BranchDiff", "EntityChange", "Fork", "ShotDiff", "ShotOutcome", "diff_branches",
           "diff_fork", "shared_upto"]

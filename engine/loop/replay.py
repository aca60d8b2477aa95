"""Replay: re-execute a branch with the current code against its recording, and compare.

The run is executed again into a scratch branch forked where the original run started, with no
backend at all: every model call must be answered by the original's ``ModelCalled`` events, and a
request the recording lacks raises ``ReplayDivergence`` (with a diff of the request against the
closest recorded one). The scratch branch's events are then compared with the original's, event
by event (type, shot and payload; ids and timestamps aside; causation compared by position).
Run marks (``BudgetReached``: where a budgeted run stopped before it was resumed;
``RunSegmentStarted``: where each segment of the run began) are not part of what a run did: they
are left out of the comparison. The replay runs with the loop patches the original run kept
(``engine.loop.patches``), so a run recorded by an earlier release replays as it ran.

Invariant: replay never calls a model (``model_calls`` counts calls that reached a backend, and
there is none to reach) and never writes to the replayed branch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from codirector.engine.loop.patches import run_patches
from codirector.engine.loop.runs import SCRATCH_PREFIX, branch_start, execute, is_scratch
from codirector.engine.recording.recorder import CallStats, request_diff
from codirector.engine.workspace import Workspace
from codirector.errors import CodirectorError, ReplayDivergence
from codirector.events import JOB_EVENTS, RUN_MARKS, RecordedEvent
from codirector.generators.base import Backends
from codirector.store.event_store import MAIN

__all__ = ["SCRATCH_PREFIX", "Divergence", "ReplayReport", "is_scratch", "replay"]


@dataclass
class Divergence:
    """The first point where the replay and the recording part: the position and event types on each
    side (None where one side has no event), and what changed in the payload or the model request."""

    position: int
    shot: int | None
    expected_type: str | None
    replayed_type: str | None
    changes: list[str] = field(default_factory=list)
    missing_call: bool = False  # the replay needed a model call the recording lacks (kind, agent say which)
    kind: str | None = None
    agent: str | None = None
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"position": self.position, "shot": self.shot, "expected_type": self.expected_type,
                               "replayed_type": self.replayed_type, "changes": list(self.changes)}
        if self.missing_call:
            out.update(kind=self.kind, agent=self.agent)
        if self.message is not None:
            out["message"] = self.message
        return out


@dataclass
class ReplayReport:
    """What a replay found: identical, or the first divergence; events compared, model calls made (0)."""

    story_id: str
    branch: str
    scratch_branch: str
    identical: bool
    events_compared: int
    model_calls: int
    original_complete: bool
    seconds: float
    divergence: Divergence | None = None
    notes: list[str] = field(default_factory=list)
    would_have_cost_usd: float = 0.0  # the recorded answers it used, at built-in prices (a replay costs 0)
    unpriced: list[str] = field(default_factory=list)  # models among them without a price

    def to_json(self) -> dict[str, Any]:
        return {"identical": self.identical, "events_compared": self.events_compared, "model_calls": self.model_calls,
                "divergence": None if self.divergence is None else self.divergence.to_json(),
                "story": self.story_id, "branch": self.branch,
                "scratch_branch": self.scratch_branch, "original_complete": self.original_complete,
                "seconds": round(self.seconds, 3), "notes": self.notes,
                "cost_usd": 0.0, "would_have_cost_usd": self.would_have_cost_usd, "unpriced": self.unpriced}


def _positions(events: list[RecordedEvent]) -> dict[str, int]:
    """Each event's place in the log with run marks left out (a replay never writes them)."""
    return {e.id: i for i, e in enumerate((e for e in events if e.type not in RUN_MARKS), start=1)}


def _comparable(e: RecordedEvent, ids: dict[str, int]) -> tuple[Any, ...]:
    cause = ids.get(e.causation_id) if e.causation_id else None
    return (e.type, e.shot, e.payload, cause)


def _field_diff(a: Any, b: Any) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return request_diff(a, b)
    return [f"{a!r} -> {b!r}"]


def replay(ws: Workspace, story_id: str, branch: str = MAIN, *, backends: Backends | None = None) -> ReplayReport:
    """Re-run ``branch`` against its recording in a new scratch branch and report the first divergence."""
    store = ws.store
    started = time.perf_counter()
    original = store.read(story_id, branch)
    start, created = branch_start(original, branch)
    patches = run_patches([e for e in original if e.position > start], created=created, where=f"{story_id}/{branch}")
    taken = {b.name for b in store.story(story_id).branches}
    n = 1
    while f"{SCRATCH_PREFIX}{branch}~{n}" in taken:
        n += 1
    scratch = f"{SCRATCH_PREFIX}{branch}~{n}"
    store.create_branch(story_id, scratch, parent=branch, at_position=start)
    recording = [e for e in original if e.type == "ModelCalled" or e.type in JOB_EVENTS]  # a call's job events too
    stopped: CodirectorError | None = None
    stats = CallStats()
    try:
        execute(ws, story_id, branch, recording=recording, target_branch=scratch, stats=stats,
                backends=backends, patches=patches)
    except CodirectorError as e:  # a divergence, or the original's own failure reproduced
        stopped = e
    replayed = [e for e in store.read(story_id, scratch) if e.position > start and e.type not in RUN_MARKS]
    expected = [e for e in original if e.position > start and e.type not in RUN_MARKS]
    end = next((i for i, e in enumerate(expected) if e.type == "StoryCompleted"), None)
    evaluations = 0
    if end is not None:  # judges' events appended after the run are evaluations of it, not part of it
        evaluations = len(expected) - end - 1
        expected = expected[: end + 1]
    ids_a, ids_b = _positions(original), _positions(store.read(story_id, scratch))
    complete = any(e.type == "StoryCompleted" for e in expected)
    divergence: Divergence | None = None
    compared = 0
    for a, b in zip(expected, replayed, strict=False):
        compared += 1
        if _comparable(a, ids_a) != _comparable(b, ids_b):
            divergence = Divergence(a.position, a.shot, a.type, b.type,
                                    [] if a.type != b.type else _field_diff(a.payload, b.payload))
            if a.type == b.type == "ModelCalled":
                request_changes = request_diff(a.payload["request"], b.payload["request"])
                divergence.changes = request_changes or divergence.changes
            break
    if divergence is None and len(replayed) != len(expected):
        if len(replayed) < len(expected):
            nxt = expected[len(replayed)]
            divergence = Divergence(nxt.position, nxt.shot, nxt.type, None)
            if isinstance(stopped, ReplayDivergence):
                divergence.replayed_type, divergence.changes = "ModelCalled", list(stopped.diff)
                divergence.missing_call, divergence.kind, divergence.agent = True, stopped.kind, stopped.agent
                divergence.message = stopped.message
            elif stopped is not None:
                divergence.message = stopped.message
        else:
            extra = replayed[len(expected)]
            divergence = Divergence(extra.position, extra.shot, None, extra.type,
                                    ["the replay wrote more events than the original"])
    notes = []
    if evaluations:
        notes.append(f"{evaluations} evaluation events after StoryCompleted are not part of the run; not compared")
    if not complete:
        notes.append("the original run is incomplete; the replay was compared up to where it stopped")
    if stopped is not None and divergence is None and not complete:
        notes.append(f"the replay stopped where the original did: {stopped.message}")
    return ReplayReport(story_id, branch, scratch, divergence is None, compared, stats.live, complete,
                        time.perf_counter() - started, divergence, notes, round(stats.saved_usd, 9),
                        sorted(stats.unpriced))

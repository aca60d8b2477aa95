"""Replay: re-execute a branch with the current code against its recording, and compare.

The run is executed again into a scratch branch forked where the original run started, with no
backend at all: every model call must be answered by the original's ``ModelCalled`` events, and a
request the recording lacks raises ``ReplayDivergence`` (with a diff of the request against the
closest recorded one). The scratch branch's events are then compared with the original's, event
by event (type, shot and payload; ids and timestamps aside; causation compared by position).

Invariant: replay never calls a model (``model_calls`` counts calls that reached a backend, and
there is none to reach) and never writes to the replayed branch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from codirector.engine.loop.runs import _creation_end, execute
from codirector.engine.recording.recorder import CallStats, request_diff
from codirector.engine.workspace import Workspace
from codirector.errors import CodirectorError, ReplayDivergence
from codirector.events import RecordedEvent
from codirector.store.event_store import MAIN

SCRATCH_PREFIX = "replay~"


def is_scratch(branch: str) -> bool:
    """Scratch branches hold replays; listings hide them unless asked."""
    return branch.startswith(SCRATCH_PREFIX)


@dataclass
class ReplayReport:
    story_id: str
    branch: str
    scratch_branch: str
    identical: bool
    events_compared: int
    model_calls: int
    original_complete: bool
    seconds: float
    divergence: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"identical": self.identical, "events_compared": self.events_compared, "model_calls": self.model_calls,
                "divergence": self.divergence, "story": self.story_id, "branch": self.branch,
                "scratch_branch": self.scratch_branch, "original_complete": self.original_complete,
                "seconds": round(self.seconds, 3), "notes": self.notes}


def _positions(events: list[RecordedEvent]) -> dict[str, int]:
    return {e.id: e.position for e in events}


def _comparable(e: RecordedEvent, ids: dict[str, int]) -> tuple[Any, ...]:
    cause = ids.get(e.causation_id) if e.causation_id else None
    return (e.type, e.shot, e.payload, cause)


def _field_diff(a: Any, b: Any) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return request_diff(a, b)
    return [f"{a!r} -> {b!r}"]


def replay(ws: Workspace, story_id: str, branch: str = MAIN, *, backends: Any = None) -> ReplayReport:
    """Re-run ``branch`` against its recording in a new scratch branch and report the first divergence."""
    store = ws.store
    started = time.perf_counter()
    original = store.read(story_id, branch)
    if branch == MAIN:
        start = original[0].position
    else:
        start = _creation_end([e for e in original if e.branch == branch])
    taken = {b.name for b in store.story(story_id).branches}
    n = 1
    while f"{SCRATCH_PREFIX}{branch}~{n}" in taken:
        n += 1
    scratch = f"{SCRATCH_PREFIX}{branch}~{n}"
    store.create_branch(story_id, scratch, parent=branch, at_position=start)
    recording = [e for e in original if e.type == "ModelCalled"]
    stopped: CodirectorError | None = None
    stats = CallStats()
    try:
        execute(ws, story_id, branch, recording=recording, target_branch=scratch, stats=stats,
                backends=backends)
    except CodirectorError as e:  # a divergence, or the original's own failure reproduced
        stopped = e
    replayed = [e for e in store.read(story_id, scratch) if e.position > start]
    expected = [e for e in original if e.position > start]
    end = next((i for i, e in enumerate(expected) if e.type == "StoryCompleted"), None)
    evaluations = 0
    if end is not None:  # judges' events appended after the run are evaluations of it, not part of it
        evaluations = len(expected) - end - 1
        expected = expected[: end + 1]
    ids_a, ids_b = _positions(original), _positions(store.read(story_id, scratch))
    complete = any(e.type == "StoryCompleted" for e in expected)
    divergence: dict[str, Any] | None = None
    compared = 0
    for a, b in zip(expected, replayed, strict=False):
        compared += 1
        if _comparable(a, ids_a) != _comparable(b, ids_b):
            divergence = {"position": a.position, "shot": a.shot, "expected_type": a.type, "replayed_type": b.type,
                          "changes": [] if a.type != b.type else _field_diff(a.payload, b.payload)}
            if a.type == b.type == "ModelCalled":
                request_changes = request_diff(a.payload["request"], b.payload["request"])
                divergence["changes"] = request_changes or divergence["changes"]
            break
    if divergence is None and len(replayed) != len(expected):
        if len(replayed) < len(expected):
            nxt = expected[len(replayed)]
            divergence = {"position": nxt.position, "shot": nxt.shot, "expected_type": nxt.type,
                          "replayed_type": None, "changes": []}
            if isinstance(stopped, ReplayDivergence):
                divergence.update(replayed_type="ModelCalled", kind=stopped.kind, agent=stopped.agent,
                                  changes=stopped.diff, message=stopped.message)
            elif stopped is not None:
                divergence.update(message=stopped.message)
        else:
            extra = replayed[len(expected)]
            divergence = {"position": extra.position, "shot": extra.shot, "expected_type": None,
                          "replayed_type": extra.type, "changes": ["the replay wrote more events than the original"]}
    notes = []
    if evaluations:
        notes.append(f"{evaluations} evaluation events after StoryCompleted are not part of the run; not compared")
    if not complete:
        notes.append("the original run is incomplete; the replay was compared up to where it stopped")
    if stopped is not None and divergence is None and not complete:
        notes.append(f"the replay stopped where the original did: {stopped.message}")
    return ReplayReport(story_id, branch, scratch, divergence is None, compared, stats.live, complete,
                        time.perf_counter() - started, divergence, notes)

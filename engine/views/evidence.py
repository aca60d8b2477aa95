"""The audit's evidence records: what the log says about one shot, as typed, frozen values.

Each record is filled from one typed, upcast event (see ``views.audit``) and knows its stable JSON
form: ``to_json()`` gives exactly the keys ``codirector audit --json`` has always printed, in the
same order (event parts in the log's own form: keys sorted). Nested event parts (vector
candidates, references, alignment reports) are the event models themselves, so the audit repeats
the log's values instead of copying them by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from codirector.engine.views.projection import logged
from codirector.events import AlignmentReport, Candidate, DuplicateResolved, ProposedEntity, Reference


def _dump(items: tuple[Any, ...]) -> list[Any]:
    return [logged(x) for x in items]


@dataclass(frozen=True)
class Planned:
    """The shot as planned (``ShotPlanned``)."""

    keyframe_prompt: str
    motion_prompt: str
    uses: tuple[str, ...]
    group: str | None

    def to_json(self) -> dict[str, Any]:
        return {"keyframe_prompt": self.keyframe_prompt, "motion_prompt": self.motion_prompt,
                "uses": list(self.uses), "group": self.group}


@dataclass(frozen=True)
class Retrieval:
    """One Retrieve&Update (``MemoryRetrieved``): the shortlist, the choice and the references."""

    round: int
    query: str
    position: int
    memory_disabled: bool
    candidates: tuple[Candidate, ...]
    retrieved_existing: tuple[str, ...]
    new_entities: tuple[ProposedEntity, ...]
    duplicates_resolved: tuple[DuplicateResolved, ...]
    references: tuple[Reference, ...]
    scores_meaningful: bool

    def to_json(self) -> dict[str, Any]:
        return {"round": self.round, "query": self.query, "position": self.position,
                "memory_disabled": self.memory_disabled, "candidates": _dump(self.candidates),
                "retrieved_existing": list(self.retrieved_existing), "new_entities": _dump(self.new_entities),
                "duplicates_resolved": _dump(self.duplicates_resolved), "references": _dump(self.references),
                "scores_meaningful": self.scores_meaningful}


@dataclass(frozen=True)
class KeyframeRound:
    """One keyframe round (``KeyframeGenerated``) and, once judged, the analyzer's verdict."""

    round: int
    prompt: str
    blob: str
    seed: int
    reference_blobs: tuple[str, ...]
    backend: str
    model: str
    decision: str | None = None
    reasons: tuple[str, ...] = ()
    alignment_report: AlignmentReport | None = None
    refined_keyframe_prompt: str = ""

    def to_json(self) -> dict[str, Any]:
        report = self.alignment_report
        return {"round": self.round, "prompt": self.prompt, "blob": self.blob, "seed": self.seed,
                "reference_blobs": list(self.reference_blobs), "backend": self.backend, "model": self.model,
                "decision": self.decision, "reasons": list(self.reasons),
                "alignment_report": None if report is None else logged(report),
                "refined_keyframe_prompt": self.refined_keyframe_prompt}


@dataclass(frozen=True)
class Selection:
    """The keyframe chosen for the shot and why (``KeyframeSelected``)."""

    round: int
    blob: str
    how: str
    why: str

    def to_json(self) -> dict[str, Any]:
        return {"round": self.round, "blob": self.blob, "how": self.how, "why": self.why}


@dataclass(frozen=True)
class Change:
    """A prompt before and after a rewrite (the motion prompt: ``MotionPromptRefined``)."""

    before: str
    after: str

    def to_json(self) -> dict[str, Any]:
        return {"before": self.before, "after": self.after}


@dataclass(frozen=True)
class NextPrompt:
    """The next shot's keyframe prompt before and after the video analyzer (``VideoAnalyzed``)."""

    shot: int | None
    before: str | None
    after: str | None

    def to_json(self) -> dict[str, Any]:
        return {"shot": self.shot, "before": self.before, "after": self.after}


@dataclass(frozen=True)
class LostJob:
    """A provider job of the clip's call that its provider lost, and was submitted again (``ProviderJobLost``)."""

    job_id: str
    server: str | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "server": self.server, "reason": self.reason}


@dataclass(frozen=True)
class Clip:
    """The shot's clip (``VideoGenerated``); for a provider job, the server it came from and any job lost on the way."""

    blob: str
    frames: int
    fps: float
    backend: str
    model: str
    motion_prompt: str
    server: str | None = None  # the server (a pool's member) that made it, from the call's ``job`` answer
    job_id: str | None = None
    lost_jobs: tuple[LostJob, ...] = ()
    references: tuple[tuple[str, str], ...] = ()  # (entity, view blob): memory's views sent with the keyframe

    def to_json(self) -> dict[str, Any]:
        return {"blob": self.blob, "frames": self.frames, "fps": self.fps, "backend": self.backend,
                "model": self.model, "motion_prompt": self.motion_prompt, "server": self.server,
                "job_id": self.job_id, "lost_jobs": [j.to_json() for j in self.lost_jobs],
                "references": [{"entity": n, "blob": b} for n, b in self.references]}


@dataclass(frozen=True)
class Registration:
    """An entity that entered memory during the shot (``EntityRegistered``, upcast)."""

    name: str
    base_entity: str | None
    origin: str
    description: str
    position: int
    caused_by: str | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "base_entity": self.base_entity, "origin": self.origin,
                "description": self.description, "position": self.position, "caused_by": self.caused_by}


@dataclass(frozen=True)
class ViewUpdate:
    """A view added during the shot (``ViewAdded``); for a clip frame, the registration it came with."""

    entity: str
    blob: str
    kind: str
    frame_index: int | None
    round: int | None
    position: int
    registration: Registration | None = None

    def label(self) -> str:
        """The entity, with the one it evolved from when it was registered here: ``Mia_red_scarf (from Mia)``."""
        base = self.registration.base_entity if self.registration is not None else None
        return f"{self.entity} (from {base})" if base else self.entity

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"entity": self.entity, "blob": self.blob, "kind": self.kind,
                               "frame_index": self.frame_index, "round": self.round, "position": self.position}
        if self.registration is not None:
            out.update(base_entity=self.registration.base_entity, description=self.registration.description)
        return out


@dataclass(frozen=True)
class Rejection:
    """An agent answer that failed validation (``AgentOutputRejected``; raw output cut at 2,000 chars)."""

    agent: str
    attempt: int
    errors: tuple[str, ...]
    raw_output: str
    position: int

    def to_json(self) -> dict[str, Any]:
        return {"agent": self.agent, "attempt": self.attempt, "errors": list(self.errors),
                "raw_output": self.raw_output, "position": self.position}


@dataclass(frozen=True)
class ShotAudit:
    """Everything the log holds about one shot's continuity decisions."""

    shot: int
    keyframe_prompt: str | None = None
    motion_prompt: str | None = None
    planned: Planned | None = None
    retrievals: tuple[Retrieval, ...] = ()
    rounds: tuple[KeyframeRound, ...] = ()
    selected: Selection | None = None
    motion: Change | None = None
    video: Clip | None = None
    memory_updates: tuple[ViewUpdate, ...] = ()
    next_prompt: NextPrompt | None = None
    rejected: tuple[Rejection, ...] = ()
    registrations: tuple[Registration, ...] = ()
    calls: int = 0
    model_seconds: float = 0.0
    completed: bool = False
    new_views: tuple[ViewUpdate, ...] = ()
    sampled_frames: tuple[int, ...] | None = field(default=None)  # None: the clip was not analyzed

    def selected_round(self) -> KeyframeRound | None:
        """The round the selected keyframe came from (None before a keyframe was selected)."""
        found = None
        for r in self.rounds:
            if self.selected is not None and r.round == self.selected.round:
                found = r
        return found

    def to_json(self) -> dict[str, Any]:
        def opt(x: Any) -> Any:
            return None if x is None else x.to_json()

        out: dict[str, Any] = {
            "shot": self.shot, "keyframe_prompt": self.keyframe_prompt, "motion_prompt": self.motion_prompt,
            "planned": opt(self.planned), "retrievals": [r.to_json() for r in self.retrievals],
            "rounds": [r.to_json() for r in self.rounds], "selected": opt(self.selected), "motion": opt(self.motion),
            "video": opt(self.video), "memory_updates": [u.to_json() for u in self.memory_updates],
            "next_prompt": opt(self.next_prompt), "rejected": [r.to_json() for r in self.rejected],
            "registrations": [r.to_json() for r in self.registrations], "calls": self.calls,
            "model_seconds": self.model_seconds, "completed": self.completed,
        }
        if self.new_views:
            out["new_views"] = [v.to_json() for v in self.new_views]
        if self.sampled_frames is not None:
            out["sampled_frames"] = list(self.sampled_frames)
        return out


__all__ = ["Change", "Clip", "KeyframeRound", "NextPrompt", "Planned", "Registration", "Rejection", "Retrieval",
           "Selection", "ShotAudit", "ViewUpdate"]

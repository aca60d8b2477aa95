"""The audit: every continuity decision of a branch, per shot, with its evidence.

A projection of the log (nothing here writes). For each shot: the retrieval evidence of each
Retrieve&Update (vector candidates and scores, the controller's choice, duplicates resolved, the
view chosen per entity), every keyframe round (image, decision, reasons, alignment report, refined
prompt), why the selected keyframe won, the motion prompt before and after, memory updates with
the frame they came from, the next shot's prompt before and after, and rejected agent answers.

Invariant: the audit is a fold of typed, upcast events (the ``AUDIT`` projection, the dispatch
style of ``views.projection``); ``Audit.to_json()`` is the stable ``codirector audit --json``
document, and the HTML report renders the same ``Audit`` object.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from codirector.engine.views.cost import CostReport
from codirector.engine.views.evidence import (
    Change,
    Clip,
    KeyframeRound,
    LostJob,
    NextPrompt,
    Planned,
    Registration,
    Rejection,
    Retrieval,
    Selection,
    ShotAudit,
    ViewUpdate,
)
from codirector.engine.views.memory import Entity, fold
from codirector.engine.views.projection import Projection
from codirector.engine.views.state import fold_run_state
from codirector.events import (
    MEMORY_EVENT_TYPES,
    AgentOutputRejected,
    EntityRegistered,
    KeyframeGenerated,
    KeyframeJudged,
    KeyframeSelected,
    MemoryRetrieved,
    ModelCalled,
    MotionPromptRefined,
    ProviderJobLost,
    RecordedEvent,
    ShotCompleted,
    ShotPlanned,
    ShotStarted,
    VideoAnalyzed,
    VideoGenerated,
    ViewAdded,
)

UNTRAINED_NOTE = "retrieval scores in this run come from an untrained embedder and carry no meaning"


@dataclass(frozen=True)
class Audit:
    """A branch's continuity decisions, shot by shot, and its memory at the end."""

    story: str
    branch: str
    title: str
    notes: tuple[str, ...]
    planned_shots: int
    completed: bool
    shots: tuple[ShotAudit, ...]
    memory: tuple[Entity, ...]
    html: str | None = None  # where the HTML report was written, when one was asked for
    cost: CostReport | None = None  # spend per shot (``views.cost``), at the prices in force when asked

    def shot(self, n: int) -> ShotAudit | None:
        return next((s for s in self.shots if s.shot == n), None)

    def to_json(self) -> dict[str, Any]:
        """The stable ``codirector audit --json`` document."""
        out: dict[str, Any] = {
            "story": self.story, "branch": self.branch, "title": self.title, "notes": list(self.notes),
            "planned_shots": self.planned_shots, "completed": self.completed,
            "shots": [s.to_json() for s in self.shots], "memory": [e.to_dict() for e in self.memory],
        }
        if self.cost is not None:
            out["cost"] = self.cost.to_json()
        if self.html is not None:
            out["html"] = self.html
        return out


# ---------------------------------------------------------------------- the fold


@dataclass
class ShotFold:
    """The fold's working state: each shot's evidence so far (``ShotAudit`` values are frozen, so a
    ``copy`` shares them safely: two branches can continue one fold of their shared prefix)."""

    types_by_id: dict[str, str] = field(default_factory=dict)
    shots: dict[int, ShotAudit] = field(default_factory=dict)
    meaningless: bool = False
    calls: dict[int, tuple[int, float]] = field(default_factory=dict)  # shot -> (model calls, seconds) so far
    lost: dict[str, tuple[LostJob, ...]] = field(default_factory=dict)  # request key -> its provider jobs lost
    clip_jobs: dict[int, tuple[str | None, str | None, tuple[LostJob, ...]]] = field(default_factory=dict)

    def edit(self, ev: RecordedEvent, change: Callable[[ShotAudit], ShotAudit]) -> None:
        if ev.shot is not None:
            self.shots[ev.shot] = change(self.shots.get(ev.shot) or ShotAudit(ev.shot))

    def copy(self) -> ShotFold:
        return ShotFold(dict(self.types_by_id), dict(self.shots), self.meaningless, dict(self.calls), dict(self.lost),
                        dict(self.clip_jobs))

    def records(self) -> tuple[ShotAudit, ...]:
        """Every shot's audit so far, by shot number (each clip-frame view joined to its registration,
        its model calls counted)."""
        return tuple(_with_registrations(self._counted(self.shots[k])) for k in sorted(self.shots))

    def _counted(self, s: ShotAudit) -> ShotAudit:
        if s.shot not in self.calls:
            return s
        calls, seconds = self.calls[s.shot]
        return replace(s, calls=calls, model_seconds=seconds)


AUDIT: Projection[ShotFold] = Projection("audit")


@AUDIT.on(ShotPlanned)
def _planned(f: ShotFold, e: ShotPlanned, ev: RecordedEvent) -> None:
    planned = Planned(e.keyframe_prompt, e.motion_prompt, tuple(e.uses), e.group)
    f.edit(ev, lambda s: replace(s, planned=planned))


@AUDIT.on(ShotStarted)
def _started(f: ShotFold, e: ShotStarted, ev: RecordedEvent) -> None:
    f.edit(ev, lambda s: replace(s, keyframe_prompt=e.keyframe_prompt, motion_prompt=e.motion_prompt))


@AUDIT.on(MemoryRetrieved)
def _retrieved(f: ShotFold, e: MemoryRetrieved, ev: RecordedEvent) -> None:
    if ev.shot is None:
        return
    f.meaningless |= not e.scores_meaningful
    r = Retrieval(e.round, e.query, ev.position, e.memory_disabled, tuple(e.candidates), tuple(e.retrieved_existing),
                  tuple(e.new_entities), tuple(e.duplicates_resolved), tuple(e.references), e.scores_meaningful)
    f.edit(ev, lambda s: replace(s, retrievals=(*s.retrievals, r)))


@AUDIT.on(KeyframeGenerated)
def _generated(f: ShotFold, e: KeyframeGenerated, ev: RecordedEvent) -> None:
    r = KeyframeRound(e.round, e.prompt, e.blob, e.seed, tuple(e.reference_blobs), e.backend, e.model)
    f.edit(ev, lambda s: replace(s, rounds=(*s.rounds, r)))


@AUDIT.on(KeyframeJudged)
def _judged(f: ShotFold, e: KeyframeJudged, ev: RecordedEvent) -> None:
    def judge(r: KeyframeRound) -> KeyframeRound:
        if r.round != e.round:
            return r
        return replace(r, decision=e.decision, reasons=tuple(e.reasons), alignment_report=e.alignment_report,
                       refined_keyframe_prompt=e.refined_keyframe_prompt)

    f.edit(ev, lambda s: replace(s, rounds=tuple(map(judge, s.rounds))))


@AUDIT.on(KeyframeSelected)
def _selected(f: ShotFold, e: KeyframeSelected, ev: RecordedEvent) -> None:
    f.edit(ev, lambda s: replace(s, selected=Selection(e.round, e.blob, e.how, e.why)))


@AUDIT.on(MotionPromptRefined)
def _motion(f: ShotFold, e: MotionPromptRefined, ev: RecordedEvent) -> None:
    f.edit(ev, lambda s: replace(s, motion=Change(e.original, e.refined)))


@AUDIT.on(VideoGenerated)
def _video(f: ShotFold, e: VideoGenerated, ev: RecordedEvent) -> None:
    server, job_id, lost = f.clip_jobs.get(ev.shot or 0, (None, None, ()))
    clip = Clip(e.blob, e.frames, e.fps, e.backend, e.model, e.motion_prompt, server, job_id, lost,
                tuple((r.entity, r.blob) for r in e.references))
    f.edit(ev, lambda s: replace(s, video=clip))


@AUDIT.on(VideoAnalyzed)
def _analyzed(f: ShotFold, e: VideoAnalyzed, ev: RecordedEvent) -> None:
    nxt = NextPrompt(e.next_shot, e.next_prompt_before, e.next_prompt_after)
    f.edit(ev, lambda s: replace(s, next_prompt=nxt, sampled_frames=tuple(e.sampled_frames)))


@AUDIT.on(EntityRegistered)
def _registered(f: ShotFold, e: EntityRegistered, ev: RecordedEvent) -> None:
    reg = Registration(e.name, e.base_entity, e.origin, e.description, ev.position,
                       f.types_by_id.get(ev.causation_id or ""))
    f.edit(ev, lambda s: replace(s, registrations=(*s.registrations, reg)))


@AUDIT.on(ViewAdded)
def _view(f: ShotFold, e: ViewAdded, ev: RecordedEvent) -> None:
    src = e.source
    update = ViewUpdate(e.entity, e.blob, src.kind, src.frame_index, src.round, ev.position)
    if src.kind == "video_frame":
        f.edit(ev, lambda s: replace(s, memory_updates=(*s.memory_updates, update)))
    else:
        f.edit(ev, lambda s: replace(s, new_views=(*s.new_views, update)))


@AUDIT.on(AgentOutputRejected)
def _rejected(f: ShotFold, e: AgentOutputRejected, ev: RecordedEvent) -> None:
    rej = Rejection(e.agent, e.attempt, tuple(e.errors), e.raw_output[:2000], ev.position)
    f.edit(ev, lambda s: replace(s, rejected=(*s.rejected, rej)))


@AUDIT.on(ModelCalled)
def _called(f: ShotFold, e: ModelCalled, ev: RecordedEvent) -> None:
    if ev.shot is not None:  # counted beside the record (the most frequent event: no record rebuilt per call)
        calls, seconds = f.calls.get(ev.shot, (0, 0.0))
        f.calls[ev.shot] = (calls + 1, round(seconds + float(e.duration_ms) / 1000, 3))
        job = e.response.get("job") if e.kind == "video" and isinstance(e.response, dict) else None
        if isinstance(job, dict):  # the provider job the clip came from (a pool names its server)
            f.clip_jobs[ev.shot] = (job.get("server"), job.get("job_id"), f.lost.get(e.request_key, ()))


@AUDIT.on(ProviderJobLost)
def _lost(f: ShotFold, e: ProviderJobLost, ev: RecordedEvent) -> None:
    f.lost[e.request_key] = (*f.lost.get(e.request_key, ()), LostJob(e.job_id, e.server, e.reason))


@AUDIT.on(ShotCompleted)
def _completed(f: ShotFold, e: ShotCompleted, ev: RecordedEvent) -> None:
    f.edit(ev, lambda s: replace(s, completed=True))


def _with_registrations(s: ShotAudit) -> ShotAudit:
    """Each view added in the shot (a clip frame; the selected keyframe, for a state the shot first shows)
    joined to the registration it came with (the entity it evolved into)."""
    updates, views = list(s.memory_updates), list(s.new_views)
    for reg in s.registrations:
        updates = [replace(u, registration=reg) if u.entity == reg.name else u for u in updates]
        views = [replace(v, registration=reg) if v.entity == reg.name else v for v in views]
    return replace(s, memory_updates=tuple(updates), new_views=tuple(views))


def fold_shots(events: Iterable[RecordedEvent], start: ShotFold | None = None, *,
               shots: Collection[int] | None = None, types: Collection[str] | None = None) -> ShotFold:
    """The shots' evidence after ``events``, continuing from ``start`` (which is not changed) if given.

    ``shots``: fold only these shots' events (a page of them). Every handler edits the record of its
    event's own shot, so each of those records equals the whole fold's; the untrained-scores flag is
    still read from every retrieval. ``types``: apply only these events' handlers (each handler sets
    its own fields, so the fields those handlers set equal the whole fold's); every shot an event
    names still gets its record."""
    events = list(events)
    f = start.copy() if start is not None else ShotFold()
    f.types_by_id.update((e.id, e.type) for e in events)
    for ev in events:
        if shots is not None and ev.shot not in shots:
            if ev.type == MemoryRetrieved.type and ev.shot is not None and isinstance(ev.event, MemoryRetrieved):
                f.meaningless |= not ev.event.scores_meaningful
            continue
        if ev.shot is not None and ev.shot not in f.shots:
            f.shots[ev.shot] = ShotAudit(ev.shot)  # any event of a shot gives it a record
        if types is None or ev.type in types:
            AUDIT.apply(f, ev)
    return f


def audit_events(events: Iterable[RecordedEvent], *, story_id: str, branch: str,
                 shots: Collection[int] | None = None) -> Audit:
    """The audit of a branch's events (its lineage included); ``shots``: only these shots' records (the
    rest of the audit, notes and memory included, is still the whole branch's)."""
    events = list(events)
    state = fold_run_state(events)
    f = fold_shots(events, shots=shots)
    memory = fold(e for e in events if e.type in MEMORY_EVENT_TYPES)
    return Audit(
        story=story_id, branch=branch, title=state.title,
        notes=((UNTRAINED_NOTE,) if f.meaningless else ()) + tuple(state.spec.plan_notes),  # derived plan
        planned_shots=state.num_shots, completed=state.story_completed,
        shots=f.records(), memory=tuple(memory),
    )


__all__ = ["AUDIT", "Audit", "ShotAudit", "ShotFold", "audit_events", "fold_shots"]

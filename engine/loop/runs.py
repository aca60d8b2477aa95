"""Starting, continuing and branching runs: the service layer between the CLI/API and the loop.

A run of a branch is a deterministic re-execution from the branch's start (the story's
``StoryCreated``, or the branch's creation events) against the log:
- ``start_run`` records ``StoryCreated`` (the normalised story and settings, never secrets) and
  executes ``main``;
- ``execute`` (what ``resume`` and ``run --branch`` call) rebuilds the backends from the recorded
  settings, matches what the log already holds and continues from where it stopped, calling a
  backend only for requests the recording cannot answer;
- a run records the release and the loop patches it runs with before it works, and again when a
  later release continues it (``RunSegmentStarted``); a resumed run keeps the patches it started
  with (``engine.loop.patches``), so a run begun on one release resumes on the next;
- both hold the branch's lease while they work (``Workspace.lease``): a second runner of the same
  branch, in any process on any machine sharing the database, gets ``BranchBusy`` (or waits);
- ``create_branch`` forks just before a shot started, recording overrides as events; nothing is
  copied and no call is repeated for the shared shots.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from codirector.engine.loop.algorithm import Loop
from codirector.engine.loop.context import Progress, QuietProgress, RunContext, RunSettings
from codirector.engine.loop.derived_plan import derive_plan, needs_derived_plan
from codirector.engine.loop.overrides import parse_overrides
from codirector.engine.loop.patches import creation_fields, run_patches, segment_to_record
from codirector.engine.loop.rerun import FORGOTTEN_PREFIX, NewStory, continuation, story_to_create
from codirector.engine.loop.story import default_story_id, read_story
from codirector.engine.recording.budget import Budget
from codirector.engine.recording.recorder import CallRecorder, CallStats, recorded_answers
from codirector.engine.recording.writer import RunWriter
from codirector.engine.views.memory import fold
from codirector.engine.views.state import RunState, fold_run_state
from codirector.engine.workspace import Workspace
from codirector.errors import AlreadyExists, InvalidArgument, RunStateError, StoryNotFound
from codirector.events import MEMORY_EVENT_TYPES, BranchCreated, RecordedEvent, ShotPlanRevised, StoryCreated
from codirector.generators.base import Backends
from codirector.generators.build import build_backends
from codirector.generators.preflight import require_ready
from codirector.generators.profiles import RunConfig, resolve
from codirector.store.event_store import MAIN
from codirector.store.leases import BranchLease


@dataclass
class RunResult:
    """What a run did: events written and matched, model calls by source, notes for the user."""

    story_id: str
    branch: str
    completed: bool
    written: int
    matched: int
    calls: CallStats
    head: int
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"story": self.story_id, "branch": self.branch, "completed": self.completed,
                "events_written": self.written, "events_matched": self.matched, "head": self.head,
                "model_calls": {"live": self.calls.live, "reused": self.calls.reused,
                                "matched_from_log": self.calls.matched, "replayed": self.calls.replayed,
                                "by_kind": self.calls.by_kind},
                "notes": self.notes, "cost": self.calls.cost_json()}


@dataclass
class NewBranch:
    """A branch just forked (``codirector branch``): where it forks, from which shot, with which overrides."""

    story_id: str
    branch: str
    parent: str
    fork_position: int
    from_shot: int
    overrides: dict[str, str]
    head: int

    def to_json(self) -> dict[str, Any]:
        return {"story": self.story_id, "branch": self.branch, "parent": self.parent,
                "fork_position": self.fork_position, "from_shot": self.from_shot, "overrides": dict(self.overrides),
                "head": self.head}


SCRATCH_PREFIX = "replay~"


def is_scratch(branch: str) -> bool:
    """Scratch branches hold replays (or a forgotten story's mark); listings hide them unless asked."""
    return branch.startswith((SCRATCH_PREFIX, FORGOTTEN_PREFIX))


def require_new_story(ws: Workspace, story_id: str) -> None:
    """Raise ``AlreadyExists`` if ``story_id`` is taken: checked before any blob or event is written."""
    if story_id in {s.id for s in ws.store.stories()}:
        raise AlreadyExists(f"a story with id {story_id!r} already exists",
                            hint=f"continue it with `codirector resume {story_id}`, or start another with "
                                 "--story-id NEW_ID")


def is_brief(ws: Workspace, story_id: str) -> bool:
    """Whether ``story_id`` was created from an advertising brief (its main branch is the director's)."""
    first = ws.store.read(story_id, MAIN, limit=1)
    return bool(first) and isinstance(created := first[0].event, StoryCreated) and created.spec.kind == "brief"


def refuse_brief_main(ws: Workspace, story_id: str, branch: str, *, action: str) -> None:
    """Raise ``RunStateError`` when ``branch`` is a brief's main branch, which holds the director's
    decisions and no video: ``action`` (run, replay, evaluate) applies to its pull branches instead."""
    if branch != MAIN or not is_brief(ws, story_id):
        return
    pulls = [b.name for b in ws.store.story(story_id).branches if b.name != MAIN and not is_scratch(b.name)]
    listed = ", ".join(f"--branch {p}" for p in pulls[:4]) if pulls else "(none yet; run `codirector direct`)"
    raise RunStateError(
        f"{story_id!r} is an advertising brief: its main branch holds the director's decisions, not a run",
        hint=f"{action} one of its branches: {listed}",
    )


def prepare_story(
    story_file: str | os.PathLike[str], *, profile: str | None = None, config: str | os.PathLike[str] | None = None,
    seed: int | None = None, max_rounds: int | None = None, story_id: str | None = None,
    ablations: dict[str, bool] | None = None, story_format: str | None = None,
) -> tuple[str, RunConfig, NewStory]:
    """Read a story file (any known format) and resolve its config: the id, the config, and the
    ``StoryCreated`` a run would record. A story without a plan run by the plan-driven preview VLM gets
    one derived from its text (``engine.loop.derived_plan``). Nothing is written."""
    story = read_story(story_file, story_format)
    spec = story.spec
    run_overrides: dict[str, Any] = {k: v for k, v in (ablations or {}).items() if v}
    if max_rounds is not None:
        if max_rounds < 1:
            raise InvalidArgument(f"--max-rounds must be at least 1, got {max_rounds}")
        run_overrides["max_rounds"] = max_rounds
    cfg = resolve(profile, config, overrides={"run": run_overrides})
    RunSettings.from_table(cfg.run)  # a bad [run] value is refused before anything is recorded
    plan_notes: list[str] = []
    if needs_derived_plan(spec, cfg.vlm.backend):
        spec, plan_notes = derive_plan(spec, str(story.path))
    sid = story_id or default_story_id(story_file, spec)
    return sid, cfg, story_to_create(story, spec, plan_notes=plan_notes, seed=seed, settings=cfg.to_settings())


def record_story(ws: Workspace, story_id: str, new: NewStory) -> None:
    """Write the story's reference images, then its ``StoryCreated`` (blobs before the event naming them)."""
    for data in new.images:
        ws.blobs.put(data)
    ws.store.create_story(story_id, title=new.event.title, events=[new.event.at()])


def start_run(
    ws: Workspace, story_file: str | os.PathLike[str], *, profile: str | None = None,
    config: str | os.PathLike[str] | None = None,
    seed: int | None = None, max_rounds: int | None = None, story_id: str | None = None,
    ablations: dict[str, bool] | None = None, backends: Backends | None = None,
    progress: Progress | None = None, story_format: str | None = None, wait: float | None = None,
    budget: Budget | None = None,
) -> RunResult:
    """Validate the story (any known format), record ``StoryCreated``, and run ``main`` to the end.

    A story without a plan run by the plan-driven preview VLM gets one derived from its text
    (``engine.loop.derived_plan``), recorded in the spec so resume and replay use the same plan.
    A new story is created only after the pre-flight passed (``generators.preflight``). An existing
    id with the same content is continued; with other content it is refused (``engine.loop.rerun``).
    """
    sid, cfg, new = prepare_story(story_file, profile=profile, config=config, seed=seed, max_rounds=max_rounds,
                                  story_id=story_id, ablations=ablations, story_format=story_format)
    if backends is None and sid not in ws.story_ids():
        require_ready(cfg)  # pre-flight: no story is created unless every backend can run here
    with ws.lease(sid, MAIN, wait=wait):  # taken before the story exists: a second `run FILE` gets BranchBusy
        continuing = continuation(ws, sid, new)  # None: a new id; AlreadyExists when the content differs
        if continuing is None:
            record_story(ws, sid, new)
        result = execute(ws, sid, MAIN, backends=backends, progress=progress, budget=budget)
        if continuing:
            result.notes.insert(0, continuing)
        return result


def branch_start(events: list[RecordedEvent], branch: str) -> tuple[int, RecordedEvent]:
    """Where ``branch``'s run starts in its log ``events`` (the last position of its creation) and the event that
    created it: main's ``StoryCreated``; a fork's ``BranchCreated`` with the events it caused right after it
    (prompt overrides; or a whole plan, for a branch that brings its own shots)."""
    if branch == MAIN:
        return events[0].position, events[0]
    own = [e for e in events if e.branch == branch]
    created = next((e for e in own if e.type == "BranchCreated"), None)
    if created is None:
        raise RunStateError(f"branch {branch!r} has no BranchCreated event")
    end = created.position
    for e in own:
        if e.position == end + 1 and e.causation_id == created.id:
            end = e.position
    return end, created


def execute(
    ws: Workspace, story_id: str, branch: str = MAIN, *, backends: Backends | None = None,
    progress: Progress | None = None, recording: list[RecordedEvent] | None = None,
    target_branch: str | None = None, stats: CallStats | None = None, wait: float | None = None,
    budget: Budget | None = None, patches: frozenset[str] | None = None,
) -> RunResult:
    """Run (or continue) a branch from its start, holding the lease of the branch it writes;
    ``recording`` + ``target_branch`` is a replay, run with the loop ``patches`` of the run it replays.
    ``wait``: see ``Workspace.lease``. ``budget``: the spending cap and prices (a replay makes no call
    and takes none)."""
    with ws.lease(story_id, target_branch or branch, wait=wait) as lease:
        return _execute(ws, story_id, branch, backends=backends, progress=progress, recording=recording,
                        target_branch=target_branch, stats=stats, budget=budget, lease=lease, patches=patches)


def _execute(
    ws: Workspace, story_id: str, branch: str, *, backends: Backends | None, progress: Progress | None,
    recording: list[RecordedEvent] | None, target_branch: str | None, stats: CallStats | None,
    budget: Budget | None = None, lease: BranchLease | None = None, patches: frozenset[str] | None = None,
) -> RunResult:
    store = ws.store
    info = store.branch(story_id, branch)
    events = store.read(story_id, branch)
    if not events or events[0].type != "StoryCreated":
        raise StoryNotFound(f"{story_id!r} has no StoryCreated event", hint="was it created by `codirector run`?")
    start, created = branch_start(events, branch)
    prefix = [e for e in events if e.position <= start]
    state = fold_run_state(prefix)
    full = fold_run_state(events)
    if full.story_completed and recording is None:
        return RunResult(story_id, branch, True, 0, 0, CallStats(), info.head_position,
                         notes=[f"{story_id}/{branch} is already complete"])
    refuse_brief_main(ws, story_id, branch, action="run")
    config = RunConfig.from_settings(state.settings)
    notes: list[str] = list(state.spec.plan_notes)  # e.g. "plan derived from the text"
    if recording is None and backends is None:
        backends = build_backends(config)
    if backends is not None:
        notes.extend(backends.notes)
    write_to = target_branch or branch
    if recording is None:
        run = [e for e in events if e.position > start]
        patches = run_patches(run, created=created, where=f"{story_id}/{branch}")
        segment = segment_to_record(run, patches, created=created)
        writer = RunWriter(store, story_id, branch, head=info.head_position, existing=run, lease=lease)
    else:  # a replay: its marks are the original's, copied where they stand there
        segment = None
        writer = RunWriter(store, story_id, write_to, head=store.branch(story_id, write_to).head_position,
                           lease=lease, mirror=[e for e in events if e.position > start])
    known = recorded_answers(prefix)
    # In a replay the backends (if any were given) are never called: the recording answers or it diverges.
    recorder = CallRecorder(writer, ws.blobs, backends, known=known, recording=recording,
                            budget=None if recording is not None else budget)
    if stats is not None:
        recorder.stats = stats  # the caller sees the counts even if the run stops with an error
    if progress is not None:
        recorder.on_call = lambda kind, what: progress.step(f"{what}: calling the {kind} model")
    index = ws.index(story_id)
    ctx = RunContext(story_id=story_id, branch=write_to, state=state,
                     settings=RunSettings.from_table(config.run), writer=writer, recorder=recorder,
                     blobs=ws.blobs, index=index, memory=fold(e for e in prefix if e.type in MEMORY_EVENT_TYPES),
                     progress=progress or QuietProgress(),
                     patches=frozenset() if patches is None else patches)
    if segment is not None:
        writer.mark(segment.at())
    loop = Loop(ctx)
    begin = getattr(ctx.progress, "begin", None)  # optional: lets a progress display label each branch
    if begin is not None:
        begin(story_id, write_to, state.num_shots)
    try:
        if branch == MAIN:
            loop.plan_story()
            first = 1
        else:
            assert state.branch_created is not None
            if state.branch_created.from_shot is None:
                raise RunStateError(f"{story_id}/{branch} records no shot to run from (BranchCreated.from_shot)")
            first = state.branch_created.from_shot
        loop.run_shots(first)
    finally:
        index.save()
    if backends is not None:  # notes a backend made while working (e.g. "references ignored")
        for b in (backends.vlm, backends.image, backends.video, backends.embedder):
            notes.extend(n for n in getattr(b, "notes", []) if n not in notes)
    notes.extend(n for n in recorder.budget.notes if n not in notes)
    return RunResult(story_id, write_to, True, writer.written, writer.matched, recorder.stats, writer.position,
                     notes=notes)


def create_branch(
    ws: Workspace, story_id: str, *, from_shot: int, name: str, parent: str = MAIN,
    overrides: dict[str, str] | None = None,
) -> NewBranch:
    """Fork ``name`` from ``parent`` just before ``from_shot`` started; overrides become events.

    ``overrides`` maps ``shots.N.keyframe`` / ``shots.N.motion`` (new text) or ``shots.N.uses`` /
    ``shots.N.evolves`` (YAML lists, as in a story file), N >= from_shot, checked as a story file is
    (``engine.loop.overrides``) before anything is written. A new keyframe prompt keeps the loop's
    continuity refinement (``ShotPlanRevised.keeps_continuity``, ``engine.views.state``).
    """
    store = ws.store
    state: RunState = fold_run_state(store.read(story_id, parent))
    if from_shot < 1 or from_shot > state.num_shots:
        raise InvalidArgument(f"--from-shot must be between 1 and {state.num_shots} for {story_id!r}, got {from_shot}")
    fork = state.fork_position_for(from_shot)
    parsed = parse_overrides(state, dict(overrides or {}), from_shot=from_shot)
    created = BranchCreated(name=name, parent=parent, fork_position=fork, from_shot=from_shot,
                            overrides=dict(overrides or {}), **creation_fields()).at(from_shot)
    drafts = [created]
    for o in parsed:
        current: dict[str, Callable[[int], str | list[Any]]] = {
            "keyframe": state.keyframe_prompt, "motion": state.motion_prompt, "uses": state.uses,
            "evolves": lambda n: [e.model_dump() for e in state.evolves(n)]}
        before = current[o.field](o.shot)
        drafts.append(ShotPlanRevised(field=o.field, before=before, after=o.value, reason="branch override",
                                      keeps_continuity=o.field == "keyframe").at(o.shot, cause=created.id))
    info = store.create_branch(story_id, name, parent=parent, at_position=fork, events=drafts)
    return NewBranch(story_id, name, parent, fork, from_shot, dict(overrides or {}), info.head_position)

"""Starting, continuing and branching runs: the service layer between the CLI/API and the loop.

A run of a branch is a deterministic re-execution from the branch's start (the story's
``StoryCreated``, or the branch's creation events) against the log:
- ``start_run`` records ``StoryCreated`` (the normalised story and settings, never secrets) and
  executes ``main``;
- ``execute`` (what ``resume`` and ``run --branch`` call) rebuilds the backends from the recorded
  settings, matches what the log already holds and continues from where it stopped, calling a
  backend only for requests the recording cannot answer;
- ``create_branch`` forks just before a shot started, recording overrides as events; nothing is
  copied and no call is repeated for the shared shots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codirector.engine.loop.algorithm import Loop
from codirector.engine.loop.context import Progress, QuietProgress, RunContext, RunSettings
from codirector.engine.loop.story import default_story_id, load_story
from codirector.engine.recording.recorder import CallRecorder, CallStats
from codirector.engine.recording.writer import RunWriter
from codirector.engine.views.memory import fold
from codirector.engine.views.state import RunState, fold_run_state
from codirector.engine.workspace import Workspace
from codirector.errors import RunStateError, StoryNotFound, did_you_mean
from codirector.events import MEMORY_EVENT_TYPES, BranchCreated, RecordedEvent, ShotPlanRevised, StoryCreated
from codirector.generators.base import Backends
from codirector.generators.profiles import RunConfig, build_backends, resolve
from codirector.store.event_store import MAIN


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
                "notes": self.notes}


def start_run(
    ws: Workspace, story_file: str | Path, *, profile: str | None = None, config: str | Path | None = None,
    seed: int | None = None, max_rounds: int | None = None, story_id: str | None = None,
    ablations: dict[str, bool] | None = None, backends: Backends | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Validate the story, record ``StoryCreated``, and run ``main`` to the end."""
    spec, references = load_story(story_file)
    run_overrides: dict[str, Any] = {k: v for k, v in (ablations or {}).items() if v}
    if max_rounds is not None:
        if max_rounds < 1:
            raise RunStateError(f"--max-rounds must be at least 1, got {max_rounds}")
        run_overrides["max_rounds"] = max_rounds
    cfg = resolve(profile, config, overrides={"run": run_overrides})
    sid = story_id or default_story_id(story_file, spec)
    existing = {s.id for s in ws.store.stories()}
    if sid in existing:
        raise RunStateError(
            f"a story with id {sid!r} already exists",
            hint=f"continue it with `codirector resume {sid}`, or start another with --story-id NEW_ID",
        )
    spec_data = spec.model_dump(mode="json", exclude_none=True)
    for member in spec_data.get("cast", []):
        if member["name"] in references:
            member["reference_blob"] = ws.blobs.put(references[member["name"]])  # blobs before events
    story_seed = spec.seed if seed is None else seed
    settings = cfg.to_settings()
    ws.store.create_story(sid, title=spec.title, events=[
        StoryCreated(title=spec.title, seed=story_seed, spec=spec_data, settings=settings).at()
    ])
    return execute(ws, sid, MAIN, backends=backends, progress=progress)


def _creation_end(own: list[RecordedEvent]) -> int:
    """The last position of a branch's creation: BranchCreated and the events it caused right after it
    (prompt overrides; or a whole plan, for a branch that brings its own shots)."""
    created = next((e for e in own if e.type == "BranchCreated"), None)
    if created is None:
        raise RunStateError(f"branch {own[0].branch if own else '?'!r} has no BranchCreated event")
    end = created.position
    for e in own:
        if e.position == end + 1 and e.causation_id == created.id:
            end = e.position
    return end


def execute(
    ws: Workspace, story_id: str, branch: str = MAIN, *, backends: Backends | None = None,
    progress: Progress | None = None, recording: list[RecordedEvent] | None = None,
    target_branch: str | None = None, stats: CallStats | None = None,
) -> RunResult:
    """Run (or continue) a branch from its start; ``recording`` + ``target_branch`` is a replay."""
    store = ws.store
    info = store.branch(story_id, branch)
    events = store.read(story_id, branch)
    if not events or events[0].type != "StoryCreated":
        raise StoryNotFound(f"{story_id!r} has no StoryCreated event", hint="was it created by `codirector run`?")
    if branch == MAIN:
        start = events[0].position
    else:
        start = _creation_end([e for e in events if e.branch == branch])
    prefix = [e for e in events if e.position <= start]
    state = fold_run_state(prefix)
    full = fold_run_state(events)
    if full.story_completed and recording is None:
        return RunResult(story_id, branch, True, 0, 0, CallStats(), info.head_position,
                         notes=[f"{story_id}/{branch} is already complete"])
    if branch == MAIN and state.spec.get("kind") == "brief":
        raise RunStateError(f"{story_id!r} is an advertising brief: its main branch holds the director's decisions",
                            hint="each explored direction is a branch: run, resume or replay those branches")
    config = RunConfig.from_settings(state.settings)
    notes: list[str] = []
    if recording is None and backends is None:
        backends = build_backends(config)
    if backends is not None:
        notes.extend(backends.notes)
    write_to = target_branch or branch
    if recording is None:
        writer = RunWriter(store, story_id, branch, head=info.head_position,
                           existing=[e for e in events if e.position > start])
    else:
        writer = RunWriter(store, story_id, write_to, head=store.branch(story_id, write_to).head_position)
    known = {e.payload["request_key"]: e for e in prefix if e.type == "ModelCalled" and e.payload.get("error") is None}
    # In a replay the backends (if any were given) are never called: the recording answers or it diverges.
    recorder = CallRecorder(writer, ws.blobs, backends, known=known, recording=recording)
    if stats is not None:
        recorder.stats = stats  # the caller sees the counts even if the run stops with an error
    if progress is not None:
        recorder.on_call = lambda kind, what: progress.step(f"{what}: calling the {kind} model")
    index = ws.index(story_id)
    ctx = RunContext(story_id=story_id, branch=write_to, state=state,
                     settings=RunSettings.from_table(config.run), writer=writer, recorder=recorder,
                     blobs=ws.blobs, index=index, memory=fold(e for e in prefix if e.type in MEMORY_EVENT_TYPES),
                     progress=progress or QuietProgress())
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
            first = int(state.branch_created["from_shot"])
        loop.run_shots(first)
    finally:
        index.save()
    if backends is not None:  # notes a backend made while working (e.g. "references ignored")
        for b in (backends.vlm, backends.image, backends.video, backends.embedder):
            notes.extend(n for n in getattr(b, "notes", []) if n not in notes)
    return RunResult(story_id, write_to, True, writer.written, writer.matched, recorder.stats, writer.position,
                     notes=notes)


def create_branch(
    ws: Workspace, story_id: str, *, from_shot: int, name: str, parent: str = MAIN,
    overrides: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Fork ``name`` from ``parent`` just before ``from_shot`` started; overrides become events.

    ``overrides`` maps ``shots.N.keyframe`` / ``shots.N.motion`` (N >= from_shot) to new text.
    """
    store = ws.store
    state: RunState = fold_run_state(store.read(story_id, parent))
    if from_shot < 1 or from_shot > state.num_shots:
        raise RunStateError(f"--from-shot must be between 1 and {state.num_shots} for {story_id!r}, got {from_shot}")
    fork = state.fork_position_for(from_shot)
    parsed: list[tuple[int, str, str]] = []
    for key, value in (overrides or {}).items():
        parts = key.split(".")
        if len(parts) != 3 or parts[0] != "shots" or not parts[1].isdigit() or parts[2] not in ("keyframe", "motion"):
            raise RunStateError(f"cannot set {key!r}", hint="use shots.N.keyframe=TEXT or shots.N.motion=TEXT")
        shot = int(parts[1])
        if shot < from_shot or shot > state.num_shots:
            raise RunStateError(f"cannot set {key!r}: only shots {from_shot}..{state.num_shots} run on the new branch",
                                hint=did_you_mean(key, [f"shots.{from_shot}.keyframe"], "key"))
        if not value.strip():
            raise RunStateError(f"{key} must not be empty")
        parsed.append((shot, parts[2], value))
    created = BranchCreated(name=name, parent=parent, fork_position=fork, from_shot=from_shot,
                            overrides=dict(overrides or {})).at(from_shot)
    drafts = [created]
    for shot, fld, value in parsed:
        before = state.keyframe_prompt(shot) if fld == "keyframe" else state.motion_prompt(shot)
        drafts.append(ShotPlanRevised(field=fld, before=before, after=value, reason="branch override")
                      .at(shot, cause=created.id))
    info = store.create_branch(story_id, name, parent=parent, at_position=fork, events=drafts)
    return {"story": story_id, "branch": name, "parent": parent, "fork_position": fork, "from_shot": from_shot,
            "overrides": dict(overrides or {}), "head": info.head_position}

"""The Co-Director: a bandit over creative directions, one story branch per pull, rewarded by a judge.

``direct(ws, brief_file)`` turns an advertising brief into a story whose ``main`` branch holds
only the director's own record: the warm-start recommender's call, then per pull
``DirectionChosen``, the creative director's call, the ad judge's calls and ``RewardObserved``,
and finally ``BranchRanked``. Each pull is a branch ``pull-<i>-<strategy>-<mode>-<aesthetic>``
forked from main's head, created atomically with its own plan (``BranchCreated`` with the
storyline's cast, the product's registration when the brief gives a reference image, and one
``ShotPlanned`` per shot, all caused by the ``BranchCreated``), then run by the ordinary loop
(``engine.runs.execute``), so every explored direction can be queried, replayed and audited.

Invariants:
- The bandit's state is ``bandit.fold`` of main's events; nothing else is kept between pulls.
  ``resume_direction`` therefore continues an interrupted director exactly where the log says:
  a chosen but unrewarded pull is finished (its storyline call reused from the recording, its
  branch created if missing, its run resumed, its judge calls reused), never chosen again.
- Every model call is recorded before it is used (the director's calls on main, the loop's on
  the pull branch, the product's embeddings on the pull branch before the registration they feed).
- Style instructions never name the product, brand or audience (``director_agents``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from codirector.engine.agents.base import AgentContext
from codirector.engine.director import bandit
from codirector.engine.director.agents import StorylineOutput, direction_card, recommend_direction, write_storyline
from codirector.engine.director.briefs import default_brief_id, load_brief
from codirector.engine.director.summary import DirectorResult, PullSummary, RankedBranch, pull_summaries
from codirector.engine.evaluation.judges import ad_efficacy, ad_execution, clips_of, story_frames
from codirector.engine.loop.context import Progress, QuietProgress, RunSettings
from codirector.engine.loop.patches import creation_fields
from codirector.engine.loop.runs import execute, is_brief, is_scratch, require_new_story
from codirector.engine.loop.vectors import embedding_ref
from codirector.engine.recording.budget import Budget
from codirector.engine.recording.recorder import CallRecorder, CallStats, recorded_answers
from codirector.engine.recording.writer import RunWriter
from codirector.engine.views.state import fold_run_state
from codirector.engine.workspace import Workspace
from codirector.errors import InvalidArgument, RunStateError, StoryNotFound
from codirector.events import (
    BranchCreated,
    BranchRanked,
    DirectionChosen,
    Draft,
    EntityRegistered,
    RecordedEvent,
    RewardObserved,
    ShotPlanned,
    StoryCreated,
    ViewAdded,
    ViewSource,
    seal,
)
from codirector.events.specs import BranchPlan, BriefRecord, CastRecord, DirectorSettings
from codirector.generators.base import Backends, ImageInput
from codirector.generators.build import build_backends
from codirector.generators.profiles import RunConfig, resolve
from codirector.store.event_store import MAIN, EventStore

if TYPE_CHECKING:
    from codirector.engine.jobs import Pool

MAX_ITERATIONS = 36
AD_JUDGE_FRAMES = 24
PLAN_DERIVED_SCORES = ("judge scores here are derived from the brief's plan by the preview profile's rules, not from "
                       "looking at the videos: they show the bandit at work, not the ads' quality (real judges: "
                       "--profile openai or local)")


def branch_name(iteration: int, arms: dict[str, str]) -> str:
    """The branch of a pull: ``pull-<i>-<strategy>-<mode>-<aesthetic>``."""
    return f"pull-{iteration}-{arms['strategy']}-{arms['narrative_mode']}-{arms['aesthetic']}"


def create_brief(
    ws: Workspace, brief_file: str | os.PathLike[str], *, iterations: int = 4, profile: str | None = None,
    config: str | os.PathLike[str] | None = None, c: float = bandit.DEFAULT_C, seed: int | None = None,
    story_id: str | None = None, policy: str = "ucb", epsilon: float = bandit.DEFAULT_EPSILON, parallel: int = 1,
) -> str:
    """Record a brief's ``StoryCreated`` (its product image first) with the director's settings; its id."""
    spec, image = load_brief(brief_file)
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise InvalidArgument(f"--iterations must be between 1 and {MAX_ITERATIONS}, got {iterations}")
    if not 1 <= parallel <= iterations:
        raise InvalidArgument(f"--parallel must be between 1 and --iterations ({iterations}), got {parallel}")
    bandit.check_policy(c=c, policy=policy, epsilon=epsilon)
    cfg = resolve(profile, config)
    sid = story_id or default_brief_id(brief_file, spec)
    require_new_story(ws, sid)
    blob = ws.blobs.put(image) if image is not None else None  # the blob lands before the event naming it
    parallel_given = {"parallel": parallel} if parallel > 1 else {}  # recorded only when used, as it always was
    director = DirectorSettings(iterations=iterations, c=c, policy=policy, epsilon=epsilon, **parallel_given)
    settings = cfg.to_settings().model_copy(update={"director": director})
    story_seed = spec.seed if seed is None else seed
    ws.store.create_story(sid, title=spec.display_title, events=[
        StoryCreated(title=spec.display_title, seed=story_seed, spec=spec.to_spec(blob), settings=settings,
                     **creation_fields()).at()
    ])
    return sid


def direct(
    ws: Workspace, brief_file: str | os.PathLike[str], *, iterations: int = 4, profile: str | None = None,
    config: str | os.PathLike[str] | None = None, c: float = bandit.DEFAULT_C, seed: int | None = None,
    story_id: str | None = None, policy: str = "ucb", epsilon: float = bandit.DEFAULT_EPSILON,
    backends: Backends | None = None, progress: Progress | None = None, budget: Budget | None = None,
    parallel: int = 1, pool: Pool | None = None,
) -> DirectorResult:
    """Explore ``iterations`` creative directions for a brief, one branch each, and rank them.

    ``parallel``: pulls chosen per round, run as jobs on ``pool`` (default: in this process, in turn)."""
    sid = create_brief(ws, brief_file, iterations=iterations, profile=profile, config=config, c=c, seed=seed,
                       story_id=story_id, policy=policy, epsilon=epsilon, parallel=parallel)
    return resume_direction(ws, sid, backends=backends, progress=progress, budget=budget, pool=pool)


def resume_direction(
    ws: Workspace, story_id: str, *, backends: Backends | None = None, progress: Progress | None = None,
    budget: Budget | None = None, pool: Pool | None = None,
) -> DirectorResult:
    """Continue (or finish) a brief's director run from its log; recorded calls are never repeated.
    ``budget`` caps the whole brief: main's calls and every pull's. A director recorded with
    ``parallel`` P runs its pulls P per round (``engine.director.rounds``) as jobs on ``pool``."""
    store: EventStore = ws.store
    events = store.read(story_id, MAIN)
    if not events or events[0].type != "StoryCreated":
        raise StoryNotFound(f"{story_id!r} has no StoryCreated event")
    created = events[0].event
    assert isinstance(created, StoryCreated)
    spec, settings = created.spec, created.settings
    if not isinstance(spec, BriefRecord):
        raise RunStateError(f"{story_id!r} is a story, not an advertising brief",
                            hint=f"continue it with `codirector resume {story_id}`")
    director = settings.director or DirectorSettings()
    iterations = director.iterations
    writer = RunWriter(store, story_id, MAIN, head=store.branch(story_id, MAIN).head_position,
                       lease=ws.held(story_id, MAIN))
    calls = CallStats()
    notes: list[str] = []
    ranked = next((e for e in events if e.type == "BranchRanked"), None)
    if ranked is None:
        cfg = RunConfig.from_settings(settings)
        if backends is None:
            backends = build_backends(cfg)
        notes.extend(backends.notes)
        if getattr(backends.vlm, "reads_hints", False):  # the preview's plan-driven VLM also plays the judge
            notes.append(PLAN_DERIVED_SCORES)
        known = recorded_answers(events)
        if budget is not None and budget.capped:
            budget.count_story(store, story_id, skip=is_scratch)
        recorder = CallRecorder(writer, ws.blobs, backends, known=known, budget=budget)
        ctx = AgentContext(recorder, writer, RunSettings.from_table(cfg.run).agent_attempts)
        pilot = _Pilot(ws, story_id, spec, created.seed, ctx, backends, progress or QuietProgress(), director)
        state = bandit.fold(events)
        parallel = director.parallel
        if parallel > 1:
            from codirector.engine.director.rounds import run_rounds

            state = run_rounds(pilot, state, iterations, parallel, pool)
        else:
            for iteration in range(1, iterations + 1):
                state = pilot.pull(state, iteration, iterations)
        order = bandit.ranking(state)
        ranked = writer.one(BranchRanked(ranking=order, best_branch=order[0]["branch"], rule=bandit.RANKING_RULE).at())
        calls = pilot.stats
        calls.live += recorder.stats.live
        calls.reused += recorder.stats.reused
        for kind, n in recorder.stats.by_kind.items():
            calls.by_kind[kind] = calls.by_kind.get(kind, 0) + n
    else:
        notes.append(f"{story_id!r} was already directed and ranked; nothing to do")
    final = store.read(story_id, MAIN)
    ranking = [RankedBranch.from_payload(r) for r in ranked.payload["ranking"]]
    return DirectorResult(story_id, iterations, pull_summaries(final), ranking, ranked.payload["best_branch"],
                          bandit.fold(final), calls, notes)


class _Pilot:
    """One director run's working parts: a pull is choose -> write -> branch -> run -> judge -> reward."""

    def __init__(self, ws: Workspace, story_id: str, spec: BriefRecord, seed: int, ctx: AgentContext,
                 backends: Backends, progress: Progress, director: DirectorSettings) -> None:
        self.ws, self.store = ws, ws.store
        self.story_id, self.spec, self.seed = story_id, spec, seed
        self.ctx, self.backends, self.progress = ctx, backends, progress
        self.c = float(director.c)
        self.policy = director.policy
        self.epsilon = float(director.epsilon)
        self.stats = CallStats()
        self._warm: tuple[dict[str, str], str] | None = None

    @property
    def writer(self) -> RunWriter:
        return self.ctx.writer

    def _recommendation(self, state: bandit.BanditState) -> tuple[dict[str, str], str]:
        if state.recommended is not None:
            return dict(state.recommended), ""
        if self._warm is None:
            self.progress.step("warm start: recommend a direction")
            out, _ = recommend_direction(self.ctx, brief=self.spec)
            self._warm = (out.arms(), out.why)
        return self._warm

    def pull(self, state: bandit.BanditState, iteration: int, total: int) -> bandit.BanditState:
        """Finish pull ``iteration`` (choosing it first if the log has no choice for it)."""
        if iteration not in state.pulls:
            state = self.choose(state, iteration)
        pull = state.pulls[iteration]
        if pull.rewarded:
            return state
        self.prepare(state, pull, total)
        self.run(pull)
        reward = self.judge(pull)
        return bandit.apply(state, reward.event)

    def run(self, pull: bandit.Pull) -> None:
        """Run the pull's branch here, to its end, on the director's backends and budget."""
        result = execute(self.ws, self.story_id, pull.branch, backends=self.backends, progress=self.progress,
                         budget=self.ctx.recorder.budget)
        self.count(result.calls.live, result.calls.reused, result.calls.matched, result.calls.by_kind)

    def choose(self, state: bandit.BanditState, iteration: int, *, seen: bandit.BanditState | None = None,
               extra: dict[str, Any] | None = None) -> bandit.BanditState:
        """Choose pull ``iteration`` on the statistics ``seen`` (default: ``state``) and record it."""
        recommended, warm_why = self._recommendation(state)
        choice = bandit.choose(seen or state, c=self.c, policy=self.policy, epsilon=self.epsilon,
                               recommended=recommended, seed=self.seed, iteration=iteration)
        why: dict[str, Any] = {"policy": self.policy, "c": self.c, "dimensions": choice.why, **(extra or {})}
        if warm_why:
            why["warm_start"] = warm_why
        ev = self.writer.one(DirectionChosen(iteration=iteration, branch=branch_name(iteration, choice.arms),
                                             arms=choice.arms, why=why, recommended=recommended).at())
        return bandit.apply(state, ev.event)

    def prepare(self, state: bandit.BanditState, pull: bandit.Pull, total: int, *, before: int | None = None) -> None:
        """Write the pull's storyline and create its branch, unless the branch exists; the storyline hears
        the feedback of the rewarded pulls (those before iteration ``before``, when given)."""
        self.progress.step(f"direction {pull.iteration}/{total}: {pull.branch}")
        if pull.branch in {b.name for b in self.store.story(self.story_id).branches}:
            return
        earlier = [f"{p.branch}: {self._feedback(p.iteration)}"
                   for p in sorted(state.pulls.values(), key=lambda p: p.iteration)
                   if p.rewarded and (before is None or p.iteration < before)]
        out, _ = write_storyline(self.ctx, brief=self.spec, arms=pull.arms, num_shots=self.spec.num_shots,
                                 earlier=earlier, iteration=pull.iteration)
        self._create_branch(pull, out)

    def count(self, live: int, reused: int, matched: int = 0, by_kind: dict[str, int] | None = None) -> None:
        self.stats.live += live
        self.stats.reused += reused
        self.stats.matched += matched
        for kind, n in (by_kind or {}).items():
            self.stats.by_kind[kind] = self.stats.by_kind.get(kind, 0) + n

    def _feedback(self, iteration: int) -> str:
        for e in self.store.read(self.story_id, MAIN, types=["RewardObserved"]):
            if e.payload["iteration"] == iteration:
                return f"{e.payload.get('primary_fault')} fault; {e.payload.get('feedback', '')}"
        return ""

    # -- the pull's branch ----------------------------------------------------------------

    def _create_branch(self, pull: bandit.Pull, out: StorylineOutput) -> None:
        """Fork the pull's branch from main's head with its plan, atomically."""
        card = direction_card(pull.arms)
        fork = self.writer.position
        plan = BranchPlan(cast=[CastRecord.model_validate(m.model_dump()) for m in out.cast], storyline=out.storyline,
                          style_instructions=out.style_instructions, arms=dict(pull.arms), iteration=pull.iteration,
                          card=card)
        created = BranchCreated(name=pull.branch, parent=MAIN, fork_position=fork, from_shot=1, plan=plan,
                                **creation_fields()).at(1)
        drafts: list[Draft] = [created, *self._product_registration(pull.branch, fork, created.id)]
        style = out.style_instructions.strip()
        for i, shot in enumerate(out.shots, start=1):
            drafts.append(ShotPlanned(
                keyframe_prompt=f"{shot.keyframe_prompt.strip()} {style}",
                motion_prompt=f"{shot.motion_prompt.strip()} {card['motion_style']}",
                uses=list(dict.fromkeys(shot.uses)), planner="creative director",
            ).at(i, cause=created.id))
        self.store.create_branch(self.story_id, pull.branch, parent=MAIN, at_position=fork, events=drafts)

    def _product_registration(self, branch: str, fork: int, cause: str) -> list[Draft]:
        """The product's entity and its reference view (with their recorded embeddings), as creation events.

        A pull branch runs from shot 1 without the story-level cast registration of ``main``, so the
        brief's product image enters the branch's memory here, caused by its ``BranchCreated``.
        """
        product = next((m for m in self.spec.cast if m.reference_blob), None)
        if product is None or product.reference_blob is None:
            return []
        collector = _Collector(self.store, self.story_id, branch, cause=cause, head=fork + 1)
        recorder = CallRecorder(collector, self.ws.blobs, self.backends)
        name, blob = product.name, product.reference_blob
        text = recorder.embed_texts([product.description], shot=None)
        ref = embedding_ref(self.story_id, name, text.blobs[0], text.model)
        collector.one(EntityRegistered(name=name, kind="prop", description=product.description, base_entity=None,
                                       origin="cast", text_embedding=ref).at(None))
        view = ImageInput(label=name, digest=blob, data=self.ws.blobs.get(blob))
        image = recorder.embed_images([view], shot=None)
        vref = embedding_ref(self.story_id, name, image.blobs[0], image.model)
        collector.one(ViewAdded(entity=name, blob=blob, source=ViewSource(kind="cast_file"), embedding=vref).at(None))
        self.stats.live += recorder.stats.live
        self.stats.by_kind["embed"] = self.stats.by_kind.get("embed", 0) + recorder.stats.live
        return collector.drafts

    # -- the reward -------------------------------------------------------------------------

    def judge(self, pull: bandit.Pull) -> RecordedEvent:
        """The ad judge's execution score, then one efficacy call per dimension -> ``RewardObserved`` on main."""
        events = self.store.read(self.story_id, pull.branch)
        state = fold_run_state(events)
        if not state.story_completed:
            raise RunStateError(f"{self.story_id}/{pull.branch} did not complete; it cannot be judged",
                                hint=f"`codirector resume {self.story_id}` continues the director")
        clips = clips_of(state.completed)
        self.progress.step(f"judge {pull.branch}")
        frames = story_frames(self.ws.blobs, clips, cap=AD_JUDGE_FRAMES)
        storyline = state.branch_created.plan.storyline if state.branch_created is not None else ""
        facts = {"arms": dict(pull.arms), "product": self.spec.product, "brand": self.spec.brand,
                 "target_audience": self.spec.target_audience, "category": self.spec.category,
                 "shots": state.num_shots, "completed": len(state.completed), "iteration": pull.iteration}
        execution, call = ad_execution(self.ctx, brief=self.spec, storyline=storyline, frames=frames, plan=facts)
        efficacy: dict[str, float] = {}
        rationales: dict[str, str] = {}
        for dim in bandit.DIMENSIONS:
            out, _ = ad_efficacy(self.ctx, brief=self.spec, dimension=dim, arm=pull.arms[dim], frames=frames,
                                 plan=facts)
            efficacy[dim], rationales[dim] = float(out.efficacy), out.rationale
        return self.writer.one(RewardObserved(
            iteration=pull.iteration, branch=pull.branch, execution=execution.execution,
            criteria=execution.criteria(), efficacy=efficacy, primary_fault=execution.primary_fault,
            feedback=execution.feedback, rationales=rationales, sampled_frames=len(frames),
        ).at(None, cause=call.id))


class _Collector(RunWriter):
    """A writer that collects drafts (re-caused to ``cause``) instead of appending them.

    It lets the call recorder record the product's embeddings as part of a branch's creation:
    the drafts are appended, with the ``BranchCreated`` that caused them, in one transaction.
    """

    def __init__(self, store: EventStore, story_id: str, branch: str, *, cause: str, head: int) -> None:
        super().__init__(store, story_id, branch, head=head)
        self.cause = cause
        self.drafts: list[Draft] = []

    def append(self, drafts: Sequence[Draft]) -> list[RecordedEvent]:
        out: list[RecordedEvent] = []
        for d in drafts:
            draft = Draft(event=d.event, shot=d.shot, causation_id=self.cause, id=d.id)
            self.drafts.append(draft)
            self.position += 1
            provisional, _ = seal(draft, story_id=self.story_id, branch=self.branch, position=self.position,
                                  prev_hash="", recorded_at="")
            out.append(provisional)
            for listener in self.listeners:
                listener(provisional)
        return out


__all__ = ["DirectorResult", "PullSummary", "RankedBranch", "branch_name", "create_brief", "direct", "is_brief",
           "resume_direction"]

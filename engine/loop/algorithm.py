"""Algorithm 1 of CoTriSyGen, shot by shot, every step an event.

Per shot t (T shots, K keyframe rounds):
    M, R_t <- Retrieve&Update(M, q_t)
    for k in 1..K:
        I_t^k <- Gen_img(q_t, R_t);  (d, q_t^k) <- Analyzer_img1(I_t^k, M, q_t)
        accept -> stop;  regen_same_desc -> again with q_t;  regen_refined_desc -> q_t <- q_t^k,
        M, R_t <- Retrieve&Update(M, q_t)   (not after the last round: nothing would use it)
    no accepted round -> I_t <- SelectBest(candidates), and the event says why it won
    an evolved state registered for shot t without a view ([run] evolved_view = "keyframe") <- view I_t
    m_t <- Analyzer_img2(I_t, m_t^0);  V_t <- Gen_vid(I_t, m_t)
    t < T: (U_t, q_{t+1}) <- Analyzer_vid(V_t, M, m_t, q_{t+1}^0);  M <- M u U_t

Ablations (paper §5.4): ``no_memory`` generates shots independently: memory is never read or
written (no references) and there is no inter-shot video analysis, whose job is to feed memory;
``no_synergy`` keeps the pre-keyframe memory update but drops the analyzer (one round accepted
unjudged, motion prompt unrefined, no video analysis); ``no_refine`` keeps the analyzer's
judgements and memory updates but never rewrites a prompt.

Invariant: the loop writes events and reads ``ctx.state`` / ``ctx.memory``; it never updates either
by hand (the writer's listener folds every written or matched event into both, ``loop.context``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from codirector.engine import agents
from codirector.engine.agents.schemas import KeyframeAnalyzerOutput
from codirector.engine.loop.context import RunContext
from codirector.engine.loop.retrieval import Retrieved, add_view, register_entity, retrieve_and_update
from codirector.errors import RunStateError
from codirector.events import (
    AlignmentReport,
    EntityUpdate,
    KeyframeGenerated,
    KeyframeJudged,
    KeyframeSelected,
    MotionPromptRefined,
    ShotCompleted,
    ShotPlanned,
    ShotStarted,
    StoryCompleted,
    VideoAnalyzed,
    VideoGenerated,
    ViewSource,
)
from codirector.events.specs import Evolution, StoryRecord
from codirector.events.video import ClipReference
from codirector.generators import registry
from codirector.generators.base import ImageInput, ImageRequest, VideoRequest
from codirector.generators.video_io import frame_jpeg, frame_png, read_some_frames, sample_indices

_RANK = {"ok": 3, "partial": 2, "unclear": 1, "mismatch": 0, "missing": 0, "duplicate": 0}


@dataclass
class Candidate:
    round: int
    blob: str
    prompt: str
    decision: str
    report: AlignmentReport | None

    def score(self) -> tuple[int, int, int]:
        """SelectBest's ranking: count correctness first, then appearance, then environment."""
        if self.report is None:
            return (0, 0, 0)
        r = self.report
        return (_RANK[r.main_character_count], _RANK[r.main_character_appearance], _RANK[r.environment])


def select_best(candidates: list[Candidate]) -> tuple[Candidate, str]:
    """The best of the rounds when none was accepted, and why (earliest round wins ties)."""
    best = max(candidates, key=lambda c: (c.score(), -c.round))
    others = ", ".join(f"round {c.round} {c.score()}" for c in candidates if c is not best)
    why = (f"no round was accepted; round {best.round} ranks best on (character count, appearance, environment) "
           f"= {best.score()}" + (f" against {others}" if others else "") + "; ties go to the earlier round")
    return best, why


class Loop:
    """Runs the shots of one branch on a ``RunContext``."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    # -- story level --------------------------------------------------------------------

    def plan_story(self) -> None:
        """Write the shot plan (from the story file, or from the Planner agent) and the cast's given views."""
        ctx = self.ctx
        spec = ctx.state.spec
        if not isinstance(spec, StoryRecord):
            raise RunStateError(f"{ctx.story_id}/{ctx.branch} is an advertising brief's main branch, not a story",
                                hint="run one of its pull branches")
        if spec.shots:
            drafts = [ShotPlanned(keyframe_prompt=s.keyframe, motion_prompt=s.motion, uses=list(s.uses),
                                  evolves=list(s.evolves), group=s.group).at(i)
                      for i, s in enumerate(spec.shots, start=1)]
        else:
            ctx.progress.step("planning shots")
            out, call = agents.plan_shots(ctx.agents, story=spec.story or "", num_shots=spec.num_shots or 0,
                                          style=spec.style)
            drafts = [ShotPlanned(keyframe_prompt=s.keyframe_prompt, motion_prompt=s.motion_prompt,
                                  planner="planner agent").at(i, cause=call.id) for i, s in enumerate(out.shots, 1)]
        ctx.writer.append(drafts)  # the run-state listener adds them to ``ctx.state.plan``
        if not ctx.settings.no_memory:
            for member in spec.cast:
                if member.reference_blob:
                    view = ctx.image_input(member.name, member.reference_blob)
                    register_entity(ctx, name=member.name, description=member.description, base_entity=None,
                                    origin="cast", shot=None, view=view, source=ViewSource(kind="cast_file"))
                    for blob in member.extra_view_blobs:  # a story's further images of it
                        add_view(ctx, entity=member.name, view=ctx.image_input(member.name, blob),
                                 source=ViewSource(kind="cast_file"), shot=None)

    def run_shots(self, first: int) -> None:
        """Shots ``first``..T, then ``StoryCompleted``."""
        ctx = self.ctx
        total = ctx.state.num_shots
        for t in range(first, total + 1):
            self.run_shot(t)
            ctx.index.save()
        frames = sum(int(c["frames"]) for c in ctx.state.completed.values())
        ctx.writer.one(StoryCompleted(shots=total, frames=frames).at())

    # -- one shot -----------------------------------------------------------------------

    def run_shot(self, t: int) -> None:
        ctx = self.ctx
        s = ctx.settings
        state = ctx.state
        planned = state.plan[t]
        q0, q, m0 = planned.keyframe_prompt, state.keyframe_prompt(t), state.motion_prompt(t)
        ctx.progress.shot(t, state.num_shots, q)
        ctx.writer.one(ShotStarted(keyframe_prompt=q, motion_prompt=m0).at(t))
        plan = self._plan_hints(t)

        retrieved = retrieve_and_update(ctx, query=q, shot=t, round_=1, plan=plan)
        candidates: list[Candidate] = []
        selected: Candidate | None = None
        rounds = 1 if s.no_synergy else s.max_rounds
        views_by_round: dict[int, list[ImageInput]] = {}
        for k in range(1, rounds + 1):
            views_by_round[k] = list(retrieved.references)
            blob = self._keyframe(t, k, q, retrieved)
            if s.no_synergy:
                selected = Candidate(k, blob, q, "accept", None)
                break
            judged = self._judge(t, k, blob, q0, q, retrieved, plan)
            cand = Candidate(k, blob, q, judged.decision, judged.alignment_report)
            candidates.append(cand)
            if judged.decision == "accept":
                selected = cand
                break
            if k == rounds:
                break
            if judged.decision == "regen_refined_desc" and not s.no_refine:
                q = judged.refined_keyframe_prompt
                retrieved = retrieve_and_update(ctx, query=q, shot=t, round_=k + 1, plan=plan)
        if selected is not None:
            how: Literal["accepted", "best_of", "only_round"] = "only_round" if s.no_synergy else "accepted"
            why = ("the analyzer is off (--no-synergy)" if s.no_synergy
                   else f"the keyframe analyzer accepted round {selected.round}")
        else:
            selected, why = select_best(candidates)
            how = "best_of"
        chosen = ctx.writer.one(KeyframeSelected(round=selected.round, blob=selected.blob, how=how, why=why).at(t))
        keyframe = ctx.image_input(f"shot {t} keyframe", selected.blob)
        self._views_from_keyframe(t, selected, chosen.id)

        m = m0
        if not (s.no_synergy or s.no_refine):
            ctx.progress.step("refine motion prompt")
            out, _ = agents.motion_refiner(ctx.agents, keyframe=keyframe, keyframe_prompt=selected.prompt,
                                           motion_prompt=m0, shot=t, plan={**plan, "motion": m0})
            m = out.refined_video_motion_prompt
            ctx.writer.one(MotionPromptRefined(original=m0, refined=m).at(t))

        video_blob, frames, fps = self._video(t, keyframe, m, views_by_round.get(selected.round, []))
        if t < state.num_shots and not (s.no_synergy or s.no_memory):
            self._analyze_video(t, video_blob, frames, m, plan, retrieved.entities)
        done = ShotCompleted(keyframe_blob=selected.blob, video_blob=video_blob, frames=frames, fps=fps,
                             keyframe_round=selected.round)
        ctx.writer.one(done.at(t))
        ctx.progress.done(t)

    def _views_from_keyframe(self, t: int, selected: Candidate, cause: str) -> None:
        """The evolved states registered for shot t without a view (``[run] evolved_view = "keyframe"``)
        enter memory from what the shot shows: its selected keyframe becomes their first view."""
        ctx = self.ctx
        waiting = [e.name for e in ctx.memory
                   if e.shot == t and e.origin == "memory_controller" and e.base_entity is not None and not e.views]
        for name in waiting:
            add_view(ctx, entity=name, view=ctx.image_input(name, selected.blob),
                     source=ViewSource(kind="keyframe", shot=t, round=selected.round), shot=t, cause=cause)

    def _relevant_first(self, names: list[str]) -> list[Any]:
        """Memory for a prompt: the shot's entities and their families first (long memories get cut)."""
        mem = self.ctx.memory
        first: list[str] = []
        for n in names:
            if n in mem:
                for related in [*mem.base_chain(n), *mem.descendants(n)]:
                    if related not in first:
                        first.append(related)
        return [mem.get(n) for n in first] + [e for e in mem if e.name not in first]

    def _plan_hints(self, t: int) -> dict[str, Any]:
        """The story's declared intent for shot t (read only by the plan-driven preview backend)."""
        state = self.ctx.state
        cast = {m.name: {"kind": m.kind, "description": m.description} for m in state.spec.cast}
        return {"shot": t, "uses": state.uses(t), "evolves": _as_plain(state.evolves(t)), "cast": cast}

    def _keyframe(self, t: int, k: int, prompt: str, retrieved: Retrieved) -> str:
        ctx = self.ctx
        request = ImageRequest(prompt=prompt, purpose="keyframe", seed=ctx.seed(t, k, "keyframe"),
                               width=ctx.settings.width, height=ctx.settings.height,
                               references=tuple(retrieved.references), style=ctx.state.spec.style)
        ctx.progress.step(f"keyframe round {k}")
        digest, call = ctx.recorder.image(request, shot=t)
        ctx.writer.one(KeyframeGenerated(
            round=k, prompt=prompt, reference_blobs=[r.digest for r in retrieved.references], seed=request.seed,
            backend=call.payload["backend"], model=call.payload["model"], blob=digest,
            width=request.width, height=request.height,
        ).at(t, cause=call.id))
        return digest

    def _judge(self, t: int, k: int, blob: str, q0: str, q: str, retrieved: Retrieved,
               plan: dict[str, Any]) -> KeyframeAnalyzerOutput:
        ctx = self.ctx
        ctx.progress.step(f"judge keyframe round {k}")
        visible = [ctx.memory.get(n) for n in retrieved.entities if n in ctx.memory]
        out, call = agents.keyframe_analyzer(
            ctx.agents, keyframe=ctx.image_input(f"shot {t} keyframe round {k}", blob),
            references=retrieved.references, original_prompt=q0, current_prompt=q, memory=visible, shot=t,
            plan={**plan, "round": k},
        )
        refined = out.refined_keyframe_prompt if out.decision == "regen_refined_desc" else ""
        ctx.writer.one(KeyframeJudged(round=k, decision=out.decision, reasons=out.reasons,
                                      alignment_report=out.alignment_report,
                                      refined_keyframe_prompt=refined).at(t, cause=call.id))
        return out

    def _video(self, t: int, keyframe: ImageInput, motion: str, views: list[ImageInput]) -> tuple[str, int, float]:
        """The clip; ``views`` (the accepted keyframe's references) go with it to a model that takes references."""
        ctx = self.ctx
        s = ctx.settings
        limit = registry.reference_limit("video", dict(ctx.state.settings.video))
        sent = tuple(_one_view_per_entity(views)[:limit])
        request = VideoRequest(keyframe=keyframe, prompt=motion, seed=ctx.seed(t, 0, "video"),
                               num_frames=s.num_frames, fps=s.fps, width=s.width, height=s.height, references=sent)
        ctx.progress.step("video")
        digest, call = ctx.recorder.video(request, shot=t)
        meta = call.payload["response"]
        ctx.writer.one(VideoGenerated(
            blob=digest, frames=int(meta["frames"]), fps=float(meta["fps"]), width=int(meta["width"]),
            height=int(meta["height"]), seed=request.seed, backend=call.payload["backend"],
            model=call.payload["model"], motion_prompt=motion,
            references=[ClipReference(entity=v.label, blob=v.digest) for v in sent],
        ).at(t, cause=call.id))
        return digest, int(meta["frames"]), float(meta["fps"])

    def _analyze_video(
        self, t: int, video_blob: str, total_frames: int, motion: str, plan: dict[str, Any], in_shot: list[str]
    ) -> None:
        """Inter-shot synergy: memory updates from the clip, and the next shot's prompt."""
        ctx = self.ctx
        state = ctx.state
        ctx.progress.step("analyze video")
        picked = sample_indices(total_frames, ctx.settings.frames_for_analysis)
        clip = read_some_frames(ctx.blobs.get(video_blob), picked)
        frames = []
        for i, idx in enumerate(picked):
            data = frame_jpeg(clip[idx])
            frames.append(ImageInput(label=f"frame {i}", digest=ctx.blobs.put(data), data=data))
        before = state.keyframe_prompt(t + 1)
        known = set(ctx.memory.names())
        hints = {**plan, "known": sorted(known), "frames": len(frames), "next_keyframe": before,
                 "next_evolves": _as_plain(state.evolves(t + 1)),
                 "carry": [n for n in state.uses(t) if n in state.uses(t + 1)]}
        out, call = agents.video_analyzer(ctx.agents, frames=frames, memory=self._relevant_first(in_shot), known=known,
                                          motion_prompt=motion, next_keyframe_prompt=before, shot=t, plan=hints)
        after = before if ctx.settings.no_refine else out.refined_next_shot.keyframe_prompt
        updates = out.entity_updates
        analyzed = ctx.writer.one(VideoAnalyzed(
            entity_updates=[EntityUpdate(name=u.name, description=u.description, frame_index=u.frame_index,
                                         base_entity=u.base_entity) for u in updates],
            sampled_frames=picked, next_shot=t + 1, next_prompt_before=before, next_prompt_after=after,
        ).at(t, cause=call.id))
        for u in updates:
            data = frame_png(clip[picked[u.frame_index]])
            view = ImageInput(label=u.name, digest=ctx.blobs.put(data), data=data)
            source = ViewSource(kind="video_frame", shot=t, frame_index=picked[u.frame_index])
            register_entity(ctx, name=u.name, description=u.description, base_entity=u.base_entity,
                            origin="video_analyzer", shot=t, view=view, source=source, cause=analyzed.id)


__all__ = ["Candidate", "Loop", "add_view", "select_best"]


def _as_plain(evolves: list[Evolution]) -> list[dict[str, Any]]:
    """Evolved states as the plan hints carry them (plain JSON, as recorded in a hint-reader's request key)."""
    return [e.model_dump() for e in evolves]


def _one_view_per_entity(views: list[ImageInput]) -> list[ImageInput]:
    """The keyframe's references, the first (best-matching) view of each entity only, in their order."""
    seen: set[str] = set()
    out = []
    for v in views:
        if v.label not in seen:
            seen.add(v.label)
            out.append(v)
    return out

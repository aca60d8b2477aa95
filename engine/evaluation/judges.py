"""The judges: the paper's shot and story judges (evaluation) and the ad judge (the bandit's reward).

- ShotJudge (CoTriSyGen §4.2.2, appendix 8.2.1): frames sampled at 2 fps from one clip plus the
  shot's description -> ``content_match``, ``action_match``, ``camera_match``, ``overall`` (1-5)
  and a one-sentence ``rationale``.
- StoryJudge: frames sampled at 1 fps over the whole story plus the story prompt ->
  ``plot_completeness``, ``character_consistency``, ``narrative_flow``, ``overall`` (1-5),
  ``strongest_aspect``, ``weakest_aspect``.
- AdJudge (Co-Director): frames at 1 fps over the ad -> an execution score from five criteria of
  0-20 each (coherence, visual quality, engagement, prompt adherence including fit to the
  audience, logical/physical consistency), the primary fault (storyline, image or video) and
  feedback; then, in a SEPARATE call per dimension, an efficacy score 0-100 for the chosen arm.
  The efficacy judge is never shown the execution score and is told to judge the direction
  alone, so the two are not tied together by instruction (the reference judge was told to keep
  them consistent, which correlates them).

The JSON field names of the shot and story judges are the paper's; the prompts are ours.
Invariant: frames are stored as blobs before any request names them; a score outside its range
or an unknown enum is rejected and retried like any agent answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from codirector.engine.agents.base import AgentContext, ask
from codirector.engine.director.agents import ARM_GUIDE, brief_text
from codirector.events import RecordedEvent
from codirector.events.specs import BriefRecord
from codirector.generators.base import ImageInput
from codirector.generators.video_io import frame_jpeg, read_some_frames, sample_indices
from codirector.store.blobs import BlobStore

SHOT_FPS = 2.0     # the paper's shot judge: frames at 2 fps from each clip
STORY_FPS = 1.0    # the paper's story judge: frames at 1 fps over the assembled story
MAX_SHOT_FRAMES = 32
MAX_STORY_FRAMES = 48
CRITERIA = ("coherence", "visual_quality", "engagement", "prompt_adherence", "logical_consistency")


# ---------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class Clip:
    """One completed shot's clip as the log records it."""

    shot: int
    blob: str
    frames: int
    fps: float


def clips_of(completed: Mapping[int, Mapping[str, Any]]) -> list[Clip]:
    """A branch's clips in shot order, from its ``ShotCompleted`` payloads (``RunState.completed``)."""
    return [Clip(s, str(c["video_blob"]), int(c["frames"]), float(c["fps"])) for s, c in sorted(completed.items())]


def frames_at_rate(total: int, fps: float, rate: float, cap: int) -> list[int]:
    """Evenly spaced frame indices, ``rate`` per second of a ``total``-frame clip at ``fps`` (at least 1)."""
    if total <= 0:
        return []
    n = min(cap, max(1, round(total / fps * rate)))
    return sample_indices(total, n)


def _inputs(blobs: BlobStore, clip: Clip, indices: Sequence[int], label: str) -> list[ImageInput]:
    decoded = read_some_frames(blobs.get(clip.blob), indices)
    out = []
    for i in indices:
        data = frame_jpeg(decoded[i])
        out.append(ImageInput(label=label.format(shot=clip.shot, frame=i), digest=blobs.put(data), data=data))
    return out


def clip_frames(blobs: BlobStore, clip: Clip, *, rate: float = SHOT_FPS, cap: int = MAX_SHOT_FRAMES
                ) -> list[ImageInput]:
    """A clip's frames at ``rate`` fps, stored as JPEG blobs (what the shot judge and the metric see)."""
    return _inputs(blobs, clip, frames_at_rate(clip.frames, clip.fps, rate, cap), "shot {shot} frame {frame}")


def story_frames(blobs: BlobStore, clips: Sequence[Clip], *, rate: float = STORY_FPS, cap: int = MAX_STORY_FRAMES
                 ) -> list[ImageInput]:
    """Frames at ``rate`` fps over the clips played in order (the assembled story), as JPEG blobs."""
    timeline = [(clip, i) for clip in clips for i in range(clip.frames)]
    if not timeline:
        return []
    seconds = sum(c.frames / c.fps for c in clips)
    n = min(cap, max(1, round(seconds * rate)))
    picked = [timeline[g] for g in sample_indices(len(timeline), n)]
    out: list[ImageInput] = []
    for clip in clips:
        mine = [i for c, i in picked if c is clip]
        if mine:
            out.extend(_inputs(blobs, clip, mine, "shot {shot} frame {frame}"))
    return out


# ---------------------------------------------------------------------------- outputs


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShotJudgeOutput(_Out):
    content_match: int
    action_match: int
    camera_match: int
    overall: int
    rationale: str


class StoryJudgeOutput(_Out):
    plot_completeness: int
    character_consistency: int
    narrative_flow: int
    overall: int
    strongest_aspect: str
    weakest_aspect: str


class AdExecutionOutput(_Out):
    coherence: int
    visual_quality: int
    engagement: int
    prompt_adherence: int
    logical_consistency: int
    primary_fault: Literal["storyline", "image", "video"]
    feedback: str

    def criteria(self) -> dict[str, float]:
        return {c: float(getattr(self, c)) for c in CRITERIA}

    @property
    def execution(self) -> float:
        return float(sum(getattr(self, c) for c in CRITERIA))


class EfficacyOutput(_Out):
    efficacy: int
    rationale: str


def _in_range(out: BaseModel, fields: Sequence[str], lo: int, hi: int) -> list[str]:
    return [f"{f} must be an integer from {lo} to {hi}, got {getattr(out, f)}"
            for f in fields if not lo <= getattr(out, f) <= hi]


def _non_empty(out: BaseModel, fields: Sequence[str]) -> list[str]:
    return [f"{f} is empty; give one sentence" for f in fields if not str(getattr(out, f)).strip()]


def check_shot_judge(out: ShotJudgeOutput) -> list[str]:
    return (_in_range(out, ("content_match", "action_match", "camera_match", "overall"), 1, 5)
            + _non_empty(out, ("rationale",)))


def check_story_judge(out: StoryJudgeOutput) -> list[str]:
    return (_in_range(out, ("plot_completeness", "character_consistency", "narrative_flow", "overall"), 1, 5)
            + _non_empty(out, ("strongest_aspect", "weakest_aspect")))


def check_ad_execution(out: AdExecutionOutput) -> list[str]:
    return _in_range(out, CRITERIA, 0, 20) + _non_empty(out, ("feedback",))


def check_efficacy(out: EfficacyOutput) -> list[str]:
    return _in_range(out, ("efficacy",), 0, 100) + _non_empty(out, ("rationale",))


# ---------------------------------------------------------------------------- prompts

SHOT_JUDGE = """\
You evaluate one AI-generated video clip against the description it was generated from. You see \
frames sampled evenly from the clip, in order. Score from 1 (very poor) to 5 (excellent):
- content_match: are the subjects, objects and setting the ones described?
- action_match: does the motion or activity match what is described?
- camera_match: do framing, camera angle and shot type match?
- overall: how faithful is the clip to its description as a whole?
rationale: one short sentence naming the most important problem, or "no issues".
Judge narrative content and coherence, not visual style. Answer with JSON only: \
{"content_match": <1-5>, "action_match": <1-5>, "camera_match": <1-5>, "overall": <1-5>, \
"rationale": "..."}"""

STORY_JUDGE = """\
You evaluate an AI-generated multi-shot video against the story it should tell. You see frames \
sampled evenly across the whole video, earliest first. Score from 1 (very poor) to 5 (excellent):
- plot_completeness: are the story's major events and beats shown?
- character_consistency: do the characters look and behave the same throughout?
- narrative_flow: does the sequence unfold in a coherent, logical order?
- overall: how well does the video tell this story as a whole?
Also give strongest_aspect (the single best thing about the video) and weakest_aspect (the single \
thing most worth improving), one sentence each. Judge narrative content and coherence, not visual \
style. Answer with JSON only: {"plot_completeness": <1-5>, "character_consistency": <1-5>, \
"narrative_flow": <1-5>, "overall": <1-5>, "strongest_aspect": "...", "weakest_aspect": "..."}"""

AD_JUDGE = """\
You review a finished AI-generated video ad for the production team. You see frames sampled at \
one per second across the ad, in order, with the brief and the storyline it was made from. Score \
five criteria, each an integer from 0 to 20:
- coherence: the shots form one continuous, understandable ad;
- visual_quality: clean, well composed images without artefacts or deformities;
- engagement: it would hold a viewer's attention;
- prompt_adherence: it follows the brief and storyline and suits the target audience;
- logical_consistency: people, products and places stay consistent and physically plausible.
Name the primary_fault, the stage most responsible for what is wrong: "storyline" (the plan), \
"image" (the keyframes) or "video" (the animation). Give feedback: two sentences a director could \
act on. Answer with JSON only: {"coherence": ..., "visual_quality": ..., "engagement": ..., \
"prompt_adherence": ..., "logical_consistency": ..., "primary_fault": ..., "feedback": ...}"""

EFFICACY_JUDGE = """\
You are a strategist judging ONE creative choice of a finished AI-generated video ad: how well the \
ad realises the named choice, and how effective that choice is for this product and this audience. \
You see frames sampled at one per second across the ad, with the brief. Judge only this dimension. \
Do not grade production quality, polish or artefacts: another reviewer scores those separately, and \
a roughly made ad can still carry an excellent choice (and a polished one a poor choice). Give \
efficacy, an integer from 0 (the choice fails or works against the product) to 100 (the choice is \
ideal and fully realised), and a one-sentence rationale. Answer with JSON only: \
{"efficacy": <0-100>, "rationale": "..."}"""


# ---------------------------------------------------------------------------- agents


def shot_judge(ctx: AgentContext, *, description: str, frames: Sequence[ImageInput], shot: int,
               plan: dict[str, Any]) -> tuple[ShotJudgeOutput, RecordedEvent]:
    """The shot judge's scores for one clip (``frames`` sampled at 2 fps)."""
    user = (f"SHOT DESCRIPTION:\n{description}\n\nFRAMES: {len(frames)} frames sampled evenly from the clip, "
            "in order. Score the clip.")
    return ask(ctx, agent="shot_judge", system=SHOT_JUDGE, user=user, output=ShotJudgeOutput,
               check=check_shot_judge, shot=shot, images=list(frames), plan=plan)


def story_judge(ctx: AgentContext, *, story_prompt: str, frames: Sequence[ImageInput],
                plan: dict[str, Any]) -> tuple[StoryJudgeOutput, RecordedEvent]:
    """The story judge's scores for the assembled story (``frames`` sampled at 1 fps)."""
    user = (f"STORY PROMPT:\n{story_prompt}\n\nFRAMES: {len(frames)} frames sampled evenly across the whole "
            "video, earliest first. Score the video.")
    return ask(ctx, agent="story_judge", system=STORY_JUDGE, user=user, output=StoryJudgeOutput,
               check=check_story_judge, shot=None, images=list(frames), plan=plan)


def ad_execution(ctx: AgentContext, *, brief: BriefRecord, storyline: str, frames: Sequence[ImageInput],
                 plan: dict[str, Any]) -> tuple[AdExecutionOutput, RecordedEvent]:
    """The ad judge's execution criteria, primary fault and feedback."""
    user = (f"{brief_text(brief)}\n\nSTORYLINE:\n{storyline}\n\nFRAMES: {len(frames)} frames, one per second, "
            "in order. Review the ad.")
    return ask(ctx, agent="ad_judge", system=AD_JUDGE, user=user, output=AdExecutionOutput,
               check=check_ad_execution, shot=None, images=list(frames), plan=plan)


def ad_efficacy(ctx: AgentContext, *, brief: BriefRecord, dimension: str, arm: str,
                frames: Sequence[ImageInput], plan: dict[str, Any]) -> tuple[EfficacyOutput, RecordedEvent]:
    """The efficacy of one dimension's arm, asked on its own (never shown the execution score)."""
    label = dimension.replace("_", " ")
    user = (f"{brief_text(brief)}\n\nTHE CHOICE TO JUDGE: {label} = {arm} ({ARM_GUIDE[dimension][arm]})\n\n"
            f"FRAMES: {len(frames)} frames, one per second, in order. How effective is this {label} here?")
    return ask(ctx, agent="efficacy_judge", system=EFFICACY_JUDGE, user=user, output=EfficacyOutput,
               check=check_efficacy, shot=None, images=list(frames),
               plan={**plan, "dimension": dimension, "arm": arm})

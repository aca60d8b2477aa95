"""The agents of the loop: Planner, MemoryController, KeyframeAnalyzer, MotionRefiner, VideoAnalyzer.

Each is a function: inputs -> validated pydantic output (the paper's field names), through
``ask`` (recorded call, checks, bounded retry with feedback). ``plan`` carries the story's
declared intent for the plan-driven preview backend (as ``VLMRequest.hints``); real models get
only the text and images, and their recording keys never hold the plan.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from codirector.engine.agents import prompts
from codirector.engine.agents.base import AgentContext, ask, parse_answer
from codirector.engine.agents.schemas import (
    KeyframeAnalyzerOutput,
    MemoryControllerOutput,
    MotionRefinerOutput,
    PlannerOutput,
    VideoAnalyzerOutput,
    check_keyframe_analyzer,
    check_memory_controller,
    check_motion_refiner,
    check_planner,
    check_video_analyzer,
)
from codirector.events import RecordedEvent
from codirector.generators.base import ImageInput

__all__ = [
    "AgentContext", "keyframe_analyzer", "memory_controller", "motion_refiner", "parse_answer", "plan_shots",
    "video_analyzer",
]


def plan_shots(
    ctx: AgentContext, *, story: str, num_shots: int, style: str | None
) -> tuple[PlannerOutput, RecordedEvent]:
    user = f"STORY:\n{story}\n\nNUMBER OF SHOTS: {num_shots}" + (f"\nVISUAL STYLE: {style}" if style else "")
    return ask(ctx, agent="planner", system=prompts.PLANNER, user=user, output=PlannerOutput,
               check=lambda out: check_planner(out, num_shots=num_shots), shot=None,
               plan={"story": story, "num_shots": num_shots, "style": style})


def memory_controller(
    ctx: AgentContext, *, keyframe_prompt: str, shortlist: Sequence[Any], known: Collection[str],
    shot: int, plan: dict[str, Any],
) -> tuple[MemoryControllerOutput, RecordedEvent]:
    user = (f"KNOWN ENTITIES (the closest matches in memory):\n{prompts.memory_summary(shortlist)}\n\n"
            f"KEYFRAME PROMPT:\n{keyframe_prompt}\n\n"
            "Which known entities does this frame need, and which must be created first? "
            "Characters and props come first; be conservative with evolved states.")
    return ask(ctx, agent="memory_controller", system=prompts.MEMORY_CONTROLLER, user=user,
               output=MemoryControllerOutput, check=lambda out: check_memory_controller(out, known=known),
               shot=shot, plan=plan)


def keyframe_analyzer(
    ctx: AgentContext, *, keyframe: ImageInput, references: Sequence[ImageInput], original_prompt: str,
    current_prompt: str, memory: Sequence[Any], shot: int, plan: dict[str, Any],
) -> tuple[KeyframeAnalyzerOutput, RecordedEvent]:
    refs = "\n".join(f"Image {i}: reference of {r.label}" for i, r in enumerate(references, start=2))
    user = (f"ORIGINAL KEYFRAME PROMPT:\n{original_prompt}\n\nCURRENT KEYFRAME PROMPT:\n{current_prompt}\n\n"
            f"MEMORY:\n{prompts.memory_summary(memory)}\n\n"
            f"IMAGES: Image 1 is the generated keyframe.{chr(10) + refs if refs else ' No reference images.'}\n"
            "Check the keyframe and decide.")
    return ask(ctx, agent="keyframe_analyzer", system=prompts.KEYFRAME_ANALYZER, user=user,
               output=KeyframeAnalyzerOutput, check=check_keyframe_analyzer, shot=shot,
               images=[keyframe, *references], plan=plan)


def motion_refiner(
    ctx: AgentContext, *, keyframe: ImageInput, keyframe_prompt: str, motion_prompt: str, shot: int,
    plan: dict[str, Any],
) -> tuple[MotionRefinerOutput, RecordedEvent]:
    user = (f"KEYFRAME PROMPT (what the keyframe was made from):\n{keyframe_prompt}\n\n"
            f"ORIGINAL MOTION PROMPT:\n{motion_prompt}\n\n"
            "The image is the clip's first frame. Rewrite the motion prompt to start from it.")
    return ask(ctx, agent="motion_refiner", system=prompts.MOTION_REFINER, user=user, output=MotionRefinerOutput,
               check=check_motion_refiner, shot=shot, images=[keyframe], plan=plan)


def video_analyzer(
    ctx: AgentContext, *, frames: Sequence[ImageInput], memory: Sequence[Any], known: Collection[str],
    motion_prompt: str, next_keyframe_prompt: str, shot: int, plan: dict[str, Any],
) -> tuple[VideoAnalyzerOutput, RecordedEvent]:
    user = (f"ENTITY MEMORY:\n{prompts.memory_summary(memory)}\n\n"
            f"THIS SHOT'S MOTION PROMPT:\n{motion_prompt}\n\n"
            f"NEXT SHOT'S PLANNED KEYFRAME PROMPT:\n{next_keyframe_prompt}\n\n"
            f"FRAMES: {len(frames)} frames sampled from this shot's clip, numbered 0 to {len(frames) - 1} in order.")
    return ask(ctx, agent="video_analyzer", system=prompts.VIDEO_ANALYZER, user=user, output=VideoAnalyzerOutput,
               check=lambda out: check_video_analyzer(out, known=known, frames=len(frames)), shot=shot,
               images=list(frames), plan=plan)

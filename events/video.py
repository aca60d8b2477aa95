"""Video events: motion prompt refinement, the clip, and the analysis that feeds memory."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from codirector.events.base import Event


class MotionPromptRefined(Event):
    """The motion prompt m_t was rewritten to fit the accepted keyframe."""

    original: str
    refined: str


class ClipReference(BaseModel):
    """A memory view sent to the video model with the keyframe (an entity and its view's blob)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entity: str
    blob: str


def _none_sent(value: list[ClipReference]) -> bool:
    return not value


class VideoGenerated(Event):
    """The clip V_t was generated from the keyframe and the motion prompt.

    ``references``: memory's views of the shot's entities that went to the video model with the keyframe
    (only for a model that takes references; left out of the payload when none went, as before they existed).
    """

    blob: str
    frames: int
    fps: float
    width: int
    height: int
    seed: int
    backend: str
    model: str
    motion_prompt: str
    references: list[ClipReference] = Field(default_factory=list, exclude_if=_none_sent)


class EntityUpdate(BaseModel):
    """One memory update proposed by the video analyzer (the paper's entity_updates item)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str
    description: str
    frame_index: int
    base_entity: str | None = None


class VideoAnalyzed(Event):
    """The video analyzer read the clip: memory updates and the next shot's refined prompt."""

    entity_updates: list[EntityUpdate] = Field(default_factory=list)
    sampled_frames: list[int] = Field(default_factory=list)
    next_shot: int | None = None
    next_prompt_before: str | None = None
    next_prompt_after: str | None = None

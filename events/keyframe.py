"""Keyframe events: each generation round, the analyzer's judgement, and the final choice."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from codirector.events.base import Event

Decision = Literal["accept", "regen_same_desc", "regen_refined_desc"]


class AlignmentReport(BaseModel):
    """The analyzer's per-aspect check of a keyframe (the paper's alignment_report)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    main_character_count: Literal["ok", "missing", "duplicate", "unclear"]
    main_character_appearance: Literal["ok", "partial", "mismatch", "unclear"]
    environment: Literal["ok", "partial", "mismatch", "unclear"]


class KeyframeGenerated(Event):
    """A candidate keyframe I_t^(k) was generated."""

    round: int
    prompt: str
    reference_blobs: list[str] = Field(default_factory=list)
    seed: int
    backend: str
    model: str
    blob: str
    width: int
    height: int


class KeyframeJudged(Event):
    """The keyframe analyzer decided on a candidate."""

    round: int
    decision: Decision
    reasons: list[str]
    alignment_report: AlignmentReport
    refined_keyframe_prompt: str = ""


class KeyframeSelected(Event):
    """The keyframe I_t for the shot: an accepted round, or the best of all rounds."""

    round: int
    blob: str
    how: Literal["accepted", "best_of", "only_round"]
    why: str

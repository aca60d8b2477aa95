"""Our own story files (YAML or JSON; README, "Story files"): taken as they are, validated by ``engine.loop.story``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codirector.engine.loop.formats.base import StoryFormat

KEYS = ("title", "shots", "story", "num_shots", "cast")


def detect(data: dict[str, Any]) -> bool:
    return any(k in data for k in KEYS)


def convert(data: dict[str, Any], source: str, folder: Path) -> dict[str, Any]:
    return data


FORMAT = StoryFormat(
    name="codirector", label="a codirector story", aliases=("yaml", "json", "native"),
    recognised_by="`title` with `shots: [{keyframe, motion}]` (or `story` + `num_shots`); see examples/stories/",
    detect=detect, convert=convert,
)

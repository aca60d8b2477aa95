"""Helpers for the scale tests: normalised logs with branches (the counting config and the backend keys of
recorded calls are tests/support.py's)."""

from __future__ import annotations

import json
from pathlib import Path

from codirector.engine.studio import Studio

from support import backend_keys, counting_config

__all__ = ["EXAMPLES", "backend_keys", "counting_config", "normalised", "story_log"]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def normalised(events: list, story_id: str | None = None) -> list:  # type: ignore[type-arg]
    """Types and payloads; ids, timestamps and call durations left out (and the story id, when given)."""
    out = []
    for e in events:
        payload = dict(e.payload)
        payload.pop("duration_ms", None)
        text = json.dumps(payload, sort_keys=True)
        if story_id is not None:
            text = text.replace(json.dumps(story_id)[1:-1], "<story>")
        out.append((e.type, e.shot, e.branch, text))
    return out


def story_log(studio: Studio, story_id: str, *, as_id: str | None = None) -> dict[str, list]:  # type: ignore[type-arg]
    """Every branch's own events, normalised, by branch name."""
    out = {}
    for b in studio.store.story(story_id).branches:
        own = [e for e in studio.log(story_id, b.name) if e.branch == b.name]
        out[b.name] = normalised(own, as_id or story_id)
    return out

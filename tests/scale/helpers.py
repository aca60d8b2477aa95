"""Helpers for the scale tests: normalised logs and the counting backends' keys of recorded calls."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from PIL import Image

from codirector.engine.studio import Studio

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


def backend_keys(studio: Studio, story_id: str) -> set[str]:
    """The call-log keys (as the counting backends write them) of every call the story's log recorded."""
    keys = set()
    for b in studio.store.story(story_id).branches:
        for e in studio.log(story_id, b.name, types=["ModelCalled"]):
            if e.branch != b.name:
                continue
            req = e.payload["request"]
            if e.payload["kind"] == "embed" and "images" in req:
                req = {"images": [hashlib.sha256(Image.open(io.BytesIO(studio.blobs.get(i["blob"]))).tobytes())
                                  .hexdigest() for i in req["images"]]}
            keys.add(f"{e.payload['kind']}\t{hashlib.sha256(json.dumps(req, sort_keys=True).encode()).hexdigest()}")
    return keys


def counting_config(path: Path) -> Path:
    path.write_text('profile = "preview"\n[vlm]\nbackend = "counting"\n[image]\nbackend = "counting"\n'
                    '[video]\nbackend = "counting"\n[embedder]\nbackend = "counting"\n'
                    '[run]\nwidth = 64\nheight = 48\nnum_frames = 5\nfps = 4.0\n')
    return path

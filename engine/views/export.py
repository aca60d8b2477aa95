"""Assembling a branch's clips into one MP4, in shot order.

Invariant: the file holds exactly the frames of the branch's completed clips (their sum is
checked by decoding the result), so what is exported is what the log says was generated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codirector.engine.views.state import fold_run_state
from codirector.engine.workspace import Workspace
from codirector.errors import RunStateError
from codirector.generators.video_io import concat_mp4, frame_count
from codirector.store.blobs import naming


@dataclass
class ExportResult:
    """An exported video: its path, the shots in it, frames and fps, and whether the branch is complete."""

    story_id: str
    branch: str
    path: str
    shots: list[int]
    frames: int
    fps: float
    complete: bool
    planned_shots: int

    def to_json(self) -> dict[str, Any]:
        return {"story": self.story_id, "branch": self.branch, "path": self.path, "shots": list(self.shots),
                "frames": self.frames, "fps": self.fps, "complete": self.complete,
                "planned_shots": self.planned_shots}


def output_path(out: str | os.PathLike[str], story_id: str, branch: str) -> Path:
    """Where ``-o OUT`` puts the video: ``OUT`` itself, or ``OUT/STORY-BRANCH.mp4`` when ``OUT`` is a folder
    (or ends with a slash). A slash or control character of a name becomes ``_`` in the file name."""
    path = Path(out)
    if path.is_dir() or str(out).endswith(("/", os.sep)):
        return path / video_name(story_id, branch)
    return path


def video_name(story_id: str, branch: str) -> str:
    """``STORY-BRANCH.mp4``, a file name (a slash or control character of a name becomes ``_``)."""
    return "".join("_" if c in "/\\" or not c.isprintable() else c for c in f"{story_id}-{branch}") + ".mp4"


def export_branch(ws: Workspace, story_id: str, branch: str, out: str | os.PathLike[str]) -> ExportResult:
    """Write the branch's video to ``out`` (a file, or a folder: ``output_path``); returns shots, frames and the
    file's path. A failed export leaves no file behind, and its ``OSError`` names the path asked for."""
    state = fold_run_state(ws.store.read(story_id, branch))
    if not state.completed:
        raise RunStateError(f"{story_id}/{branch} has no completed shot to export",
                            hint=f"run it first: `codirector resume {story_id}`")
    shots = sorted(state.completed)
    clips = [ws.blobs.get(state.completed[s]["video_blob"]) for s in shots]
    fps = float(state.completed[shots[0]]["fps"])
    out = output_path(out, story_id, branch)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        written = concat_mp4(clips, out, fps)
    except OSError as e:  # the encoder's errors name no file (or the partial one): name the one asked for
        raise naming(e, out) from e
    expected = sum(int(state.completed[s]["frames"]) for s in shots)
    counted = frame_count(out)
    if counted != expected or written != expected:
        raise RunStateError(f"exported {counted} frames but the clips hold {expected}", hint="report this as a bug")
    return ExportResult(story_id, branch, str(out), shots, counted, fps, state.story_completed, state.num_shots)

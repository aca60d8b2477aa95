"""`codirector run` with the real preview profile, memory at shots, and export of a playable MP4."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codirector.cli import app
from codirector.generators.video_io import frame_count, read_frames_from

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "stories"
runner = CliRunner()


@pytest.mark.slow
def test_preview_run_of_the_8_shot_story_memory_at_shots_and_export(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    result = runner.invoke(app, ["--home", home, "run", str(EXAMPLES / "lighthouse.yaml"), "--profile", "preview",
                                 "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["completed"] and data["model_calls"]["live"] > 0
    assert any("untrained" in n for n in data["notes"])  # the run says its retrieval scores mean nothing

    def memory(shot: int) -> dict[str, dict]:
        out = runner.invoke(app, ["--home", home, "memory", "lighthouse", "--at-shot", str(shot), "--json"])
        assert out.exit_code == 0, out.output
        return {e["name"]: e for e in json.loads(out.stdout)["entities"]}

    for shot in (1, 2, 3):
        assert "Mia_red_scarf" not in memory(shot)
    for shot in (4, 5, 6, 7, 8):
        assert memory(shot)["Mia_red_scarf"]["base_entity"] == "Mia"
    assert "Tom" not in memory(1) and "Tom" in memory(2)  # the late entrance
    assert memory(6)["Mia_red_scarf_back"]["base_entity"] == "Mia_red_scarf"

    out = tmp_path / "lighthouse.mp4"
    exported = runner.invoke(app, ["--home", home, "export", "lighthouse", "-o", str(out), "--json"])
    assert exported.exit_code == 0, exported.output
    info = json.loads(exported.stdout)
    clips = json.loads(runner.invoke(app, ["--home", home, "log", "lighthouse", "--type", "ShotCompleted",
                                           "--json"]).stdout)
    assert len(clips) == 8
    expected = sum(c["payload"]["frames"] for c in clips)
    assert info["frames"] == expected == frame_count(out)
    frames = list(read_frames_from(out))  # playable: every frame decodes
    assert len(frames) == expected and frames[0].shape == (288, 512, 3)
    assert runner.invoke(app, ["--home", home, "verify"]).exit_code == 0

"""scripts/run_local_profile.py: the preflight says what is missing; the stage report adds up."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from codirector.engine.studio import Studio
from codirector.generators.profiles import resolve

from support import fast_config, scripted_backends, write_story

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "run_local_profile.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_local_profile", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stage_report_splits_each_shot_from_the_log(script: ModuleType, tmp_path: Path) -> None:
    studio = Studio(tmp_path / "home")
    story = write_story(tmp_path / "pier.yaml", shots=2)
    studio.run(story, config=fast_config(tmp_path / "fast.toml"), backends=scripted_backends())
    events = studio.log("pier")
    report = script.stage_report(events)
    assert [r["shot"] for r in report["shots"]] == [1, 2]
    for row in report["shots"]:
        calls = [e.payload for e in events if e.type == "ModelCalled" and e.shot == row["shot"]]
        for stage, kind in (("keyframes", "image"), ("analysis", "vlm"), ("video", "video"), ("embeddings", "embed")):
            seconds = sum(c["duration_ms"] for c in calls if c["kind"] == kind) / 1000
            assert row[stage] == pytest.approx(seconds, abs=1e-3)
        assert row["keyframes"] > 0 and row["video"] > 0 and row["engine"] >= row["embeddings"]
        parts = row["keyframes"] + row["analysis"] + row["video"] + row["engine"]
        assert parts == pytest.approx(row["wall"], abs=2e-3)
        assert 0 <= row["engine_share"] <= 1
    mean = report["mean_seconds_per_shot"]
    assert mean["wall"] == pytest.approx(sum(r["wall"] for r in report["shots"]) / 2, abs=1e-3)
    text = script.format_report(report)
    assert "seconds per shot: keyframes" in text and "the engine's share is" in text


def test_preflight_names_what_is_missing(script: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from support import free_port

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    config = tmp_path / "local.toml"
    config.write_text(f'[vlm]\nbase_url = "http://127.0.0.1:{free_port()}/v1"\n')
    missing = script.missing_pieces(resolve("local", config))
    text = "\n".join(missing)
    assert "Qwen/Qwen-Image-Edit-2509" in text and "Wan-AI/Wan2.2-I2V-A14B-Diffusers" in text
    assert str(tmp_path / "hub") in text and "nothing listens at http://127.0.0.1:" in text
    assert "[embedder]" in text
    assert script.main(["--config", str(config), "--home", str(tmp_path / "home")]) == 2
    err = capsys.readouterr().err
    assert "cannot run the local profile here; missing:" in err and "Qwen/Qwen-Image-Edit-2509" in err
    assert not (tmp_path / "home").exists()  # nothing was started

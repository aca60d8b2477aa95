"""Acceptance: `codirector run --config F` with the real backends end to end, offline.

[vlm] and [image] are the OpenAI backends talking to a loopback server that answers each agent
by the json_schema name of the request and each image request with a small PNG; [video] is the
diffusers backend on a tiny random Wan image-to-video pipeline (on the CPU: allow_cpu); the
embedder is open_clip with a tiny config and random weights. The run completes, and the log holds
every call's model, request key, latency and (for the VLM) token usage.
"""

from __future__ import annotations

import json
import re
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from openai_loopback import FAKE_KEY, OpenAIServer
from typer.testing import CliRunner

from codirector.cli import app
from codirector.engine.studio import Studio
from codirector.generators.video_io import frame_count

from support import TINY_CLIP, TINY_CLIP_CONFIG, write_story

if find_spec("diffusers") is None:  # found, not imported: collecting this file does not load diffusers
    pytest.skip("diffusers is not installed", allow_module_level=True)
runner = CliRunner()


def real_config(path: Path, server: OpenAIServer, wan: Path) -> Path:
    clip_config = path.parent / f"{TINY_CLIP}.json"
    clip_config.write_text(json.dumps(TINY_CLIP_CONFIG))
    path.write_text(f"""\
profile = "openai"

[vlm]
backend = "openai"
model = "test-vlm"
base_url = "{server.base_url}"
timeout = 20
max_retries = 0

[image]
backend = "openai"
model = "gpt-image-1"
base_url = "{server.base_url}"
timeout = 20

[video]
backend = "diffusers"
model = "{wan}"
allow_cpu = true
device = "cpu"
steps = 2

[embedder]
backend = "open_clip"
model = "{TINY_CLIP}"
pretrained = "none"
model_config = "{clip_config}"
device = "cpu"

[run]
width = 32
height = 32
num_frames = 5
fps = 4.0
""")
    return path


def test_a_full_run_on_the_real_backends(tmp_path: Path, openai_server: OpenAIServer, api_key: str,
                                         tiny_pipelines: Any) -> None:
    openai_server.answer_agents()
    home = tmp_path / "home"
    story = write_story(tmp_path / "pier.yaml", shots=2)
    config = real_config(tmp_path / "real.toml", openai_server, tiny_pipelines.wan)

    result = runner.invoke(app, ["--home", str(home), "run", str(story), "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["completed"] and not any("animatic" in n for n in report["notes"])

    studio = Studio(home)
    calls = [e.payload for e in studio.log("pier", types=["ModelCalled"])]
    assert {c["kind"] for c in calls} == {"vlm", "image", "video", "embed"}
    for c in calls:
        assert c["error"] is None and re.fullmatch(r"[0-9a-f]{64}", c["request_key"])
        assert c["model"] and c["duration_ms"] > 0
    vlm = [c for c in calls if c["kind"] == "vlm"]
    assert {c["backend"] for c in vlm} == {"openai"} and {c["model"] for c in vlm} == {"test-vlm"}
    assert {c["agent"] for c in vlm} == {"memory_controller", "keyframe_analyzer", "motion_refiner", "video_analyzer"}
    for c in vlm:
        usage = c["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    images = [c for c in calls if c["kind"] == "image"]
    assert {(c["backend"], c["model"]) for c in images} == {("openai", "gpt-image-1")}
    videos = [c for c in calls if c["kind"] == "video"]
    assert [(c["backend"], c["model"], c["response"]["frames"]) for c in videos] == \
        [("diffusers", str(tiny_pipelines.wan), 5)] * 2

    # one recorded call, one request at the server (nothing retried, nothing made twice)
    assert len(openai_server.requests("/v1/chat/completions")) == len(vlm)
    edits = openai_server.requests("/v1/images/edits")
    assert len(openai_server.requests("/v1/images/generations")) + len(edits) == len(images)
    # the keyframes were drawn from the entities' reference views, sent as image[] parts
    generated = [e.payload for e in studio.log("pier", types=["KeyframeGenerated"])]
    assert [len(g["reference_blobs"]) for g in generated] == [2, 2]
    sent = [[p.data for p in s.fields("image[]")] for s in edits]
    for g in generated:
        assert [studio.blobs.get(d) for d in g["reference_blobs"]] in sent
    clips = studio.log("pier", types=["VideoGenerated"])
    assert [(c.payload["frames"], c.payload["width"], c.payload["height"]) for c in clips] == [(5, 32, 32)] * 2
    studio.close()

    out = tmp_path / "pier.mp4"
    exported = runner.invoke(app, ["--home", str(home), "export", "pier", "-o", str(out)])
    assert exported.exit_code == 0, exported.output
    assert frame_count(out) == 10
    assert runner.invoke(app, ["--home", str(home), "verify"]).exit_code == 0
    assert not [p for p in home.rglob("*") if p.is_file() and FAKE_KEY.encode() in p.read_bytes()]

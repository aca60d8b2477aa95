"""ComfyUI servers as backends, through the job protocol, against loopback servers speaking ComfyUI's HTTP API.

The agents and embedder are the counting preview backends (tests/codirector_test_plugins.py); keyframes and
clips come from ``ComfyServer`` (tests/comfyui_loopback.py) running the example workflows of
examples/comfyui/, copied beside each test's config so their paths are relative to it. What is asserted is
what a user relies on: the recorded clip is the bytes ``/view`` returned, the image bound to ``image`` is
the accepted keyframe, a prompt is queued once, ComfyUI's errors are named (pre-flight: exit 13 and nothing
written; queueing and execution: exit 8), a pool survives a server that stops, and replay asks no server.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from comfyui_loopback import EXAMPLES, VIDEO_BIND, ComfyServer, comfy_config, value_not_in_list
from typer.testing import CliRunner

from codirector.cli import app as cli
from codirector.engine.studio import Studio
from codirector.generators.hosted.comfyui import load_workflow

from support import FAST_RUN, write_story

runner = CliRunner()


@pytest.fixture
def comfy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ComfyServer]:
    server = ComfyServer(job_seconds=0.05)
    monkeypatch.setenv("CODIRECTOR_PLUGINS", "codirector_test_plugins")
    yield server
    server.close()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(cli, list(args))
    return result.exit_code, result.output


def video_calls(log: list[Any]) -> list[Any]:
    return [e for e in log if e.type == "ModelCalled" and e.payload["kind"] == "video" and not e.payload.get("error")]


def test_a_story_runs_end_to_end_through_comfyui(tmp_path: Path, comfy: ComfyServer, _isolated_home: Path) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=3)
    config = comfy_config(tmp_path, [comfy], images=True)
    code, out = invoke("run", str(story), "--config", str(config))
    assert code == 0, out
    studio = Studio(_isolated_home)
    log = studio.log("pier")
    selected = {e.shot: e.payload["blob"] for e in log if e.type == "KeyframeSelected"}
    clips = [e for e in log if e.type == "VideoGenerated"]
    calls = [e for e in log if e.type == "ModelCalled" and e.payload["kind"] in ("image", "video")]
    assert len(clips) == 3 and all(c.payload.get("error") is None for c in calls)
    assert len(comfy.posts("/prompt")) == len(calls)  # one queued prompt per call, keyframes and clips alike
    for clip in clips:
        call = next(e for e in video_calls(log) if e.shot == clip.shot)
        job = call.payload["response"]["job"]
        assert job["provider"] == "comfyui" and job["server"] == comfy.url
        assert studio.blobs.get(clip.payload["blob"]) == comfy.output_of(job["job_id"])  # /view's bytes
        assert comfy.loaded_images(job["job_id"])["52"] == studio.blobs.get(selected[clip.shot])  # the keyframe
        graph = comfy.prompts[job["job_id"]].graph
        assert graph["50"]["inputs"]["length"] == FAST_RUN["num_frames"] and graph["7"]["inputs"]["text"] == "blurry"
        assert call.payload["model"].startswith("comfyui:wan22_i2v_api.json@")
        assert clip.payload["frames"] == FAST_RUN["num_frames"]
    keyframe_calls = [e for e in calls if e.payload["kind"] == "image"]
    assert keyframe_calls and all(e.payload["model"].startswith("comfyui:qwen_image_edit_2509_api.json@")
                                  for e in keyframe_calls)
    assert len(comfy.posts("/upload/image")) > comfy.upload_writes == len(comfy.uploads)  # repeats: not written
    assert invoke("verify", "pier")[0] == 0

    code, out = invoke("audit", "pier", "--json")
    assert code == 0, out
    for shot in json.loads(out)["shots"]:
        assert shot["video"]["server"] == comfy.url and shot["video"]["job_id"]

    seen = len(comfy.seen)
    code, out = invoke("replay", "pier")
    assert code == 0, out
    assert len(comfy.seen) == seen  # replay asks no server anything

    code, out = invoke("backends", "--check", "--config", str(config), "--json")
    assert code == 0, out
    video = next(b for b in json.loads(out)["backends"] if b["kind"] == "video")
    assert comfy.url in video["detail"] and "RTX 4090" in video["detail"] and "every node" in video["detail"]


def test_an_edited_workflow_is_a_different_call(tmp_path: Path) -> None:
    flows = tmp_path / "w.json"
    shutil.copy(EXAMPLES / "wan22_i2v_api.json", flows)
    first = load_workflow("video", flows, VIDEO_BIND).model
    graph = json.loads(flows.read_text())
    graph["57"]["inputs"]["steps"] = 30
    flows.write_text(json.dumps(graph))
    assert load_workflow("video", flows, VIDEO_BIND).model != first
    assert load_workflow("video", flows, {**VIDEO_BIND, "seed": "58.inputs.noise_seed"}).model != first


def test_a_bad_binding_or_a_missing_node_class_is_refused_before_anything_is_written(
        tmp_path: Path, comfy: ComfyServer, _isolated_home: Path) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=2)
    config = comfy_config(tmp_path, [comfy], video_bind={**VIDEO_BIND, "image": "99.inputs.image"})
    code, out = invoke("run", str(story), "--config", str(config))
    assert code == 13, out
    assert "names node 99, which wan22_i2v_api.json lacks" in out
    config = comfy_config(tmp_path, [comfy], video_bind={**VIDEO_BIND, "prompt": "6.inputs.txt"})
    code, out = invoke("run", str(story), "--config", str(config))
    assert code == 13 and "node 6 (CLIPTextEncode) has no input 'txt'" in out, out

    comfy.classes.discard("WanImageToVideo")
    config = comfy_config(tmp_path, [comfy])
    code, out = invoke("run", str(story), "--config", str(config))
    assert code == 13, out
    assert "lacks node classes WanImageToVideo" in out
    assert comfy.posts("/prompt") == [] and comfy.uploads == {}
    assert not Studio(_isolated_home).workspace.story_ids()  # nothing written

    comfy.stop()  # a server that is down, alone: refused too, naming it
    code, out = invoke("run", str(story), "--config", str(config))
    assert code == 13 and "no ComfyUI server answers" in out and comfy.url in out, out


def test_node_errors_stop_the_run_with_comfyuis_words_and_resume_continues(
        tmp_path: Path, comfy: ComfyServer, _isolated_home: Path) -> None:
    comfy.node_errors = lambda graph: value_not_in_list(
        "37", "UNETLoader", "unet_name", graph["37"]["inputs"]["unet_name"], ["wan2.1_i2v_480p_14B_fp8.safetensors"])
    story = write_story(tmp_path / "pier.yaml", shots=2)
    config = comfy_config(tmp_path, [comfy])
    code, out = invoke("run", str(story), "--config", str(config))
    assert code == 8, out
    assert "node 37 (UNETLoader) input 'unet_name': Value not in list" in out
    log = Studio(_isolated_home).log("pier")
    assert log[-1].type == "ModelCalled" and "Value not in list" in log[-1].payload["error"]
    assert not [e for e in log if e.type == "ProviderJobSubmitted"]  # nothing was queued
    assert invoke("verify", "pier")[0] == 0
    comfy.node_errors = lambda graph: None
    code, out = invoke("resume", "pier")
    assert code == 0, out
    assert [e.type for e in Studio(_isolated_home).log("pier")][-1] == "StoryCompleted"


def test_an_execution_error_names_the_node_and_its_exception(
        tmp_path: Path, comfy: ComfyServer, _isolated_home: Path) -> None:
    oom = "Allocation on device 0 would exceed allowed memory. (out of memory)"
    comfy.execution_error = lambda prompt: ("57", oom) if len(comfy.history) == 1 else None  # shot 2's clip
    story = write_story(tmp_path / "pier.yaml", shots=3)
    config = comfy_config(tmp_path, [comfy])
    code, out = invoke("run", str(story), "--config", str(config))
    assert code == 8, out
    assert "node 57 (KSamplerAdvanced) raised torch.OutOfMemoryError" in out and oom in out
    log = Studio(_isolated_home).log("pier")
    assert [e.type for e in log[-2:]] == ["ProviderJobSubmitted", "ModelCalled"] and log[-1].payload["error"]
    assert invoke("verify", "pier")[0] == 0
    comfy.execution_error = lambda prompt: None
    code, out = invoke("resume", "pier")
    assert code == 0, out
    assert len(comfy.posts("/prompt")) == 4  # three clips, the failed one queued again once


def test_a_workflow_whose_output_node_made_nothing_is_named(
        tmp_path: Path, comfy: ComfyServer, _isolated_home: Path) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=1)
    config = comfy_config(tmp_path, [comfy])
    text = config.read_text().replace('output = "61"', 'output = "8"')  # VAE Decode: no file
    config.write_text(text)
    code, out = invoke("run", str(story), "--config", str(config))
    assert code == 8, out
    assert "output node 8 (VAEDecode) produced no video file" in out


def test_a_server_that_restarted_and_forgot_the_prompt_gets_it_again(
        tmp_path: Path, comfy: ComfyServer, _isolated_home: Path) -> None:
    comfy.job_seconds = 0.4
    original = comfy.queue_prompt

    def restart_after_first(body: bytes) -> Any:
        answer = original(body)
        if len(comfy.prompts) == 1:
            threading.Timer(0.1, comfy.restart).start()
        return answer

    comfy.queue_prompt = restart_after_first  # type: ignore[method-assign]
    story = write_story(tmp_path / "pier.yaml", shots=2)
    code, out = invoke("run", str(story), "--config", str(comfy_config(tmp_path, [comfy])))
    assert code == 0, out
    log = Studio(_isolated_home).log("pier")
    lost = [e for e in log if e.type == "ProviderJobLost"]
    assert len(lost) == 1 and "restarted" in lost[0].payload["reason"] and lost[0].payload["server"] == comfy.url
    assert len(comfy.posts("/prompt")) == 3
    code, out = invoke("audit", "pier", "--json")
    shot1 = json.loads(out)["shots"][0]["video"]
    assert shot1["lost_jobs"] and shot1["lost_jobs"][0]["server"] == comfy.url


def test_two_servers_one_stopped_mid_batch(tmp_path: Path, _isolated_home: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODIRECTOR_PLUGINS", "codirector_test_plugins")
    a, b = ComfyServer(job_seconds=0.5), ComfyServer(job_seconds=0.05)
    try:
        config = comfy_config(tmp_path, [a, b])

        def stop_a_once_it_runs_a_prompt() -> None:
            deadline = time.monotonic() + 30
            while not a.prompts and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(0.05)
            a.stop()

        watcher = threading.Thread(target=stop_a_once_it_runs_a_prompt, daemon=True)
        watcher.start()
        stories = [write_story(tmp_path / f"s{i}.yaml", shots=2, title=f"Pier {i}") for i in range(2)]
        for path in stories:
            code, out = invoke("run", str(path), "--config", str(config))
            assert code == 0, out
        watcher.join()
        studio = Studio(_isolated_home)
        logs = [studio.log(sid) for sid in sorted(studio.workspace.story_ids())]
        assert len(logs) == 2 and all(log[-1].type == "StoryCompleted" for log in logs)
        assert len(a.prompts) == 1  # the one it lost when it stopped
        calls = [e for log in logs for e in video_calls(log)]
        assert len(calls) == 4 and all(e.payload["response"]["job"]["server"] == b.url for e in calls)
        assert len(b.prompts) == 4  # one per clip on the live server: none queued twice
        lost = [e for log in logs for e in log if e.type == "ProviderJobLost"]
        assert len(lost) == 1 and lost[0].payload["server"] == a.url
        assert "stopped answering" in lost[0].payload["reason"]
        for sid in sorted(studio.workspace.story_ids()):
            code, out = invoke("audit", sid, "--json")
            assert code == 0, out
            assert all(s["video"]["server"] == b.url for s in json.loads(out)["shots"])
        code, out = invoke("backends", "--check", "--config", str(config))
        assert code == 0, out
        assert "DOWN" in out and "RTX 4090" in out
    finally:
        a.close()
        b.close()

"""A ``/v1/videos`` gateway as a provider of clips, through the job protocol, against a loopback server.

Mirrors test_fal_jobs.py: the agents, keyframes and embedder are the counting preview backends
(tests/codirector_test_plugins.py); the clips come from ``OpenAIVideosServer`` (tests/hosted_loopback.py),
which makes each MP4 from the ``input_reference`` its create request carried. What a user relies on: the
recorded clip is the gateway's file, the job's input is the accepted keyframe, the key is nowhere in the
home, faults are waited out or stop the run with the provider's words, a lost job is submitted again and
the log says so, replay asks nothing, and OpenAI's own host (Sora is shut down) is refused before anything runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codirector.cli import app as cli
from codirector.engine.studio import Studio
from codirector.generators import registry

from hosted_loopback import OPENAI_TEST_KEY, OpenAIVideosServer
from support import FAST_RUN, write_story

MODEL = "veo-3.1-fast"  # whatever the gateway serves
runner = CliRunner()


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIVideosServer]:
    server = OpenAIVideosServer(job_seconds=0.15)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_TEST_KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("CODIRECTOR_PLUGINS", "codirector_test_plugins")
    yield server
    server.close()


def videos_config(path: Path, server: OpenAIVideosServer, extra: str = "", base_url: str | None = None,
                  **run: object) -> Path:
    table = {**FAST_RUN, **run}
    lines = ['profile = "preview"', '[vlm]', 'backend = "counting"', '[image]', 'backend = "counting"',
             '[embedder]', 'backend = "counting"',
             "[video]", "backend = \"openai-videos\"", f"model = \"{MODEL}\"",
             f"base_url = \"{base_url or server.url + '/v1'}\"",
             "poll_seconds = 0.02", extra, "[run]", *(f"{k} = {json.dumps(v)}" for k, v in table.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(cli, list(args))
    return result.exit_code, result.output


def home_bytes(home: Path) -> Iterator[tuple[Path, bytes]]:
    for f in home.rglob("*"):
        if f.is_file():
            yield f, f.read_bytes()


def test_a_story_runs_on_a_gateway_and_records_its_clips(tmp_path: Path, gateway: OpenAIVideosServer,
                                                         _isolated_home: Path) -> None:
    gateway.report_cost = 0.42
    story = write_story(tmp_path / "pier.yaml", shots=3)
    code, out = invoke("run", str(story), "--config", str(videos_config(tmp_path / "gw.toml", gateway)))
    assert code == 0, out
    studio = Studio(_isolated_home)
    log = studio.log("pier")
    clips = [e for e in log if e.type == "VideoGenerated"]
    selected = {e.shot: e.payload["blob"] for e in log if e.type == "KeyframeSelected"}
    submitted = [e for e in log if e.type == "ProviderJobSubmitted"]
    assert len(clips) == 3 and len(submitted) == 3 and len(gateway.submits()) == 3
    for clip, ticket in zip(clips, submitted, strict=True):
        assert ticket.payload["ticket"]["provider"] == "openai-videos"
        job = gateway.jobs[ticket.payload["ticket"]["job_id"]]
        assert studio.blobs.get(clip.payload["blob"]) == gateway.output_of(job)  # the gateway's bytes
        assert job.image == studio.blobs.get(selected[clip.shot])  # input_reference was the accepted keyframe
        assert job.body["model"] == MODEL and job.body["seconds"] == "4" and job.body["size"] == "64x48"
        call = next(e for e in log if e.type == "ModelCalled" and e.shot == clip.shot and e.payload["kind"] == "video")
        assert ticket.position < call.position
        assert call.payload["usage"]["video_seconds"] == 4 and call.payload["usage"]["reported_usd"] == 0.42
    submits = gateway.submits()
    assert all(s.headers["content-type"].startswith("multipart/form-data") for s in submits)
    for seen in gateway.seen:
        assert seen.headers["authorization"] == f"Bearer {OPENAI_TEST_KEY}"
    for path, data in home_bytes(_isolated_home):
        assert OPENAI_TEST_KEY.encode() not in data, f"the key is in {path}"
    code, out = invoke("verify", "pier")
    assert code == 0, out


def test_the_json_encoding_sends_the_keyframe_as_a_data_url(tmp_path: Path, gateway: OpenAIVideosServer,
                                                            _isolated_home: Path) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=1)
    config = videos_config(tmp_path / "gw.toml", gateway, extra='encoding = "json"\nsend_size = false\nduration = 8')
    code, out = invoke("run", str(story), "--config", str(config))
    assert code == 0, out
    (seen,) = gateway.submits()
    assert seen.json["input_reference"]["image_url"].startswith("data:image/png;base64,")
    assert seen.json["seconds"] == "8" and "size" not in seen.json
    log = Studio(_isolated_home).log("pier")
    selected = next(e for e in log if e.type == "KeyframeSelected").payload["blob"]
    assert next(iter(gateway.jobs.values())).image == Studio(_isolated_home).blobs.get(selected)


def test_a_429_and_a_503_on_create_are_waited_out(tmp_path: Path, gateway: OpenAIVideosServer,
                                                  _isolated_home: Path) -> None:
    gateway.submit_statuses = [(429, {"Retry-After": "1"}), (503, {"Retry-After": "0"})]
    story = write_story(tmp_path / "pier.yaml", shots=2)
    code, out = invoke("run", str(story), "--config", str(videos_config(tmp_path / "gw.toml", gateway)))
    assert code == 0, out
    assert len(gateway.submits()) == 4 and len(gateway.jobs) == 2  # two refused attempts, then one job per clip
    assert len([e for e in Studio(_isolated_home).log("pier") if e.type == "ProviderJobSubmitted"]) == 2


def test_a_moderated_job_stops_the_run_with_the_reason_and_resume_continues(
        tmp_path: Path, gateway: OpenAIVideosServer, _isolated_home: Path) -> None:
    reason = "Your request was blocked by our moderation system (violence)."
    gateway.moderate = lambda job: reason if len(gateway.jobs) == 1 else None  # the second clip's first job
    story = write_story(tmp_path / "pier.yaml", shots=3)
    config = videos_config(tmp_path / "gw.toml", gateway)
    code, out = invoke("run", str(story), "--config", str(config))
    assert code == 8, out
    assert reason in out and "moderation_blocked" in out
    log = Studio(_isolated_home).log("pier")
    assert [e.type for e in log[-2:]] == ["ProviderJobSubmitted", "ModelCalled"]
    assert reason in log[-1].payload["error"]
    assert invoke("verify", "pier")[0] == 0
    gateway.moderate = lambda job: None  # the cause is fixed
    code, out = invoke("resume", "pier")
    assert code == 0, out
    assert len(gateway.submits()) == 4  # three clips, the moderated one submitted again once
    assert Studio(_isolated_home).log("pier")[-1].type == "StoryCompleted"
    assert invoke("verify", "pier")[0] == 0


def test_a_job_the_gateway_lost_is_submitted_again_and_the_log_says_so(
        tmp_path: Path, gateway: OpenAIVideosServer, _isolated_home: Path) -> None:
    original = gateway.new_job

    def forget_first(*args, **kwargs):  # type: ignore[no-untyped-def]
        job = original(*args, **kwargs)
        if len(gateway.jobs) == 1:
            gateway.forget(job.id)
        return job

    gateway.new_job = forget_first  # type: ignore[method-assign]
    story = write_story(tmp_path / "pier.yaml", shots=2)
    code, out = invoke("run", str(story), "--config", str(videos_config(tmp_path / "gw.toml", gateway)))
    assert code == 0, out
    log = Studio(_isolated_home).log("pier")
    lost = [e for e in log if e.type == "ProviderJobLost"]
    assert len(lost) == 1 and "no longer knows" in lost[0].payload["reason"]
    assert [e.type for e in log if e.shot == 1 and e.type.startswith("ProviderJob")] == [
        "ProviderJobSubmitted", "ProviderJobLost", "ProviderJobSubmitted"]
    assert len(gateway.submits()) == 3


def test_an_expired_download_is_asked_for_again_not_resubmitted(
        tmp_path: Path, gateway: OpenAIVideosServer, _isolated_home: Path) -> None:
    original = gateway.new_job

    def expire(*args, **kwargs):  # type: ignore[no-untyped-def]
        job = original(*args, **kwargs)
        gateway.expire_urls.add(job.id)
        return job

    gateway.new_job = expire  # type: ignore[method-assign]
    story = write_story(tmp_path / "pier.yaml", shots=2)
    code, out = invoke("run", str(story), "--config", str(videos_config(tmp_path / "gw.toml", gateway)))
    assert code == 0, out
    assert len(gateway.submits()) == 2 and all(j.fetched == 1 for j in gateway.jobs.values())
    assert not [e for e in Studio(_isolated_home).log("pier") if e.type == "ProviderJobLost"]


def test_prices_and_replay_send_nothing(tmp_path: Path, gateway: OpenAIVideosServer, _isolated_home: Path) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=2)
    free = "".join(f'[prices."{m}"]\nper_image = 0.0\n' for m in ("hash-16", "plan-driven", "storyboard-v1"))
    config = videos_config(tmp_path / "gw.toml", gateway, extra=f'[prices."{MODEL}"]\nper_second = 0.1\n' + free)
    code, out = invoke("run", str(story), "--config", str(config))
    assert code == 0, out
    code, out = invoke("cost", "pier", "--by", "model", "--json", "--prices", str(config))
    assert code == 0, out
    rows = [r for r in json.loads(out)["rows"] if r.get("model") == MODEL]
    assert rows and rows[0]["usd"] == pytest.approx(2 * 4 * 0.1)
    seen = len(gateway.seen)
    code, out = invoke("replay", "pier")
    assert code == 0, out
    assert len(gateway.seen) == seen  # replay sends nothing to the gateway


def test_openai_own_host_is_refused_before_anything_runs(tmp_path: Path, gateway: OpenAIVideosServer,
                                                         _isolated_home: Path) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=1)
    config = videos_config(tmp_path / "gw.toml", gateway, base_url="https://api.openai.com/v1")
    code, out = invoke("run", str(story), "--config", str(config))
    assert code != 0
    assert "2026-09-24" in out and "gateway" in out
    assert gateway.seen == []
    found = registry.readiness("video", "openai-videos", {"model": MODEL, "base_url": "https://api.openai.com/v1"})
    assert not found.ready and "Sora" in found.detail


def test_the_pre_flight_names_a_bad_duration_and_a_missing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    table = {"model": MODEL, "base_url": "http://127.0.0.1:9/v1", "duration": 5}
    found = registry.readiness("video", "openai-videos", table)
    assert not found.ready and "duration = 5" in found.detail and "4, 8, 12" in found.detail
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    found = registry.readiness("video", "openai-videos", {"model": MODEL, "base_url": "http://127.0.0.1:9/v1"})
    assert not found.ready and "OPENAI_API_KEY" in found.detail
    found = registry.readiness("video", "openai-videos", {"model": MODEL, "base_url": "http://127.0.0.1:9/v1",
                                                          "durations": [5, 10], "duration": 5, "api_key_env": "X_KEY"})
    assert not found.ready and found.detail == "X_KEY is not set"
    caps = registry.capabilities("video", "openai-videos", {"model": MODEL, "base_url": "http://127.0.0.1:9/v1",
                                                            "durations": [5, 10]})
    assert caps.durations == (5.0, 10.0) and caps.first_frame and caps.priced_by == "second"

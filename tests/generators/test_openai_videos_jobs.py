"""A ``/v1/videos`` gateway as a provider of clips, through the job protocol, against a loopback server.

Runs the flow every hosted provider goes through (tests/provider_flow.py), as test_fal_jobs.py does, and adds
what only a gateway has: the agents, keyframes and embedder are the counting preview backends
(tests/codirector_test_plugins.py); the clips come from ``OpenAIVideosServer`` (tests/hosted_loopback.py),
which makes each MP4 from the ``input_reference`` its create request carried. What a user relies on: the
recorded clip is the gateway's file, the job's input is the accepted keyframe, the key is nowhere in the
home, faults are waited out or stop the run with the provider's words, a lost job is submitted again and
the log says so, replay asks nothing, and OpenAI's own host (Sora is shut down) is refused before anything runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from codirector.engine.studio import Studio
from codirector.generators import registry

import provider_flow as flow
from hosted_loopback import OPENAI_TEST_KEY, OpenAIVideosServer, provider_config
from support import write_story

MODEL = "veo-3.1-fast"  # whatever the gateway serves


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIVideosServer]:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    yield from flow.serving(OpenAIVideosServer(job_seconds=0.05), monkeypatch, OPENAI_API_KEY=OPENAI_TEST_KEY)


def videos_config(path: Path, server: OpenAIVideosServer, extra: str = "", base_url: str | None = None,
                  **run: object) -> Path:
    video = {"backend": "openai-videos", "model": MODEL, "base_url": base_url or server.url + "/v1"}
    return provider_config(path, video, extra=extra, **run)


def test_a_story_runs_on_a_gateway_and_records_its_clips(tmp_path: Path, gateway: OpenAIVideosServer,
                                                         _isolated_home: Path) -> None:
    gateway.report_cost = 0.42
    config = videos_config(tmp_path / "gw.toml", gateway)
    recorded = flow.check_a_story_records_the_providers_clips(tmp_path, gateway, config, _isolated_home,
                                                              provider="openai-videos", key=OPENAI_TEST_KEY)
    for clip in recorded.clips:
        assert clip.job.body["model"] == MODEL and clip.job.body["seconds"] == "4" and clip.job.body["size"] == "64x48"
        usage = clip.call.payload["usage"]
        assert usage["video_seconds"] == 4 and usage["reported_usd"] == 0.42
    submits = gateway.submits()
    assert all(s.headers["content-type"].startswith("multipart/form-data") for s in submits)
    for seen in gateway.seen:
        assert seen.headers["authorization"] == f"Bearer {OPENAI_TEST_KEY}"


def test_the_json_encoding_sends_the_keyframe_as_a_data_url(tmp_path: Path, gateway: OpenAIVideosServer,
                                                            _isolated_home: Path) -> None:
    config = videos_config(tmp_path / "gw.toml", gateway, extra='encoding = "json"\nsend_size = false\nduration = 8')
    flow.run_ok(tmp_path, config, shots=1)
    (seen,) = gateway.submits()
    assert seen.json["input_reference"]["image_url"].startswith("data:image/png;base64,")
    assert seen.json["seconds"] == "8" and "size" not in seen.json
    log = Studio(_isolated_home).log("pier")
    selected = next(e for e in log if e.type == "KeyframeSelected").payload["blob"]
    assert next(iter(gateway.jobs.values())).image == Studio(_isolated_home).blobs.get(selected)


def test_a_429_and_a_503_on_create_are_waited_out(tmp_path: Path, gateway: OpenAIVideosServer,
                                                  _isolated_home: Path) -> None:
    config = videos_config(tmp_path / "gw.toml", gateway)
    flow.check_refused_submits_are_waited_out(tmp_path, gateway, config, _isolated_home,
                                              [(429, {"Retry-After": "1"}), (503, {"Retry-After": "0"})])


def test_a_moderated_job_stops_the_run_with_the_reason_and_resume_continues(
        tmp_path: Path, gateway: OpenAIVideosServer, _isolated_home: Path) -> None:
    reason = "Your request was blocked by our moderation system (violence)."
    config = videos_config(tmp_path / "gw.toml", gateway)
    flow.check_a_refused_job_stops_the_run_and_resume_continues(tmp_path, gateway, config, _isolated_home, reason,
                                                                reason, "moderation_blocked")


def test_a_job_the_gateway_lost_is_submitted_again_and_the_log_says_so(
        tmp_path: Path, gateway: OpenAIVideosServer, _isolated_home: Path) -> None:
    config = videos_config(tmp_path / "gw.toml", gateway)
    flow.check_a_lost_job_is_submitted_again(tmp_path, gateway, config, _isolated_home)


def test_an_expired_download_is_asked_for_again_not_resubmitted(
        tmp_path: Path, gateway: OpenAIVideosServer, _isolated_home: Path) -> None:
    config = videos_config(tmp_path / "gw.toml", gateway)
    flow.check_an_expired_file_is_fetched_again(tmp_path, gateway, config, _isolated_home)


def test_prices_and_replay_send_nothing(tmp_path: Path, gateway: OpenAIVideosServer, _isolated_home: Path) -> None:
    config = videos_config(tmp_path / "gw.toml", gateway,
                           extra=f'[prices."{MODEL}"]\nper_second = 0.1\n' + flow.FREE_PREVIEW_PRICES)
    flow.run_ok(tmp_path, config, shots=2)
    assert flow.cost_by_model(config)[MODEL]["usd"] == pytest.approx(2 * 4 * 0.1)
    flow.check_replay_asks_nothing(gateway)


def test_openai_own_host_is_refused_before_anything_runs(tmp_path: Path, gateway: OpenAIVideosServer,
                                                         _isolated_home: Path) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=1)
    config = videos_config(tmp_path / "gw.toml", gateway, base_url="https://api.openai.com/v1")
    code, out = flow.invoke("run", str(story), "--config", str(config))
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

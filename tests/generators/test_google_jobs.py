"""Google's Gemini API as a provider of clips (Veo, as provider jobs) and keyframes (a Gemini image model),
against a loopback server speaking the Gemini API (``GoogleServer``, tests/hosted_loopback.py).

Runs the flow every hosted provider goes through (tests/provider_flow.py), as test_fal_jobs.py does, and adds
what only Google has: agents and embedder are the counting preview backends; the clips (and, in one
test, the keyframes) come from the server, which makes each MP4 from the first frame its operation carried.
Asserted: the recorded clip is Google's file, the operation's first frame is the accepted keyframe and its
references are memory's views, the key goes only to the API as ``x-goog-api-key`` and is nowhere in the
home, faults are waited out or stop the run with Google's words, a lost operation is submitted again and the
log says so, replay asks nothing, and retired models are refused before anything runs.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from codirector.engine.studio import Studio
from codirector.generators import registry
from codirector.generators.hosted import google
from codirector.generators.profiles import resolve

import provider_flow as flow
from hosted_loopback import GEMINI_TEST_KEY, GoogleServer, provider_config

VEO = "veo-3.1-generate-001"
WIDE = {"width": 64, "height": 36}  # 16:9, as Veo makes


@pytest.fixture
def gserver(monkeypatch: pytest.MonkeyPatch) -> Iterator[GoogleServer]:
    yield from flow.serving(GoogleServer(job_seconds=0.05), monkeypatch, GEMINI_API_KEY=GEMINI_TEST_KEY)


def google_config(path: Path, server: GoogleServer, model: str = VEO, image: str = "counting", extra: str = "",
                  **run: object) -> Path:
    api = f"{server.url}/v1beta"
    image_table: dict[str, object] = {"backend": image}
    if image == "google":
        image_table |= {"model": "gemini-3.1-flash-image", "base_url": api}
    return provider_config(path, {"backend": "google", "model": model, "base_url": api}, image=image_table,
                           extra=extra, **{**WIDE, **run})


def test_a_story_runs_on_veo_with_memory_views_and_records_googles_clips(
        tmp_path: Path, gserver: GoogleServer, _isolated_home: Path) -> None:
    config = google_config(tmp_path / "g.toml", gserver)
    recorded = flow.check_a_story_records_the_providers_clips(tmp_path, gserver, config, _isolated_home,
                                                              provider="google", key=GEMINI_TEST_KEY)
    for clip in recorded.clips:
        assert clip.ticket.payload["ticket"]["job_id"].startswith(f"models/{VEO}/operations/")
        refs = clip.event.payload["references"]
        assert refs and clip.job.references == [recorded.studio.blobs.get(r["blob"]) for r in refs]  # memory's views
        parameters = clip.job.body["parameters"]
        assert parameters["aspectRatio"] == "16:9" and parameters["resolution"] == "720p"
        assert parameters["durationSeconds"] == 8  # Veo 3.1 with references makes 8-second clips only
        assert clip.job.body["instances"][0]["referenceImages"][0]["referenceType"] == "asset"
    downloads = [s for s in gserver.seen if ":download" in s.path]
    assert len(downloads) == 3 and all(s.headers["x-goog-api-key"] == GEMINI_TEST_KEY for s in downloads)


def test_a_model_without_references_gets_the_shots_length(tmp_path: Path, gserver: GoogleServer,
                                                          _isolated_home: Path) -> None:
    flow.run_ok(tmp_path, google_config(tmp_path / "g.toml", gserver, model="veo-3.1-lite-generate-001"), shots=1)
    (job,) = gserver.jobs.values()
    assert job.references == [] and "referenceImages" not in job.body["instances"][0]
    assert job.body["parameters"]["durationSeconds"] == 4  # 5 frames at 4 fps: the shortest that holds it


def test_a_429_is_waited_out(tmp_path: Path, gserver: GoogleServer, _isolated_home: Path) -> None:
    config = google_config(tmp_path / "g.toml", gserver)
    flow.check_refused_submits_are_waited_out(tmp_path, gserver, config, _isolated_home,
                                              [(429, {"Retry-After": "1"}), (500, {"Retry-After": "0"})])


def test_a_filtered_video_stops_the_run_with_googles_reason_and_resume_continues(
        tmp_path: Path, gserver: GoogleServer, _isolated_home: Path) -> None:
    reason = "Video generation was blocked: the input image violates the usage guidelines (code 58061214)."
    config = google_config(tmp_path / "g.toml", gserver)
    flow.check_a_refused_job_stops_the_run_and_resume_continues(tmp_path, gserver, config, _isolated_home, reason,
                                                                "58061214")


def test_a_lost_operation_is_submitted_again_and_an_expired_file_fetched_again(
        tmp_path: Path, gserver: GoogleServer, _isolated_home: Path) -> None:
    config = google_config(tmp_path / "g.toml", gserver)
    flow.check_a_lost_job_is_submitted_again(tmp_path, gserver, config, _isolated_home, expire_the_others=True)
    # the expired files were fetched again, not submitted again
    assert all(j.fetched == 1 for j in list(gserver.jobs.values())[1:])


def test_keyframes_from_a_gemini_image_model_prices_and_replay(tmp_path: Path, gserver: GoogleServer,
                                                                _isolated_home: Path) -> None:
    free = "".join(f'[prices."{m}"]\nper_image = 0.0\n' for m in ("hash-16", "plan-driven"))
    config = google_config(tmp_path / "g.toml", gserver, image="google", extra=free)
    flow.run_ok(tmp_path, config, shots=2)
    log = Studio(_isolated_home).log("pier")
    keyframes = [e for e in log if e.type == "ModelCalled" and e.payload["kind"] == "image"]
    assert keyframes and len(keyframes) == len(gserver.images)
    assert not [e for e in log if e.type == "ProviderJobSubmitted" and e.payload["kind"] == "image"]
    sent = gserver.images[-1].body
    assert sent["generationConfig"] == {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": "16:9"}}
    parts = sent["contents"][0]["parts"]
    assert "text" in parts[0] and all(base64.b64decode(p["inline_data"]["data"]) for p in parts[1:])
    assert keyframes[0].payload["usage"]["images"] == 1
    rows = flow.cost_by_model(config)
    assert rows[VEO]["usd"] == pytest.approx(2 * 8 * 0.40)  # the built-in Veo 3.1 price, 8 s per clip
    assert rows["gemini-3.1-flash-image"]["usd"] == pytest.approx(len(keyframes) * 0.067)
    flow.check_replay_asks_nothing(gserver)


def test_retired_models_a_bad_duration_and_a_missing_key_are_named_before_anything_runs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_TEST_KEY)
    found = registry.readiness("video", "google", {"model": "veo-3.1-generate-preview"})
    assert not found.ready and "2026-10-22" in found.detail and VEO in (found.fix or "")
    found = registry.readiness("image", "google", {"model": "gemini-2.5-flash-image"})
    assert not found.ready and "gemini-3.1-flash-image" in (found.fix or "")
    # a gateway may still serve a retired id: only Google's own host is judged
    assert registry.readiness("video", "google", {"model": "veo-3.1-generate-preview",
                                                  "base_url": "http://127.0.0.1:9/gemini/v1beta"}).ready
    found = registry.readiness("video", "google", {"model": VEO, "duration": 5})
    assert not found.ready and "duration = 5" in found.detail and "4, 6, 8" in found.detail
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    found = registry.readiness("video", "google", {"model": VEO})
    assert not found.ready and found.detail == "GEMINI_API_KEY is not set"
    assert registry.reference_limit("video", {"backend": "google", "model": VEO}) == 3
    assert registry.reference_limit("video", {"backend": "google", "model": "veo-3.1-lite-generate-001"}) == 0
    caps = registry.capabilities("video", "google", {"model": VEO})
    assert caps.references == 3 and caps.durations == (4.0, 6.0, 8.0) and caps.priced_by == "second"
    assert registry.capabilities("image", "google", {}).priced_by == "image"
    with pytest.raises(Exception, match="2026-06-30"):
        google.veo_options("veo-3.0-generate-001", None, "GEMINI_API_KEY", None, None, None, None, None, None, None,
                           1.0, 1.0, None, today=date(2026, 12, 7))


def test_the_google_profile_reads_one_key() -> None:
    cfg = resolve("google")
    assert cfg.vlm.base_url == "https://generativelanguage.googleapis.com/v1beta/openai/"
    assert cfg.vlm.api_key_env == "GEMINI_API_KEY"
    assert (cfg.image.backend, cfg.video.backend) == ("google", "google")

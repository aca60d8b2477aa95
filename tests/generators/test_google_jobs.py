"""Google's Gemini API as a provider of clips (Veo, as provider jobs) and keyframes (a Gemini image model),
against a loopback server speaking the Gemini API (``GoogleServer``, tests/hosted_loopback.py).

Mirrors test_fal_jobs.py: agents and embedder are the counting preview backends; the clips (and, in one
test, the keyframes) come from the server, which makes each MP4 from the first frame its operation carried.
Asserted: the recorded clip is Google's file, the operation's first frame is the accepted keyframe and its
references are memory's views, the key goes only to the API as ``x-goog-api-key`` and is nowhere in the
home, faults are waited out or stop the run with Google's words, a lost operation is submitted again and the
log says so, replay asks nothing, and retired models are refused before anything runs.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codirector.cli import app as cli
from codirector.engine.studio import Studio
from codirector.generators import registry
from codirector.generators.hosted import google
from codirector.generators.profiles import resolve

from hosted_loopback import GEMINI_TEST_KEY, GoogleServer
from support import FAST_RUN, write_story

VEO = "veo-3.1-generate-001"
WIDE = {"width": 64, "height": 36}  # 16:9, as Veo makes
runner = CliRunner()


@pytest.fixture
def gserver(monkeypatch: pytest.MonkeyPatch) -> Iterator[GoogleServer]:
    server = GoogleServer(job_seconds=0.15)
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_TEST_KEY)
    monkeypatch.setenv("CODIRECTOR_PLUGINS", "codirector_test_plugins")
    yield server
    server.close()


def google_config(path: Path, server: GoogleServer, model: str = VEO, image: str = "counting", extra: str = "",
                  **run: object) -> Path:
    table = {**FAST_RUN, **WIDE, **run}
    image_table = ['[image]', f'backend = "{image}"']
    if image == "google":
        image_table += ['model = "gemini-3.1-flash-image"', f'base_url = "{server.url}/v1beta"']
    lines = ['profile = "preview"', '[vlm]', 'backend = "counting"', *image_table, '[embedder]',
             'backend = "counting"', '[video]', 'backend = "google"', f'model = "{model}"',
             f'base_url = "{server.url}/v1beta"', "poll_seconds = 0.02", extra,
             "[run]", *(f"{k} = {json.dumps(v)}" for k, v in table.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(cli, list(args))
    return result.exit_code, result.output


def test_a_story_runs_on_veo_with_memory_views_and_records_googles_clips(
        tmp_path: Path, gserver: GoogleServer, _isolated_home: Path) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=3)
    code, out = invoke("run", str(story), "--config", str(google_config(tmp_path / "g.toml", gserver)))
    assert code == 0, out
    studio = Studio(_isolated_home)
    log = studio.log("pier")
    clips = [e for e in log if e.type == "VideoGenerated"]
    selected = {e.shot: e.payload["blob"] for e in log if e.type == "KeyframeSelected"}
    submitted = [e for e in log if e.type == "ProviderJobSubmitted"]
    assert len(clips) == 3 and len(submitted) == 3 and len(gserver.submits()) == 3
    for clip, ticket in zip(clips, submitted, strict=True):
        name = ticket.payload["ticket"]["job_id"]
        assert name.startswith(f"models/{VEO}/operations/")
        job = gserver.jobs[name.rsplit("/", 1)[1]]
        assert studio.blobs.get(clip.payload["blob"]) == gserver.output_of(job)  # Google's bytes, as recorded
        assert job.image == studio.blobs.get(selected[clip.shot])  # the first frame was the accepted keyframe
        refs = clip.payload["references"]
        assert refs and job.references == [studio.blobs.get(r["blob"]) for r in refs]  # memory's views
        parameters = job.body["parameters"]
        assert parameters["aspectRatio"] == "16:9" and parameters["resolution"] == "720p"
        assert parameters["durationSeconds"] == 8  # Veo 3.1 with references makes 8-second clips only
        assert job.body["instances"][0]["referenceImages"][0]["referenceType"] == "asset"
    downloads = [s for s in gserver.seen if ":download" in s.path]
    assert len(downloads) == 3 and all(s.headers["x-goog-api-key"] == GEMINI_TEST_KEY for s in downloads)
    for f in _isolated_home.rglob("*"):
        if f.is_file():
            assert GEMINI_TEST_KEY.encode() not in f.read_bytes(), f"the key is in {f}"
    code, out = invoke("verify", "pier")
    assert code == 0, out


def test_a_model_without_references_gets_the_shots_length(tmp_path: Path, gserver: GoogleServer,
                                                          _isolated_home: Path) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=1)
    config = google_config(tmp_path / "g.toml", gserver, model="veo-3.1-lite-generate-001")
    code, out = invoke("run", str(story), "--config", str(config))
    assert code == 0, out
    (job,) = gserver.jobs.values()
    assert job.references == [] and "referenceImages" not in job.body["instances"][0]
    assert job.body["parameters"]["durationSeconds"] == 4  # 5 frames at 4 fps: the shortest that holds it


def test_a_429_is_waited_out(tmp_path: Path, gserver: GoogleServer, _isolated_home: Path) -> None:
    gserver.submit_statuses = [(429, {"Retry-After": "1"}), (500, {"Retry-After": "0"})]
    story = write_story(tmp_path / "pier.yaml", shots=2)
    code, out = invoke("run", str(story), "--config", str(google_config(tmp_path / "g.toml", gserver)))
    assert code == 0, out
    assert len(gserver.submits()) == 4 and len(gserver.jobs) == 2


def test_a_filtered_video_stops_the_run_with_googles_reason_and_resume_continues(
        tmp_path: Path, gserver: GoogleServer, _isolated_home: Path) -> None:
    reason = "Video generation was blocked: the input image violates the usage guidelines (code 58061214)."
    gserver.moderate = lambda job: reason if len(gserver.jobs) == 1 else None
    story = write_story(tmp_path / "pier.yaml", shots=3)
    config = google_config(tmp_path / "g.toml", gserver)
    code, out = invoke("run", str(story), "--config", str(config))
    assert code == 8, out
    assert "58061214" in out
    log = Studio(_isolated_home).log("pier")
    assert [e.type for e in log[-2:]] == ["ProviderJobSubmitted", "ModelCalled"] and reason in log[-1].payload["error"]
    assert invoke("verify", "pier")[0] == 0
    gserver.moderate = lambda job: None
    code, out = invoke("resume", "pier")
    assert code == 0, out
    assert len(gserver.submits()) == 4
    assert invoke("verify", "pier")[0] == 0


def test_a_lost_operation_is_submitted_again_and_an_expired_file_fetched_again(
        tmp_path: Path, gserver: GoogleServer, _isolated_home: Path) -> None:
    original = gserver.new_job

    def faults(*args, **kwargs):  # type: ignore[no-untyped-def]
        job = original(*args, **kwargs)
        if len(gserver.jobs) == 1:
            gserver.forget(job.id)
        else:
            gserver.expire_urls.add(job.id)
        return job

    gserver.new_job = faults  # type: ignore[method-assign]
    story = write_story(tmp_path / "pier.yaml", shots=2)
    code, out = invoke("run", str(story), "--config", str(google_config(tmp_path / "g.toml", gserver)))
    assert code == 0, out
    log = Studio(_isolated_home).log("pier")
    assert [e.type for e in log if e.shot == 1 and e.type.startswith("ProviderJob")] == [
        "ProviderJobSubmitted", "ProviderJobLost", "ProviderJobSubmitted"]
    assert "no longer knows" in next(e for e in log if e.type == "ProviderJobLost").payload["reason"]
    assert len(gserver.submits()) == 3  # the lost one again; the expired file was fetched again, not resubmitted
    assert all(j.fetched == 1 for j in list(gserver.jobs.values())[1:])


def test_keyframes_from_a_gemini_image_model_prices_and_replay(tmp_path: Path, gserver: GoogleServer,
                                                                _isolated_home: Path) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=2)
    free = "".join(f'[prices."{m}"]\nper_image = 0.0\n' for m in ("hash-16", "plan-driven"))
    config = google_config(tmp_path / "g.toml", gserver, image="google", extra=free)
    code, out = invoke("run", str(story), "--config", str(config))
    assert code == 0, out
    studio = Studio(_isolated_home)
    log = studio.log("pier")
    keyframes = [e for e in log if e.type == "ModelCalled" and e.payload["kind"] == "image"]
    assert keyframes and len(keyframes) == len(gserver.images)
    assert not [e for e in log if e.type == "ProviderJobSubmitted" and e.payload["kind"] == "image"]
    sent = gserver.images[-1].body
    assert sent["generationConfig"] == {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": "16:9"}}
    parts = sent["contents"][0]["parts"]
    assert "text" in parts[0] and all(base64.b64decode(p["inline_data"]["data"]) for p in parts[1:])
    assert keyframes[0].payload["usage"]["images"] == 1
    code, out = invoke("cost", "pier", "--by", "model", "--json", "--prices", str(config))
    assert code == 0, out
    rows = {r.get("model"): r for r in json.loads(out)["rows"]}
    assert rows[VEO]["usd"] == pytest.approx(2 * 8 * 0.40)  # the built-in Veo 3.1 price, 8 s per clip
    assert rows["gemini-3.1-flash-image"]["usd"] == pytest.approx(len(keyframes) * 0.067)
    seen = len(gserver.seen)
    code, out = invoke("replay", "pier")
    assert code == 0, out
    assert len(gserver.seen) == seen  # replay sends nothing to Google


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

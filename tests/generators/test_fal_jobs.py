"""fal as a provider of clips, through the job protocol, against a loopback server speaking fal's queue API.

The agents, keyframes and embedder are the counting preview backends (tests/codirector_test_plugins.py);
the clips come from ``FalServer`` (tests/hosted_loopback.py), which makes each MP4 from the image its
request carried. What is asserted is what a user relies on: the recorded clip is the provider's file, the
job's input is the accepted keyframe, the key is nowhere in the home, the ticket is in the log, a job is
never submitted twice, faults are waited out or stop the run with the provider's words, costs and budget
follow the configured price, and replay asks the provider nothing. The flow every hosted provider goes
through is tests/provider_flow.py's; this file runs it against ``FalServer`` and adds what only fal has.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from codirector.engine.studio import Studio

import provider_flow as flow
from hosted_loopback import FAL_TEST_KEY, KLING, FalServer, decode_data_uri, fal_config
from support import png_bytes, write_story

VIDU = "fal-ai/vidu/q1/reference-to-video"


@pytest.fixture
def fal(monkeypatch: pytest.MonkeyPatch) -> Iterator[FalServer]:
    yield from flow.serving(FalServer(job_seconds=0.05), monkeypatch, FAL_KEY=FAL_TEST_KEY)


def test_a_story_runs_on_fal_and_records_the_providers_clips(tmp_path: Path, fal: FalServer,
                                                              _isolated_home: Path) -> None:
    config = fal_config(tmp_path / "fal.toml", fal)
    recorded = flow.check_a_story_records_the_providers_clips(tmp_path, fal, config, _isolated_home, provider="fal",
                                                              key=FAL_TEST_KEY)
    for clip in recorded.clips:
        assert clip.job.body["duration"] == "5" and clip.job.model == KLING
    for seen in fal.seen:
        if seen.path.startswith("/files/"):
            assert "authorization" not in seen.headers  # the key goes to the API only


def test_a_429_on_submit_is_waited_out(tmp_path: Path, fal: FalServer, _isolated_home: Path) -> None:
    config = fal_config(tmp_path / "fal.toml", fal)
    flow.check_refused_submits_are_waited_out(tmp_path, fal, config, _isolated_home,
                                              [(429, {"Retry-After": "1"}), (503, {"Retry-After": "0"})])


def test_a_moderated_job_stops_the_run_with_the_providers_reason_and_resume_continues(
        tmp_path: Path, fal: FalServer, _isolated_home: Path) -> None:
    reason = "The content was flagged by a content checker (violence)."
    config = fal_config(tmp_path / "fal.toml", fal)
    flow.check_a_refused_job_stops_the_run_and_resume_continues(tmp_path, fal, config, _isolated_home, reason, reason,
                                                                "content_policy_violation")


def test_a_job_the_provider_lost_is_submitted_again_and_the_log_says_so(
        tmp_path: Path, fal: FalServer, _isolated_home: Path) -> None:
    flow.check_a_lost_job_is_submitted_again(tmp_path, fal, fal_config(tmp_path / "fal.toml", fal), _isolated_home)


def test_an_expired_result_url_is_asked_for_again_not_resubmitted(
        tmp_path: Path, fal: FalServer, _isolated_home: Path) -> None:
    flow.check_an_expired_file_is_fetched_again(tmp_path, fal, fal_config(tmp_path / "fal.toml", fal), _isolated_home)


def test_prices_budget_and_replay(tmp_path: Path, fal: FalServer, _isolated_home: Path) -> None:
    config = fal_config(tmp_path / "fal.toml", fal,
                        extra=f'[prices."{KLING}"]\nper_second = 0.1\n' + flow.FREE_PREVIEW_PRICES)
    flow.run_ok(tmp_path, config, shots=3)
    assert flow.cost_by_model(config)[KLING]["usd"] == pytest.approx(3 * 5 * 0.1)
    flow.check_replay_asks_nothing(fal)

    # a budget that holds two clips' worst case (5 s x $0.10 each) but not a third
    story2 = write_story(tmp_path / "pier2.yaml", shots=3, title="Pier Two")
    code, out = flow.invoke("run", str(story2), "--config", str(config), "--budget", "1.2")
    assert code == 12, out
    assert len(fal.submits()) == 3 + 2  # the third clip was never submitted


def test_memory_views_go_to_a_reference_capable_model_and_into_the_key(
        tmp_path: Path, fal: FalServer, _isolated_home: Path) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=2)
    config = fal_config(tmp_path / "vidu.toml", fal, model=VIDU, width=64, height=36)
    code, out = flow.invoke("run", str(story), "--config", str(config))
    assert code == 0, out
    studio = Studio(_isolated_home)
    log = studio.log("pier")
    for clip in (e for e in log if e.type == "VideoGenerated"):
        refs = clip.payload["references"]
        keyframe_refs = next(e for e in log if e.type == "KeyframeGenerated" and e.shot == clip.shot)
        assert refs and [r["blob"] for r in refs] == keyframe_refs.payload["reference_blobs"][: len(refs)]
        ticket = next(e for e in log if e.type == "ProviderJobSubmitted" and e.shot == clip.shot)
        job = fal.jobs[ticket.payload["ticket"]["job_id"]]
        sent = [decode_data_uri(u) for u in job.body["reference_image_urls"]]
        assert sent[1:] == [studio.blobs.get(r["blob"]) for r in refs]  # after the keyframe: memory's views
        call = next(e for e in log if e.type == "ModelCalled" and e.shot == clip.shot and e.payload["kind"] == "video")
        assert [r["blob"] for r in call.payload["request"]["references"]] == [r["blob"] for r in refs]
    code, out = flow.invoke("audit", "pier", "--json")
    assert code == 0
    shots = {s["shot"]: s for s in json.loads(out)["shots"]}
    clip_events = {e.shot: e for e in log if e.type == "VideoGenerated"}
    for shot, clip in clip_events.items():
        assert shots[shot]["video"]["references"] == clip.payload["references"]  # the audit lists them
    code, out = flow.invoke("audit", "pier", "--verbose")
    assert code == 0 and "clip references (memory's views sent with the keyframe): Ada" in out
    html = tmp_path / "audit.html"
    assert flow.invoke("audit", "pier", "--html", str(html))[0] == 0
    assert html.read_text().count("class='refs clip-refs'") == len(clip_events)

    pytest.importorskip("fastapi")
    from codirector.serve.app import create_app
    from codirector.serve.server import StudioServer

    with StudioServer.start(create_app(studio)) as server:  # the studio's shot page shows them too
        with urllib.request.urlopen(f"{server.url}/shot?story=pier&branch=main&shot=1") as answer:
            page = answer.read().decode()
    assert "Memory's views sent with the keyframe" in page and "clip-refs" in page

    # the key changes when a view changes: the same story with another look for Ada sends another request
    for name, color in (("ada_blue", (20, 40, 200)), ("ada_red", (200, 30, 20))):
        (tmp_path / f"{name}.png").write_bytes(png_bytes(color))
        data = yaml.safe_load(write_story(tmp_path / f"{name}.yaml", shots=1, title=name).read_text())
        data["cast"][0]["reference"] = f"{name}.png"  # Ada's given view
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(data))
        assert flow.invoke("run", str(tmp_path / f"{name}.yaml"), "--config", str(config))[0] == 0
    first, other = (next(e for e in Studio(_isolated_home).log(sid) if e.type == "ModelCalled" and e.shot == 1
                         and e.payload["kind"] == "video") for sid in ("ada_blue", "ada_red"))
    first_refs = {r["label"]: r["blob"] for r in first.payload["request"]["references"]}
    other_refs = {r["label"]: r["blob"] for r in other.payload["request"]["references"]}
    assert first_refs["Ada"] != other_refs["Ada"] and first.payload["request_key"] != other.payload["request_key"]


def test_a_frame_size_the_model_does_not_make_is_refused_before_anything_is_written(
        tmp_path: Path, fal: FalServer, _isolated_home: Path) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=2)
    config = fal_config(tmp_path / "veo.toml", fal, model="fal-ai/veo3/image-to-video", width=64, height=48)
    code, out = flow.invoke("run", str(story), "--config", str(config))
    assert code == 13, out
    assert "64x48" in out and "16:9" in out and "[run] width and height" in out
    assert fal.seen == [] and not Studio(_isolated_home).store.stories()

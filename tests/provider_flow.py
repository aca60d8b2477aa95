"""The end-to-end flow every hosted provider of clips goes through, against its loopback server
(tests/hosted_loopback.py): fal, ``/v1/videos`` gateways and Google's Veo each call these with their
server and a config pointing at it, and add in their own test file what only their provider has.

The agents, keyframes and embedder are the counting preview backends (tests/codirector_test_plugins.py);
the story is ``support.write_story``'s "pier". What is asserted is what a user relies on: each recorded
clip is the provider's file for its job, the job's input image is the accepted keyframe, the ticket is
in the log before the call ends, the key is nowhere in the home, ``verify`` passes; faults are waited
out, a refused job stops the run with the provider's words and ``resume`` continues, a lost job is
submitted again and the log says so, an expired file is fetched again (not submitted again), and replay
asks the provider nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from typer.testing import CliRunner

from codirector.cli import app as cli
from codirector.engine.studio import Studio

from hosted_loopback import Job, JobServer
from support import write_story

S = TypeVar("S", bound=JobServer)
FREE_PREVIEW_PRICES = "".join(f'[prices."{m}"]\nper_image = 0.0\n' for m in ("hash-16", "plan-driven", "storyboard-v1"))
runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(cli, list(args))
    return result.exit_code, result.output


def serving(server: S, monkeypatch: pytest.MonkeyPatch, **keys: str) -> Iterator[S]:
    """A fixture's body: ``server`` with its key(s) in the environment and the counting backends loaded."""
    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CODIRECTOR_PLUGINS", "codirector_test_plugins")
    yield server
    server.close()


def run_ok(tmp_path: Path, config: Path, shots: int) -> Path:
    """The "pier" story of ``shots`` shots, run to the end with ``config``."""
    story = write_story(tmp_path / "pier.yaml", shots=shots)
    code, out = invoke("run", str(story), "--config", str(config))
    assert code == 0, out
    return story


def log_of(home: Path) -> list[Any]:
    return Studio(home).log("pier")


def assert_key_nowhere(home: Path, key: str) -> None:
    for f in home.rglob("*"):
        if f.is_file():
            assert key.encode() not in f.read_bytes(), f"the key is in {f}"


@dataclass
class Clip:
    """One recorded clip: its VideoGenerated event, the ticket of its job, the video ModelCalled, the server's job."""

    event: Any
    ticket: Any
    call: Any
    job: Job


@dataclass
class Recorded:
    studio: Studio
    log: list[Any]
    clips: list[Clip]


def check_a_story_records_the_providers_clips(tmp_path: Path, server: JobServer, config: Path, home: Path, *,
                                              provider: str, key: str, shots: int = 3) -> Recorded:
    """Run "pier" and check what every provider owes: the clips, their jobs, the key, ``verify``."""
    run_ok(tmp_path, config, shots)
    studio = Studio(home)
    log = studio.log("pier")
    videos = [e for e in log if e.type == "VideoGenerated"]
    selected = {e.shot: e.payload["blob"] for e in log if e.type == "KeyframeSelected"}
    submitted = [e for e in log if e.type == "ProviderJobSubmitted"]
    assert len(videos) == shots and len(submitted) == shots and len(server.submits()) == shots
    clips = []
    for video, ticket in zip(videos, submitted, strict=True):
        assert ticket.payload["ticket"]["provider"] == provider
        job = server.job_of(ticket.payload["ticket"]["job_id"])
        assert studio.blobs.get(video.payload["blob"]) == server.output_of(job)  # the provider's bytes, as recorded
        assert job.image == studio.blobs.get(selected[video.shot])  # its input was the accepted keyframe
        call = next(e for e in log if e.type == "ModelCalled" and e.shot == video.shot and e.payload["kind"] == "video")
        assert ticket.position < call.position  # the ticket is in the log before the call ends
        clips.append(Clip(video, ticket, call, job))
    assert_key_nowhere(home, key)
    code, out = invoke("verify", "pier")
    assert code == 0, out
    return Recorded(studio, log, clips)


def check_refused_submits_are_waited_out(tmp_path: Path, server: JobServer, config: Path, home: Path,
                                         statuses: list[tuple[int, dict[str, str]]]) -> None:
    """Submits answered with ``statuses`` (429, 5xx with Retry-After) are tried again; one job per clip."""
    server.submit_statuses = list(statuses)
    run_ok(tmp_path, config, shots=2)
    posts = [s for s in server.seen if s.method == "POST"]
    assert len(posts) == len(server.submits()) == 2 + len(statuses)  # the refused attempts, then one job per clip
    assert len(server.jobs) == 2
    assert len([e for e in log_of(home) if e.type == "ProviderJobSubmitted"]) == 2


def check_a_refused_job_stops_the_run_and_resume_continues(tmp_path: Path, server: JobServer, config: Path,
                                                           home: Path, reason: str, *words: str) -> None:
    """The second clip's first job fails with ``reason``: the run stops (exit 8) saying ``words``, the log ends
    with the ticket and the failed call and verifies; once the cause is gone, ``resume`` submits it once more."""
    server.moderate = lambda job: reason if len(server.jobs) == 1 else None  # the second clip's first job
    story = write_story(tmp_path / "pier.yaml", shots=3)
    code, out = invoke("run", str(story), "--config", str(config))
    assert code == 8, out
    for word in words:
        assert word in out
    log = log_of(home)
    assert [e.type for e in log[-2:]] == ["ProviderJobSubmitted", "ModelCalled"]
    assert reason in log[-1].payload["error"]
    assert invoke("verify", "pier")[0] == 0
    server.moderate = lambda job: None  # the cause is fixed
    code, out = invoke("resume", "pier")
    assert code == 0, out
    assert len(server.submits()) == 4  # three clips, the refused one submitted again once
    assert log_of(home)[-1].type == "StoryCompleted"
    assert invoke("verify", "pier")[0] == 0


def break_jobs(server: JobServer, *, lose_first: bool = False, expire: bool = False) -> None:
    """From now on the provider forgets the first job it accepts (``lose_first``) and/or the file of every
    other one answers 410 once (``expire``)."""
    original = server.new_job

    def new_job(*args: Any, **kwargs: Any) -> Job:
        job = original(*args, **kwargs)
        if lose_first and len(server.jobs) == 1:
            server.forget(job.id)
        elif expire:
            server.expire_urls.add(job.id)
        return job

    server.new_job = new_job  # type: ignore[method-assign]


def check_a_lost_job_is_submitted_again(tmp_path: Path, server: JobServer, config: Path, home: Path, *,
                                        expire_the_others: bool = False) -> list[Any]:
    """The first job is forgotten by the provider: it is submitted again, and the log says why."""
    break_jobs(server, lose_first=True, expire=expire_the_others)
    run_ok(tmp_path, config, shots=2)
    log = log_of(home)
    lost = [e for e in log if e.type == "ProviderJobLost"]
    assert len(lost) == 1 and "no longer knows" in lost[0].payload["reason"]
    assert [e.type for e in log if e.shot == 1 and e.type.startswith("ProviderJob")] == [
        "ProviderJobSubmitted", "ProviderJobLost", "ProviderJobSubmitted"]
    assert len(server.submits()) == 3  # the lost one again, nothing else
    return log


def check_an_expired_file_is_fetched_again(tmp_path: Path, server: JobServer, config: Path, home: Path) -> None:
    """Every job's file answers 410 once: it is asked for again, never submitted again."""
    break_jobs(server, expire=True)
    run_ok(tmp_path, config, shots=2)
    assert len(server.submits()) == 2 and all(j.fetched == 1 for j in server.jobs.values())
    assert not [e for e in log_of(home) if e.type == "ProviderJobLost"]


def cost_by_model(config: Path) -> dict[str, dict[str, Any]]:
    """``codirector cost pier --by model`` at ``config``'s prices: its rows by model."""
    code, out = invoke("cost", "pier", "--by", "model", "--json", "--prices", str(config))
    assert code == 0, out
    return {r["model"]: r for r in json.loads(out)["rows"] if r.get("model")}


def check_replay_asks_nothing(server: JobServer) -> None:
    seen = len(server.seen)
    code, out = invoke("replay", "pier")
    assert code == 0, out
    assert len(server.seen) == seen  # replay sends nothing to the provider

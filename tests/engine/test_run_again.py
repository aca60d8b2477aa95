"""Running a story file again continues it; an edited file is refused with the difference; `forget` hides
a story that never got a shot done, and nothing is deleted.

The kill test runs real `codirector` processes (forked by the session's ``fork_server``; counting backends from
tests/codirector_test_plugins.py, as in test_crash_resume.py) and SIGKILLs the first one after its second shot;
the others use the Studio API with scripted backends at the backend interface and the CLI for what the user types.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from codirector.cli import app
from codirector.engine.studio import Studio
from codirector.errors import AlreadyExists
from codirector.store.event_store import EventStore
from codirector.store.leases import Leases

from processes import ForkServer, cli_env, count_events, kill_after_shot
from support import counting_config, fast_config, normalised, scripted_backends, write_story

runner = CliRunner()


def wait_for_expiry(db: Path, story: str, branch: str = "main", timeout: float = 30) -> None:
    """Until the branch lease of a killed run has expired (CODIRECTOR_LEASE_TTL after its last heartbeat)."""
    store = EventStore.open(f"sqlite:///{db}")
    try:
        deadline = time.monotonic() + timeout
        while (lease := Leases(store.engine).get(story, branch)) is not None and lease.live:
            assert time.monotonic() < deadline, f"the lease on {story}/{branch} did not expire: {lease}"
            time.sleep(0.05)
    finally:
        store.close()


@pytest.mark.slow
def test_run_twice_the_first_killed_after_shot_2_ends_with_the_log_of_an_uninterrupted_run(
    tmp_path: Path, fork_server: ForkServer
) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=5)
    command = ["run", str(story), "--config", str(counting_config(tmp_path / "counting.toml")), "--json"]

    reference_home = tmp_path / "reference"
    done = fork_server.run(command, cli_env(reference_home), timeout=300)
    assert done.returncode == 0, done.stderr
    reference = normalised(Studio(reference_home).log("pier"))
    assert reference[-1][0] == "StoryCompleted"

    home = tmp_path / "home"
    db = home / "codirector.db"
    assert kill_after_shot(fork_server.start(command, cli_env(home)), db, 2), "the run finished before it was killed"
    completed = count_events(db, "ShotCompleted")
    assert 2 <= completed < 5
    wait_for_expiry(db, "pier")  # the killed run's branch lease (CODIRECTOR_LEASE_TTL=1)

    again = fork_server.run(command, cli_env(home), timeout=300)  # the same command
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["completed"] is True
    assert result["notes"][0].startswith(f"continuing pier from shot {completed + 1}: the same story file")
    studio = Studio(home)
    assert normalised(studio.log("pier")) == reference
    assert studio.verify().ok


def test_an_edited_story_file_is_refused_with_the_difference_and_nothing_is_written(tmp_path: Path) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=3)
    cfg = fast_config(tmp_path / "f.toml")
    studio = Studio(tmp_path / "home")
    studio.run(story, config=cfg, backends=scripted_backends())
    before = len(studio.log("pier"))

    data = yaml.safe_load(story.read_text())
    data["shots"][2]["keyframe"] = "Ben alone fishing off the pier at night"
    story.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(AlreadyExists) as info:
        studio.run(story, config=cfg, backends=scripted_backends())
    err = info.value
    assert ("spec.shots[2].keyframe (shot 3): 'Ben alone fishing off the pier' -> "
            "'Ben alone fishing off the pier at night'") in err.message
    assert "--story-id" in (err.hint or "") and "codirector branch pier --from-shot 3" in (err.hint or "")
    assert len(studio.log("pier")) == before

    with pytest.raises(AlreadyExists) as info:  # options are part of the story too: like is compared with like
        studio.run(story, config=cfg, max_rounds=2, backends=scripted_backends())
    assert "settings.run.max_rounds: 3 -> 2" in info.value.message

    out = runner.invoke(app, ["--home", str(tmp_path / "home"), "run", str(story), "--config", str(cfg)])
    assert out.exit_code == 10 and "differs from it" in out.output and "Traceback" not in out.output
    assert len(studio.log("pier")) == before
    # under another id it is simply a new story
    assert studio.run(story, config=cfg, story_id="pier-night", backends=scripted_backends()).completed


class CtrlCAtFirstCall:
    """A progress display whose user presses Ctrl-C just before the first model call."""

    def shot(self, shot: int, total: int, prompt: str) -> None:
        pass

    def step(self, what: str) -> None:
        raise KeyboardInterrupt

    def done(self, shot: int) -> None:
        pass


def test_a_failed_first_try_is_continued_or_forgotten(tmp_path: Path) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=2)
    cfg = fast_config(tmp_path / "f.toml")
    home = str(tmp_path / "home")
    studio = Studio(home)
    with pytest.raises(KeyboardInterrupt):
        studio.run(story, config=cfg, backends=scripted_backends(), progress=CtrlCAtFirstCall())
    assert [s.id for s in studio.stories()] == ["pier"]
    partial = studio.log("pier")
    assert [e.type for e in partial] == ["StoryCreated", "ShotPlanned", "ShotPlanned", "ShotStarted"]

    out = runner.invoke(app, ["--home", home, "forget", "pier"])
    assert out.exit_code == 0, out.output
    assert "forgot pier" in out.output and f"its {len(partial)} events stay in the log" in out.output
    assert json.loads(runner.invoke(app, ["--home", home, "stories", "--json"]).stdout) == []
    listed = json.loads(runner.invoke(app, ["--home", home, "stories", "--forgotten", "--json"]).stdout)
    assert [s["id"] for s in listed] == ["pier"]
    assert normalised(studio.log("pier")) == normalised(partial)  # main's log is untouched
    mark = studio.log("pier", "forgotten~1")  # the mark sits on a branch of its own, forked at main's head
    assert normalised(mark[:-1]) == normalised(partial) and mark[-1].type == "StoryForgotten"
    assert "already forgotten" in runner.invoke(app, ["--home", home, "forget", "pier"]).output

    result = studio.run(story, config=cfg, backends=scripted_backends())  # the same file again: continued
    assert result.completed
    assert result.notes[0].startswith("continuing pier from shot 1 (it had been forgotten; it is listed again)")
    assert [s.id for s in studio.stories()] == ["pier"]
    assert studio.replay("pier").identical  # the story runs and replays as if never forgotten
    reference = Studio(tmp_path / "reference")
    reference.run(story, config=cfg, backends=scripted_backends())
    assert normalised(studio.log("pier")) == normalised(reference.log("pier"))
    assert studio.verify().ok

    refused = runner.invoke(app, ["--home", home, "forget", "pier"])
    assert refused.exit_code == 10 and "2 completed shots" in refused.output
    missing = runner.invoke(app, ["--home", home, "forget", "peir"])
    assert missing.exit_code == 3 and "pier" in missing.output


def test_a_story_whose_plan_the_preview_derives_is_compared_like_with_like(tmp_path: Path) -> None:
    story = tmp_path / "harbour.yaml"
    story.write_text(yaml.safe_dump({"title": "Harbour", "seed": 5, "shots": [
        {"keyframe": "Mara mends a net on the harbour wall", "motion": "gulls circle"},
        {"keyframe": "Mara rows out past the harbour wall", "motion": "the boat rocks"}]}, sort_keys=False))
    cfg = fast_config(tmp_path / "f.toml")
    studio = Studio(tmp_path / "home")
    first = studio.run(story, config=cfg, backends=scripted_backends())
    assert studio.log("harbour")[0].payload["spec"]["plan_source"] == "derived from the text"
    again = studio.run(story, config=cfg, backends=scripted_backends())  # the plan is derived again, and equal
    assert first.completed and again.written == 0 and "harbour/main is already complete" in again.notes

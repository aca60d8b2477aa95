"""A versioned loop (``engine.loop.patches``): a run keeps the loop patches it started with, on any release.

The patch ``x`` below stands for a behaviour change of the loop: the tests add it to ``LOOP_PATCHES`` (the code
"has" it) and watch what ``ctx.patched("x")`` answers while the loop runs each shot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from codirector.engine.loop import patches
from codirector.engine.loop.algorithm import Loop
from codirector.engine.studio import Studio
from codirector.errors import RunStateError
from codirector.events import RUN_MARKS

from support import fast_config, scripted_backends, write_story


class StopAtShot:
    """A progress display whose user presses Ctrl-C as shot ``at`` begins."""

    def __init__(self, at: int) -> None:
        self.at = at

    def shot(self, shot: int, total: int, prompt: str) -> None:
        if shot == self.at:
            raise KeyboardInterrupt

    def step(self, what: str) -> None:
        pass

    def done(self, shot: int) -> None:
        pass


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """(shot, patched("x")) for every shot the loop runs."""
    out: list[tuple[int, bool]] = []
    original = Loop.run_shot

    def run_shot(self: Loop, t: int) -> None:
        out.append((t, self.ctx.patched("x") if "x" in patches.LOOP_PATCHES else False))
        original(self, t)

    monkeypatch.setattr(Loop, "run_shot", run_shot)
    return out


def segments(studio: Studio, story: str, branch: str = "main") -> list[dict[str, Any]]:
    """Where each release took over the run: the branch's creation, then each ``RunSegmentStarted``."""
    out = []
    for e in studio.log(story, branch, types=["StoryCreated", "BranchCreated", "RunSegmentStarted"]):
        if e.type == "RunSegmentStarted":
            out.append({"position": e.position, **e.payload})
        elif e.branch == branch:
            out.append({"position": e.position, "codirector": e.payload.get("codirector"),
                        "patches": e.payload.get("loop_patches")})
    return out


def interrupted_run(tmp_path: Path, *, at: int) -> tuple[Studio, Path, Path, int]:
    """A 3-shot story ``pier`` run until Ctrl-C as shot ``at`` begins: the studio, story file, config and log head."""
    studio = Studio(tmp_path / "home")
    story, cfg = write_story(tmp_path / "pier.yaml", shots=3), fast_config(tmp_path / "f.toml")
    with pytest.raises(KeyboardInterrupt):
        studio.run(story, config=cfg, backends=scripted_backends(), progress=StopAtShot(at))
    return studio, story, cfg, studio.log("pier")[-1].position


def test_a_run_started_without_a_patch_resumes_without_it_on_code_that_has_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seen: list[tuple[int, bool]]) -> None:
    studio = Studio(tmp_path / "home")
    story, cfg = write_story(tmp_path / "pier.yaml", shots=3), fast_config(tmp_path / "f.toml")
    with pytest.raises(KeyboardInterrupt):  # started on a release without x
        studio.run(story, config=cfg, backends=scripted_backends(), progress=StopAtShot(2))
    assert segments(studio, "pier") == [{"position": 1, "codirector": patches.engine_version(), "patches": []}]
    assert not studio.log("pier", types=["RunSegmentStarted"])  # created and run on one release: no mark

    monkeypatch.setitem(patches.LOOP_PATCHES, "x", "a behaviour change")  # the next release has x
    seen.clear()
    assert studio.resume("pier", backends=scripted_backends()).completed
    assert seen == [(1, False), (2, False), (3, False)]  # shot 1 re-run (matched), 2 and 3 new: all without x
    assert len(segments(studio, "pier")) == 1  # the same release: nothing more to record

    seen.clear()
    report = studio.replay("pier")
    assert report.identical and report.model_calls == 0 and [p for _, p in seen] == [False] * 3

    seen.clear()
    assert studio.run(write_story(tmp_path / "dock.yaml", shots=2), config=cfg, backends=scripted_backends()).completed
    assert [p for _, p in seen] == [True, True]  # a new run has it
    assert segments(studio, "dock")[0]["patches"] == ["x"]


def test_a_run_with_a_patch_keeps_it_and_a_new_release_is_recorded_where_it_takes_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seen: list[tuple[int, bool]]) -> None:
    monkeypatch.setitem(patches.LOOP_PATCHES, "x", "a behaviour change")
    studio, story, cfg, head = interrupted_run(tmp_path, at=3)

    monkeypatch.setattr(patches, "engine_version", lambda: "99.0")
    seen.clear()
    assert studio.resume("pier", backends=scripted_backends()).completed
    assert seen == [(1, True), (2, True), (3, True)]
    marks = segments(studio, "pier")
    assert [(m["codirector"], m["patches"]) for m in marks] == [(marks[0]["codirector"], ["x"]), ("99.0", ["x"])]
    assert marks[1]["position"] == head + 1  # where 99.0 began writing
    report = studio.replay("pier")
    assert report.identical and report.model_calls == 0

    monkeypatch.delitem(patches.LOOP_PATCHES, "x")  # an older release, without x, may not continue it
    with pytest.raises(RunStateError, match="loop patches this release .* does not have: x"):
        studio.replay("pier")


def test_run_patches_reads_the_first_segment_and_a_log_from_before_segments_as_no_patch() -> None:
    from codirector.events import ShotPlanned, seal

    def recorded(*events: Any) -> list[Any]:
        return [seal(e.at(), story_id="s", branch="main", position=i, prev_hash="", recorded_at="")[0]
                for i, e in enumerate(events, start=2)]

    planned = ShotPlanned(keyframe_prompt="k", motion_prompt="m")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(patches.LOOP_PATCHES, "x", "a behaviour change")
        assert patches.run_patches([]) == {"x"}  # nothing run yet: a new run
        assert patches.run_patches(recorded(planned)) == frozenset()  # begun before loops were versioned
        started = patches.segment_to_record([], ["x"])
        assert started is not None and started.patches == ["x"]
        assert patches.run_patches(recorded(started, planned)) == {"x"}
        assert patches.segment_to_record(recorded(started, planned), ["x"]) is None  # same release: no new mark
        assert patches.run_patches(recorded(planned, started)) == frozenset()  # a legacy run's first mark
    assert "RunSegmentStarted" in RUN_MARKS


def test_the_same_file_run_again_on_a_new_release_continues_the_story_and_records_where_it_took_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seen: list[tuple[int, bool]]) -> None:
    studio, story, cfg, head = interrupted_run(tmp_path, at=2)

    monkeypatch.setattr(patches, "engine_version", lambda: "99.0")
    monkeypatch.setitem(patches.LOOP_PATCHES, "x", "a behaviour change")  # the new release has x
    seen.clear()
    # The release that created the story is not part of what the file asks for: not refused as "differs".
    assert studio.run(story, config=cfg, backends=scripted_backends()).completed
    assert [p for _, p in seen] == [False] * 3  # the run keeps the loop it was created with
    first = segments(studio, "pier")[0]["codirector"]
    assert segments(studio, "pier") == [{"position": 1, "codirector": first, "patches": []},
                                        {"position": head + 1, "codirector": "99.0", "patches": []}]


def test_a_fork_keeps_the_patches_of_the_release_that_created_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seen: list[tuple[int, bool]]) -> None:
    studio = Studio(tmp_path / "home")
    story, cfg = write_story(tmp_path / "pier.yaml", shots=3), fast_config(tmp_path / "f.toml")
    assert studio.run(story, config=cfg, backends=scripted_backends()).completed  # main: without x
    monkeypatch.setitem(patches.LOOP_PATCHES, "x", "a behaviour change")
    studio.branch("pier", from_shot=2, name="dusk")  # created on code with x
    fork = next(e for e in studio.log("pier", "dusk") if e.type == "BranchCreated")
    assert (fork.payload["codirector"], fork.payload["loop_patches"]) == (patches.engine_version(), ["x"])

    monkeypatch.delitem(patches.LOOP_PATCHES, "x")  # an older release may not run it
    with pytest.raises(RunStateError, match="does not have: x"):
        studio.run_branch("pier", "dusk", backends=scripted_backends())
    monkeypatch.setitem(patches.LOOP_PATCHES, "x", "a behaviour change")
    seen.clear()
    assert studio.run_branch("pier", "dusk", backends=scripted_backends()).completed
    assert seen and all(p for _, p in seen) and [t for t, _ in seen] == [2, 3]
    assert not studio.log("pier", "dusk", types=["RunSegmentStarted"])
    assert studio.replay("pier", "dusk").identical

"""Bad input never shows a traceback: every error a user can cause is one line of cause, one of fix, and
an exit code that says which kind of problem it is (the tree in ``codirector.errors``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from codirector import errors
from codirector.cli import app
from codirector.engine.studio import Studio

from support import tiny_preview_config, write_story

runner = CliRunner()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with one finished one-shot story, ``pier``."""
    folder = tmp_path_factory.mktemp("errors")
    story = write_story(folder / "pier.yaml", shots=1)
    result = runner.invoke(app, ["--home", str(folder / "home"), "run", str(story), "--config",
                                 str(tiny_preview_config(folder))])
    assert result.exit_code == 0, result.output
    return folder / "home"


def fails(args: list[str], code: int, *expected: str) -> list[str]:
    """Run the CLI, check the exit code, that no traceback shows and that the message names the problem."""
    result = runner.invoke(app, args)
    out = result.output
    assert result.exit_code == code, out
    assert "Traceback" not in out
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    for text in expected:
        assert text in out, out
    lines = [line for line in out.splitlines() if line.startswith(("error:", "Error:"))]
    assert len(lines) == 1, out  # exactly one line of cause
    return out.splitlines()


def test_the_tree_groups_errors_by_what_the_caller_can_do_and_keeps_every_exit_code() -> None:
    codes = {errors.ConfigError: 2, errors.StoryFileError: 2, errors.NotFound: 3, errors.StoryNotFound: 3,
             errors.VersionConflict: 4, errors.IntegrityViolation: 5, errors.StoreError: 6, errors.StoreBusy: 6,
             errors.AgentOutputInvalid: 7, errors.BackendError: 8, errors.ReplayDivergence: 9,
             errors.RunStateError: 10, errors.AlreadyExists: 10, errors.InvalidArgument: 2, errors.BranchBusy: 11}
    assert {cls: cls.exit_code for cls in codes} == codes
    kinds = {errors.InputError: (errors.ConfigError, errors.StoryFileError, errors.InvalidArgument,
                                 errors.BranchNotFound, errors.EntityNotFound, errors.StoryNotFound),
             errors.StateConflict: (errors.RunStateError, errors.AlreadyExists, errors.VersionConflict,
                                    errors.BranchBusy, errors.StoreBusy),
             errors.SystemFailure: (errors.IntegrityViolation, errors.StoreError, errors.ReplayDivergence,
                                    errors.BackendError, errors.AgentOutputInvalid)}
    for group, members in kinds.items():
        for cls in members:
            assert issubclass(cls, group), cls
            assert not any(issubclass(cls, other) for other in kinds if other is not group), cls
    assert issubclass(errors.BackendError, errors.BackendFailure)
    assert issubclass(errors.AgentOutputInvalid, errors.BackendFailure)


def test_bad_option_values_name_the_value_and_what_is_valid(home: Path) -> None:
    h = ["--home", str(home)]
    fails([*h, "branch", "pier", "--from-shot", "1", "--name", "x", "--set", "shots.1.keyframe"], 2,
          "--set 'shots.1.keyframe'", "shots.N.keyframe=TEXT")
    fails([*h, "branch", "pier", "--from-shot", "one", "--name", "x"], 2, "'--from-shot'", "integer")
    fails([*h, "branch", "pier", "--from-shot", "1", "--name", "x", "--set", "shot.1.prompt=y"], 2,
          "cannot set 'shot.1.prompt'", "fix: use shots.N.keyframe=TEXT")
    fails([*h, "branch", "pier", "--from-shot", "5", "--name", "x"], 2, "--from-shot must be between 1 and 1")
    fails([*h, "memory", "pier", "--at-shot", "0"], 2, "--at-shot must be 1 or more")
    fails([*h, "log", "pier", "--type", "ShotStarteed"], 2, "unknown event type 'ShotStarteed'", "ShotStarted")
    fails([*h, "run", "--story", "pier", "--branch", "main"], 2, "the main branch is continued by `resume`",
          "fix: codirector resume pier")


def test_names_that_do_not_exist_get_suggestions(home: Path) -> None:
    h = ["--home", str(home)]
    fails([*h, "memory", "peir"], 3, "no story 'peir'", "did you mean 'pier'")
    fails([*h, "replay", "pier", "--branch", "mian"], 3, "did you mean 'main'")
    fails([*h, "history", "pier", "Adda"], 3, "no entity 'Adda'")


def test_bad_files_and_configs_say_which_file_and_why(home: Path, tmp_path: Path) -> None:
    h = ["--home", str(home)]
    story = write_story(tmp_path / "quay.yaml", shots=1)
    broken = tmp_path / "broken.toml"
    broken.write_text("[run\nmax_rounds = ")
    fails([*h, "run", str(tmp_path / "missing.yaml")], 2, "missing.yaml does not exist")
    fails([*h, "run", str(story), "--config", str(broken)], 2, "broken.toml is not valid TOML")
    fails([*h, "run", str(story), "--config", str(tmp_path / "nope.toml")], 2, "nope.toml does not exist")
    fails([*h, "run", str(story), "--profile", "previwe"], 2, "unknown profile 'previwe'", "preview")
    fails([*h, "bench", str(tmp_path / "no-such-folder")], 2, "no-such-folder")


def test_a_story_that_exists_is_a_state_conflict_with_the_way_on(home: Path, tmp_path: Path) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=1)
    fails(["--home", str(home), "run", str(story), "--config", str(tiny_preview_config(tmp_path))], 10,
          "a story with id 'pier' already exists", "codirector resume pier", "--story-id NEW_ID")


def test_a_database_that_cannot_be_reached_names_the_url_and_the_fix(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODIRECTOR_DB_RETRY_SECONDS", "0.3")  # tried again for 0.3 s, not 3, before it says so
    fails(["--db", "postgresql://nobody@127.0.0.1:1/none", "stories"], 6, "127.0.0.1", "fix:")
    fails(["--db", "mysql://x/y", "stories"], 6, "unsupported database URL 'mysql://x/y'", "postgresql://")
    fails(["--home", str(tmp_path / "nowhere"), "audit", "pier"], 6, "no codirector database", "codirector init")


def test_a_folder_the_system_refuses_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    fails(["--home", str(blocker / "home"), "init"], 1, "a-file", "fix: check that the path exists")


def test_ctrl_c_says_how_to_continue(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(self: Studio, *args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Studio, "resume", interrupted)
    result = runner.invoke(app, ["--home", str(home), "resume", "pier"])
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert "interrupted" in result.output and f"`codirector --home {home} resume pier` continues" in result.output

"""Messages a new user reads (issue #25): hints that paste back into a shell, names that cannot pose as others,
one exit-code rule that the README states, the id in an interrupt's hint, one vocabulary for recorded calls."""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from codirector import cli, errors
from codirector.cli import app
from codirector.engine.director.direction import PLAN_DERIVED_SCORES
from codirector.engine.studio import Studio

from processes import count_events
from support import tiny_preview_config, write_story

runner = CliRunner()
README = Path(__file__).resolve().parents[2] / "README.md"
BRIEFS = Path(__file__).resolve().parents[2] / "examples" / "briefs"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with one finished two-shot story, ``pier``."""
    folder = tmp_path_factory.mktemp("messages")
    story = write_story(folder / "pier.yaml", shots=2)
    result = runner.invoke(app, ["--home", str(folder / "home"), "run", str(story), "--config",
                                 str(tiny_preview_config(folder))])
    assert result.exit_code == 0, result.output
    return folder / "home"


def readme_exit_codes() -> dict[int, set[str]]:
    """The README's exit-code table: code -> the error classes its last column names."""
    table: dict[int, set[str]] = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        row = re.fullmatch(r"\| (\d+) \| [^|]+ \|([^|]*)\|", line)
        if row:
            table[int(row.group(1))] = set(re.findall(r"`(\w+)`", row.group(2)))
    return table


def test_the_readme_exit_code_table_is_the_code() -> None:
    table = readme_exit_codes()
    assert {0, 1, 2, 130, 143} <= set(table)
    assert (cli.FILE_ERROR, cli.INTERRUPTED, cli.TERMINATED) == (1, 130, 143)
    stack, own = [errors.CodirectorError], {}
    while stack:  # every class that sets its own exit code is in the README's row for that code
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if "exit_code" in vars(cls) and cls is not errors.CodirectorError:
            own[cls.__name__] = cls.exit_code
    for name, code in own.items():
        assert name in table.get(code, set()), f"README: {name} exits {code} but the row for {code} lacks it"
    for code, names in table.items():  # ... and every class the README names exits with the row's code
        for name in names - {"OSError"}:
            assert getattr(errors, name).exit_code == code, name
    assert "OSError" in table[1]
    # one rule: every input error is 2, apart from a name that does not exist (3) and a backend not ready (13)
    inputs = {n: c for n, c in own.items() if issubclass(getattr(errors, n), errors.InputError)}
    assert inputs == {"ConfigError": 2, "StoryFileError": 2, "InvalidArgument": 2, "NotFound": 3, "NotReady": 13}


def test_a_bad_value_exits_2_like_a_malformed_one(home: Path) -> None:
    h = ["--home", str(home)]
    for args, says in [(["memory", "pier", "--at-shot", "0"], "--at-shot must be 1 or more"),
                       (["memory", "pier", "--at-shot", "one"], "'--at-shot'"),
                       (["branch", "pier", "--from-shot", "9", "--name", "x"], "--from-shot must be between 1 and 2")]:
        result = runner.invoke(app, [*h, *args])
        assert result.exit_code == 2, (args, result.output)
        assert says in result.output and "Traceback" not in result.output
    assert [b.name for b in Studio(home).store.story("pier").branches] == ["main"]  # nothing was made


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"codirector {importlib.metadata.version('codirector')}\n"


def test_next_hints_paste_back_into_a_shell_and_calls_have_one_vocabulary(home: Path, tmp_path: Path) -> None:
    h = ["--home", str(home)]
    made = runner.invoke(app, [*h, "branch", "pier", "--from-shot", "2", "--name", "bad name/x"])
    assert made.exit_code == 0, made.output
    hint = made.output.splitlines()[-1]
    assert hint == "next: codirector run --story pier --branch 'bad name/x'"
    words = shlex.split(hint.removeprefix("next: "))
    assert words[-1] == "bad name/x"
    ran = runner.invoke(app, [*h, *words[1:]])  # the hint, pasted back
    assert ran.exit_code == 0, ran.output
    assert "model calls of this run: " in ran.output and " served by the recording)" in ran.output
    assert "answered" not in ran.output
    nexts = [line for line in ran.output.splitlines() if line.startswith("next: ")][0]
    memory_cmd, export_cmd = (shlex.split(part) for part in nexts.removeprefix("next: ").split("   |   "))
    assert memory_cmd == ["codirector", "memory", "pier", "--branch", "bad name/x"]
    assert export_cmd == ["codirector", "export", "pier", "--branch", "bad name/x", "-o", "pier-bad name_x.mp4"]
    assert Studio(home).stories().stories[0].branches[1].status == "completed"
    cost = runner.invoke(app, [*h, "cost", "pier", "--branch", "bad name/x"])
    assert cost.exit_code == 0, cost.output
    shared = Studio(home).cost("pier", "bad name/x").shared_calls
    assert shared > 0
    assert re.search(rf"served by the recording: {shared} calls \({shared} of them shared with the parent\)",
                     cost.output), cost.output
    assert "served by the recording" in cost.output.splitlines()[0] + cost.output  # the table's column too
    assert "from the recording " not in cost.output


def test_direction_controls_are_refused_in_names(home: Path, tmp_path: Path) -> None:
    h = ["--home", str(home)]
    spoof = "storm\u202eenil"
    result = runner.invoke(app, [*h, "branch", "pier", "--from-shot", "2", "--name", spoof])
    assert result.exit_code == 2 and "bidirectional-text control U+202E" in result.output
    assert spoof not in {b.name for b in Studio(home).store.story("pier").branches}
    story = write_story(tmp_path / "s.yaml", shots=1)
    data = yaml.safe_load(story.read_text())
    data["cast"][0]["name"] = "Ada\u2067x"
    story.write_text(yaml.safe_dump(data, allow_unicode=True))
    result = runner.invoke(app, ["--home", str(tmp_path / "h"), "run", str(story), "--story-id", "bidi"])
    assert result.exit_code == 2 and "U+2067" in result.output and "cast" in result.output
    clean = write_story(tmp_path / "clean.yaml", shots=1)
    result = runner.invoke(app, ["--home", str(tmp_path / "h"), "run", str(clean), "--story-id", "a\u202eb"])
    assert result.exit_code == 2 and "U+202E" in result.output
    assert not (tmp_path / "h" / "codirector.db").exists() or not Studio(tmp_path / "h").stories()


def test_an_unknown_branch_is_never_answered_with_replay_branches(home: Path) -> None:
    h = ["--home", str(home)]
    assert runner.invoke(app, [*h, "replay", "pier"]).exit_code == 0
    assert any(b.name.startswith("replay~") for b in Studio(home).store.story("pier").branches)
    result = runner.invoke(app, [*h, "memory", "pier", "--branch", "zzz"])
    assert result.exit_code == 3 and "known branches: " in result.output and "'main'" in result.output
    assert "replay~" not in result.output


def test_the_text_audit_is_a_line_per_shot_and_verbose_adds_the_evidence(home: Path) -> None:
    short = runner.invoke(app, ["--home", str(home), "audit", "pier"])
    assert short.exit_code == 0
    shots = [line.split(":")[0] for line in short.output.splitlines() if line.startswith("shot ")]
    assert shots == ["shot 1", "shot 2"]
    assert not [line for line in short.output.splitlines() if line.startswith("    ")]
    full = runner.invoke(app, ["--home", str(home), "audit", "pier", "--verbose"])
    assert full.exit_code == 0
    lines = full.output.splitlines()
    shot2 = lines.index(next(line for line in lines if line.startswith("shot 2:")))
    evidence = lines[shot2 + 1:]
    assert any(line.startswith("    retrieval r1: query 'Ada in a green hat beside Ben") for line in evidence)
    assert any(line.startswith("    round 1: accept (no judge in preview)") for line in evidence)
    assert any(line.startswith("    motion: 'Ada adjusts her hat and laughs' -> ") for line in evidence)
    assert any(line.startswith("    selected: round 1 (accepted)") for line in lines[:shot2])
    data = json.loads(runner.invoke(app, ["--home", str(home), "audit", "pier", "--json"]).stdout)
    for s in data["shots"]:  # each memory update (from whichever frame) is shown with where it came from
        for u in s["memory_updates"]:
            assert any(line.startswith(f"    memory: {u['entity']}") for line in lines), u


def test_the_demo_duration_is_stated_one_way() -> None:
    from codirector.commands.director import demo

    top = runner.invoke(app, ["--help"]).output
    sub = runner.invoke(app, ["demo", "--help"]).output
    readme = README.read_text(encoding="utf-8")
    for text in (top, sub, inspect.getdoc(demo) or "", readme):
        assert "under a minute" in text
        assert "about a minute" not in text and "half a minute" not in text


@pytest.mark.slow  # a `codirector` process of its own (interpreter start-up, a run): not the fast lane
def test_an_interrupted_run_names_the_command_that_continues_it(tmp_path: Path) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=3)
    home = tmp_path / "my home"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "codirector.cli", "--home", str(home), "run", str(story), "--config",
                             str(tiny_preview_config(tmp_path)), "--story-id", "pier night"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    db = home / "codirector.db"
    while count_events(db, "ShotCompleted") < 1 and proc.poll() is None:
        time.sleep(0.01)  # not a busy loop: on 2 cores it would take the CPU the run needs
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    quoted = shlex.quote(str(home))
    assert f"interrupted; the log holds everything up to the last complete step — `codirector --home {quoted} " \
           f"resume 'pier night'` continues" in err
    resumed = runner.invoke(app, shlex.split(re.search(r"`codirector (.*?)` continues", err).group(1)))  # type: ignore[union-attr]
    assert resumed.exit_code == 0, resumed.output
    assert Studio(home).stories().stories[0].branches[0].status == "completed"


def test_a_demo_stopped_part_way_is_continued_by_the_next_demo(tmp_path: Path) -> None:
    class StopAtShot3:
        def shot(self, shot: int, total: int, prompt: str) -> None:
            if shot == 3:
                raise KeyboardInterrupt

        def step(self, what: str) -> None:
            pass

        def done(self, shot: int) -> None:
            pass

    studio = Studio(tmp_path / "home")
    cfg = tiny_preview_config(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        studio.demo(tmp_path / "out", config=cfg, progress=StopAtShot3())
    assert [s.id for s in studio.stories()] == ["lighthouse-demo"]
    summary = studio.demo(tmp_path / "out", config=cfg)
    assert summary.story == "lighthouse-demo" and summary.shots == 8 and summary.replay.identical
    listed = studio.stories()
    assert [s.id for s in listed] == ["lighthouse-demo"]
    assert {b.name: b.status for b in listed.stories[0].branches} == {"main": "completed", "storm": "completed"}
    again = studio.demo(tmp_path / "out2", config=cfg)  # a finished demo is kept: the next one is new
    assert again.story == "lighthouse-demo-2"


def test_direct_in_preview_says_its_scores_come_from_the_plan(tmp_path: Path) -> None:
    brief = sorted(BRIEFS.glob("*.yaml"))[0]
    result = runner.invoke(app, ["--home", str(tmp_path / "h"), "direct", str(brief), "--profile", "preview",
                                 "--config", str(tiny_preview_config(tmp_path)), "--iterations", "1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert PLAN_DERIVED_SCORES in data["notes"] and data["pulls"][0]["execution"] is not None

"""The home the release of 2026-12-07 wrote (tests/fixtures/home-2026-12-07, before typed payloads and the
versioned loop of #24) keeps working on this release: its interrupted run resumes to the end, its forked branch
runs, its completed story replays identical with no model call, and ``verify`` passes. Every stored row stays
as it was (append-only). The fixture is copied first; real ``codirector`` processes run on the copy with the
counting backends (tests/codirector_test_plugins.py), which log every call that reaches them.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from processes import cli_env

FIXTURE = Path(__file__).parents[1] / "fixtures" / "home-2026-12-07"


def cli(home: Path, calls: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "codirector.cli", "--home", str(home), *args],
                          env=cli_env(home, calls), capture_output=True, text=True, timeout=300)


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        query = "SELECT seq, story_id, branch, position, type, record, hash FROM events ORDER BY seq"
        return conn.execute(query).fetchall()


def calls_made(calls: Path) -> int:
    return len(calls.read_text().splitlines()) if calls.exists() else 0


@pytest.mark.slow  # several `codirector` processes, each paying the interpreter start-up: not the fast lane
def test_the_home_of_2026_12_07_resumes_runs_replays_and_verifies(tmp_path: Path) -> None:
    home, calls = tmp_path / "home", tmp_path / "calls.log"
    shutil.copytree(FIXTURE, home)
    before = rows(home / "codirector.db")
    pier_before = [r for r in before if r[1] == "pier"]
    assert len(pier_before) == 47 and not any(r[4] == "StoryCompleted" for r in pier_before)

    resumed = as_json(cli(home, calls, "resume", "pier", "--json"))  # its dead run's lease is taken over
    assert resumed["completed"] and resumed["model_calls"]["live"] == calls_made(calls) > 0
    assert resumed["model_calls"]["matched_from_log"] == sum(r[4] == "ModelCalled" for r in pier_before)
    pier = as_json(cli(home, calls, "log", "pier", "--json"))
    pier = pier["events"] if isinstance(pier, dict) else pier
    assert pier[-1]["type"] == "StoryCompleted"
    marks = [e for e in pier if e["type"] == "RunSegmentStarted"]
    assert [(m["position"], m["payload"]["patches"]) for m in marks] == [(48, [])]  # begun before versioning

    made = calls_made(calls)
    storm = as_json(cli(home, calls, "run", "--story", "lighthouse", "--branch", "storm", "--json"))
    assert storm["completed"] and storm["branch"] == "storm"
    assert calls_made(calls) > made  # shots 5-8 anew, with the overridden prompt; 1-4 shared, never asked again

    made = calls_made(calls)
    replay = as_json(cli(home, calls, "replay", "lighthouse", "--json"))
    assert replay["identical"] and replay["model_calls"] == 0 and replay["events_compared"] == 158
    assert calls_made(calls) == made  # counted at the backends: nothing reached them

    checked = cli(home, calls, "verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    after = rows(home / "codirector.db")
    assert after[: len(before)] == before  # every row the old release wrote is as it was

"""`direct BRIEF --parallel 3 --iterations 6`: SIGKILL the driver at random moments (mid-round), then
`resume BRIEF` finishes with the bandit state and director log of an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scale.helpers import EXAMPLES, counting_config, normalised

from codirector.engine.studio import Studio

TESTS = Path(__file__).resolve().parents[1]
TRIALS = int(os.environ.get("CODIRECTOR_DIRECT_KILL_TRIALS", "3"))
BRIEF = EXAMPLES / "briefs" / "dewline_serum.yaml"


def _env(home: Path) -> dict[str, str]:
    e = dict(os.environ)
    e.update(CODIRECTOR_HOME=str(home), CODIRECTOR_PLUGINS="codirector_test_plugins",
             CODIRECTOR_TEST_CALL_LOG=str(home.parent / f"{home.name}.calls"), CODIRECTOR_LEASE_TTL="1",
             PYTHONPATH=os.pathsep.join([str(TESTS), e.get("PYTHONPATH", "")]))
    return e


def _chosen(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute("SELECT count(*) FROM events WHERE type = 'DirectionChosen'").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_kill_the_parallel_director_mid_round_then_resume(tmp_path: Path) -> None:
    cfg = counting_config(tmp_path / "c.toml")
    args = [sys.executable, "-m", "codirector.cli", "direct", str(BRIEF), "--config", str(cfg), "--iterations", "6",
            "--parallel", "3", "--json"]
    ref_home = tmp_path / "reference"
    t = time.perf_counter()
    done = subprocess.run(args, env=_env(ref_home), capture_output=True, text=True, timeout=600)
    duration = time.perf_counter() - t
    assert done.returncode == 0, done.stderr
    reference = json.loads(done.stdout)
    assert len(reference["pulls"]) == 6 and reference["completed"]
    ref_log = normalised(Studio(ref_home).log("dewline_serum", types=["DirectionChosen", "RewardObserved"]))

    rng = random.Random(7)
    killed = 0
    for trial in range(TRIALS * 3):
        if killed == TRIALS:
            break
        home = tmp_path / f"trial{trial}"
        proc = subprocess.Popen(args, env=_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while _chosen(home / "codirector.db") == 0 and proc.poll() is None:
            time.sleep(0.01)  # the round has begun
        time.sleep(rng.uniform(0, duration / 2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.returncode != -signal.SIGKILL:
            continue
        killed += 1
        resume = [sys.executable, "-m", "codirector.cli", "resume", "dewline_serum", "--wait", "--json"]
        resumed = subprocess.run(resume, env=_env(home), capture_output=True, text=True, timeout=600)
        assert resumed.returncode == 0, resumed.stderr
        out = json.loads(resumed.stdout)
        assert out["bandit"] == reference["bandit"], f"trial {trial}"
        studio = Studio(home)
        assert normalised(studio.log("dewline_serum", types=["DirectionChosen", "RewardObserved"])) == ref_log
        assert studio.verify().ok
        studio.close()
    assert killed == TRIALS

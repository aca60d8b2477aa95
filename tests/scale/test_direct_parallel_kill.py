"""`direct BRIEF --parallel 3 --iterations 6`: SIGKILL the driver at random moments (mid-round), then
`resume BRIEF` finishes with the bandit state and director log of an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest
from scale.helpers import EXAMPLES, counting_config, normalised

from codirector.engine.studio import Studio

from processes import ForkServer, cli_env, count_events, kill_when

TRIALS = int(os.environ.get("CODIRECTOR_DIRECT_KILL_TRIALS", "3"))
BRIEF = EXAMPLES / "briefs" / "dewline_serum.yaml"


@pytest.mark.slow
def test_kill_the_parallel_director_mid_round_then_resume(tmp_path: Path, fork_server: ForkServer) -> None:
    cfg = counting_config(tmp_path / "c.toml")
    args = ["direct", str(BRIEF), "--config", str(cfg), "--iterations", "6", "--parallel", "3", "--json"]
    ref_home = tmp_path / "reference"
    t = time.perf_counter()
    done = fork_server.run(args, cli_env(ref_home, tmp_path / "reference.calls"))
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
        proc = fork_server.start(args, cli_env(home, tmp_path / f"trial{trial}.calls"))
        # the round has begun
        if not kill_when(proc, lambda db=home / "codirector.db": count_events(db, "DirectionChosen") > 0,
                         delay=rng.uniform(0, duration / 2), poll=0.01):
            continue
        killed += 1
        resumed = fork_server.run(["resume", "dewline_serum", "--wait", "--json"],
                                  cli_env(home, tmp_path / f"trial{trial}.calls"))
        assert resumed.returncode == 0, resumed.stderr
        out = json.loads(resumed.stdout)
        assert out["bandit"] == reference["bandit"], f"trial {trial}"
        studio = Studio(home)
        assert normalised(studio.log("dewline_serum", types=["DirectionChosen", "RewardObserved"])) == ref_log
        assert studio.verify().ok
        studio.close()
    assert killed == TRIALS

"""Crash safety: SIGKILL a run at random moments; `resume` always finishes with the same log,
`verify` passes, and no backend call whose answer was recorded is ever made again.

Each run is a real `codirector` process (forked by the session's ``fork_server``, which has done the imports
once: tests/processes.py); backends are the preview ones wrapped to log every call they answer
(tests/codirector_test_plugins.py), so calls are counted at the backend.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from codirector.engine.studio import Studio

from processes import ForkServer, cli_env, count_events, kill_when
from support import backend_keys, counting_config, normalised, write_story

TRIALS = int(os.environ.get("CODIRECTOR_CRASH_TRIALS", "20"))
TTL = 0.5  # seconds a killed run's branch lease outlives it: what each `resume --wait` waits at most (+ a poll)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(tmp_path: Path, fork_server: ForkServer) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=3)
    run = ["run", str(story), "--config", str(counting_config(tmp_path / "counting.toml")), "--json"]

    ref_home = tmp_path / "reference"
    proc = fork_server.start(run, cli_env(ref_home, ttl=TTL))
    while count_events(ref_home / "codirector.db") == 0 and proc.poll() is None:
        time.sleep(0.01)
    t0 = time.perf_counter()
    assert proc.wait() == 0
    duration = time.perf_counter() - t0  # from the story's creation to the end of the run
    reference = normalised(Studio(ref_home).log("pier"))
    assert reference[-1][0] == "StoryCompleted"

    rng = random.Random(2026)
    killed = 0
    attempts = 0
    while killed < TRIALS:
        attempts += 1
        assert attempts < TRIALS * 3, "the run kept finishing before the kill: it is too fast to interrupt"
        home = tmp_path / f"trial{attempts}"
        proc = fork_server.start(run, cli_env(home, ttl=TTL))
        # a kill before the story exists leaves nothing to resume: the moment is drawn from the run's duration
        delay = rng.uniform(0, duration)
        if not kill_when(proc, lambda db=home / "codirector.db": count_events(db) > 0, delay=delay, poll=0.01):
            # it finished first: not a crash. It took less than ``delay``, so the reference run was slow (a loaded
            # machine): draw later moments from what a run takes now
            duration = delay
            continue
        killed += 1
        studio = Studio(home)
        recorded_at_kill = backend_keys(studio, "pier")
        partial = len(studio.log("pier"))
        studio.close()

        # the killed run's lease outlives it by the TTL (tests/shared covers that): wait for it to expire
        resumed = fork_server.run(["resume", "pier", "--wait", "--json"], cli_env(home, ttl=TTL))
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["completed"] is True

        studio = Studio(home)
        assert normalised(studio.log("pier")) == reference, f"trial {attempts}: killed at {partial} events; {home}"
        assert studio.verify().ok, [p.line() for p in studio.verify().problems]
        calls = Counter((home / "calls.log").read_text().splitlines())
        twice = {k for k, n in calls.items() if n > 1}
        # the only call that may be made again is one answered in the instant between the backend
        # returning and its ModelCalled event being committed when the kill landed
        assert not (twice & recorded_at_kill), f"trial {attempts}: recorded calls repeated: {twice & recorded_at_kill}"
        assert all(calls[k] == 2 for k in twice) and len(twice) <= 1
        studio.close()
    print(f"{killed} runs killed at random moments (of {attempts} started); all resumed to the reference log")

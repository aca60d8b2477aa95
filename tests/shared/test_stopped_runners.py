"""SIGTERM (``kill``, a scheduler stopping a job) ends a run the way Ctrl-C does: exit 143, the branch
lease released at once (not left to expire), and ``resume`` continues to the uninterrupted log."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from shared.machines import normalised

from codirector.engine.studio import Studio
from codirector.errors import StoryNotFound
from codirector.store.leases import Leases

from support import write_story

pytestmark = pytest.mark.slow


def test_a_terminated_run_releases_its_lease_and_resumes_at_once(  # type: ignore[no-untyped-def]
    machine, counting: Path, tmp_path: Path
) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=4)
    ref = machine("ref")
    ref.run("run", str(story), "--config", str(counting))
    with Studio(ref.home) as s:
        reference = normalised(s.log("pier"))

    m = machine("m", ttl=600.0)  # a lease that would outlive the test if it were left to expire
    m.run("init")
    proc = m.start("run", str(story), "--config", str(counting))
    with Studio(m.home) as s:
        while proc.poll() is None:
            try:
                if s.log("pier", types=["ShotCompleted"]):
                    break
            except StoryNotFound:
                pass
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 143, err
        assert "terminated; the log holds everything" in err and "Traceback" not in err
        assert Leases(s.store.engine).all() == []  # released on the way out, not left for 600 s
        partial = len(s.log("pier"))
    assert partial < len(reference), "the run finished before it could be terminated"

    resumed = m.json("resume", "pier")  # at once: no --wait, no BranchBusy
    assert resumed["completed"] is True  # type: ignore[index]
    with Studio(m.home) as s:
        assert normalised(s.log("pier")) == reference, f"terminated at {partial} events"
        assert s.verify().ok

"""Runners stopped from outside, as real processes:
- SIGTERM (``kill``, a scheduler stopping a job) ends a run the way Ctrl-C does: exit 143, the branch
  lease released at once (not left to expire), and ``resume`` continues to the uninterrupted log.
- A run paused (SIGSTOP) past its lease's TTL, whose branch another runner then took, stops with
  ``BranchBusy`` when it wakes, before writing anything more (PostgreSQL: the paused process may hold
  no lock the new holder needs)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
from shared.machines import LeaseClock, normalised, solo_log, stopped, wait_for_a_shot

from codirector.engine.studio import Studio
from codirector.errors import BranchBusy
from codirector.store.leases import BranchLease, Leases

from support import write_story

pytestmark = pytest.mark.slow


def test_a_terminated_run_releases_its_lease_and_resumes_at_once(  # type: ignore[no-untyped-def]
    machine, counting: Path, tmp_path: Path
) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=4)
    reference = solo_log(machine("ref"), story, counting)

    m = machine("m", ttl=600.0)  # a lease that would outlive the test if it were left to expire
    m.run("init")
    proc = m.start("run", str(story), "--config", str(counting))
    with Studio(m.home) as s:
        wait_for_a_shot(proc, s)
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


def _take_while_paused(proc, leases: Leases, ttl: float, clock: LeaseClock) -> BranchLease:  # type: ignore[no-untyped-def]
    """Pause ``proc``, move the lease clock past its lease's expiry and take the branch; if the pause caught it
    inside a lease transaction (it holds the row lock), let it go on a moment and try again."""
    while True:
        proc.send_signal(signal.SIGSTOP)
        stopped(proc.pid)  # it renews nothing from here on
        clock.advance(ttl + 0.5)
        thief = BranchLease(leases, "pier", "main", ttl=600)
        busy: list[BranchBusy] = []

        def take(thief: BranchLease = thief, busy: list[BranchBusy] = busy) -> None:
            try:
                thief.acquire()
            except BranchBusy as e:  # the paused process went on (below) and renewed its lease first
                busy.append(e)

        took = threading.Thread(target=take, daemon=True)
        took.start()
        took.join(10)
        if not took.is_alive():
            assert not busy, f"the lease of a stopped process, past its TTL, was not taken: {busy[0].message}"
            return thief
        proc.send_signal(signal.SIGCONT)
        took.join()
        if not busy:
            thief.release()  # it got the row once the paused process went on: give it back
        time.sleep(0.05)  # and try again


@pytest.mark.postgres
def test_a_paused_run_that_lost_its_lease_stops_before_writing(  # type: ignore[no-untyped-def]
    machine, counting: Path, pg_url: str, tmp_path: Path, lease_clock: LeaseClock
) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=4)
    reference = solo_log(machine("ref"), story, counting)

    ttl = 30.0  # never reached by waiting (however slow the machine): the test moves the lease clock past it
    m = machine("m", db=pg_url, ttl=ttl)
    m.run("init")
    proc = m.start("run", str(story), "--config", str(counting))
    with Studio(m.home, db=pg_url) as s:
        wait_for_a_shot(proc, s)
        assert proc.poll() is None, "the run finished before it could be paused"
        thief = _take_while_paused(proc, Leases(s.store.engine), ttl, lease_clock)
        taken_at = len(s.log("pier"))
        proc.send_signal(signal.SIGCONT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 11, err
        assert "this run lost the lease on pier/main" in err and "Traceback" not in err
        assert [e.type for e in s.log("pier")][taken_at:] == []  # it wrote nothing once the branch was someone else's
        (held,) = Leases(s.store.engine).all()
        assert held.owner == thief.owner  # and left the new holder's lease alone
        thief.release()

    resumed = m.json("resume", "pier")
    assert resumed["completed"] is True  # type: ignore[index]
    with Studio(m.home, db=pg_url) as s:
        assert normalised(s.log("pier")) == reference, f"taken over at {taken_at} events"
        assert s.verify().ok

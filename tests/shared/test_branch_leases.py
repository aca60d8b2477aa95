"""Branch leases between real `codirector` processes, on SQLite and on PostgreSQL.

- Two runners of one branch started at the same moment: exactly one runs, the other exits with
  ``BranchBusy`` (exit 11) naming the holder; every model call is made once.
- A runner killed with SIGKILL on this machine: `run FILE` again and `resume` take its lease over at once
  (same host and boot, its process gone) and say so. A killed runner of another host keeps its lease until
  the TTL: ``resume`` is refused with the expiry, then takes over. The final logs equal an uninterrupted run's.
- ``--wait`` waits for the holder instead of failing.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from shared.machines import LeaseClock, Machine, normalised, solo_log, wait_for_a_shot

from codirector.engine.studio import Studio
from codirector.store.leases import LEASES, BranchLease, Leases, boot_key

from support import write_story

TRIALS = int(os.environ.get("CODIRECTOR_LEASE_TRIALS", "20"))
# Seconds from the release of both processes to the loser's BranchBusy message. Its own work is ~0.3 s
# on an idle machine (open the database, one conditional UPDATE + INSERT, the error); a busy CI machine
# (tests in parallel on 2 cores) stretches the wall time several-fold, so the bound is loose.
LOSER_BOUND = float(os.environ.get("CODIRECTOR_LOSER_BOUND", "5"))
pytestmark = pytest.mark.slow


def _race(m: Machine, commands: list[list[str]], calls: Path, folder: Path
          ) -> tuple[list[int], list[float], list[float], list[str], list[str]]:
    """Release the commands at the same moment. Their exit codes, seconds from the release to the first
    line on stderr (the error, for a loser) and to the exit, stdout and stderr."""
    # The winner's first model call takes 1 s, so a rival started late by a loaded machine still meets
    # its lease instead of finding the branch already complete (both would then exit 0).
    procs, released = m.start_together(commands, folder, CODIRECTOR_TEST_CALL_LOG=str(calls),
                                       CODIRECTOR_TEST_FIRST_CALL_DELAY="1")
    results: list[tuple[float, float, str, str]] = [(0.0, 0.0, "", "")] * len(procs)

    def collect(i: int) -> None:
        first = procs[i].stderr.readline()  # --json runs print nothing else on stderr
        said = time.time() - released
        err = first + procs[i].stderr.read()  # the pipes' own buffers, not communicate(): it would skip them
        out = procs[i].stdout.read()
        procs[i].wait(timeout=600)
        results[i] = (said, time.time() - released, out, err)

    threads = [threading.Thread(target=collect, args=(i,)) for i in range(len(procs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ([p.returncode for p in procs], [r[0] for r in results], [r[1] for r in results],
            [r[2] for r in results], [r[3] for r in results])


def test_two_runners_of_one_branch_exactly_one_runs(  # type: ignore[no-untyped-def]
    machine, counting: Path, db_url: str, tmp_path: Path
) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=2)
    m = machine("m", db=db_url)
    m.run("init")
    m.run("run", str(story), "--config", str(counting), "--story-id", "base")
    losers, winners = [], []
    for i in range(TRIALS):
        calls = tmp_path / f"calls-{i}.log"
        if i % 2 == 0:  # two `run FILE` of one new story
            sid, branch = f"s{i}", "main"
            cmd = ["run", str(story), "--config", str(counting), "--story-id", sid, "--json"]
            commands = [cmd, cmd]
        else:  # `resume` and `run --branch` of one new branch
            sid, branch = "base", f"b{i}"
            with Studio(m.home, db=db_url) as s:
                s.branch("base", from_shot=2, name=branch, overrides={"shots.2.keyframe": f"Ben alone, take {i}"})
            commands = [["resume", sid, "--branch", branch, "--json"],
                        ["run", "--story", sid, "--branch", branch, "--json"]]
        codes, said, walls, outs, errs = _race(m, commands, calls, tmp_path / f"race-{i}")
        assert sorted(codes) == [0, 11], f"trial {i}: exit codes {codes}\n{errs}"
        win, lose = codes.index(0), codes.index(11)
        assert said[lose] < LOSER_BOUND, f"trial {i}: the loser said BranchBusy after {said[lose]:.2f} s"
        assert f"{sid}/{branch} is being run by" in errs[lose] and "lease expires at" in errs[lose], errs[lose]
        assert "--wait" in errs[lose]
        result = json.loads(outs[win])
        assert result["completed"] is True and result["model_calls"]["live"] > 0
        counts = m.call_counts(calls)
        assert all(n == 1 for n in counts.values()), f"trial {i}: calls made twice: {counts.most_common(3)}"
        assert sum(counts.values()) == result["model_calls"]["live"]
        losers.append((said[lose], walls[lose]))
        winners.append(walls[win])
    with Studio(m.home, db=db_url) as s:
        report = s.verify()
        assert report.ok, [p.line() for p in report.problems]
        assert Leases(s.store.engine).all() == []  # every lease released
    told, gone = [x[0] for x in losers], [x[1] for x in losers]
    print(f"\n{TRIALS} races on {db_url.split(':')[0]}: the loser prints BranchBusy {statistics.median(told):.3f} s "
          f"after the release (median; max {max(told):.3f} s) and has exited after {statistics.median(gone):.3f} s "
          f"(interpreter teardown); the winner completes after {statistics.median(winners):.2f} s")


@pytest.mark.skipif(boot_key() is None, reason="judging a holder's process needs Linux's /proc")
def test_a_killed_holder_on_this_machine_is_taken_over_at_once(  # type: ignore[no-untyped-def]
    machine, counting: Path, tmp_path: Path
) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=5)
    reference = solo_log(machine("ref"), story, counting)
    m = machine("m", ttl=600.0)  # a lease that would outlive the test if it were left to expire
    m.run("init")
    run = ["run", str(story), "--config", str(counting), "--json"]
    first = m.start(*run)
    with Studio(m.home) as s:
        wait_for_a_shot(first, s)
        first.kill()
        first.wait()
        assert first.returncode == -9, "the run finished before it could be killed"
        assert Leases(s.store.engine).get("pier", "main").live  # type: ignore[union-attr]
        shots = len(s.log("pier", types=["ShotCompleted"]))
        again = m.start(*run)  # `run FILE` again: no --wait, and the killed run's lease has 600 s to go
        while again.poll() is None and len(s.log("pier", types=["ShotCompleted"])) <= shots:
            time.sleep(0.02)
        again.kill()
        _, err = again.communicate(timeout=60)
        assert again.returncode == -9, f"the second run ended before it could be killed: {err}"
    assert _took_over(first.pid) in err
    done = m.run("resume", "pier", "--json")  # and `resume` after a kill of a continued run
    assert _took_over(again.pid) in done.stderr and json.loads(done.stdout)["completed"] is True
    with Studio(m.home) as s:
        assert normalised(s.log("pier")) == reference
        assert Leases(s.store.engine).all() == [] and s.verify().ok
    assert not m.json("stories")[0]["branches"][0]["running"]  # type: ignore[index]
    assert sum(1 for n in m.call_counts().values() if n > 1) <= 2  # at most the call in flight at each kill


def _took_over(pid: int) -> str:
    return (f"pier/main was held by {socket.gethostname()} (pid {pid}), a process on this machine that has ended: "
            "took its lease over at once")


def test_a_killed_holder_of_another_host_keeps_the_branch_until_its_lease_expires(  # type: ignore[no-untyped-def]
    machine, counting: Path, db_url: str, tmp_path: Path, lease_clock: LeaseClock
) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=4)
    reference = solo_log(machine("ref"), story, counting)

    ttl = 600.0  # never reached by waiting (however slow the machine): the test moves the lease clock past it
    m = machine("m", db=db_url, ttl=ttl)
    m.run("init")
    waiting = m.prepare([["resume", "pier"]], tmp_path / "busy")  # imported before the kill, released after it
    proc = m.start("run", str(story), "--config", str(counting), "--json")
    with Studio(m.home, db=db_url) as s:
        wait_for_a_shot(proc, s)
        proc.kill()
        proc.wait()
        _elsewhere(s)  # the row as a runner on another machine leaves it: this host cannot tell that it is gone
        waiting.release()
        (busy,) = waiting.procs
        assert proc.returncode == -9, "the run finished before it could be killed"
        _, err = busy.communicate(timeout=600)
        assert busy.returncode == 11, err
        assert f"pier/main is being run by elsewhere (pid {proc.pid})" in err
        assert "lease expires at" in err and "unless renewed" in err
        partial = len(s.log("pier"))
        listed = s.stories()[0].branches[0]  # what `stories` shows
        assert listed.lease is not None and listed.lease.pid == proc.pid

    lease_clock.advance(ttl + 0.3)  # past the killed run's TTL, for this process and the ones it starts
    stale = m.json("stories")[0]["branches"][0]  # type: ignore[index]
    assert stale["running"] is False and stale["lease"]["live"] is False  # shown, but expired
    assert stale["lease"]["pid"] == proc.pid and stale["lease"]["heartbeat_age_s"] > ttl / 2
    assert f"pid {proc.pid}, heartbeat" in m.run("stories").stdout  # the table's "running" column
    resumed = m.json("resume", "pier")
    assert resumed["completed"] is True  # type: ignore[index]
    with Studio(m.home, db=db_url) as s:
        assert normalised(s.log("pier")) == reference, f"killed at {partial} events"
        assert s.verify().ok
        assert Leases(s.store.engine).all() == []
    counts = m.call_counts()
    assert sum(1 for n in counts.values() if n > 1) <= 1  # at most the one call in flight at the kill


def _elsewhere(s: Studio) -> None:
    """Make the one lease row name another host, as a runner there would have written it."""
    with s.store.engine.begin() as conn:
        (owner,) = conn.execute(sa.select(LEASES.c.owner)).one()
        conn.execute(sa.update(LEASES).values(host="elsewhere", owner="elsewhere:" + owner.split(":", 1)[1]))


def test_wait_waits_for_the_holder_instead_of_failing(  # type: ignore[no-untyped-def]
    machine, counting: Path, tmp_path: Path, lease_clock: LeaseClock
) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=3)
    m = machine("m")
    m.run("run", str(story), "--config", str(counting))
    phase = tmp_path / "branch-calls.log"
    with Studio(m.home) as s:
        s.branch("pier", from_shot=1, name="again", overrides={"shots.1.keyframe": "Ada and Ben on a pier at dusk"})
        waiter = m.prepare([["resume", "pier", "--branch", "again", "--wait", "--json"]], tmp_path / "waiter",
                           CODIRECTOR_TEST_CALL_LOG=str(phase))
        ttl = 30.0
        with BranchLease(Leases(s.store.engine), "pier", "again", ttl=ttl) as held:  # another process holds it
            waiter.release()
            # Two TTLs on the lease clock, renewed as a heartbeat does (past half the TTL), over at least 1.5 s of
            # real time: the waiter polls every second (its own TTL is 60 s), and waits all the while.
            started, moved = time.monotonic(), 0.0
            while moved < 2 * ttl or time.monotonic() - started < 1.5:
                assert waiter.procs[0].poll() is None, "the waiter did not wait for the holder"
                assert not phase.exists()  # and made no call while waiting
                lease_clock.advance(2.0)
                moved += 2.0
                held.check()  # renews the lease once over half its TTL went by on the clock
                time.sleep(0.05)
            assert held.renewals >= 3 and not held.taken_over
        out, err = waiter.procs[0].communicate(timeout=600)
    assert waiter.procs[0].returncode == 0, err
    result = json.loads(out)
    assert result["completed"] is True and result["model_calls"]["live"] > 0
    assert sum(m.call_counts(phase).values()) == result["model_calls"]["live"]

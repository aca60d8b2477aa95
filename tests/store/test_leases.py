"""Branch leases on SQLite and PostgreSQL: one live holder, fail fast or wait, heartbeat, expiry, release; the
lease of a process gone from this machine is taken over at once, another host's is waited out."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from codirector.engine.workspace import Workspace
from codirector.errors import BranchBusy, ConfigError
from codirector.events import Draft
from codirector.store.blobs import open_blobs
from codirector.store.event_store import EventStore
from codirector.store.leases import (
    CLOCK_FILE,
    LEASES,
    BranchLease,
    Leases,
    boot_key,
    clock_offset,
    lease_ttl,
    new_owner,
    process_start,
)


@pytest.fixture
def store(db_url: str) -> Iterator[EventStore]:
    s = EventStore.open(db_url, create=True)
    yield s
    s.close()


def test_one_live_holder_and_the_busy_error_names_it(store: EventStore) -> None:
    leases = Leases(store.engine)
    assert leases.acquire("s", "main", "a", 30)
    assert not leases.acquire("s", "main", "b", 30)
    assert leases.acquire("s", "other", "b", 30)  # another branch is another lease
    assert leases.acquire("s", "main", "a", 30)  # renewing is taking again
    info = leases.get("s", "main")
    assert info is not None and info.owner == "a" and info.live
    assert info.host == socket.gethostname() and info.pid == os.getpid()
    assert abs(info.now - time.time()) < 5 and 29 < info.expires_in <= 30
    err = info.busy()
    assert isinstance(err, BranchBusy) and err.exit_code == 11
    assert f"s/main is being run by {socket.gethostname()} (pid {os.getpid()})" in err.message
    assert "lease expires at" in err.message and "--wait" in str(err.hint)
    assert not leases.release("s", "main", "b")  # only the owner releases
    assert leases.release("s", "main", "a")
    assert leases.get("s", "main") is None and leases.acquire("s", "main", "b", 30)


class FakeClock:
    """Seconds since the epoch that move only when the test says (``advance``)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_an_expired_lease_is_taken_over_and_its_holder_has_lost_it(store: EventStore) -> None:
    clock = FakeClock()
    leases = Leases(store.engine, clock=clock)
    assert leases.acquire("s", "main", "dead", 30)
    assert leases.get("s", "main").live  # type: ignore[union-attr]
    clock.advance(30.1)  # past its TTL, without waiting for it
    assert not leases.get("s", "main").live  # type: ignore[union-attr]
    assert leases.acquire("s", "main", "next", 30)
    assert not leases.acquire("s", "main", "dead", 30)  # the old holder cannot renew it any more


def test_the_clock_file_test_hook_moves_the_database_clock_and_the_wait_clock_on(
        store: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CODIRECTOR_LEASE_CLOCK_FILE: how tests with holders in other processes expire a lease without sleeping."""
    clock_file = tmp_path / "clock"
    monkeypatch.setenv(CLOCK_FILE, str(clock_file))
    leases = Leases(store.engine)
    assert clock_offset() == 0.0 and leases.acquire("s", "main", "dead", 30)  # no file yet: the real clock
    held = BranchLease(leases, "s", "other", ttl=30).acquire()
    try:
        clock_file.write_text("30.5")
        assert clock_offset() == 30.5
        info = leases.get("s", "main")
        assert info is not None and not info.live and abs(info.now - time.time() - 30.5) < 5
        assert leases.acquire("s", "main", "next", 30) and not leases.acquire("s", "main", "dead", 30)
        held.check()  # over half its TTL went by on its clock: renewed there and then
        assert held.renewals == 1 and not held.taken_over
    finally:
        held.release()
    clock_file.write_text("ten")
    with pytest.raises(ConfigError, match="CODIRECTOR_LEASE_CLOCK_FILE"):
        clock_offset()
    monkeypatch.delenv(CLOCK_FILE)
    assert clock_offset() == 0.0


def test_heartbeat_keeps_the_lease_past_its_ttl_and_exit_releases_it(store: EventStore) -> None:
    clock = FakeClock()
    leases = Leases(store.engine, clock=clock)
    with BranchLease(leases, "s", "main", ttl=30) as held:
        for _ in range(6):  # three TTLs in all: the heartbeat's renewals (ttl/3 apart) keep it
            clock.advance(15)
            assert held._renew()  # what the heartbeat thread does at each beat
            with pytest.raises(BranchBusy):
                BranchLease(leases, "s", "main", ttl=30).acquire()
        assert held.renewals >= 6 and held.lost is None
        clock.advance(31)  # no beat for longer than the TTL: another runner may take it
        assert not leases.get("s", "main").live  # type: ignore[union-attr]
    assert leases.get("s", "main") is None


def test_the_heartbeat_thread_renews_the_lease(store: EventStore) -> None:
    leases = Leases(store.engine)
    with BranchLease(leases, "s", "main", ttl=0.15) as held:  # a beat every 0.05 s
        deadline = time.monotonic() + 10
        while held.renewals < 2:
            assert time.monotonic() < deadline, "the heartbeat never renewed the lease"
            time.sleep(0.01)
        assert held.lost is None


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_the_lease_is_released_on_errors_and_ctrl_c(store: EventStore, error: type[BaseException]) -> None:
    leases = Leases(store.engine)
    with pytest.raises(error), BranchLease(leases, "s", "main", ttl=30):
        raise error()
    assert leases.get("s", "main") is None


def test_wait_takes_the_lease_when_the_holder_releases_it(store: EventStore) -> None:
    leases = Leases(store.engine)
    holder = BranchLease(leases, "s", "main", ttl=5).acquire()
    threading.Timer(0.1, holder.release).start()
    t0 = time.perf_counter()
    with BranchLease(leases, "s", "main", ttl=0.2, wait=10) as waiter:  # polls every 0.05 s
        waited = time.perf_counter() - t0
        assert leases.get("s", "main").owner == waiter.owner  # type: ignore[union-attr]
    assert 0.05 < waited < 3
    with BranchLease(leases, "s", "main", ttl=5), pytest.raises(BranchBusy):
        BranchLease(leases, "s", "main", ttl=0.2, wait=0.1).acquire()  # a bounded wait gives up


def test_a_holder_that_stops_renewing_loses_the_lease(store: EventStore) -> None:
    leases = Leases(store.engine)
    with BranchLease(leases, "s", "main", ttl=30) as held:
        with store.engine.begin() as conn:  # the holder is frozen past its expiry, and another takes over
            conn.execute(sa.update(LEASES).values(expires_at=0.0))
        assert leases.acquire("s", "main", "usurper", 30)
        assert not held._renew()  # its next heartbeat finds the lease gone
        assert held.lost is not None and held.lost.owner == "usurper"
        with pytest.raises(BranchBusy):
            held.check()
    assert leases.get("s", "main").owner == "usurper"  # type: ignore[union-attr]  # not released by the loser


def test_racing_runners_never_both_win(store: EventStore, db_url: str) -> None:
    engines = [EventStore.open(db_url).engine for _ in range(4)]
    try:
        for round_ in range(20):
            barrier = threading.Barrier(len(engines))
            won: list[int] = []

            def race(i: int, round_: int = round_, barrier: threading.Barrier = barrier, won: list[int] = won) -> None:
                barrier.wait()
                if Leases(engines[i]).acquire("race", f"b{round_}", f"runner{i}", 30):
                    won.append(i)

            threads = [threading.Thread(target=race, args=(i,)) for i in range(len(engines))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(won) == 1, f"round {round_}: winners {won}"
    finally:
        for e in engines:
            e.dispose()


def test_workspace_leases_are_reentrant(store: EventStore, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ws = Workspace(store=store, blobs=open_blobs(tmp_path / "blobs"), cache_dir=tmp_path, lease_ttl=30)
    with ws.lease("s", "main") as outer, ws.lease("s", "main") as inner:
        assert inner is outer
    assert ws.leases.get("s", "main") is None


def test_ttl_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CODIRECTOR_LEASE_TTL", raising=False)
    assert lease_ttl() == 60
    monkeypatch.setenv("CODIRECTOR_LEASE_TTL", "2.5")
    assert lease_ttl() == 2.5 and lease_ttl(7) == 7
    monkeypatch.setenv("CODIRECTOR_LEASE_TTL", "soon")
    with pytest.raises(ConfigError, match="positive number of seconds"):
        lease_ttl()


def test_an_append_fenced_on_a_lease_that_was_taken_over_writes_nothing(store: EventStore) -> None:
    from codirector.events import ShotStarted, StoryCreated

    def shot(n: int) -> Draft:
        return ShotStarted(keyframe_prompt=f"shot {n}", motion_prompt="walks").at(n)

    store.create_story("s", title="T", events=[StoryCreated(title="T", seed=1).at()])
    leases = Leases(store.engine)
    assert leases.acquire("s", "main", "paused", 30)
    assert store.append("s", "main", [shot(1)], expected_position=1,
                        lease_owner="paused")[0].position == 2  # fenced and still ours: written
    with store.engine.begin() as conn:  # the holder was paused past its TTL...
        conn.execute(sa.update(LEASES).values(expires_at=0.0))
    assert leases.acquire("s", "main", "next", 30)  # ...and another runner took the branch
    with pytest.raises(BranchBusy) as lost:
        store.append("s", "main", [shot(2)], expected_position=2, lease_owner="paused")
    assert "this run lost the lease on s/main" in lost.value.message and "--wait" in str(lost.value.hint)
    assert store.head("s", "main") == 2 and len(store.read("s", "main")) == 2  # nothing written
    assert store.append("s", "main", [shot(2)], expected_position=2,
                        lease_owner="next")[0].position == 3  # the new holder writes from the same head
    leases.release("s", "main", "next")
    with pytest.raises(BranchBusy):  # a released lease fences out everyone who does not hold one
        store.append("s", "main", [shot(3)], expected_position=3, lease_owner="paused")
    assert store.append("s", "main", [shot(3)], expected_position=3)[0].position == 4


@pytest.mark.skipif(boot_key() is None, reason="judging a holder's process needs Linux's /proc")
def test_the_lease_of_a_process_gone_from_this_machine_is_taken_over_at_once(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    leases = Leases(store.engine)
    me = new_owner().split(":")
    assert me[:2] == [socket.gethostname(), str(os.getpid())] and me[3] == boot_key()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = process_start(holder.pid)
        assert start
        owner = f"{socket.gethostname()}:{holder.pid}:cafe0001:{boot_key()}:{start}"
        assert leases.acquire("s", "main", owner, 600)
        with store.engine.begin() as conn:  # the row as that process would have written it
            conn.execute(sa.update(LEASES).where(LEASES.c.owner == owner).values(pid=holder.pid))
        with pytest.raises(BranchBusy):  # its process runs: it keeps the branch
            BranchLease(leases, "s", "main", ttl=30).acquire()
        assert not leases.get("s", "main").gone and leases.clear_gone("s", "main") is None  # type: ignore[union-attr]
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone (SIGKILL): the next runner takes its lease at once, 600 s before it would expire, and says so
    t0 = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="codirector.store.leases"), \
            BranchLease(leases, "s", "main", ttl=30) as taken:
        assert time.perf_counter() - t0 < 2
        assert taken.took_from is not None and taken.took_from.owner == owner
        assert leases.get("s", "main").owner == taken.owner  # type: ignore[union-attr]
    assert f"held by {socket.gethostname()} (pid {holder.pid}), a process on this machine that has ended" in caplog.text
    assert leases.get("s", "main") is None

    reused = f"{socket.gethostname()}:{os.getppid()}:cafe0002:{boot_key()}:1"  # a live pid that started at another time
    gone_elsewhere = f"elsewhere:{holder.pid}:cafe0003:{boot_key()}:{start}"  # another host: never judged here
    old_form = f"{socket.gethostname()}:{holder.pid}:cafe0004"  # no boot or start time: cannot be judged
    for branch, who in (("reused", reused), ("elsewhere", gone_elsewhere), ("old", old_form)):
        assert leases.acquire("s", branch, who, 600)
    assert leases.clear_gone("s", "reused") is not None and leases.get("s", "reused") is None
    for branch in ("elsewhere", "old"):
        assert leases.clear_gone("s", branch) is None
        with pytest.raises(BranchBusy) as busy:
            BranchLease(leases, "s", branch, ttl=30).acquire()
        assert "once the lease expires" in str(busy.value.hint)
    assert leases.take_over("s", "old", "someone else", "me", 30) is False  # a compare-and-set on the exact owner

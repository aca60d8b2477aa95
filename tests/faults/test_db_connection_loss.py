"""The event store and the leases over a PostgreSQL line that breaks (tests/tcp_proxy.py in front of the server):
a dropped connection is retried; an append whose COMMIT acknowledgement is lost is resolved by reading the branch,
neither lost nor written twice; an append whose claim answer is lost (nothing committed) is written once; past
``CODIRECTOR_DB_RETRY_SECONDS`` the operation stops with ``StoreUnreachable`` (exit 6)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from codirector.errors import StoreError, StoreUnreachable
from codirector.events import EntityRegistered, StoryCreated
from codirector.store.event_store import EventStore
from codirector.store.leases import BranchLease, Leases

from support import free_port, normalised
from tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres


@pytest.fixture
def proxy(pg_url: str) -> Iterator[TcpProxy]:
    """A proxy in front of the session's PostgreSQL server (never restarted here); ``proxy.url``: the test database
    through it."""
    parts = urlsplit(pg_url)
    assert parts.port is not None
    p = TcpProxy("127.0.0.1", parts.port)
    p.url = pg_url.replace(f":{parts.port}/", f":{p.port}/")  # type: ignore[attr-defined]
    yield p
    p.close()


def server_gone(proxy: TcpProxy) -> None:
    """From now on the proxy reaches nothing (its upstream is a port nobody listens on): every connection made
    through it is closed at once, and the open ones are dropped."""
    proxy.upstream = ("127.0.0.1", free_port())
    proxy.drop_all()


@pytest.fixture(autouse=True)
def _short_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODIRECTOR_DB_RETRY_SECONDS", "10")


def entity(i: int) -> EntityRegistered:
    return EntityRegistered(name=f"e{i}", kind="character", description=f"entity number {i}", base_entity=None,
                            origin="cast")


def write(store: EventStore, batches: int, before_each: object = None) -> list:  # type: ignore[type-arg]
    """A story and ``batches`` appends of two events each; ``before_each(i)`` runs before append i."""
    store.create_story("s", title="t", events=[StoryCreated(title="t", seed=1).at()])
    head = 1
    for i in range(batches):
        if callable(before_each):
            before_each(i)
        written = store.append("s", "main", [entity(2 * i).at(1), entity(2 * i + 1).at(1)], expected_position=head)
        assert [e.position for e in written] == [head + 1, head + 2]
        head += 2
    return store.read("s")


def test_an_append_whose_commit_acknowledgement_is_lost_is_neither_lost_nor_doubled(
        proxy: TcpProxy, pg_server, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    store = EventStore.open(proxy.url, create=True)  # type: ignore[attr-defined]
    calm = EventStore.open(pg_server.create_database("calm"), create=True)
    try:
        cuts: list[int] = []

        def lose_the_ack(i: int) -> None:
            cuts.append(proxy.cuts)
            proxy.cut_after(b"COMMIT")

        events = write(store, 5, lose_the_ack)
        assert proxy.cuts == 5 and cuts == [0, 1, 2, 3, 4]  # every append's COMMIT answer was swallowed
        assert normalised(events) == normalised(write(calm, 5))  # the log of an uninterrupted run
        assert [e.position for e in events] == list(range(1, 12))
        assert len({e.id for e in events}) == 11 and store.count("s") == 11  # none doubled, none lost
        assert all(e.prev_hash == p.hash for p, e in zip(events, events[1:], strict=False))
        assert "was not acknowledged" in caplog.text and "not written again" in caplog.text
    finally:
        store.close()
        calm.close()


def test_an_append_whose_claim_answer_is_lost_is_written_once(proxy: TcpProxy) -> None:
    """The connection breaks after the claim and the inserts went out, before COMMIT: the server rolls back, the
    store finds its batch is not in the branch and writes it again, once."""
    store = EventStore.open(proxy.url, create=True)  # type: ignore[attr-defined]
    try:
        events = write(store, 3, lambda i: proxy.cut_after(b"UPDATE branches") if i == 1 else None)
        assert proxy.cuts == 1
        assert [e.position for e in events] == list(range(1, 8)) and store.count("s") == 7
        assert [e.payload["name"] for e in events[1:]] == [f"e{i}" for i in range(6)]
    finally:
        store.close()


def test_dropped_connections_are_retried_for_reads_leases_and_appends(proxy: TcpProxy) -> None:
    store = EventStore.open(proxy.url, create=True)  # type: ignore[attr-defined]
    try:
        write(store, 1)
        leases = Leases(store.engine)
        with BranchLease(leases, "s", "main", ttl=30) as lease:
            for i in range(3):
                proxy.drop_all()  # every pooled connection dies, as in a restart
                assert len(store.read("s")) == 3 + i
                proxy.drop_all()
                assert leases.acquire("s", "main", lease.owner, 30)
                proxy.drop_all()
                head = store.head("s")
                proxy.drop_all()
                store.append("s", "main", [entity(head).at(1)], expected_position=head, lease_owner=lease.owner)
                proxy.drop_all()
                assert leases.get("s", "main").owner == lease.owner  # type: ignore[union-attr]
        assert store.count("s") == 6 and leases.get("s", "main") is None
    finally:
        store.close()


def test_past_the_bound_the_operation_stops_with_store_unreachable(
        proxy: TcpProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    store = EventStore.open(proxy.url, create=True)  # type: ignore[attr-defined]
    try:
        write(store, 1)
        monkeypatch.setenv("CODIRECTOR_DB_RETRY_SECONDS", "0.5")
        server_gone(proxy)
        for operation in (lambda: store.read("s"),
                          lambda: store.append("s", "main", [entity(9).at(1)], expected_position=3),
                          lambda: Leases(store.engine).acquire("s", "main", "me", 10)):
            t = time.monotonic()
            with pytest.raises(StoreUnreachable) as stopped:
                operation()
            assert 0.5 <= time.monotonic() - t < 6
            assert stopped.value.exit_code == 6 and isinstance(stopped.value, StoreError)
            assert "still unreachable after" in stopped.value.message and "over 0.5 s" in stopped.value.message
            assert "codirector resume" in (stopped.value.hint or "")
    finally:
        store.close()


def test_a_lease_not_renewable_within_its_ttl_stops_the_run_saying_so(
        proxy: TcpProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    store = EventStore.open(proxy.url, create=True)  # type: ignore[attr-defined]
    try:
        write(store, 1)
        monkeypatch.setenv("CODIRECTOR_DB_RETRY_SECONDS", "1")
        now = [0.0]  # the lease's clock, moved on by the test instead of sleeping through the TTL
        lease = BranchLease(Leases(store.engine), "s", "main", ttl=1, clock=lambda: now[0]).acquire()
        server_gone(proxy)
        now[0] += 1.2  # past the TTL, with the heartbeat failing
        with pytest.raises(StoreUnreachable) as stopped:
            lease.check()
        assert "could not be renewed" in stopped.value.message and "treated as lost" in stopped.value.message
        assert "stopped before writing more" in stopped.value.message
        assert "codirector resume s --branch main" in (stopped.value.hint or "")
        lease._stop.set()  # (its release would wait out the bound too)
    finally:
        store.close()


def test_permanent_errors_are_not_retried(pg_server, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A database that does not exist is a settings error: reported at once, not waited for."""
    monkeypatch.setenv("CODIRECTOR_DB_RETRY_SECONDS", "20")
    t = time.monotonic()
    with pytest.raises(StoreError) as failed:
        EventStore.open(pg_server.url("no_such_database"))
    assert time.monotonic() - t < 5 and not isinstance(failed.value, StoreUnreachable)
    assert "does not exist" in failed.value.message

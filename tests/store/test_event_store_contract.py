"""The event store's contract, run against SQLite and a real PostgreSQL server (same tests)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from codirector.errors import BranchNotFound, RunStateError, StoreError, StoryNotFound, VersionConflict
from codirector.events import GENESIS, EntityRegistered, ModelCalled, ShotStarted, StoryCreated, ViewAdded, ViewSource
from codirector.store.event_store import EventStore
from codirector.store.snapshots import SnapshotCache


@pytest.fixture
def store(db_url: str) -> Iterator[EventStore]:
    s = EventStore.open(db_url, create=True)
    yield s
    s.close()


def ent(name: str, base: str | None = None) -> EntityRegistered:
    return EntityRegistered(name=name, kind="character", description=f"{name} desc", base_entity=base, origin="cast")


def started(n: int) -> ShotStarted:
    return ShotStarted(keyframe_prompt=f"shot {n}", motion_prompt="walks")


def new_story(store: EventStore, story: str = "s", n: int = 0) -> None:
    store.create_story(story, title="T", events=[StoryCreated(title="T", seed=1).at()])
    if n:
        store.append(story, "main", [started(i).at(i) for i in range(1, n + 1)], expected_position=1)


class TestAppend:
    def test_positions_start_at_one_and_are_contiguous(self, store: EventStore) -> None:
        new_story(store, n=4)
        events = store.read("s")
        assert [e.position for e in events] == [1, 2, 3, 4, 5]
        assert [e.type for e in events] == ["StoryCreated"] + ["ShotStarted"] * 4
        assert [e.shot for e in events] == [None, 1, 2, 3, 4]
        assert store.head("s") == 5

    def test_hash_chain_links_every_event(self, store: EventStore) -> None:
        new_story(store, n=3)
        events = store.read("s")
        assert events[0].prev_hash == GENESIS
        for prev, ev in zip(events, events[1:], strict=False):
            assert ev.prev_hash == prev.hash
        assert all(e.expected_hash() == e.hash for e in events)
        assert store.branch("s").head_hash == events[-1].hash

    def test_version_conflict_writes_nothing(self, store: EventStore) -> None:
        new_story(store, n=2)
        before = store.read("s")
        with pytest.raises(VersionConflict) as info:
            store.append("s", "main", [started(9).at(9), started(10).at(10)], expected_position=1)
        assert (info.value.expected, info.value.actual) == (1, 3)
        assert store.read("s") == before
        assert store.head("s") == 3

    def test_ahead_expectation_is_a_conflict_too(self, store: EventStore) -> None:
        new_story(store)
        with pytest.raises(VersionConflict):
            store.append("s", "main", [started(1).at(1)], expected_position=5)
        assert store.head("s") == 1

    def test_a_writer_that_remembers_an_old_head_writes_nothing(self, store: EventStore) -> None:
        new_story(store)  # this store remembers the head it wrote: position 1
        other = EventStore(store.engine)  # a second writer on the same database
        other.append("s", "main", [started(1).at(1)], expected_position=1)
        before = store.read("s")
        with pytest.raises(VersionConflict) as info:
            store.append("s", "main", [started(9).at(9)], expected_position=1)
        assert (info.value.expected, info.value.actual) == (1, 2)
        assert store.read("s") == before
        store.append("s", "main", [started(2).at(2)], expected_position=2)  # the head it now reads
        events = store.read("s")
        assert [e.position for e in events] == [1, 2, 3] and events[2].prev_hash == events[1].hash

    def test_the_remembered_head_is_only_a_hint_the_database_decides(self, store: EventStore) -> None:
        new_story(store)
        with store.engine.begin() as conn:  # the head row as a restore from another copy could leave it
            conn.execute(text("UPDATE branches SET head_hash = :h WHERE story_id = 's'"), {"h": "f" * 64})
        [ev] = store.append("s", "main", [started(1).at(1)], expected_position=1)
        assert ev.prev_hash == "f" * 64 and store.branch("s").head_hash == ev.hash

    def test_empty_append_is_a_no_op(self, store: EventStore) -> None:
        new_story(store)
        assert store.append("s", "main", [], expected_position=1) == []
        assert store.head("s") == 1

    def test_duplicate_story_id_is_refused_clearly(self, store: EventStore) -> None:
        new_story(store)
        with pytest.raises(RunStateError, match="already exists"):
            new_story(store)

    def test_payload_round_trips_typed_and_exact(self, store: EventStore) -> None:
        new_story(store)
        source = ViewSource(kind="video_frame", shot=2, round=1, frame_index=17)
        view = ViewAdded(entity="Mia", blob="a" * 64, source=source)
        store.append("s", "main", [ent("Mia").at(1), view.at(2)], expected_position=1)
        events = store.read("s")
        assert events[1].event == ent("Mia")
        assert events[2].event == view
        assert events[2].payload["source"]["frame_index"] == 17

    def test_unicode_and_floats_survive_exactly(self, store: EventStore) -> None:
        new_story(store)
        called = ModelCalled(kind="vlm", backend="x", model="m", request_key="k" * 64,
                             request={"text": "Mïa — «rouge» 🧣", "temperature": 0.1},
                             response={"score": 0.30000000000000004}, duration_ms=12.5)
        store.append("s", "main", [called.at()], expected_position=1)
        got = store.read("s")[-1]
        assert got.payload["request"]["text"] == "Mïa — «rouge» 🧣"
        assert got.payload["response"]["score"] == 0.30000000000000004
        assert got.expected_hash() == got.hash


class TestRead:
    def test_filters(self, store: EventStore) -> None:
        new_story(store, n=3)
        store.append("s", "main", [ent("Mia").at(2)], expected_position=4)
        assert [e.position for e in store.read("s", types=["EntityRegistered"])] == [5]
        assert [e.position for e in store.read("s", shot=2)] == [3, 5]
        assert [e.position for e in store.read("s", after=2, upto=4)] == [3, 4]
        assert [e.position for e in store.read("s", limit=2)] == [1, 2]

    def test_unknown_story_and_branch_suggest_close_names(self, store: EventStore) -> None:
        new_story(store, "lighthouse")
        with pytest.raises(StoryNotFound) as info:
            store.read("lighthuose")
        assert "lighthouse" in str(info.value.hint)
        with pytest.raises(BranchNotFound) as binfo:
            store.read("lighthouse", "mian")
        assert "'main'" in str(binfo.value.hint)

    def test_typed_reads_see_only_the_lineage(self, store: EventStore) -> None:
        new_story(store)
        call = ModelCalled(kind="vlm", backend="b", model="m", request_key="k1", response={"x": 1})
        store.create_branch("s", "alt", at_position=1)
        store.append("s", "main", [call.at()], expected_position=1)
        assert [e.payload["request_key"] for e in store.read("s", "main", types=["ModelCalled"])] == ["k1"]
        assert store.read("s", "alt", types=["ModelCalled"]) == []


class TestBranches:
    def test_child_reads_parent_prefix_then_its_own(self, store: EventStore) -> None:
        new_story(store, n=4)  # positions 1..5
        store.create_branch("s", "alt", parent="main", at_position=3)
        store.append("s", "alt", [started(30).at(30)], expected_position=3)
        store.append("s", "main", [started(6).at(6)], expected_position=5)
        alt = store.read("s", "alt")
        assert [(e.branch, e.position) for e in alt] == [("main", 1), ("main", 2), ("main", 3), ("alt", 4)]
        assert alt[3].prev_hash == alt[2].hash
        main = store.read("s", "main")
        assert all(e.branch == "main" for e in main) and len(main) == 6

    def test_branch_of_a_branch_and_a_fork_inside_the_grandparent(self, store: EventStore) -> None:
        new_story(store, n=4)
        store.create_branch("s", "b1", at_position=3)
        store.append("s", "b1", [started(i).at(i) for i in (40, 41)], expected_position=3)  # 4, 5
        store.create_branch("s", "b2", parent="b1", at_position=4)
        store.append("s", "b2", [started(50).at(50)], expected_position=4)
        assert [(e.branch, e.position) for e in store.read("s", "b2")] == [
            ("main", 1), ("main", 2), ("main", 3), ("b1", 4), ("b2", 5)]
        store.create_branch("s", "b3", parent="b1", at_position=2)  # inside main's part of b1
        assert [(e.branch, e.position) for e in store.read("s", "b3")] == [("main", 1), ("main", 2)]

    def test_fork_beyond_head_or_duplicate_name_is_refused(self, store: EventStore) -> None:
        new_story(store, n=1)
        with pytest.raises(RunStateError, match="positions 1..2"):
            store.create_branch("s", "x", at_position=3)
        store.create_branch("s", "x", at_position=2)
        with pytest.raises(RunStateError, match="already has a branch"):
            store.create_branch("s", "x", at_position=1)

    def test_branch_creation_with_events_is_atomic(self, store: EventStore) -> None:
        new_story(store, n=1)
        info = store.create_branch("s", "x", at_position=2, events=[started(3).at(3)])
        assert info.head_position == 3 and info.fork_position == 2
        assert store.read("s", "x")[-1].branch == "x"

    def test_snapshots_are_found_along_the_lineage_only(self, store: EventStore) -> None:
        new_story(store, n=4)
        store.create_branch("s", "alt", at_position=3)
        cache = SnapshotCache(store)
        cache.save("s", "main", "memory", 2, 1, "at2")
        cache.save("s", "main", "memory", 5, 1, "at5")
        cache.save("s", "alt", "memory", 4, 1, "alt4")
        cache.save("s", "main", "memory", 2, 1, "second")  # a snapshot is written once
        assert cache.latest("s", "alt", "memory", upto=3, schema_version=1) == (2, "at2")
        assert cache.latest("s", "alt", "memory", upto=9, schema_version=1) == (4, "alt4")
        assert cache.latest("s", "main", "memory", upto=9, schema_version=1) == (5, "at5")
        assert cache.latest("s", "main", "memory", upto=4, schema_version=1) == (2, "at2")  # not alt's 4
        assert cache.latest("s", "main", "memory", upto=1, schema_version=1) is None
        assert cache.latest("s", "main", "memory", upto=9, schema_version=2) is None
        assert cache.newest("s", "alt", "memory", upto=3, schema_version=1) == ("main", 2)  # where, not what
        assert cache.newest("s", "alt", "memory", upto=9, schema_version=1) == ("alt", 4)
        assert cache.state("s", "alt", "memory", 4) == "alt4" and cache.state("s", "alt", "memory", 5) is None
        assert [(b, p, st) for b, p, _, st in cache.all("s", "memory")] == [
            ("alt", 4, "alt4"), ("main", 2, "at2"), ("main", 5, "at5")]
        assert cache.drop("s") == 3 and cache.latest("s", "alt", "memory", upto=9, schema_version=1) is None


class TestAppendOnly:
    def test_update_and_delete_are_refused_by_the_database(self, store: EventStore) -> None:
        new_story(store, n=1)
        for sql in ("UPDATE events SET record = '{}'", "DELETE FROM events"):
            with pytest.raises(DBAPIError, match="append-only"):
                with store.engine.begin() as conn:
                    conn.execute(text(sql))
        assert len(store.read("s")) == 2


class TestUpcasting:
    def test_v1_payload_is_read_as_v2_and_never_rewritten(self, store: EventStore) -> None:
        new_story(store)
        v1 = {"name": "bg_harbour", "description": "a grey harbour", "base": None}
        record = {"id": "v1", "story_id": "s", "branch": "main", "position": 2, "type": "EntityRegistered",
                  "schema_version": 1, "payload": v1, "shot": None, "recorded_at": "2025-01-01T00:00:00.000000Z",
                  "prev_hash": store.branch("s").head_hash, "causation_id": None}
        with store.engine.begin() as conn:  # a row as an older codirector wrote it
            conn.execute(
                text("INSERT INTO events (story_id, branch, position, type, shot, record, hash) VALUES "
                     "('s', 'main', 2, 'EntityRegistered', NULL, :r, 'not-checked-here')"),
                {"r": json.dumps(record, separators=(",", ":"), sort_keys=True)},
            )
        ev = store.read("s")[-1]
        assert ev.schema_version == 1 and ev.payload == v1  # stored as written
        typed = ev.event
        assert isinstance(typed, EntityRegistered)
        assert (typed.name, typed.kind, typed.base_entity, typed.origin) == ("bg_harbour", "background", None,
                                                                             "memory_controller")


@pytest.mark.postgres
def test_a_pooled_connection_the_server_dropped_is_replaced(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    from codirector.store import db

    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)  # every reuse counts as "after idle"
    store = EventStore.open(pg_url, create=True)
    new_story(store)
    with psycopg.connect(pg_url, autocommit=True) as admin:  # the server ends every other session
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE pid <> pg_backend_pid() AND datname = current_database()")
    store.append("s", "main", [started(1).at(1)], expected_position=1)
    assert store.head("s") == 2
    store.close()


def test_an_append_to_a_locked_database_names_the_lock_writes_nothing_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The append's driver-level transaction (``db.raw_transaction``) keeps ``connection``'s error contract."""
    monkeypatch.setenv("CODIRECTOR_BUSY_TIMEOUT", "0.05")
    path = tmp_path / "store.db"
    store = EventStore.open(f"sqlite:///{path}", create=True)
    new_story(store, n=1)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    with pytest.raises(StoreError, match="locked") as info:
        store.append("s", "main", [started(2).at(2)], expected_position=2)
    assert "wait for the other codirector process" in str(info.value.hint)
    other.execute("ROLLBACK")
    other.close()
    assert store.head("s") == 2 and len(store.read("s")) == 2  # nothing of the failed batch
    store.append("s", "main", [started(2).at(2)], expected_position=2)  # the pooled connection is clean
    assert [e.position for e in store.read("s")] == [1, 2, 3]
    store.close()


@pytest.mark.postgres
def test_a_connection_dropped_inside_an_append_is_not_pooled_again(pg_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    monkeypatch.setenv("CODIRECTOR_DB_RETRY_SECONDS", "1")  # every try dies here: give up soon

    store = EventStore.open(pg_url, create=True)
    new_story(store)
    with psycopg.connect(pg_url, autocommit=True) as admin:  # the server ends the session mid-transaction
        admin.execute("CREATE FUNCTION die() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                      "PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$")
        admin.execute("CREATE TRIGGER die BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION die()")
        with pytest.raises(StoreError, match="closed the connection"):
            store.append("s", "main", [started(1).at(1)], expected_position=1)
        admin.execute("DROP TRIGGER die ON events")
    assert store.head("s") == 1  # nothing written, and the dead connection was not handed out again
    store.append("s", "main", [started(1).at(1)], expected_position=1)
    assert store.head("s") == 2
    store.close()

"""The memory snapshot form and the reader's decoded-snapshot keeping: a cache, equal to the fold."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from codirector.engine.views.memory import (
    MEMORY_SNAPSHOT_KIND,
    MEMORY_SNAPSHOT_SCHEMA,
    Entity,
    MemoryBank,
    MemoryReader,
    View,
)
from codirector.events import EntityRegistered, ViewAdded, ViewSource
from codirector.store.event_store import EventStore
from codirector.store.snapshots import SnapshotCache


def _bank() -> MemoryBank:
    view = View("a" * 64, "video_frame", 3, None, 12, 7, "alt", 2**62)
    return MemoryBank(9, {
        "Mia": Entity("Mia", "character", "a keeper \"quoted\" — ünï", None, "cast", 1, "main", None, 5,
                      (view, view._replace(blob="b" * 64, embedding_id=None))),
        "Mia_red_scarf": Entity("Mia_red_scarf", "character", "", "Mia", "video_analyzer", 4, "alt", 2, None),
        "lamp": Entity("lamp", "prop", "x", None, "user", 5, "main", 1, 0, (view,)),
    }, ["position 3: 'Mia' registered twice; first kept"])


def test_the_snapshot_form_round_trips_exactly() -> None:
    for bank in (_bank(), MemoryBank(), MemoryBank(4, {}, ["an anomaly"])):
        back = MemoryBank.from_json(bank.to_json())
        assert back == bank and back.to_json() == bank.to_json()
        assert [type(e) for e in back] == [Entity] * len(bank)
        assert all(type(v) is View for e in back for v in e.views)
        assert back.names() == bank.names()  # registration order kept


def test_a_snapshot_of_another_layout_is_refused() -> None:
    text = _bank().to_json().replace('"embedding_id"', '"vector_id"')
    with pytest.raises(ValueError):
        MemoryBank.from_json(text)


def _story(store: EventStore, n: int) -> None:
    rng = random.Random(5)
    store.create_story("s")
    names: list[str] = []
    drafts = []
    for i in range(n):
        if not names or rng.random() < 0.3:
            names.append(f"e{i}")
            drafts.append(EntityRegistered(name=names[-1], kind="prop", description=f"d{i}", origin="user").at(i))
        else:
            drafts.append(ViewAdded(entity=rng.choice(names), blob=f"{i:064x}",
                                    source=ViewSource(kind="keyframe", shot=i, round=1)).at(i))
    store.append("s", "main", drafts, expected_position=0)


def test_kept_and_fresh_reads_equal_the_fold_across_branches_and_dropped_snapshots(tmp_path: Path) -> None:
    store = EventStore.open(f"sqlite:///{tmp_path}/s.db", create=True)
    _story(store, 600)
    store.create_branch("s", "alt", at_position=300)
    store.append("s", "alt", [EntityRegistered(name="alt_only", kind="prop", description="x", origin="user").at()],
                 expected_position=300)
    kept = MemoryReader(store, snapshot_after=40)
    fresh = MemoryReader(store, snapshot_after=40, keep_decoded=False)
    plain = MemoryReader(store, use_snapshots=False)
    rng = random.Random(2)
    for i in range(60):
        branch = "alt" if i % 3 == 0 else "main"
        p = rng.randint(0, 301 if branch == "alt" else 600)
        want = plain.at("s", branch, p).to_json()
        first = kept.at("s", branch, p)
        first.entities.clear()  # a caller changing its bank cannot reach the kept snapshot
        assert kept.at("s", branch, p).to_json() == want
        assert fresh.at("s", branch, p).to_json() == want
        if i == 30:
            assert SnapshotCache(store).drop("s") > 0  # kept snapshots stay equal to the fold
    store.close()


def test_old_snapshot_schemas_are_never_read(tmp_path: Path) -> None:
    store = EventStore.open(f"sqlite:///{tmp_path}/s.db", create=True)
    _story(store, 50)
    SnapshotCache(store).save("s", "main", MEMORY_SNAPSHOT_KIND, 40, MEMORY_SNAPSHOT_SCHEMA - 1, "not this form")
    assert MemoryReader(store).at("s", "main", 45).to_json() == \
        MemoryReader(store, use_snapshots=False).at("s", "main", 45).to_json()
    store.close()

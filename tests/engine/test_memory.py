"""Memory is a fold of the log; snapshots are a cache equal to it; branches are isolated."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from codirector.engine.loop.vectors import best_view, shortlist, store_embedding
from codirector.engine.studio import Studio
from codirector.engine.views.memory import MemoryBank, MemoryReader, apply, fold
from codirector.errors import EntityNotFound, RunStateError
from codirector.events import EntityRegistered, KeyframeSelected, StoryCreated, ViewAdded, ViewSource
from codirector.store.event_store import EventStore

from support import build_lineage_story


@pytest.fixture
def studio(tmp_path: Path) -> Studio:
    s = Studio(tmp_path / "home")
    s.init()
    return s


def test_fold_builds_entities_lineage_and_views(studio: Studio, tiny_embedder) -> None:  # type: ignore[no-untyped-def]
    build_lineage_story(studio, tiny_embedder)
    bank = studio.memory("lighthouse")
    assert bank.names() == ["Mia", "Tom", "Mia_red_scarf", "Mia_red_scarf_back"]
    assert bank.base_chain("Mia_red_scarf_back") == ["Mia", "Mia_red_scarf", "Mia_red_scarf_back"]
    assert bank.derived("Mia") == ["Mia_red_scarf"]
    assert bank.descendants("Mia") == ["Mia_red_scarf", "Mia_red_scarf_back"]
    scarf = bank.get("Mia_red_scarf")
    assert (scarf.origin, scarf.shot, scarf.base_entity) == ("video_analyzer", 2, "Mia")
    assert [(v.kind, v.shot, v.frame_index) for v in scarf.views] == [("video_frame", 2, 12)]
    assert bank.anomalies == []


def test_unknown_entity_suggests_close_names(studio: Studio, tiny_embedder) -> None:  # type: ignore[no-untyped-def]
    build_lineage_story(studio, tiny_embedder)
    with pytest.raises(EntityNotFound) as info:
        studio.memory("lighthouse").get("Mia_red_scraf")
    assert "Mia_red_scarf" in str(info.value.hint)


def test_apply_is_pure(studio: Studio, tiny_embedder) -> None:  # type: ignore[no-untyped-def]
    events = build_lineage_story(studio, tiny_embedder)
    bank = MemoryBank()
    states = []
    for ev in events:
        new = apply(bank, ev)
        states.append((bank.names(), new.names()))
        bank = new
    assert states[1] == ([], ["Mia"])  # the old bank did not change
    assert bank.to_json() == fold(events).to_json()


def test_at_shot_is_the_memory_the_keyframe_was_made_with(studio: Studio, tiny_embedder) -> None:  # type: ignore[no-untyped-def]
    build_lineage_story(studio, tiny_embedder)
    assert studio.memory("lighthouse", at_shot=1).names() == ["Mia", "Tom"]
    assert "Mia_red_scarf" in studio.memory("lighthouse", at_shot=3).names()
    with pytest.raises(RunStateError, match="shot 4 has no selected keyframe"):
        studio.memory("lighthouse", at_shot=4)


def test_anomalies_are_kept_out_of_memory(tmp_path: Path) -> None:
    store = EventStore.open(f"sqlite:///{tmp_path}/a.db", create=True)
    store.create_story("s", events=[StoryCreated(title="t", seed=0).at()])
    e = EntityRegistered(name="A", kind="prop", description="x", origin="user")
    store.append("s", "main", [e.at(), e.at(), ViewAdded(entity="ghost", blob="0" * 64,
                                                          source=ViewSource(kind="reference")).at()],
                 expected_position=1)
    bank = fold(store.read("s"))
    assert bank.names() == ["A"] and len(bank.anomalies) == 2


def _random_story(store: EventStore, n: int, seed: int) -> None:
    rng = random.Random(seed)
    store.create_story("big", events=[StoryCreated(title="big", seed=seed).at()])
    names: list[str] = []
    drafts = []
    for i in range(n):
        r = rng.random()
        if r < 0.3 or not names:
            name = f"e{i}"
            base = rng.choice(names) if names and rng.random() < 0.4 else None
            drafts.append(EntityRegistered(name=name, kind="character", description=f"d{i}", base_entity=base,
                                           origin="memory_controller").at(i // 20 + 1))
            names.append(name)
        elif r < 0.7:
            drafts.append(ViewAdded(entity=rng.choice(names), blob=f"{i:064x}",
                                    source=ViewSource(kind="video_frame", shot=i // 20 + 1, frame_index=i % 40)).at())
        else:
            drafts.append(KeyframeSelected(round=1, blob=f"{i:064x}", how="accepted", why="-").at(i // 20 + 1))
    store.append("big", "main", drafts, expected_position=1)


def test_snapshots_equal_the_plain_fold_at_random_positions(tmp_path: Path) -> None:
    store = EventStore.open(f"sqlite:///{tmp_path}/s.db", create=True)
    _random_story(store, 3000, seed=3)
    store.create_branch("big", "alt", at_position=1700)
    store.append("big", "alt", [EntityRegistered(name="alt_only", kind="prop", description="x",
                                                 origin="user").at()], expected_position=1700)
    cached = MemoryReader(store, snapshot_after=50)
    plain = MemoryReader(store, use_snapshots=False)
    rng = random.Random(1)
    positions = [rng.randint(0, 3001) for _ in range(40)]
    for p in positions:
        assert cached.at("big", "main", p).to_json() == plain.at("big", "main", p).to_json()
    for p in [rng.randint(0, 1701) for _ in range(15)]:
        assert cached.at("big", "alt", p).to_json() == plain.at("big", "alt", p).to_json()
    from sqlalchemy import text

    with store.engine.connect() as conn:
        n_snaps = conn.execute(text("SELECT count(*) FROM snapshots")).scalar_one()
        alt_snaps = conn.execute(text("SELECT count(*) FROM snapshots WHERE branch='alt'")).scalar_one()
    assert n_snaps > 5  # the cache was actually used
    assert alt_snaps == 0  # positions <= the fork are cached under the branch that owns them


def test_branch_isolation_memory_and_vector_search(studio: Studio, tiny_embedder) -> None:  # type: ignore[no-untyped-def]
    events = build_lineage_story(studio, tiny_embedder)
    fork = next(e.position for e in events if e.type == "KeyframeSelected")  # end of shot 1
    store = studio.store
    store.create_branch("lighthouse", "alt", at_position=fork)

    # the child adds an entity of its own
    vec = tiny_embedder.embed_texts(["a black cat on the rocks"])[0]
    ref = store_embedding(studio.blobs, "lighthouse", "Cat", vec, tiny_embedder.name)
    store.append("lighthouse", "alt", [EntityRegistered(name="Cat", kind="prop", description="a black cat on the rocks",
                                                        origin="memory_controller", text_embedding=ref).at(2)],
                 expected_position=fork)
    index = studio.index("lighthouse")

    child = studio.memory("lighthouse", "alt")
    parent = studio.memory("lighthouse", "main")
    assert child.names() == ["Mia", "Tom", "Cat"]  # none of the parent's later entities
    assert "Cat" not in parent.names()

    # vector search with a query that matches the parent's later entity exactly
    scarf_desc = "a young woman with short black hair and a grey coat, now wearing a red scarf"
    q = tiny_embedder.embed_texts([scarf_desc])[0]
    parent_hits = shortlist(index, parent, q, k=10)
    assert parent_hits[0].entity == "Mia_red_scarf" and parent_hits[0].score == pytest.approx(1.0, abs=1e-4)
    child_hits = shortlist(index, child, q, k=10)
    assert {h.entity for h in child_hits} == {"Mia", "Tom", "Cat"}
    # ... and the parent never finds the child's entity, even with its exact description
    cat_q = tiny_embedder.embed_texts(["a black cat on the rocks"])[0]
    assert "Cat" not in {h.entity for h in shortlist(index, parent, cat_q, k=10)}
    assert shortlist(index, child, cat_q, k=1)[0].entity == "Cat"

    # the child at the fork sees exactly the parent's memory at the fork
    assert studio.memory("lighthouse", "alt", at_position=fork).to_json().replace('"alt"', '"main"') == \
        studio.memory("lighthouse", "main", at_position=fork).to_json()


def test_best_view_picks_the_matching_view(studio: Studio, tiny_embedder) -> None:  # type: ignore[no-untyped-def]
    build_lineage_story(studio, tiny_embedder)
    index = studio.index("lighthouse")
    bank = studio.memory("lighthouse")
    view = bank.get("Mia").views[0]
    q = index.reconstruct(view.embedding_id)
    chosen, score = best_view(index, bank, "Mia", q)
    assert chosen == view and score == pytest.approx(1.0, abs=1e-5)
    assert np.isfinite(score)

"""Memory is a fold of the log; snapshots are a cache equal to it; branches are isolated."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from codirector.engine.loop.vectors import Hit, best_view, shortlist, store_embedding
from codirector.engine.studio import Studio
from codirector.engine.views.memory import MemoryBank, MemoryReader, View, apply, fold, mutate
from codirector.engine.views.visible import VisibleVectors
from codirector.errors import EntityNotFound, RunStateError
from codirector.events import EntityRegistered, KeyframeSelected, StoryCreated, ViewAdded, ViewSource
from codirector.store.event_store import EventStore
from codirector.store.vector_index import VectorIndex

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


def _plain_shortlist(index: VectorIndex, bank: MemoryBank, q: np.ndarray, k: int) -> list[Hit]:
    """``shortlist`` as it was before memory kept its visible ids: owners rebuilt, a plain set searched."""
    owners: dict[int, tuple[str, View | None]] = {}
    for e in bank:
        if e.text_embedding_id is not None:
            owners[e.text_embedding_id] = (e.name, None)
        for v in e.views:
            if v.embedding_id is not None:
                owners[v.embedding_id] = (e.name, v)
    total, fetch = len(owners), min(len(owners), 4 * k)
    while owners:
        best: dict[str, Hit] = {}
        for vid, score in index.search(q, fetch, set(owners)):
            name, view = owners[vid]
            if name not in best:
                best[name] = Hit(name, round(float(score), 6), "text" if view is None else "image", view)
        if len(best) >= k or fetch >= total:
            return sorted(best.values(), key=lambda h: (-h.score, h.entity))[:k]
        fetch = min(total, fetch * 4)
    return []


def _embedded_story(studio: Studio, path: Path, n: int, seed: int) -> VectorIndex:
    """A story whose entities and views all carry embeddings (some views repeat a vector: equal ids,
    equal scores), with every vector in the story's index; a branch forks halfway."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    store = studio.store
    store.create_story("emb", events=[StoryCreated(title="emb", seed=seed).at()])
    index = VectorIndex(path, dim=16)
    names: list[str] = []
    drafts = []
    for i in range(n):
        r = rng.random()
        vec = nrng.standard_normal(16).astype(np.float32)
        if r < 0.3 or not names:
            name = f"e{i}"
            ref = store_embedding(studio.blobs, "emb", name, vec, "tiny")
            drafts.append(EntityRegistered(name=name, kind="character", description=f"d{i}",
                                           origin="memory_controller", text_embedding=ref).at(i // 20 + 1))
            names.append(name)
        else:
            name = rng.choice(names)
            if r < 0.4:  # an image seen again: the same vector, so the same id (and exact ties)
                vec = np.ones(16, dtype=np.float32)
            ref = store_embedding(studio.blobs, "emb", name, vec, "tiny")
            drafts.append(ViewAdded(entity=name, blob=f"{i:064x}", embedding=ref,
                                    source=ViewSource(kind="video_frame", shot=i // 20 + 1, frame_index=i % 40)).at())
        index.add([ref.id], vec[None, :])
    store.append("emb", "main", drafts, expected_position=1)
    store.create_branch("emb", "alt", at_position=n // 2)
    return index


def test_visible_ids_kept_by_the_fold_equal_a_plain_set(studio: Studio, tiny_embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The ids memory keeps for the index (sorted, looked up as rows once per state) give exactly the
    retrieval a plain set of the entities' ids gives, however the bank was made: folded event by
    event (``apply`` copies and ``mutate`` in place), read through snapshots (kept decoded or not)."""
    events = build_lineage_story(studio, tiny_embedder)
    lineage_index = studio.index("lighthouse")
    index = _embedded_story(studio, tmp_path / "emb.faiss", 300, seed=5)
    queries = [np.random.default_rng(i).standard_normal(16).astype(np.float32) for i in range(3)]
    queries.append(np.ones(16, dtype=np.float32))  # ties with every repeated view

    def same(idx: VectorIndex, bank: MemoryBank, qs: list[np.ndarray]) -> None:
        plain = VisibleVectors.of(bank)
        assert bank.visible().ids().tolist() == sorted(plain.owners()) == plain.ids().tolist()
        assert dict(bank.visible().owners()) == dict(plain.owners()) == bank.vector_owners()
        for q in qs:
            for k in (1, 3, 8):
                assert shortlist(idx, bank, q, k) == _plain_shortlist(idx, bank, q, k)
            owners = bank.vector_owners()
            assert idx.search(q, len(owners), bank.visible().rows(idx)) == idx.search(q, len(owners), set(owners))

    text_q = [tiny_embedder.embed_texts(["a young woman in a red scarf"])[0]]
    chained, in_place = MemoryBank(vectors=VisibleVectors()), fold([])
    for ev in events:
        chained = apply(chained, ev)
        mutate(in_place, ev)
        same(lineage_index, chained, text_q)
        same(lineage_index, in_place, text_q)

    story = studio.store.read("emb", "main")
    bank = fold([])
    for i, ev in enumerate(story):
        mutate(bank, ev)
        if i % 37 == 0:
            same(index, bank, queries[:2])
    same(index, bank, queries)
    kept = MemoryReader(studio.store, snapshot_after=20)
    fresh = MemoryReader(studio.store, snapshot_after=20, keep_decoded=False)
    rng = random.Random(7)
    for branch, head in (("main", len(story) + 1), ("alt", 151)):
        for p in sorted(rng.randint(1, head) for _ in range(8)):
            for reader in (kept, fresh):
                same(index, reader.at("emb", branch, p), queries)


def test_visible_rows_follow_the_index_they_were_found_in(studio: Studio, tmp_path: Path) -> None:
    """Rows found while an id was missing from the index are looked up again once the index grows;
    rows of one index are refused by another."""
    ref = store_embedding(studio.blobs, "s", "Mia", np.ones(8, dtype=np.float32), "tiny")
    studio.store.create_story("s", events=[StoryCreated(title="s", seed=0).at()])
    studio.store.append("s", "main", [EntityRegistered(name="Mia", kind="character", description="d", origin="user",
                                                       text_embedding=ref).at()], expected_position=1)
    bank = fold(studio.store.read("s", "main"))
    index = VectorIndex(tmp_path / "a.faiss", dim=8)
    index.add([1], np.ones((1, 8), dtype=np.float32))
    q = np.ones(8, dtype=np.float32)
    assert shortlist(index, bank, q) == []  # Mia's vector is not in the index yet
    index.add([ref.id], np.ones((1, 8), dtype=np.float32))
    assert [h.entity for h in shortlist(index, bank, q)] == ["Mia"]
    other = VectorIndex(tmp_path / "b.faiss", dim=8)
    other.add([ref.id], np.ones((1, 8), dtype=np.float32))
    assert [h.entity for h in shortlist(other, bank, q)] == ["Mia"]  # found again in that index
    with pytest.raises(ValueError):
        other.search(q, 1, bank.visible().rows(index))

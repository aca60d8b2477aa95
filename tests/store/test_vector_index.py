"""The FAISS projection: exact filtered search, persistence with merge, dimension checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codirector.errors import IntegrityViolation
from codirector.store.vector_index import VectorIndex, embedding_id, normalised


def brute_force(x: np.ndarray, ids: np.ndarray, q: np.ndarray, allowed: set[int], k: int) -> list[int]:
    scores = normalised(x) @ normalised(q)[0]
    order = [int(ids[i]) for i in np.argsort(-scores) if int(ids[i]) in allowed]
    return order[:k]


@pytest.mark.parametrize("fraction", [0.02, 0.3, 0.9, 1.0])
def test_filtered_search_is_exact(tmp_path: Path, fraction: float) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 48)).astype(np.float32)
    ids = rng.choice(2**40, size=3000, replace=False).astype(np.int64)
    index = VectorIndex(tmp_path / "i.faiss", dim=48)
    assert index.add(ids, x) == 3000
    for _ in range(5):
        allowed = {int(i) for i in ids if rng.random() < fraction}
        q = rng.standard_normal((1, 48)).astype(np.float32)
        got = [i for i, _ in index.search(q, 8, allowed)]
        assert got == brute_force(x, ids, q, allowed, 8)
    assert index.search(q, 8, set()) == []
    assert index.search(q, 8, {999}) == []  # unknown ids are ignored


def test_add_skips_existing_ids_and_save_merges_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "i.faiss"
    a, b = VectorIndex(path, dim=4), VectorIndex(path, dim=4)
    a.add([1, 2], np.eye(4, dtype=np.float32)[:2])
    assert a.add([2], np.ones((1, 4), dtype=np.float32)) == 0
    b.add([3], np.eye(4, dtype=np.float32)[2:3])
    a.save()
    b.save()  # b never saw 1 and 2: the save merges instead of dropping them
    assert VectorIndex(path).ids() == {1, 2, 3}
    np.testing.assert_allclose(VectorIndex(path).reconstruct(2), [0, 1, 0, 0])


def test_dimension_mismatch_is_refused(tmp_path: Path) -> None:
    index = VectorIndex(tmp_path / "i.faiss", dim=4)
    with pytest.raises(IntegrityViolation, match="dimension 5"):
        index.add([1], np.ones((1, 5), dtype=np.float32))


def test_embedding_ids_are_stable_and_entity_scoped() -> None:
    a = embedding_id("story", "Mia", "b" * 64)
    assert a == embedding_id("story", "Mia", "b" * 64)
    assert a != embedding_id("story", "Tom", "b" * 64)
    assert a != embedding_id("other", "Mia", "b" * 64)
    assert 0 <= a < 2**63


def test_unreadable_index_file_names_reindex(tmp_path: Path) -> None:
    path = tmp_path / "i.faiss"
    path.write_bytes(b"not faiss")
    with pytest.raises(IntegrityViolation) as info:
        VectorIndex(path)
    assert "reindex" in str(info.value.hint)


def exact_scan(x: np.ndarray, ids: np.ndarray, q: np.ndarray, allowed: set[int], k: int) -> list[tuple[int, float]]:
    """The reference: FAISS's flat scan over exactly the allowed vectors, ties broken by smaller id."""
    import faiss

    keep = np.array([int(i) in allowed for i in ids])
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(normalised(x[keep]))
    scores, rows = flat.search(normalised(q), int(keep.sum()))  # every allowed vector, scored
    kept_ids = ids[keep]
    ranked = sorted(((int(kept_ids[r]), float(s)) for r, s in zip(rows[0], scores[0], strict=True)),
                    key=lambda h: (-h[1], h[0]))
    return ranked[:k]


def as_arrays(allowed: set[int], rng: np.random.Generator) -> list[np.ndarray]:
    """``allowed`` as the numpy arrays a caller may pass: sorted int64 (the engine's form), shuffled
    with repeats and an id the index never held, and another integer dtype."""
    ordered = np.sort(np.fromiter(allowed, dtype=np.int64, count=len(allowed)))
    messy = np.concatenate([ordered, ordered[:3], [12345]])
    rng.shuffle(messy)
    return [ordered, messy, ordered.astype(np.uint64)]


@pytest.mark.parametrize("fraction", [0.005, 0.01, 0.1, 0.3, 0.5, 0.9, 1.0])
def test_filtered_search_equals_the_exact_scan_with_ties_broken_by_id(tmp_path: Path, fraction: float) -> None:
    rng = np.random.default_rng(1)
    n, dim = 4000, 64
    x = rng.standard_normal((n, dim)).astype(np.float32)
    x[1::2] = x[::2]  # every vector twice, under two ids: exact ties everywhere
    ids = rng.choice(2**62, size=n, replace=False).astype(np.int64)
    index = VectorIndex(tmp_path / "i.faiss", dim=dim)
    index.add(ids[: n // 2], x[: n // 2])
    index.add(ids[n // 2 :], x[n // 2 :])  # two batches: the id map is merged, not rebuilt
    for trial in range(6):
        allowed = {int(i) for i in ids if rng.random() < fraction} or {int(ids[0])}
        q = x[rng.integers(n)][None, :] if trial % 2 else rng.standard_normal((1, dim)).astype(np.float32)
        for k in (1, 8, 50):
            want = exact_scan(x, ids, q, allowed, k)
            assert index.search(q, k, allowed) == want
            # any collection works: a list with repeats and ids the index never held
            assert index.search(q, k, [*allowed, *list(allowed)[:3], 12345]) == want
            for array in as_arrays(allowed, rng):  # and numpy arrays, sorted or not (both paths)
                assert index.search(q, k, array) == want
            # the rows themselves (the engine's form, ``MemoryBank.visible``): located at once, or
            # a base located earlier joined with the rest (overlapping ids counted once)
            assert index.search(q, k, index.locate(allowed)) == want
            half = sorted(allowed)[: len(allowed) // 2]
            base = index.locate(half)
            assert index.search(q, k, index.locate([*allowed, 12345], base)) == want
            assert index.search(q, k, index.locate(np.asarray(half[:2], dtype=np.int64), base)) == \
                exact_scan(x, ids, q, set(half), k)
    index.save()
    reloaded = VectorIndex(tmp_path / "i.faiss")
    assert reloaded.search(q, 8, allowed) == exact_scan(x, ids, q, allowed, 8)
    assert reloaded.ids() == {int(i) for i in ids}


@pytest.mark.parametrize("fraction", [0.01, 0.1])
def test_scattered_visible_sets_equal_the_exact_scan(tmp_path: Path, fraction: float) -> None:
    """The benchmark's adversarial case: the visible rows scattered uniformly over the whole index,
    a new set for every query and the same set queried again (gathered into a block), ties included."""
    rng = np.random.default_rng(2)
    n, dim = 20_000, 32
    x = rng.standard_normal((n, dim)).astype(np.float32)
    x[n // 2 :] = x[: n // 2]  # every vector twice, far apart in the index: ties across the scatter
    ids = rng.choice(2**62, size=n, replace=False).astype(np.int64)
    index = VectorIndex(tmp_path / "i.faiss", dim=dim)
    index.add(ids, x)
    for trial in range(4):
        rows = np.flatnonzero(rng.random(n) < fraction)
        allowed = set(ids[rows].tolist())
        q = x[rng.choice(rows)][None, :] if trial % 2 else rng.standard_normal((1, dim)).astype(np.float32)
        want = exact_scan(x, ids, q, allowed, 8)
        for _ in range(3):  # new set, then the same set again (gathered), then from the gathered block
            assert index.search(q, 8, allowed) == want
        for array in as_arrays(allowed, rng):  # as the engine hands them over (sorted), and others
            for _ in range(3):
                assert index.search(q, 8, array) == want
        assert index.search(q, 8, frozenset(allowed)) == want
        located = index.locate(allowed)
        for _ in range(3):
            assert index.search(q, 8, located) == want
        assert index.search(q, 8, dict.fromkeys(allowed)) == want


def test_an_array_of_visible_ids_is_checked_not_kept_and_refused_when_not_ids(tmp_path: Path) -> None:
    """The array form: the search keeps nothing of it (a caller may reuse theirs), and refuses
    anything but a 1-d integer array."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1000, 16)).astype(np.float32)
    ids = np.arange(1000, dtype=np.int64) * 7
    index = VectorIndex(tmp_path / "i.faiss", dim=16)
    index.add(ids, x)
    q = rng.standard_normal((1, 16)).astype(np.float32)
    visible = ids[:100].copy()
    want = exact_scan(x, ids, q, set(visible.tolist()), 8)
    assert index.search(q, 8, visible) == want
    assert index.search(q, 8, visible) == want  # gathered into a block
    visible[:] = ids[500:600]  # the caller reuses its array: the block must not answer for it
    assert index.search(q, 8, visible) == exact_scan(x, ids, q, set(visible.tolist()), 8)
    assert index.search(q, 8, np.empty(0, dtype=np.int64)) == []
    with pytest.raises(TypeError):
        index.search(q, 8, ids.astype(np.float64))
    with pytest.raises(TypeError):
        index.search(q, 8, ids.reshape(10, 100))


def test_located_rows_are_checked_against_their_index(tmp_path: Path) -> None:
    """Rows are only valid in the index that found them; a missing id makes them incomplete."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((100, 8)).astype(np.float32)
    a, b = VectorIndex(tmp_path / "a.faiss", dim=8), VectorIndex(tmp_path / "b.faiss", dim=8)
    a.add(range(100), x)
    b.add(range(100), x)
    rows = a.locate([3, 5, 7])
    assert rows.complete and rows.size == 100 and not rows.rows.flags.writeable
    assert not a.locate([3, 1000]).complete
    q = rng.standard_normal((1, 8)).astype(np.float32)
    assert a.search(q, 2, rows) == b.search(q, 2, {3, 5, 7})
    with pytest.raises(ValueError):
        b.search(q, 2, rows)
    with pytest.raises(ValueError):
        b.locate([1], rows)



@pytest.mark.parametrize("kind", ["negative and extreme", "holding -1"])
def test_any_int64_ids_search_exactly(tmp_path: Path, kind: str) -> None:
    """Ids anywhere in int64, -1 included (the id -> row table cannot hold it: the map then searches
    the sorted ids instead), found by every form of ``allowed`` as the exact scan finds them."""
    rng = np.random.default_rng(7)
    n, dim = 2000, 16
    x = rng.standard_normal((n, dim)).astype(np.float32)
    ids = np.unique(rng.integers(-(2**63), 2**63 - 1, size=n + 10, dtype=np.int64))[:n]
    ids[:2] = [np.iinfo(np.int64).min, np.iinfo(np.int64).max]
    rng.shuffle(ids)
    if kind == "holding -1" and -1 not in ids:
        ids[n - 1] = -1  # in the second batch
    index = VectorIndex(tmp_path / "i.faiss", dim=dim)
    index.add(ids[: n // 2], x[: n // 2])
    q = rng.standard_normal((1, dim)).astype(np.float32)
    index.search(q, 8, set(ids[:50].tolist()))  # the map is built before the second batch arrives
    index.add(ids[n // 2 :], x[n // 2 :])
    for fraction in (0.01, 0.1, 0.5):
        allowed = {int(i) for i in ids if rng.random() < fraction} | {-1, int(ids[0])}
        want = exact_scan(x, ids, q, allowed, 8)
        assert index.search(q, 8, allowed) == want
        assert index.search(q, 8, index.locate(allowed)) == want
    for vid in (-1, int(ids[3])):
        if vid in index:
            np.testing.assert_allclose(index.reconstruct(vid), normalised(x[list(ids).index(vid)])[0], atol=1e-6)

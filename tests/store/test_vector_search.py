"""The subset kernels on their own: the id -> row map and the heap top-k, against plain references."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from codirector.store.vector_search import RowMap, rows_by_search, score_rows, top_k_in_rows, top_k_rows


def faiss_module() -> Any:
    import faiss

    faiss.omp_set_num_threads(1)
    return faiss


class RefusingFaiss:
    """FAISS whose hash table refuses every id, as it does when ids crowd one region of it."""

    def __init__(self, faiss: Any) -> None:
        self._faiss = faiss

    def __getattr__(self, name: str) -> Any:
        return getattr(self._faiss, name)

    def hashtable_int64_to_int64_add(self, *args: Any) -> None:
        raise RuntimeError("hashtable capacity exhausted")


def reference_rows(wanted: np.ndarray, row_ids: np.ndarray) -> np.ndarray:
    order = np.argsort(row_ids, kind="stable")
    return rows_by_search(wanted, row_ids[order], order.astype(np.int64))


def wanted_ids(rng: np.random.Generator, held: np.ndarray) -> np.ndarray:
    """Some held ids, ids never held (-1 and both int64 extremes among them), sorted, each once."""
    some = rng.choice(held, size=min(held.size, 300), replace=False) if held.size else held
    extremes = np.array([-1, 0, np.iinfo(np.int64).min, np.iinfo(np.int64).max], dtype=np.int64)
    return np.unique(np.concatenate([some, rng.integers(-(2**62), 2**62, 50), extremes]))


@pytest.mark.parametrize("kind", ["digests", "small and negative", "holding -1", "refused by the table"])
def test_row_map_finds_the_rows_of_every_held_id_as_rows_append(kind: str) -> None:
    """Batches of ids appended across several refills of the table: every lookup equals a binary
    search of the ids sorted; ids never held are dropped; rows come back ascending."""
    rng = np.random.default_rng(5)
    n = 5000
    if kind == "digests":
        row_ids = rng.choice(2**63 - 1, size=n, replace=False).astype(np.int64)
    else:
        row_ids = rng.permutation(np.arange(-n // 2, n - n // 2, dtype=np.int64) * 3)
    row_ids = row_ids[row_ids != -1]
    if kind == "holding -1":
        row_ids[n // 3] = -1  # arrives with a later batch: the map switches to binary search then
    faiss = RefusingFaiss(faiss_module()) if kind == "refused by the table" else faiss_module()
    rows = RowMap(faiss, row_ids[:10])
    end = 10
    while end < row_ids.size:
        start, end = end, min(row_ids.size, end + int(rng.integers(1, 900)))
        rows.extend(row_ids[:end], start)
        held = row_ids[:end]
        wanted = wanted_ids(rng, held)
        got = rows.rows_of(wanted)
        assert np.array_equal(got, reference_rows(wanted, held))
        assert np.all(got[1:] > got[:-1])
        assert np.array_equal(np.sort(held[got]), np.intersect1d(wanted, held))
    assert np.array_equal(rows.rows_of(np.asarray([row_ids[7]])), [7])
    assert rows.rows_of(np.empty(0, dtype=np.int64)).size == 0
    assert RowMap(faiss, np.empty(0, dtype=np.int64)).rows_of(np.asarray([1, 2])).size == 0


@pytest.mark.parametrize("k", [1, 8, 50, 400])
def test_heap_top_k_equals_scoring_every_row(k: int) -> None:
    """FAISS's heap (asked for k + 1) against every row scored and ranked, with ties: half the
    vectors appear twice, so the k-th place is often shared."""
    faiss = faiss_module()
    rng = np.random.default_rng(6)
    n, dim = 3000, 32
    mat = rng.standard_normal((n, dim)).astype(np.float32)
    mat /= np.linalg.norm(mat, axis=1, keepdims=True)
    mat[1::2] = mat[::2]
    row_ids = rng.choice(2**62, size=n, replace=False).astype(np.int64)
    for trial in range(20):
        rows = np.flatnonzero(rng.random(n) < rng.choice([0.002, 0.05, 0.3]))
        q = mat[rng.integers(n)][None, :] if trial % 2 else rng.standard_normal((1, dim)).astype(np.float32)
        q = np.ascontiguousarray(q / np.linalg.norm(q), dtype=np.float32)
        want = top_k_rows(row_ids, rows, score_rows(faiss, mat, rows, q), k)
        assert top_k_in_rows(faiss, mat, n, row_ids, rows, q, k) == want
    assert top_k_in_rows(faiss, mat, n, row_ids, np.empty(0, dtype=np.int64), q, k) == []

"""Exact top-k among the rows a caller may see: the kernels behind ``VectorIndex.search``.

Invariant: every path returns exactly the k best (id, score) among the allowed rows, where a row's
score is the float32 inner product FAISS's own flat scan computes for it (``fvec_inner_product``),
ordered by score descending, then id ascending. Ties are therefore broken the same way on every
path, and equal inputs give equal outputs. Which path runs depends only on how much is visible:
- ``subset``: map the allowed ids to rows and score only those rows (``fvec_inner_products_by_idx``),
  then a partial sort. It reads v·d·4 bytes for v visible vectors, whatever the index size.
  A caller that keeps its visible set may hand over the rows themselves (``VisibleRows``, from
  ``VectorIndex.locate``: rows never move, so they stay valid), and the id -> row map is skipped.
  A visible set searched twice in a row is gathered into one contiguous ``Block``; later searches
  of that same set scan the block sequentially (same arithmetic, same scores, no scattered reads).
- ``prescan``: most rows visible. A half-precision pre-scan over every row (half the bytes of a
  float32 scan) whose candidates are rescored exactly until the bound on the pre-scan's error
  proves the top k.
"""

from __future__ import annotations

from collections.abc import Collection, KeysView
from dataclasses import dataclass
from typing import Any

import numpy as np

SUBSET_MAX_FRACTION = 0.25  # above this share of rows visible, the half-precision pre-scan is faster
FP16_SLACK = 1e-3  # > the largest gap between a half-precision and an exact cosine of unit vectors


def allowed_array(allowed: Collection[int] | np.ndarray) -> np.ndarray:
    """The allowed ids as a sorted int64 array without duplicates.

    A numpy integer array that is already strictly increasing (the form a caller that keeps its
    visible ids sorted can hand over) is only copied, after one vectorised check; any other array
    is sorted and deduplicated (``np.unique``), any other collection read once and sorted.
    """
    if isinstance(allowed, np.ndarray):
        if allowed.ndim != 1 or allowed.dtype.kind not in "iu":
            raise TypeError(f"allowed ids must be a 1-d integer array, not {allowed.dtype} of shape {allowed.shape}")
        a = allowed.astype(np.int64)  # a copy: the search may keep it (``Block``), the caller may change theirs
        if a.size > 1 and not bool(np.all(a[1:] > a[:-1])):
            a = np.unique(a)
        return a
    a = np.fromiter(allowed, dtype=np.int64, count=len(allowed))
    a.sort()
    if a.size > 1 and not isinstance(allowed, (set, frozenset, dict, KeysView)):  # these hold each id once
        a = a[np.concatenate(([True], a[1:] != a[:-1]))]
    return a


def rows_of(wanted: np.ndarray, sorted_ids: np.ndarray, sorted_rows: np.ndarray) -> np.ndarray:
    """Rows (ascending) holding the sorted ids ``wanted``; ids the index lacks are dropped.

    (A binary search of sorted ids: neighbouring ids share most of their search path, which made
    it faster than a hash table of ids in a measured comparison at 10,000 ids, and no slower at 1,000.)
    """
    if sorted_ids.size == 0 or wanted.size == 0:
        return np.empty(0, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, wanted)
    pos[pos == sorted_ids.size] = 0
    rows = sorted_rows[pos[sorted_ids[pos] == wanted]]
    rows.sort()  # ascending rows: the vectors are read in memory order
    return rows


def score_rows(faiss: Any, mat: np.ndarray, rows: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Exact float32 scores of ``q`` (one unit row) against ``mat[rows]``, FAISS's flat-scan arithmetic."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    out = np.empty(rows.size, dtype=np.float32)
    if rows.size:
        ptr = faiss.swig_ptr
        faiss.fvec_inner_products_by_idx(ptr(out), ptr(q), ptr(mat), ptr(rows), mat.shape[1], 1, rows.size)
    return out


def score_block(faiss: Any, block: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Exact float32 scores of ``q`` against every row of a contiguous block (same arithmetic as above)."""
    out = np.empty(block.shape[0], dtype=np.float32)
    if block.shape[0]:
        ptr = faiss.swig_ptr
        faiss.fvec_inner_products_ny(ptr(out), ptr(q), ptr(block), block.shape[1], block.shape[0])
    return out


@dataclass(frozen=True, eq=False)
class VisibleRows:
    """The rows of one index that a caller may see: ascending, each once, read-only.

    ``index`` is the token of the index that located them and ``size`` how many rows it held then.
    Rows are append-only (a row never moves), so they stay valid in that index; they may only lack
    ids the index did not hold yet (``complete`` says whether every id asked for was found).
    """

    rows: np.ndarray
    index: object
    size: int
    complete: bool


@dataclass(frozen=True)
class Block:
    """One visible set's vectors gathered contiguously: valid while the index holds ``size`` rows."""

    rows: np.ndarray  # the rows it was built from (ascending, unique)
    size: int
    ids: np.ndarray
    vectors: np.ndarray

    def serves(self, rows: np.ndarray, size: int) -> bool:
        return size == self.size and (rows is self.rows or np.array_equal(rows, self.rows))


def top_k(ids: np.ndarray, scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The ``k`` best (id, score): score descending, then id ascending. Exact, ties included."""
    if scores.size > k:
        kth = np.partition(scores, scores.size - k)[scores.size - k]
        keep = np.flatnonzero(scores >= kth)  # every row tied with the k-th stays in the running
        ids, scores = ids[keep], scores[keep]
    order = np.lexsort((ids, -scores))[:k]
    return [(int(ids[i]), float(scores[i])) for i in order]


def top_k_rows(row_ids: np.ndarray, rows: np.ndarray, scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """``top_k`` of ``rows`` (scored ``scores``), looking up the ids of the few rows still in the running only."""
    if scores.size > k:
        kth = np.partition(scores, scores.size - k)[scores.size - k]
        keep = np.flatnonzero(scores >= kth)  # every row tied with the k-th stays in the running
        rows, scores = rows[keep], scores[keep]
    return top_k(row_ids[rows], scores, k)


def prescan(faiss: Any, coarse: Any, mat: np.ndarray, row_ids: np.ndarray, q: np.ndarray, k: int,
            allowed: Collection[int] | np.ndarray | VisibleRows) -> list[tuple[int, float]]:
    """Most rows visible: a half-precision pre-scan, then exact scores for its best candidates.

    The pre-scan's scores are within ``FP16_SLACK`` of the exact ones (unit vectors, fp16 rounding
    of 2**-11 per component, plus float32 summation). Once the k-th best exact score among the
    allowed candidates beats the best score anything outside the candidates could have (the last
    candidate's pre-scan score plus the slack), the answer is exact; until then the candidate set
    grows. ``allowed`` must support fast ``in``, or be a sorted int64 array without duplicates, or
    the visible rows themselves.
    """
    total = int(coarse.ntotal)
    count = allowed.rows.size if isinstance(allowed, VisibleRows) else len(allowed)
    fetch = min(total, max(16 * k, 4 * k * total // max(1, count)))
    while True:
        approx, found = coarse.search(q, fetch)
        found = found[0][found[0] >= 0]
        if isinstance(allowed, VisibleRows):  # sorted rows: membership of the found rows by binary search
            at = np.searchsorted(allowed.rows, found)
            at[at == allowed.rows.size] = 0
            cand = found[allowed.rows[at] == found] if allowed.rows.size else found[:0]
        elif isinstance(allowed, np.ndarray):  # sorted ids (``allowed_array``): membership by binary search
            found_ids = row_ids[found]
            at = np.searchsorted(allowed, found_ids)
            at[at == allowed.size] = 0
            cand = found[allowed[at] == found_ids]
        else:
            cand = found[[i for i, vid in enumerate(row_ids[found].tolist()) if vid in allowed]]
        hits = top_k(row_ids[cand], score_rows(faiss, mat, cand, q), k)
        outside_best = float(approx[0][found.size - 1]) + FP16_SLACK
        if fetch >= total or (len(hits) >= k and hits[k - 1][1] > outside_best):
            return hits
        fetch = min(total, fetch * 4)

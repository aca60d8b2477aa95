"""Exact top-k among the rows a caller may see: the kernels behind ``VectorIndex.search``.

Invariant: every path returns exactly the k best (id, score) among the allowed rows, where a row's
score is the float32 inner product FAISS's own flat scan computes for it (``fvec_inner_product``),
ordered by score descending, then id ascending. Ties are therefore broken the same way on every
path, and equal inputs give equal outputs. Which path runs depends only on how much is visible:
- ``subset``: map the allowed ids to rows (``RowMap``: FAISS's hash table, one C call for the
  whole batch) and score only those rows, in memory order, in one FAISS call that keeps the k + 1
  best in a heap (``top_k_in_rows``; a tie at the k-th place falls back to scoring every row and
  ranking them here). It reads v·d·4 bytes for v visible vectors, whatever the index size.
  A caller that keeps its visible set may hand over the rows themselves (``VisibleRows``, from
  ``VectorIndex.locate``: rows never move, so they stay valid), and the id -> row map is skipped.
  A visible set searched twice in a row is gathered into one contiguous ``Block``; later searches
  of that same set scan the block sequentially (same arithmetic, same scores, no scattered reads).
- ``prescan``: most rows visible. A half-precision pre-scan over every row (half the bytes of a
  float32 scan) whose candidates are rescored exactly until the bound on the pre-scan's error
  proves the top k.

Measured right after a flat scan of the whole index (caches and TLB cold, as in the benchmark),
a scattered subset costs about 0.5 us a row to score (a DRAM miss chain per 2 KiB row, against
0.25 us a row for the flat scan's sequential read), and every numpy call tens of microseconds:
the subset path therefore makes few calls, and leaves the per-row work to FAISS.
"""

from __future__ import annotations

from collections.abc import Collection, KeysView
from dataclasses import dataclass
from typing import Any

import numpy as np

SUBSET_MAX_FRACTION = 0.25  # above this share of rows visible, the half-precision pre-scan is faster
FP16_SLACK = 1e-3  # > the largest gap between a half-precision and an exact cosine of unit vectors


def allowed_array(allowed: Collection[int] | np.ndarray) -> np.ndarray:
    """The allowed ids as a sorted int64 array without duplicates, read during one call and not kept.

    A numpy int64 array that is already strictly increasing (the form a caller that keeps its
    visible ids sorted can hand over) is used as it is, after one vectorised check; any other array
    is sorted and deduplicated (``np.unique``), any other collection read once and sorted.
    """
    if isinstance(allowed, np.ndarray):
        if allowed.ndim != 1 or allowed.dtype.kind not in "iu":
            raise TypeError(f"allowed ids must be a 1-d integer array, not {allowed.dtype} of shape {allowed.shape}")
        a = np.ascontiguousarray(allowed, dtype=np.int64)
        if a.size > 1 and not (a[1:] > a[:-1]).all():
            a = np.unique(a)
        return a
    a = np.fromiter(allowed, dtype=np.int64, count=len(allowed))
    a.sort()
    if a.size > 1 and not isinstance(allowed, (set, frozenset, dict, KeysView)):  # these hold each id once
        a = a[np.concatenate(([True], a[1:] != a[:-1]))]
    return a


def rows_by_search(wanted: np.ndarray, sorted_ids: np.ndarray, sorted_rows: np.ndarray) -> np.ndarray:
    """Rows (ascending) holding the ids ``wanted`` (each once), by binary search of the index's sorted ids;
    ids the index lacks are dropped."""
    if sorted_ids.size == 0 or wanted.size == 0:
        return np.empty(0, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, wanted)
    pos[pos == sorted_ids.size] = 0
    rows: np.ndarray = sorted_rows[pos[sorted_ids[pos] == wanted]]
    rows.sort()  # ascending rows: the vectors are read in memory order
    return rows


class RowMap:
    """Which row of an index holds each id, for a whole batch of ids in one call.

    A hash table in FAISS's layout (``hashtable_int64_to_int64_*``: open addressing, an
    (id, row) pair per slot), kept at most half full: when the index outgrows that, the table is
    doubled and refilled from the ids by row; otherwise new rows are only added. A wanted id costs
    one or two independent reads of the table, where a binary search of sorted ids costs a chain
    of dependent cache misses: right after a flat scan of 100,000 vectors, 1,000 ids took 0.25 ms
    instead of 0.6 ms, and 10,000 ids 0.85 ms instead of 1.2 ms (sort of the rows included). (A
    hash table written in numpy, several numpy calls per batch, was slower than the binary search;
    this one is a single C call.) It holds at most 64 bytes per id (the benchmark's 100,000 ids:
    4 MiB, beside 200 MiB of vectors).

    The table cannot hold the id -1 (its empty-slot mark), and refuses ids that crowd one region
    of it (never seen for ids spread like digests, as embedding ids are). An index holding such
    ids maps every id by binary search of its ids sorted instead (``rows_by_search``, the ids
    re-sorted after each append): the same rows, slower.
    """

    def __init__(self, faiss: Any, row_ids: np.ndarray) -> None:
        self._faiss = faiss
        self._log2 = 0
        self._table: np.ndarray | None = np.empty((0, 2), dtype=np.int64)  # None: binary search instead
        self._by_row = row_ids  # every id, by row: what the binary search sorts
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None  # sorted ids and their rows, on need
        self.extend(row_ids, 0)

    def extend(self, row_ids: np.ndarray, start: int) -> None:
        """Map the rows ``start`` and on of ``row_ids`` (every id of the index, by row) too."""
        self._by_row, self._sorted = row_ids, None
        if self._table is None or start == row_ids.size:
            return
        if bool((row_ids[start:] == -1).any()):  # the table's empty-slot mark
            self._table = None
            return
        try:
            if 2 * row_ids.size > self._table.shape[0]:
                self._refill(row_ids)
            else:
                self._add(row_ids, start)
        except RuntimeError:  # FAISS: "hashtable capacity exhausted" (too many ids in one region)
            self._table = None

    def rows_of(self, wanted: np.ndarray) -> np.ndarray:
        """Rows (ascending) holding the ids ``wanted`` (an int64 array, each id once); ids the index
        lacks are dropped."""
        if self._table is None:
            if self._sorted is None:
                order = np.argsort(self._by_row, kind="stable")
                self._sorted = (self._by_row[order], order.astype(np.int64))
            return rows_by_search(wanted, *self._sorted)
        if wanted.size == 0 or self._table.shape[0] == 0:
            return np.empty(0, dtype=np.int64)
        wanted = np.ascontiguousarray(wanted, dtype=np.int64)
        found = np.empty(wanted.size, dtype=np.int64)
        ptr = self._faiss.swig_ptr
        self._faiss.hashtable_int64_to_int64_lookup(self._log2, ptr(self._table), wanted.size, ptr(wanted), ptr(found))
        rows = found[found >= 0]  # -1: not in the table
        rows.sort()  # ascending rows: the vectors are read in memory order
        return rows

    def _refill(self, row_ids: np.ndarray) -> None:
        """A table for at least twice as many ids as ``row_ids`` holds, filled with all of them."""
        self._log2 = max(4, (2 * row_ids.size - 1).bit_length())
        self._table = np.empty((1 << self._log2, 2), dtype=np.int64)
        self._faiss.hashtable_int64_to_int64_init(self._log2, self._faiss.swig_ptr(self._table))
        self._add(row_ids, 0)

    def _add(self, row_ids: np.ndarray, start: int) -> None:
        """Put the ids of the rows ``start`` and on into the table."""
        ids = np.ascontiguousarray(row_ids[start:], dtype=np.int64)
        rows = np.arange(start, row_ids.size, dtype=np.int64)
        ptr = self._faiss.swig_ptr
        self._faiss.hashtable_int64_to_int64_add(self._log2, ptr(self._table), ids.size, ptr(ids), ptr(rows))


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


def top_k_in_rows(faiss: Any, mat: np.ndarray, size: int, row_ids: np.ndarray, rows: np.ndarray, q: np.ndarray,
                   k: int) -> list[tuple[int, float]]:
    """``top_k`` of ``mat[rows]`` (``size`` rows valid) in one FAISS call that scores the rows and keeps a heap.

    The heap keeps an arbitrary one of rows tied on score, so it is asked for k + 1: when the k-th
    and the (k+1)-th scores differ, the k it holds are exactly the k best (their ties among
    themselves are broken by id here); when they are equal, or a slot stayed empty (a NaN score
    never enters the heap), every row is scored and ranked instead. The scores are
    ``fvec_inner_product``'s, as ``score_rows``'s are.
    """
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if rows.size == 0:
        return []
    want = min(k + 1, rows.size)
    scores = np.empty(want, dtype=np.float32)
    found = np.empty(want, dtype=np.int64)
    ptr = faiss.swig_ptr
    faiss.knn_inner_products_by_idx(ptr(q), ptr(mat), ptr(rows), mat.shape[1], 1, size, rows.size, want,
                                    ptr(scores), ptr(found), -1)
    if found[want - 1] < 0 or (want > k and scores[k] == scores[k - 1]):
        return top_k_rows(row_ids, rows, score_rows(faiss, mat, rows, q), k)
    hits = zip(row_ids[found[:k]].tolist(), scores[:k].tolist(), strict=True)
    return sorted(hits, key=lambda h: (-h[1], h[0]))


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

"""The vector index: a FAISS projection of the embeddings the log names, one file per story.

Invariants:
- Keyed by embedding id (``EmbeddingRef.id``), which is derived from the story, the entity and
  the vector's blob digest: the same vector of the same entity has the same id on every branch,
  so branches share index entries the way they share blobs.
- The index holds nothing the log does not name. ``expected_entries`` reads the log (all
  branches) and ``sync`` adds whatever the file lacks from the embedding blobs; ``rebuild`` starts
  from empty. A lost or stale file is therefore never data loss, only a rebuild.
- Search only sees the ids the caller allows (the views visible at a branch and position), so a
  branch never retrieves another branch's entities or its own future. It is exact, ties broken by
  id, and reads only the visible vectors until most of the index is visible
  (``store.vector_search`` holds the kernels).
- On disk the index is FAISS ``IndexIDMap2(IndexFlatIP)``; in memory it is one float32 matrix
  with an id -> row map, loaded from that file and written back to it. Rows only ever append:
  a row never moves, so rows found once (``locate``) stay right for the life of the instance.
- Saving merges with the file on disk under an exclusive lock and replaces it atomically, so two
  processes adding to one story's index never drop each other's vectors.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Collection, Iterable, KeysView
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codirector.errors import IntegrityViolation
from codirector.store.blobs import BlobStore
from codirector.store.home import file_mode
from codirector.store.vector_search import (
    SUBSET_MAX_FRACTION,
    Block,
    RowMap,
    VisibleRows,
    allowed_array,
    prescan,
    score_block,
    top_k,
    top_k_in_rows,
)

VECTOR_EVENT_TYPES = ("EntityRegistered", "ViewAdded")


def embedding_id(story_id: str, entity: str, vector_blob: str) -> int:
    """The index id of one entity's vector: stable across branches, positive int63."""
    digest = hashlib.sha256(f"{story_id}\x00{entity}\x00{vector_blob}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def vector_to_bytes(vector: np.ndarray) -> bytes:
    """The blob form of one embedding: little-endian float32."""
    return np.asarray(vector, dtype="<f4").reshape(-1).tobytes()


def vector_from_bytes(data: bytes) -> np.ndarray:
    """The embedding stored in a blob."""
    if len(data) % 4:
        raise IntegrityViolation(f"an embedding blob has {len(data)} bytes, not a multiple of 4")
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def normalised(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), in float32.

    The norm is ``np.linalg.norm``'s own arithmetic (a pairwise float32 sum of squares, then the
    square root) without its argument checks, which cost more than the sum for one query row.
    """
    x = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float32)
    norms = np.sqrt(np.add.reduce(x * x, axis=1, keepdims=True))
    norms[norms == 0] = 1.0
    return x / norms


@dataclass(frozen=True)
class Entry:
    """One vector the log names: its id, the blob holding it, and where it was first named."""

    id: int
    blob: str
    entity: str
    branch: str
    position: int


def expected_entries(events: Iterable[Any]) -> dict[int, Entry]:
    """Every embedding named by ``EntityRegistered``/``ViewAdded`` events (any branch), by id."""
    entries: dict[int, Entry] = {}
    for ev in events:
        payload = ev.event
        ref = getattr(payload, "text_embedding", None) if ev.type == "EntityRegistered" else getattr(
            payload, "embedding", None
        )
        if ref is not None and ref.id not in entries:
            entity = payload.name if ev.type == "EntityRegistered" else payload.entity
            entries[ref.id] = Entry(ref.id, ref.blob, entity, ev.branch, ev.position)
    return entries


def index_path(vectors_dir: Path, story_id: str) -> Path:
    """The index file of a story (named by a digest: story ids may hold any character)."""
    return Path(vectors_dir) / (hashlib.sha256(story_id.encode()).hexdigest()[:32] + ".faiss")


class VectorIndex:
    """L2-normalised vectors by id, searched exactly; persisted as ``IndexIDMap2(IndexFlatIP)`` at ``path``.

    In memory the vectors are one contiguous float32 matrix (row order = insertion order) with
    the id of each row and an id -> row map (``RowMap``), so a search reads only the rows it may see.
    """

    def __init__(self, path: Path, dim: int | None = None) -> None:
        import faiss

        self._faiss = faiss
        faiss.omp_set_num_threads(1)  # one query at a time: threads cost more than they give
        self.path = Path(path)
        self._dim: int | None = None if dim is None else int(dim)
        self._n = 0
        self._mat = np.empty((0, self._dim or 0), dtype=np.float32)  # rows [0, _n) hold vectors
        self._row_ids = np.empty(0, dtype=np.int64)
        self._ids: set[int] = set()
        self._by_id: RowMap | None = None  # id -> row, built on first need
        self._coarse: Any = None  # half-precision copy for the pre-scan, row-aligned, built on need
        self._token = object()  # names this instance in the ``VisibleRows`` it hands out
        self._last: tuple[np.ndarray, int] | None = None  # the previous subset search's rows and size
        self._block: Block | None = None  # a visible set searched more than once, gathered
        if self.path.exists():
            ids, vectors = self._read(self.path)
            self._dim = vectors.shape[1]
            self._append(ids, vectors)

    # -- basic facts --------------------------------------------------------------------

    @property
    def dim(self) -> int | None:
        return self._dim

    def __len__(self) -> int:
        return self._n

    def __contains__(self, vector_id: int) -> bool:
        return vector_id in self._ids

    def ids(self) -> set[int]:
        return set(self._ids)

    # -- writing ------------------------------------------------------------------------

    def add(self, ids: Iterable[int], vectors: np.ndarray) -> int:
        """Add vectors under ``ids``, skipping ids already present; returns how many were new."""
        ids_arr = np.asarray(list(ids), dtype=np.int64)
        if ids_arr.size == 0:
            return 0
        x = normalised(vectors)
        if x.shape[0] != ids_arr.size:
            raise ValueError(f"{ids_arr.size} ids for {x.shape[0]} vectors")
        if self._dim is None:
            self._dim = x.shape[1]
        if x.shape[1] != self._dim:
            raise IntegrityViolation(
                f"vector of dimension {x.shape[1]} for an index of dimension {self._dim} at {self.path}",
                hint="a story keeps the embedder it was started with; run with the same [embedder] settings",
            )
        seen: set[int] = set()
        unique = []  # first occurrence of each id this index lacks
        for i, vid in enumerate(ids_arr.tolist()):
            if vid not in self._ids and vid not in seen:
                seen.add(vid)
                unique.append(i)
        if unique:
            self._append(ids_arr[unique], x[unique])
        return len(unique)

    def _append(self, ids: np.ndarray, x: np.ndarray) -> None:
        """Append unit vectors under new ids, keeping the matrix, the id map and the pre-scan aligned."""
        n, m = self._n, ids.size
        if n + m > self._mat.shape[0]:
            grown = np.empty((max(n + m, 2 * self._mat.shape[0], 64), x.shape[1]), dtype=np.float32)
            ids_grown = np.empty(grown.shape[0], dtype=np.int64)
            if n:
                grown[:n], ids_grown[:n] = self._mat[:n], self._row_ids[:n]
            self._mat, self._row_ids = grown, ids_grown
        self._mat[n : n + m] = x
        self._row_ids[n : n + m] = ids
        self._n = n + m
        self._ids.update(ids.tolist())
        if self._by_id is not None:
            self._by_id.extend(self._row_ids[: self._n], n)
        if self._coarse is not None:
            self._coarse.add(x)  # rows stay aligned: both append in the same order

    def save(self) -> None:
        """Merge with the file on disk (under a lock) and replace it atomically."""
        if self._dim is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_suffix(".lock")
        with open(lock_path, "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            if self.path.exists():
                disk_ids, disk_vectors = self._read(self.path)
                missing = [i for i, vid in enumerate(disk_ids.tolist()) if vid not in self._ids]
                if missing:
                    self._append(disk_ids[missing], disk_vectors[missing])
            index = self._faiss.IndexIDMap2(self._faiss.IndexFlatIP(self._dim))
            index.add_with_ids(self._mat[: self._n], self._row_ids[: self._n])
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".faiss", dir=self.path.parent)
            os.fchmod(fd, file_mode())  # readable as the umask says, like every file of the home
            os.close(fd)
            try:
                self._faiss.write_index(index, tmp)
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            finally:
                Path(tmp).unlink(missing_ok=True)

    # -- reading ------------------------------------------------------------------------

    def reconstruct(self, vector_id: int) -> np.ndarray:
        """The stored (normalised) vector of ``vector_id``; ``KeyError`` if the index lacks it."""
        rows = self._id_map().rows_of(np.asarray([vector_id], dtype=np.int64))
        if rows.size == 0:
            raise KeyError(vector_id)
        vector: np.ndarray = self._mat[int(rows[0])].copy()
        return vector

    def search(
        self, query: np.ndarray, k: int, allowed: Collection[int] | np.ndarray | VisibleRows
    ) -> list[tuple[int, float]]:
        """The ``k`` best (id, cosine) among ``allowed`` ids, best first (ties: smaller id first). Exact.

        ``allowed`` is any collection of ids, or a 1-d numpy integer array of them: sorted
        ascending without duplicates, it is used without conversion (the cheapest form for a
        caller that keeps one; checked in one vectorised pass, and sorted here if it is not).
        Or it is the rows ``locate`` found for them (``VisibleRows``): then no id is looked up at
        all. Ids the index does not hold are ignored. The cost grows with the number of allowed
        ids, not with the size of the index, until most of the index is allowed (see
        ``store.vector_search``). Every form gives the same answer for the same ids.
        """
        if isinstance(allowed, VisibleRows):
            if allowed.index is not self._token:
                raise ValueError("these visible rows were located in another vector index")
            count = allowed.rows.size
        else:
            count = allowed.size if isinstance(allowed, np.ndarray) else len(allowed)
        if count == 0 or k <= 0 or self._n == 0:
            return []
        q = normalised(query)
        if count <= SUBSET_MAX_FRACTION * self._n:
            if isinstance(allowed, VisibleRows):
                return self._subset(q, k, allowed.rows)
            return self._subset(q, k, self._id_map().rows_of(allowed_array(allowed)))
        if isinstance(allowed, np.ndarray):
            allowed = allowed_array(allowed)
        elif not isinstance(allowed, (set, frozenset, dict, KeysView, VisibleRows)):
            allowed = set(allowed)  # the pre-scan asks `in` of each candidate
        return prescan(self._faiss, self._coarse_index(), self._mat, self._row_ids, q, k, allowed)

    def locate(self, ids: Collection[int] | np.ndarray, base: VisibleRows | None = None) -> VisibleRows:
        """The rows holding ``ids`` (those this index holds), joined to ``base`` when given.

        ``base`` must come from this index (rows never move, so it is still right); a caller that
        keeps a growing visible set locates only the ids it added since (see
        ``engine.views.visible``). The result is what ``search`` takes without any id lookup.
        """
        wanted = allowed_array(ids)
        rows = self._id_map().rows_of(wanted)
        complete = rows.size == wanted.size
        if base is not None:
            if base.index is not self._token:
                raise ValueError("these visible rows were located in another vector index")
            at = np.searchsorted(base.rows, rows)
            inside = at < base.rows.size
            known = np.zeros(rows.size, dtype=bool)
            known[inside] = base.rows[at[inside]] == rows[inside]
            rows, at = rows[~known], at[~known]
            rows = np.insert(base.rows, at, rows) if rows.size else base.rows
            complete = complete and base.complete
        if rows.flags.writeable:
            rows.flags.writeable = False
        return VisibleRows(rows, self._token, self._n, complete)

    def _subset(self, q: np.ndarray, k: int, rows: np.ndarray) -> list[tuple[int, float]]:
        """Score only the visible rows (ascending); the second search in a row of one set gathers them first."""
        block = self._block
        if block is not None and block.serves(rows, self._n):
            return top_k(block.ids, score_block(self._faiss, block.vectors, q), k)
        last, self._last = self._last, (rows, self._n)
        if last is not None and last[1] == self._n and (last[0] is rows or np.array_equal(last[0], rows)):
            block = self._block = Block(rows, self._n, self._row_ids[rows], self._mat[rows])
            return top_k(block.ids, score_block(self._faiss, block.vectors, q), k)
        return top_k_in_rows(self._faiss, self._mat, self._n, self._row_ids, rows, q, k)

    def _id_map(self) -> RowMap:
        """Where each id sits (see ``RowMap``), built on first need and extended as rows append."""
        if self._by_id is None:
            self._by_id = RowMap(self._faiss, self._row_ids[: self._n])
        return self._by_id

    def _coarse_index(self) -> Any:
        """A half-precision copy of the vectors, row-aligned with the matrix, built on first need."""
        if self._coarse is None:
            f = self._faiss
            coarse = f.IndexScalarQuantizer(self._dim, f.ScalarQuantizer.QT_fp16, f.METRIC_INNER_PRODUCT)
            coarse.add(self._mat[: self._n])
            self._coarse = coarse
        return self._coarse

    # -- helpers ------------------------------------------------------------------------

    def _read(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """The ids and vectors of an index file."""
        try:
            index: Any = self._faiss.read_index(str(path))
            flat = self._faiss.downcast_index(index.index)
            ids = self._faiss.vector_to_array(index.id_map).astype(np.int64)
            vectors = flat.reconstruct_n(0, index.ntotal) if index.ntotal else np.empty((0, index.d), np.float32)
        except (RuntimeError, AttributeError) as e:
            raise IntegrityViolation(
                f"the vector index {path} cannot be read ({e})", hint="run `codirector reindex` to rebuild it"
            ) from e
        return ids, np.ascontiguousarray(vectors, dtype=np.float32)


def sync(index: VectorIndex, entries: dict[int, Entry], blobs: BlobStore) -> int:
    """Add every expected vector the index lacks; returns how many were added."""
    missing = [e for vid, e in entries.items() if vid not in index]
    if not missing:
        return 0
    vectors = np.stack([vector_from_bytes(blobs.get(e.blob)) for e in missing])
    return index.add([e.id for e in missing], vectors)


def check(index: VectorIndex, entries: dict[int, Entry], blobs: BlobStore) -> list[str]:
    """Differences between the index and the log: missing, extra or altered vectors."""
    problems: list[str] = []
    for vid, e in sorted(entries.items(), key=lambda kv: (kv[1].position, kv[0])):
        if vid not in index:
            problems.append(f"vector {vid} of {e.entity!r} (position {e.position} on {e.branch!r}) is missing")
            continue
        if not blobs.exists(e.blob):
            continue  # reported by the blob check
        want = normalised(vector_from_bytes(blobs.get(e.blob)))[0]
        have = index.reconstruct(vid)
        if want.shape != have.shape or not np.allclose(want, have, atol=1e-5):
            problems.append(f"vector {vid} of {e.entity!r} (position {e.position}) differs from its blob")
    for vid in sorted(index.ids() - set(entries)):
        problems.append(f"vector {vid} is in the index but no event names it")
    return problems

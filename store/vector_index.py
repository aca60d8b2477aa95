"""The vector index: a FAISS projection of the embeddings the log names, one file per story.

Invariants:
- Keyed by embedding id (``EmbeddingRef.id``), which is derived from the story, the entity and
  the vector's blob digest: the same vector of the same entity has the same id on every branch,
  so branches share index entries the way they share blobs.
- The index holds nothing the log does not name. ``expected_entries`` reads the log (all
  branches) and ``sync`` adds whatever the file lacks from the embedding blobs; ``rebuild`` starts
  from empty. A lost or stale file is therefore never data loss, only a rebuild.
- Search only sees the ids the caller allows (the views visible at a branch and position), so a
  branch never retrieves another branch's entities or its own future. It is exact: a small
  allowed set goes through a FAISS id selector; a large one through a half-precision pre-scan
  (an in-memory copy built on first need, half the bytes to read) whose candidates are rescored
  in float32 until the bound on the pre-scan's error proves the top k exact.
- Saving merges with the file on disk under an exclusive lock and replaces it atomically, so two
  processes adding to one story's index never drop each other's vectors.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codirector.errors import IntegrityViolation
from codirector.store.blobs import BlobStore

VECTOR_EVENT_TYPES = ("EntityRegistered", "ViewAdded")
_SELECTOR_FRACTION = 0.05  # below this share of ids, a FAISS selector beats scan-then-filter
_FP16_SLACK = 1e-3  # > the largest gap between a half-precision and an exact cosine of unit vectors


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
    x = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(x / norms, dtype=np.float32)


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
    """``IndexIDMap2(IndexFlatIP)`` over L2-normalised vectors, persisted at ``path``."""

    def __init__(self, path: Path, dim: int | None = None) -> None:
        import faiss

        self._faiss = faiss
        faiss.omp_set_num_threads(1)  # one query at a time: threads cost more than they give
        self.path = Path(path)
        self._index: Any = None
        self._ids: set[int] = set()
        self._rows: tuple[np.ndarray, np.ndarray] | None = None
        self._coarse: Any = None
        if self.path.exists():
            self._index = self._read(self.path)
            self._ids = set(int(i) for i in faiss.vector_to_array(self._index.id_map))
        elif dim is not None:
            self._index = self._empty(dim)

    # -- basic facts --------------------------------------------------------------------

    @property
    def dim(self) -> int | None:
        return None if self._index is None else int(self._index.d)

    def __len__(self) -> int:
        return len(self._ids)

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
        if self._index is None:
            self._index = self._empty(x.shape[1])
        if x.shape[1] != self._index.d:
            raise IntegrityViolation(
                f"vector of dimension {x.shape[1]} for an index of dimension {self._index.d} at {self.path}",
                hint="a story keeps the embedder it was started with; run with the same [embedder] settings",
            )
        keep = [i for i, vid in enumerate(ids_arr.tolist()) if vid not in self._ids]
        # also drop duplicates within this call
        seen: set[int] = set()
        unique = []
        for i in keep:
            vid = int(ids_arr[i])
            if vid not in seen:
                seen.add(vid)
                unique.append(i)
        if not unique:
            return 0
        self._index.add_with_ids(x[unique], ids_arr[unique])
        self._ids.update(int(ids_arr[i]) for i in unique)
        self._rows = None  # the storage view moves when the flat index grows
        if self._coarse is not None:
            self._coarse.add(x[unique])  # rows stay aligned: both append in the same order
        return len(unique)

    def save(self) -> None:
        """Merge with the file on disk (under a lock) and replace it atomically."""
        if self._index is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_suffix(".lock")
        with open(lock_path, "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            if self.path.exists():
                on_disk = self._read(self.path)
                disk_ids = self._faiss.vector_to_array(on_disk.id_map)
                missing = [int(i) for i in disk_ids if int(i) not in self._ids]
                if missing:
                    vecs = np.stack([on_disk.reconstruct(int(i)) for i in missing])
                    self.add(missing, vecs)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".faiss", dir=self.path.parent)
            os.close(fd)
            try:
                self._faiss.write_index(self._index, tmp)
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            finally:
                Path(tmp).unlink(missing_ok=True)

    # -- reading ------------------------------------------------------------------------

    def reconstruct(self, vector_id: int) -> np.ndarray:
        return np.asarray(self._index.reconstruct(int(vector_id)), dtype=np.float32)

    def search(self, query: np.ndarray, k: int, allowed: Collection[int]) -> list[tuple[int, float]]:
        """The ``k`` best (id, cosine) among ``allowed`` ids, best first. Exact.

        ``allowed`` should support fast ``in`` (a set, or a dict's keys); ids the index does not
        hold are ignored.
        """
        if not allowed or self._index is None or k <= 0 or not self._ids:
            return []
        q = normalised(query)
        total = len(self._ids)
        if len(allowed) >= _SELECTOR_FRACTION * total:
            return self._scan(q, k, allowed)
        wanted = np.fromiter((a for a in allowed if a in self._ids), dtype=np.int64)
        if wanted.size == 0:
            return []
        selector = self._faiss.IDSelectorBatch(wanted)
        params = self._faiss.SearchParameters(sel=selector)  # type: ignore[call-arg]
        scores, labels = self._index.search(q, min(k, wanted.size), params=params)
        return [(int(i), float(s)) for i, s in zip(labels[0], scores[0], strict=True) if int(i) != -1]

    def _scan(self, q: np.ndarray, k: int, allowed: Collection[int]) -> list[tuple[int, float]]:
        """Most ids allowed: a half-precision pre-scan, then exact float32 scores for its top candidates.

        The pre-scan reads half the bytes of a float32 scan (a search over many vectors is bound by
        memory bandwidth). Its scores are within ``_FP16_SLACK`` of the exact ones (unit vectors,
        fp16 rounding of 2**-11 per component, plus float32 summation), so once the k-th best exact
        score among the allowed candidates beats the best score anything outside the candidates
        could have (the last candidate's pre-scan score plus the slack), the answer is exact; until
        then the candidate set grows.
        """
        coarse = self._coarse_index()
        total = len(self._ids)
        xb, ids = self._storage()
        fetch = min(total, max(16 * k, 4 * k * total // max(1, len(allowed))))
        while True:
            approx, rows = coarse.search(q, fetch)
            rows = rows[0][rows[0] >= 0]
            exact = xb[rows] @ q[0]
            hits = sorted(((int(ids[r]), float(sc)) for r, sc in zip(rows, exact, strict=True)
                           if int(ids[r]) in allowed), key=lambda h: -h[1])
            outside_best = float(approx[0][len(rows) - 1]) + _FP16_SLACK
            if fetch >= total or (len(hits) >= k and hits[k - 1][1] >= outside_best):
                return hits[:k]
            fetch = min(total, fetch * 4)

    def _storage(self) -> tuple[np.ndarray, np.ndarray]:
        """The flat index's float32 vectors (a view, no copy) and the id of each row."""
        if self._rows is None:
            flat = self._faiss.downcast_index(self._index.index)
            n, d = flat.ntotal, flat.d
            xb = self._faiss.rev_swig_ptr(flat.get_xb(), n * d).reshape(n, d)  # type: ignore[attr-defined]
            self._rows = (xb, self._faiss.vector_to_array(self._index.id_map))
        return self._rows

    def _coarse_index(self) -> Any:
        """A half-precision copy of the vectors, row-aligned with the flat index, built on first need."""
        if self._coarse is None:
            xb, _ = self._storage()
            coarse = self._faiss.IndexScalarQuantizer(xb.shape[1], self._faiss.ScalarQuantizer.QT_fp16,
                                                      self._faiss.METRIC_INNER_PRODUCT)
            coarse.add(np.ascontiguousarray(xb))
            self._coarse = coarse
        return self._coarse

    # -- helpers ------------------------------------------------------------------------

    def _empty(self, dim: int) -> Any:
        return self._faiss.IndexIDMap2(self._faiss.IndexFlatIP(int(dim)))

    def _read(self, path: Path) -> Any:
        try:
            return self._faiss.read_index(str(path))
        except RuntimeError as e:
            raise IntegrityViolation(
                f"the vector index {path} cannot be read ({e})", hint="run `codirector reindex` to rebuild it"
            ) from e


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

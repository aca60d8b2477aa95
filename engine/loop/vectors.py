"""Embeddings of memory, and the vector shortlist over what a branch can see.

Invariants:
- An embedding is stored as a blob (normalised float32) BEFORE the event naming it; its index id
  is ``embedding_id(story, entity, blob)``, the same on every branch.
- ``shortlist`` searches only the vector ids present in the given memory (``MemoryBank`` at a
  branch and position), so what a branch cannot see can never be retrieved. It ranks entities
  by their best vector (description text or any view image) against the query. It hands the
  index the rows the memory's visible ids sit in (``MemoryBank.visible``, kept by the fold and
  looked up once per memory state), so a query converts nothing and looks no id up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codirector.engine.views.memory import MemoryBank, View
from codirector.events import EmbeddingRef
from codirector.store.blobs import BlobStore
from codirector.store.vector_index import VectorIndex, embedding_id, normalised, vector_to_bytes


def embedding_ref(story_id: str, entity: str, blob: str, model: str) -> EmbeddingRef:
    """The reference an event carries for an entity's vector already stored as ``blob``."""
    return EmbeddingRef(id=embedding_id(story_id, entity, blob), blob=blob, model=model)


def store_embedding(blobs: BlobStore, story_id: str, entity: str, vector: np.ndarray, model: str) -> EmbeddingRef:
    """Write one entity vector as a blob and return the reference an event carries."""
    return embedding_ref(story_id, entity, blobs.put(vector_to_bytes(normalised(vector)[0])), model)


@dataclass(frozen=True)
class Hit:
    """One entity in a shortlist, with its best score and the vector that gave it."""

    entity: str
    score: float
    via: str  # "text" or "image"
    view: View | None


def shortlist(index: VectorIndex, bank: MemoryBank, query: np.ndarray, k: int = 8) -> list[Hit]:
    """The ``k`` entities of ``bank`` whose vectors best match ``query``, best first."""
    visible = bank.visible()
    owners = visible.owners()
    if not owners or k <= 0:
        return []
    # An entity owns several vectors (its description, each view): fetch vectors until k distinct
    # entities appear. That is exact: an entity not seen has every vector below all fetched ones.
    total = len(owners)
    fetch = min(total, 4 * k)
    rows = visible.rows(index)  # looked up once per memory state and index, not once per query
    while True:
        best: dict[str, Hit] = {}
        for vid, score in index.search(query, fetch, rows):
            name, view = owners[vid]
            if name not in best:  # results come best first
                best[name] = Hit(name, round(float(score), 6), "text" if view is None else "image", view)
        if len(best) >= k or fetch >= total:
            break
        fetch = min(total, fetch * 4)
    return sorted(best.values(), key=lambda h: (-h.score, h.entity))[:k]


def best_view(index: VectorIndex, bank: MemoryBank, entity: str, query: np.ndarray) -> tuple[View | None, float | None]:
    """The view of ``entity`` that best matches ``query`` (its first view when none is embedded)."""
    e = bank.get(entity)
    if not e.views:
        return None, None
    embedded = [v for v in e.views if v.embedding_id is not None and v.embedding_id in index]
    if not embedded:
        return e.views[0], None
    results = index.search(query, len(embedded), [v.embedding_id for v in embedded if v.embedding_id is not None])
    by_id = {v.embedding_id: v for v in embedded}
    vid, score = results[0]
    return by_id[vid], round(float(score), 6)

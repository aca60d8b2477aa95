"""Cross-shot consistency (CoTriSyGen §4.2.1): how alike the shots of a story look, overall and by group.

Each clip is represented by the mean of its frame embeddings (frames sampled at 2 fps, the same
frames the shot judge sees; embedded through the call recorder, so the vectors are recorded as
``ModelCalled`` events and a second evaluation reuses them). For every pair of shots the cosine
similarity of the two clip vectors is taken; ``average`` is the mean over all pairs, ``same_group``
over pairs whose shots carry the same ``group`` label (the paper's SameGrp: the protagonist in the
same outfit) and ``cross_group`` over pairs with different labels (CrossGrp). Shots without a
label count only in ``average``.

The paper measured this with ViCLIP video embeddings; codirector uses open_clip image embeddings
of the sampled frames, so values are comparable between codirector runs, not with the paper's.

Invariant: pure functions of the vectors and labels (no I/O); a split with no pair is ``None``,
never a made-up number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

NOTE = ("the paper used ViCLIP video embeddings; codirector averages open_clip embeddings of frames sampled at "
        "2 fps per clip, so compare these numbers between codirector runs, not with the paper's")


def clip_vector(frame_vectors: np.ndarray) -> np.ndarray:
    """One clip's vector: the mean of its frame embeddings, L2-normalised."""
    v = np.asarray(frame_vectors, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] == 0:
        raise ValueError(f"expected a (frames, dim) array with at least one frame, got shape {v.shape}")
    mean: np.ndarray = v.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 0 else mean


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


@dataclass(frozen=True)
class Consistency:
    """Pairwise clip similarities and their averages."""

    average: float | None
    same_group: float | None
    cross_group: float | None
    pairs: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 6)

        return {"average": r(self.average), "same_group": r(self.same_group), "cross_group": r(self.cross_group),
                "pairs": len(self.pairs),
                "same_group_pairs": sum(1 for p in self.pairs if p["relation"] == "same"),
                "cross_group_pairs": sum(1 for p in self.pairs if p["relation"] == "cross"),
                "by_pair": self.pairs, "note": NOTE}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def consistency(clips: Mapping[int, np.ndarray], groups: Mapping[int, str | None]) -> Consistency:
    """Cosine similarity of every pair of shots, averaged overall, within groups and across groups."""
    shots = sorted(clips)
    pairs: list[dict[str, Any]] = []
    raw: list[tuple[float, str]] = []
    for a, b in combinations(shots, 2):
        ga, gb = groups.get(a), groups.get(b)
        relation = "unlabelled" if ga is None or gb is None else ("same" if ga == gb else "cross")
        sim = cosine(clips[a], clips[b])
        raw.append((sim, relation))
        pairs.append({"shots": [a, b], "similarity": round(sim, 6), "relation": relation})
    return Consistency(
        average=_mean([s for s, _ in raw]),
        same_group=_mean([s for s, rel in raw if rel == "same"]),
        cross_group=_mean([s for s, rel in raw if rel == "cross"]),
        pairs=pairs,
    )

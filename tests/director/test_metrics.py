"""Cross-shot consistency on controlled embeddings: a clip is the mean of its frames, every pair of
shots is compared, and shots of the same group (same outfit) score higher than shots across groups."""

from __future__ import annotations

import numpy as np
import pytest

from codirector.engine.evaluation.metrics import clip_vector, consistency, cosine


def frames_near(direction: np.ndarray, seed: int, n: int = 4, noise: float = 0.15) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return direction[None, :] + noise * rng.standard_normal((n, direction.size))


def test_a_clip_vector_is_the_normalised_mean_of_its_frames() -> None:
    frames = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert clip_vector(frames) == pytest.approx(np.array([1, 1, 0]) / np.sqrt(2))
    with pytest.raises(ValueError, match="at least one frame"):
        clip_vector(np.zeros((0, 3)))


def test_same_group_pairs_score_higher_than_cross_group_pairs() -> None:
    dim = 32
    rng = np.random.default_rng(0)
    outfit_a, outfit_b = rng.standard_normal(dim), rng.standard_normal(dim)
    groups = {1: "A", 2: "A", 3: "A", 4: "B", 5: "B", 6: "B"}
    clips = {s: clip_vector(frames_near(outfit_a if g == "A" else outfit_b, seed=s)) for s, g in groups.items()}
    result = consistency(clips, groups)
    assert result.same_group is not None and result.cross_group is not None
    assert result.same_group > 0.8 > result.cross_group
    out = result.to_json()
    assert (out["pairs"], out["same_group_pairs"], out["cross_group_pairs"]) == (15, 6, 9)
    sims = [p["similarity"] for p in out["by_pair"]]
    assert result.average == pytest.approx(np.mean(sims), abs=1e-5)
    expected_same = np.mean([cosine(clips[a], clips[b]) for a, b in [(1, 2), (1, 3), (2, 3), (4, 5), (4, 6), (5, 6)]])
    assert result.same_group == pytest.approx(expected_same)


def test_unlabelled_shots_count_only_in_the_average_and_one_shot_gives_nothing() -> None:
    clips = {1: np.array([1.0, 0.0]), 2: np.array([0.0, 1.0]), 3: np.array([1.0, 1.0])}
    result = consistency(clips, {1: "A", 2: None, 3: "A"})
    assert result.same_group == pytest.approx(1 / np.sqrt(2)) and result.cross_group is None
    assert result.average == pytest.approx((0 + 1 / np.sqrt(2) + 1 / np.sqrt(2)) / 3)
    single = consistency({1: np.array([1.0, 0.0])}, {1: "A"})
    assert (single.average, single.same_group, single.cross_group) == (None, None, None)

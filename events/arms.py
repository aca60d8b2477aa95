"""The Co-Director's creative arms: the one table of dimensions and the arms each may take.

``DirectionChosen.arms`` holds one of these arms per dimension. The bandit
(``engine.director.bandit``, which re-exports ``DIMENSIONS``), the director's agents and the
plan-driven preview backend all read this table, so an arm is added or renamed in one place.

Invariant: the order is meaningful: the bandit breaks ties by the earlier arm, so reordering
an existing dimension changes which arm a tied pull takes (and so what a replay expects).
"""

from __future__ import annotations

DIMENSIONS: dict[str, tuple[str, ...]] = {
    "strategy": ("informational", "transformational", "comparative"),
    "narrative_mode": ("analytical", "vignette", "narrative_drama"),
    "aesthetic": ("clarity_energy", "cinematic_premium", "minimalist_focus", "kinetic_grit"),
}

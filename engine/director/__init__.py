"""The Co-Director: advertising briefs, the per-dimension bandit (a fold of the log), the
recommender / creative-director agents, and direction runs with one branch per pull.

May import: everything in ``engine.loop`` and below, and ``engine.evaluation.judges`` (the reward).
Never imports the studio.
"""

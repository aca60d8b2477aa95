"""Judging finished branches: shot/story/ad judges, CLIP consistency metrics, ``evaluate`` and the
benchmark harness (stories x methods, the paper's table layout).

May import: everything in ``engine.loop`` and below, and ``engine.director`` agents (the ad judge).
Never imports the studio.
"""

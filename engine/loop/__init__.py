"""Algorithm 1 on the event log: story files, the per-shot loop (retrieve, keyframe rounds, motion
refinement, video, analysis), hybrid retrieval, starting/continuing runs, branches and replay.

May import: ``codirector.events``, ``codirector.store``, ``codirector.generators``, and
``engine.recording``, ``engine.agents``, ``engine.views``. Never imports director, evaluation or studio.
"""

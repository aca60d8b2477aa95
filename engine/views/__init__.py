"""Projections of the log, the read side: entity memory, run state, audit, history, diff, reports,
pictures and the exported video. Each is a fold over typed, upcast events; none writes an event.

May import: ``codirector.events``, ``codirector.store``, ``codirector.generators.video_io``.
Never imports the loop, the director, evaluation or the studio.
"""

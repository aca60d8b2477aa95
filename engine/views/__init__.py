"""Projections of the log, the read side: entity memory, run state, audit, history, diff, reports,
pictures, cost and the exported video. Each is a fold over typed, upcast events through one dispatch
style (``projection.Projection``: handlers registered per event class); none writes an event.

May import: ``codirector.events``, ``codirector.store``, ``codirector.generators.video_io``,
``codirector.generators.prices`` (pure: the price table the cost view reads) and
``codirector.generators.imaging`` (the one thumbnail and data-URI helper). The audit page and the lineage
picture are Jinja2 templates (``templates/``) rendered by ``templating``, the one environment the studio
also renders through.
Never imports the loop, the director, evaluation or the studio.
"""

"""How a run writes to the log: ``RunWriter`` (blobs before events, expected positions) and
``CallRecorder`` (every model call keyed, recorded before use, served from the log on resume/replay).

May import: ``codirector.events``, ``codirector.store``, ``codirector.generators`` interfaces.
Never imports other engine sub-packages.
"""

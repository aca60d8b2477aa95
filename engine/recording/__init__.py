"""How a run writes to the log: ``RunWriter`` (blobs before events, expected positions),
``CallRecorder`` (every model call keyed, recorded before use, served from the log on resume/replay)
and ``Budget`` (what the calls cost, and the ``--budget`` cap checked before each live call, against an
``Account`` that holds each call's worst case while it is in flight: here, or shared by Ray workers).

May import: ``codirector.events``, ``codirector.store``, ``codirector.generators`` interfaces.
Never imports other engine sub-packages.
"""

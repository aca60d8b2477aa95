"""A versioned loop: which release ran each segment of a run, and the loop patches the run keeps.

A run is re-executed from its branch's start against its log (resume, ``run --branch``, replay):
what the log holds is matched, the rest is written. A change to what the loop does would make a
run begun on one release diverge (``RunStateError``) when it is resumed on the next, so, as
Temporal's ``patched`` and DBOS's application version do it:

- A run's first segment records ``RunSegmentStarted`` before the loop writes anything: the
  codirector release and the loop patches the run keeps. A later segment (``resume``, ``run --branch``
  again) records one when it runs on another release than the last one recorded, or continues a run
  begun before loops were versioned; on the same release it adds nothing, so an interrupted and
  resumed run logs exactly what an uninterrupted one does. Every event a run wrote was thus written
  by the release of the last ``RunSegmentStarted`` before it. It is a run mark (``events.RUN_MARKS``):
  re-running never produces it, resume steps over it, replay writes a copy where the original has
  one and leaves it out of the comparison.
- A behaviour change of the loop is a patch: a name in ``LOOP_PATCHES`` (with what it changes and
  since when) and ``if ctx.patched(NAME): new else: old`` in the loop.
- ``patched(NAME)`` is True for a run that starts on code with the patch; a resumed run keeps the
  patches its first segment recorded; a run with events but no segment was started before loops
  were versioned (the release of 2026-12-07) and runs with none; a replay runs with the patches of
  the run it replays. A run whose first segment recorded a patch this release does not know was
  started on a newer release: it is refused, never continued with the wrong loop.
- A patch stays in ``LOOP_PATCHES``, its old behaviour in the loop, while a run recorded without it
  may still be resumed or replayed.

A choice the user makes is a recorded setting instead (``[run] evolved_view``): a key a recorded
``[run]`` table lacks takes the value stories ran with before the key existed
(``engine.loop.context.RECORDED_BEFORE``). That is the same idea for one option; a patch is for
what the loop does with no setting to say so.
"""

from __future__ import annotations

from collections.abc import Iterable

from codirector.errors import RunStateError
from codirector.events import RUN_MARKS, RecordedEvent, RunSegmentStarted

# name -> what the patch changes in the loop, and since when. Empty: no loop behaviour has changed since
# loops were versioned (2026-12-07). Add a line with the first change, and keep it while runs without it live.
LOOP_PATCHES: dict[str, str] = {}


def engine_version() -> str:
    """The installed codirector release ("0+source" for a source tree that is not installed). Read from the
    distribution's metadata, not from the package root, which would import the engine back (an import circle)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("codirector")
    except PackageNotFoundError:  # a source tree on the path, not installed: say so rather than guess
        return "0+source"


def run_patches(run: Iterable[RecordedEvent], *, where: str = "this run") -> frozenset[str]:
    """The loop patches of a run whose events after its branch's start are ``run`` (see the module docstring)."""
    events = list(run)
    first = next((e for e in events if e.type == "RunSegmentStarted"), None)
    if first is None or any(e.position < first.position and e.type not in RUN_MARKS for e in events):
        if any(e.type not in RUN_MARKS for e in events):
            return frozenset()  # started before loops were versioned: the loop as it was then
        return frozenset(LOOP_PATCHES)  # nothing run yet: a new run
    segment = first.event
    assert isinstance(segment, RunSegmentStarted)
    unknown = sorted(set(segment.patches) - set(LOOP_PATCHES))
    if unknown:
        raise RunStateError(
            f"{where} was started by codirector {segment.codirector} with loop patches this release "
            f"({engine_version()}) does not have: {', '.join(unknown)}",
            hint="continue it with that release or a later one",
        )
    return frozenset(segment.patches)


def segment_to_record(run: Iterable[RecordedEvent], patches: Iterable[str]) -> RunSegmentStarted | None:
    """The mark a segment of a run whose events after its branch's start are ``run`` records before it works
    (this release and the patches the run keeps), or None when the last one recorded names this release."""
    last = None
    for e in run:
        if e.type == "RunSegmentStarted":
            last = e
    release = engine_version()
    if last is not None and isinstance(mark := last.event, RunSegmentStarted) and mark.codirector == release:
        return None
    return RunSegmentStarted(codirector=release, patches=sorted(patches))

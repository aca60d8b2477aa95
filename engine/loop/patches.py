"""A versioned loop: which release ran each segment of a run, and the loop patches the run keeps.

A run is re-executed from its branch's start against its log (resume, ``run --branch``, replay):
what the log holds is matched, the rest is written. A change to what the loop does would make a
run begun on one release diverge (``RunStateError``) when it is resumed on the next, so, as
Temporal's ``patched`` and DBOS's application version do it:

- The event that creates a branch (``StoryCreated`` for main, ``BranchCreated`` for a fork) names the
  release that created it and the loop patches its run keeps (``codirector``, ``loop_patches``:
  ``creation_fields``). A segment of the run (a first run, ``resume``, ``run --branch`` again)
  records ``RunSegmentStarted`` before it writes anything only when it runs on another release than
  the last one recorded, or continues a run begun before runs were versioned; on the same release
  it adds nothing, so a run logs exactly the events it did before runs were versioned, and an
  interrupted and resumed run exactly what an uninterrupted one does. Every event a run wrote was
  thus written by the release of the last mark before it. ``RunSegmentStarted`` is a run mark
  (``events.RUN_MARKS``): re-running never produces it, resume steps over it, replay writes a copy
  where the original has one and leaves it out of the comparison.
- A behaviour change of the loop is a patch: a name in ``LOOP_PATCHES`` (with what it changes and
  since when) and ``if ctx.patched(NAME): new else: old`` in the loop.
- ``patched(NAME)`` is True for a run whose branch was created on code with the patch; a resumed
  run keeps the patches its creation recorded; a run whose creation names no release and that has
  events but no ``RunSegmentStarted`` before them was started before loops were versioned (the
  release of 2026-12-07) and runs with none; a replay runs with the patches of
  the run it replays. A run whose creation (or first segment) recorded a patch this release does
  not know was started on a newer release: it is refused, never continued with the wrong loop.
- A patch stays in ``LOOP_PATCHES``, its old behaviour in the loop, while a run recorded without it
  may still be resumed or replayed.

A choice the user makes is a recorded setting instead (``[run] evolved_view``): a key a recorded
``[run]`` table lacks takes the value stories ran with before the key existed
(``engine.loop.context.RECORDED_BEFORE``). That is the same idea for one option; a patch is for
what the loop does with no setting to say so.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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


VERSION_FIELDS = ("codirector", "loop_patches")  # what a creating event records of the release that made it


def creation_fields() -> dict[str, Any]:
    """What the event creating a branch records of this release: ``codirector`` and ``loop_patches``."""
    return {"codirector": engine_version(), "loop_patches": sorted(LOOP_PATCHES)}


def _creation_mark(created: RecordedEvent | None) -> tuple[str, list[str]] | None:
    """(release, patches) a branch's creating event recorded, or None for one made before runs were versioned."""
    if created is None or created.type not in ("StoryCreated", "BranchCreated"):
        return None
    release = created.payload.get("codirector")
    return None if release is None else (release, list(created.payload.get("loop_patches") or []))


def run_patches(run: Iterable[RecordedEvent], *, created: RecordedEvent | None = None,
                where: str = "this run") -> frozenset[str]:
    """The loop patches of a run whose branch was created by ``created`` and whose events after the branch's
    start are ``run`` (see the module docstring)."""
    events = list(run)
    first = _creation_mark(created)
    if first is None:
        mark = next((e for e in events if e.type == "RunSegmentStarted"), None)
        if mark is None or any(e.position < mark.position and e.type not in RUN_MARKS for e in events):
            if any(e.type not in RUN_MARKS for e in events):
                return frozenset()  # started before loops were versioned: the loop as it was then
            return frozenset(LOOP_PATCHES)  # nothing run yet: a new run
        segment = mark.event
        assert isinstance(segment, RunSegmentStarted)
        first = (segment.codirector, segment.patches)
    release, kept = first
    unknown = sorted(set(kept) - set(LOOP_PATCHES))
    if unknown:
        raise RunStateError(
            f"{where} was started by codirector {release} with loop patches this release "
            f"({engine_version()}) does not have: {', '.join(unknown)}",
            hint="continue it with that release or a later one",
        )
    return frozenset(kept)


def segment_to_record(run: Iterable[RecordedEvent], patches: Iterable[str], *,
                      created: RecordedEvent | None = None) -> RunSegmentStarted | None:
    """The mark a segment of a run (branch created by ``created``, events after the branch's start ``run``) records
    before it works (this release and the patches the run keeps), or None when the last release recorded
    (by a ``RunSegmentStarted``, else by the creation) is this one."""
    last = _creation_mark(created)
    last_release = None if last is None else last[0]
    for e in run:
        if e.type == "RunSegmentStarted" and isinstance(mark := e.event, RunSegmentStarted):
            last_release = mark.codirector
    release = engine_version()
    if last_release == release:
        return None
    return RunSegmentStarted(codirector=release, patches=sorted(patches))

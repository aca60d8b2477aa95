"""`codirector demo`: the offline showcase, end to end, in well under a minute on two CPU cores.

It runs the bundled 8-shot story with the ``preview`` profile, forks a branch before shot 5 with a
changed prompt and runs it, replays the main branch against its recording (identical, zero model
calls), and writes what a newcomer wants to look at: an MP4 per branch, the HTML audit, a contact
sheet of keyframes per branch and the entity lineage. Everything it reports is read back from the
log; nothing here is a second implementation of run, branch, replay or audit: it calls the same
services the CLI's commands call, on the Workspace it is given.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from codirector.engine.loop.context import Progress
from codirector.engine.loop.replay import ReplayReport, replay
from codirector.engine.loop.runs import create_branch, execute, start_run
from codirector.engine.views.audit import audit_events
from codirector.engine.views.diff import diff_branches
from codirector.engine.views.export import export_branch
from codirector.engine.views.memory import MemoryReader
from codirector.engine.views.pictures import contact_sheet, lineage_lines, lineage_svg
from codirector.engine.views.report import write_html
from codirector.engine.views.state import fold_run_state
from codirector.engine.workspace import Workspace
from codirector.generators.base import Backends
from codirector.store.event_store import MAIN

DEMO_STORY = "lighthouse.yaml"
DEMO_BRANCH = "storm"
DEMO_OVERRIDE = ("Mia in her red scarf and Tom shelter inside the lantern room during a violent storm, "
                 "rain lashing the glass and the great lens glowing, medium shot.")


def bundled_story(name: str = DEMO_STORY) -> Path:
    """A story shipped with the package (examples/stories), wherever the package is installed."""
    path = resources.files("codirector") / "examples" / "stories" / name
    return Path(str(path))


def _demo_story_id(ws: Workspace, base: str) -> str:
    """The first of ``base``, ``base-2``, ... that is free or holds a demo stopped before its branch finished
    (Ctrl-C): running the demo again continues that one instead of leaving it "in progress" beside a new one."""
    taken = ws.story_ids()
    n = 1
    while True:
        sid = base if n == 1 else f"{base}-{n}"
        if sid not in taken or not _finished(ws, sid):
            return sid
        n += 1


def _finished(ws: Workspace, sid: str) -> bool:
    """Whether the demo story ``sid`` got as far as a complete branch (or is not a demo at all: kept)."""
    info = ws.store.story(sid)
    if info.title != _demo_title():
        return True  # someone's own story under this id: never touched
    if DEMO_BRANCH not in {b.name for b in info.branches}:
        return False
    return fold_run_state(ws.store.read(sid, DEMO_BRANCH)).story_completed


def _demo_title() -> str:
    import yaml

    return str(yaml.safe_load(bundled_story().read_text(encoding="utf-8")).get("title", ""))


@dataclass
class DemoBranch:
    """The demo's branch: where it forks and where it starts to differ from main."""

    name: str
    from_shot: int
    shared_positions: int
    first_differing_shot: int | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "from_shot": self.from_shot, "shared_positions": self.shared_positions,
                "first_differing_shot": self.first_differing_shot}


@dataclass
class DemoSummary:
    """What ``codirector demo`` did and wrote; ``to_json()`` is ``demo --json`` (stable keys)."""

    story: str
    home: str
    output_dir: str
    shots: int
    events: int
    calls_main: int  # model calls made by main's run, the branch's run and the replay (always 0)
    calls_branch: int
    entities: list[str]
    lineage: list[str]
    branch: DemoBranch
    replay: ReplayReport
    notes: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # what -> path
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> seconds, and "total"

    def to_json(self) -> dict[str, Any]:
        return {
            "story": self.story, "home": self.home, "output_dir": self.output_dir, "shots": self.shots,
            "events": self.events,
            "model_calls": {"main": self.calls_main, self.branch.name: self.calls_branch,
                            "replay": self.replay.model_calls},
            "entities": list(self.entities), "lineage": list(self.lineage), "branch": self.branch.to_json(),
            "replay": {"identical": self.replay.identical, "events_compared": self.replay.events_compared,
                       "model_calls": self.replay.model_calls},
            "notes": list(self.notes), "files": dict(self.files), "seconds": dict(self.seconds),
        }


def run_demo(ws: Workspace, out_dir: str | os.PathLike[str] = "codirector-demo", *, home: str = "",
             config: str | os.PathLike[str] | None = None, backends: Backends | None = None,
             progress: Progress | None = None) -> DemoSummary:
    """Run the showcase and write its outputs into ``out_dir``; returns what it did and wrote."""
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sid = _demo_story_id(ws, "lighthouse-demo")
    timings: dict[str, float] = {}

    t = time.perf_counter()
    main_run = start_run(ws, bundled_story(), profile="preview", config=config, story_id=sid, backends=backends,
                         progress=progress)
    timings["run"] = time.perf_counter() - t

    t = time.perf_counter()
    if DEMO_BRANCH not in {b.name for b in ws.store.story(sid).branches}:  # (made already by a stopped demo)
        create_branch(ws, sid, from_shot=5, name=DEMO_BRANCH, overrides={"shots.5.keyframe": DEMO_OVERRIDE})
    branch_run = execute(ws, sid, DEMO_BRANCH, backends=backends, progress=progress)
    timings["branch"] = time.perf_counter() - t

    t = time.perf_counter()
    replayed = replay(ws, sid, MAIN)
    timings["replay"] = time.perf_counter() - t

    t = time.perf_counter()
    files: dict[str, str] = {}
    for branch in ("main", DEMO_BRANCH):
        video = export_branch(ws, sid, branch, out / f"{branch}.mp4")
        files[f"video_{branch}"] = video.path
        state = fold_run_state(ws.store.read(sid, branch))
        sheet = contact_sheet(state, ws.blobs, out / f"contact-{branch}.png",
                              title=f"{state.title}: branch {branch}")
        files[f"contact_sheet_{branch}"] = str(sheet)
    audit = audit_events(ws.store.read(sid, MAIN), story_id=sid, branch=MAIN)
    files["audit_html"] = str(write_html(audit, ws.blobs, out / "audit.html"))
    memory = MemoryReader(ws.store).at(sid, MAIN, None)
    files["lineage"] = str(lineage_svg(memory, ws.blobs, out / "lineage.svg",
                                       title=f"Entity lineage: {audit.title}"))
    timings["outputs"] = time.perf_counter() - t

    diff = diff_branches(ws, sid, MAIN, DEMO_BRANCH)
    return DemoSummary(
        story=sid, home=home, output_dir=str(out), shots=len(audit.shots), events=main_run.head,
        calls_main=main_run.calls.live, calls_branch=branch_run.calls.live,
        entities=[e.name for e in memory], lineage=lineage_lines(memory),
        branch=DemoBranch(DEMO_BRANCH, 5, diff.parted_at_position, diff.first_differing_shot),
        replay=replayed, notes=[*main_run.notes, *audit.notes], files=files,
        seconds={k: round(v, 2) for k, v in {**timings, "total": time.perf_counter() - started}.items()},
    )

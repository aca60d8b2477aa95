"""`codirector demo`: the offline showcase, end to end, in well under a minute on two CPU cores.

It runs the bundled 8-shot story with the ``preview`` profile, forks a branch before shot 5 with a
changed prompt and runs it, replays the main branch against its recording (identical, zero model
calls), and writes what a newcomer wants to look at: an MP4 per branch, the HTML audit, a contact
sheet of keyframes per branch and the entity lineage. Everything it reports is read back from the
log; nothing here is a second implementation of run, branch, replay or audit: it calls the same
services the CLI's commands call, on the Workspace it is given.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Any

from codirector.engine.loop.replay import replay
from codirector.engine.loop.runs import create_branch, execute, start_run
from codirector.engine.views.audit import audit_events, diff_branches
from codirector.engine.views.export import export_branch
from codirector.engine.views.memory import MemoryReader
from codirector.engine.views.pictures import contact_sheet, lineage_lines, lineage_svg
from codirector.engine.views.report import write_html
from codirector.engine.views.state import fold_run_state
from codirector.engine.workspace import Workspace
from codirector.store.event_store import MAIN

DEMO_STORY = "lighthouse.yaml"
DEMO_BRANCH = "storm"
DEMO_OVERRIDE = ("Mia in her red scarf and Tom shelter inside the lantern room during a violent storm, "
                 "rain lashing the glass and the great lens glowing, medium shot.")


def bundled_story(name: str = DEMO_STORY) -> Path:
    """A story shipped with the package (examples/stories), wherever the package is installed."""
    path = resources.files("codirector") / "examples" / "stories" / name
    return Path(str(path))


def _free_story_id(ws: Workspace, base: str) -> str:
    taken = ws.story_ids()
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def run_demo(ws: Workspace, out_dir: str | Path = "codirector-demo", *, home: str = "",
             config: str | Path | None = None, backends: Any = None, progress: Any = None) -> dict[str, Any]:
    """Run the showcase and write its outputs into ``out_dir``; returns the summary (stable keys)."""
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sid = _free_story_id(ws, "lighthouse-demo")
    timings: dict[str, float] = {}

    t = time.perf_counter()
    main_run = start_run(ws, bundled_story(), profile="preview", config=config, story_id=sid, backends=backends,
                         progress=progress)
    timings["run"] = time.perf_counter() - t

    t = time.perf_counter()
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
        files[f"video_{branch}"] = video["path"]
        state = fold_run_state(ws.store.read(sid, branch))
        sheet = contact_sheet(state, ws.blobs, out / f"contact-{branch}.png",
                              title=f"{state.title}: branch {branch}")
        files[f"contact_sheet_{branch}"] = str(sheet)
    audit = audit_events(ws.store.read(sid, MAIN), story_id=sid, branch=MAIN)
    files["audit_html"] = str(write_html(audit, ws.blobs, out / "audit.html"))
    memory = MemoryReader(ws.store).at(sid, MAIN, None)
    files["lineage"] = str(lineage_svg(memory, ws.blobs, out / "lineage.svg",
                                       title=f"Entity lineage: {audit['title']}"))
    timings["outputs"] = time.perf_counter() - t

    diff = diff_branches(ws, sid, MAIN, DEMO_BRANCH)
    calls_main = main_run.calls
    return {
        "story": sid,
        "home": home,
        "output_dir": str(out),
        "shots": len(audit["shots"]),
        "events": main_run.head,
        "model_calls": {"main": calls_main.live, DEMO_BRANCH: branch_run.calls.live, "replay": replayed.model_calls},
        "entities": [e.name for e in memory],
        "lineage": lineage_lines(memory),
        "branch": {"name": DEMO_BRANCH, "from_shot": 5, "shared_positions": diff["parted_at_position"],
                   "first_differing_shot": diff["first_differing_shot"]},
        "replay": {"identical": replayed.identical, "events_compared": replayed.events_compared,
                   "model_calls": replayed.model_calls},
        "notes": [*main_run.notes, *audit["notes"]],
        "files": files,
        "seconds": {k: round(v, 2) for k, v in {**timings, "total": time.perf_counter() - started}.items()},
    }

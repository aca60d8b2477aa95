"""`codirector demo`: the offline showcase, end to end, in well under a minute on two CPU cores.

It runs the bundled 8-shot story with the ``preview`` profile, forks a branch before shot 5 with a
changed prompt and runs it, replays the main branch against its recording (identical, zero model
calls), and writes what a newcomer wants to look at: an MP4 per branch, the HTML audit, a contact
sheet of keyframes per branch and the entity lineage. Everything it reports is read back from the
log; nothing here is a second implementation of run, branch, replay or audit (they are Studio's).
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Any

from codirector.engine.pictures import contact_sheet, lineage_lines, lineage_svg
from codirector.engine.state import fold_run_state

DEMO_STORY = "lighthouse.yaml"
DEMO_BRANCH = "storm"
DEMO_OVERRIDE = ("Mia in her red scarf and Tom shelter inside the lantern room during a violent storm, "
                 "rain lashing the glass and the great lens glowing, medium shot.")


def bundled_story(name: str = DEMO_STORY) -> Path:
    """A story shipped with the package (examples/stories), wherever the package is installed."""
    path = resources.files("codirector") / "examples" / "stories" / name
    return Path(str(path))


def _free_story_id(studio: Any, base: str) -> str:
    taken = {s.id for s in studio.store.stories()} if studio.home.root.exists() else set()
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def run_demo(studio: Any, out_dir: str | Path = "codirector-demo", *, config: str | Path | None = None,
             backends: Any = None, progress: Any = None) -> dict[str, Any]:
    """Run the showcase and write its outputs into ``out_dir``; returns the summary (stable keys)."""
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    studio._ensure_initialised()
    sid = _free_story_id(studio, "lighthouse-demo")
    timings: dict[str, float] = {}

    t = time.perf_counter()
    main_run = studio.run(bundled_story(), profile="preview", config=config, story_id=sid, backends=backends,
                          progress=progress)
    timings["run"] = time.perf_counter() - t

    t = time.perf_counter()
    studio.branch(sid, from_shot=5, name=DEMO_BRANCH, overrides={"shots.5.keyframe": DEMO_OVERRIDE})
    branch_run = studio.run_branch(sid, DEMO_BRANCH, backends=backends, progress=progress)
    timings["branch"] = time.perf_counter() - t

    t = time.perf_counter()
    replayed = studio.replay(sid)
    timings["replay"] = time.perf_counter() - t

    t = time.perf_counter()
    files: dict[str, str] = {}
    for branch in ("main", DEMO_BRANCH):
        video = studio.export(sid, out / f"{branch}.mp4", branch)
        files[f"video_{branch}"] = video["path"]
        state = fold_run_state(studio.store.read(sid, branch))
        sheet = contact_sheet(state, studio.blobs, out / f"contact-{branch}.png",
                              title=f"{state.title}: branch {branch}")
        files[f"contact_sheet_{branch}"] = str(sheet)
    audit = studio.audit(sid, "main", html=out / "audit.html")
    files["audit_html"] = audit["html"]
    memory = studio.memory(sid)
    files["lineage"] = str(lineage_svg(memory, studio.blobs, out / "lineage.svg",
                                       title=f"Entity lineage: {audit['title']}"))
    timings["outputs"] = time.perf_counter() - t

    diff = studio.diff(sid, "main", DEMO_BRANCH)
    calls_main = main_run.calls
    return {
        "story": sid,
        "home": str(studio.home.root),
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

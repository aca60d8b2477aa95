"""``codirector batch``: every story file and brief under some paths, one job per story, on a pool.

    items = collect(["examples/stories", "examples/briefs/dewline_serum.yaml"], prefix="exp1")
    result = run_batch(ws, items, pool, profile="preview")      # BatchResult: one JobResult per item

The driver validates every file, records each new story's ``StoryCreated`` (a brief's too, as
``direct`` would), then hands the jobs to the pool; a brief runs as ``direct``.

Invariants:
- Every file is read and checked, and ids are checked for clashes, before anything is written.
- Re-running the same batch continues unfinished stories and skips finished ones; a story id
  holding a different story is refused (``AlreadyExists``), as ``run FILE`` refuses it.
- A story's log is the log a run of that story alone would write: the same ``StoryCreated``,
  then the same loop, whichever worker runs it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codirector.engine.jobs import Job, JobResult, create_story, is_brief_file
from codirector.engine.loop.formats import is_story_path
from codirector.engine.loop.story import default_story_id, read_story
from codirector.engine.scale import Pool
from codirector.engine.views.cost import Spend
from codirector.engine.workspace import Workspace
from codirector.errors import InvalidArgument, StoryFileError
from codirector.generators.preflight import require_ready
from codirector.generators.profiles import resolve
from codirector.store.event_store import MAIN


@dataclass(frozen=True)
class BatchItem:
    """One file of a batch: a story or a brief, and the story id it runs as."""

    path: Path
    kind: str  # story | brief
    story_id: str


@dataclass
class BatchResult:
    """One row per job, in the order of the files, and how the batch ran."""

    rows: list[JobResult]
    pool: str
    workers: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    cost: Spend = field(default_factory=Spend)  # USD per story (all its branches), from the log

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        count = {s: sum(r.status == s for r in self.rows) for s in ("completed", "skipped", "stopped", "failed")}
        return {"jobs": [r.to_json() for r in self.rows], "pool": self.pool, "workers": self.workers,
                "seconds": round(self.seconds, 3), **count, "notes": self.notes, "cost": self.cost.to_json()}


def _files(path: Path) -> Iterable[Path]:
    if not path.exists():
        raise StoryFileError(f"{path} does not exist", hint="give story files, briefs, or folders holding them")
    if path.is_file() or is_story_path(path):
        yield path
        return
    for child in sorted(path.iterdir()):
        if is_story_path(child):
            yield child


def collect(paths: Sequence[str | os.PathLike[str]], *, prefix: str | None = None,
            story_format: str | None = None) -> list[BatchItem]:
    """Every story and brief under ``paths`` (files or folders), read and checked; ids from the file names."""
    from codirector.engine.director.briefs import default_brief_id, load_brief

    items: list[BatchItem] = []
    seen: dict[str, Path] = {}
    for given in paths:
        for path in _files(Path(given)):
            if is_brief_file(path):
                spec, _ = load_brief(path)
                kind, sid = "brief", default_brief_id(path, spec)
            else:
                kind, sid = "story", default_story_id(path, read_story(path, story_format).spec)
            if prefix:
                sid = f"{prefix}-{sid}"
            if sid in seen:
                raise InvalidArgument(f"two files would run as story {sid!r}: {seen[sid]} and {path}",
                                      hint="rename one, or run them in separate batches with --prefix")
            seen[sid] = path
            items.append(BatchItem(path, kind, sid))
    if not items:
        raise StoryFileError(f"no story files or briefs under {', '.join(map(str, paths))}",
                             hint="give *.yaml / *.json story files or briefs (see examples/), or folders of them")
    return items


def _complete(ws: Workspace, sid: str, kind: str) -> bool:
    wanted = "BranchRanked" if kind == "brief" else "StoryCompleted"
    return bool(ws.store.read(sid, MAIN, types=[wanted], limit=1))


def run_batch(
    ws: Workspace, items: Sequence[BatchItem], pool: Pool, *, profile: str | None = None,
    config: str | os.PathLike[str] | None = None, seed: int | None = None, max_rounds: int | None = None,
    story_format: str | None = None, budget_usd: float | None = None, iterations: int = 4,
    on_result: Callable[[JobResult], None] | None = None,
) -> BatchResult:
    """Create what is missing, then run every unfinished story as a job; finished ones are skipped."""
    from codirector.engine.director.direction import create_brief

    started = time.perf_counter()
    require_ready(resolve(profile, config))  # pre-flight: nothing is written unless the backends can run
    known = ws.story_ids()
    jobs: list[Job] = []
    rows: dict[str, JobResult] = {}
    for item in items:
        if item.kind == "brief":
            if item.story_id not in known:
                create_brief(ws, item.path, iterations=iterations, profile=profile, config=config, seed=seed,
                             story_id=item.story_id)
        else:
            create_story(ws, item.path, story_id=item.story_id, profile=profile, config=config, seed=seed,
                         max_rounds=max_rounds, story_format=story_format, check_ready=False)
        if _complete(ws, item.story_id, item.kind):
            rows[item.story_id] = JobResult(item.story_id, MAIN, "direct" if item.kind == "brief" else "run",
                                            "skipped", events=ws.store.branch(item.story_id, MAIN).head_position,
                                            worker="-")
            if on_result is not None:
                on_result(rows[item.story_id])
            continue
        jobs.append(Job(item.story_id, MAIN, kind="direct" if item.kind == "brief" else "run", budget_usd=budget_usd,
                        prices=None if config is None else os.fspath(config)))
    for row in pool.run(jobs, on_result=on_result):
        rows[row.story_id] = row
    return BatchResult([rows[i.story_id] for i in items], pool.name, pool.workers, time.perf_counter() - started)

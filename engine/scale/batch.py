"""``codirector batch``: every story file and brief under some paths, one job per story, on a pool.

    items = collect(["examples/stories", "examples/briefs/dewline_serum.yaml"], prefix="exp1")
    result = run_batch(ws, items, pool, profile="preview")      # BatchResult: one JobResult per item
    result = run_batch(ws, items, lambda: open_pool(spec, workers=2), on_progress=print)   # opened if needed

The driver validates every file, records each new story's ``StoryCreated`` (a brief's too, as
``direct`` would), then hands the jobs to the pool; a brief runs as ``direct``. While they run, it
shows each job's progress as read from the shared database: which branches are leased, and the
events their logs gained (``watch``), the same for a pool in this process and on Ray.

Invariants:
- Every file is read and checked, and ids are checked for clashes, before anything is written; all
  the problems found are reported together.
- A pool given as an opener is opened only when some job is left to run: a re-run of a finished
  batch starts no workers.
- Re-running the same batch continues unfinished stories and skips finished ones; a story id
  holding a different story is refused (``AlreadyExists``), as ``run FILE`` refuses it.
- A story's log is the log a run of that story alone would write: the same ``StoryCreated``,
  then the same loop, whichever worker runs it.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codirector.engine.continuation import DIRECT, branch_kind, create_story, is_brief_file
from codirector.engine.jobs import Job, JobResult, Pool
from codirector.engine.loop.formats import is_story_path
from codirector.engine.loop.story import default_story_id, read_story
from codirector.engine.views.cost import Spend
from codirector.engine.workspace import Workspace
from codirector.errors import CodirectorError, InvalidArgument, StoryFileError
from codirector.events import StoryCreated
from codirector.events.specs import StoryRecord
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


def _item(path: Path, prefix: str | None, story_format: str | None) -> BatchItem:
    """One file read and checked: a story or a brief, and the story id it runs as."""
    from codirector.engine.director.briefs import default_brief_id, load_brief

    if is_brief_file(path):
        spec, _ = load_brief(path)
        kind, sid = "brief", default_brief_id(path, spec)
    else:
        kind, sid = "story", default_story_id(path, read_story(path, story_format).spec)
    return BatchItem(path, kind, f"{prefix}-{sid}" if prefix else sid)


def collect(paths: Sequence[str | os.PathLike[str]], *, prefix: str | None = None,
            story_format: str | None = None) -> list[BatchItem]:
    """Every story and brief under ``paths`` (files or folders), read and checked; ids from the file names.
    Every file is checked: one problem is raised as it is, several as one ``StoryFileError`` listing each."""
    items: list[BatchItem] = []
    problems: list[CodirectorError] = []
    seen: dict[str, Path] = {}
    for given in paths:
        try:
            files = list(_files(Path(given)))
        except CodirectorError as e:
            problems.append(e)
            continue
        for path in files:
            try:
                item = _item(path, prefix, story_format)
            except CodirectorError as e:
                problems.append(e)
                continue
            if item.story_id in seen:
                problems.append(InvalidArgument(
                    f"two files would run as story {item.story_id!r}: {seen[item.story_id]} and {path}",
                    hint="rename one, or run them in separate batches with --prefix"))
                continue
            seen[item.story_id] = path
            items.append(item)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        listed = "\n".join(f"  - {e.message}" + (f" ({e.hint})" if e.hint else "") for e in problems)
        raise StoryFileError(f"{len(problems)} problems in the batch's files; nothing was run:\n{listed}",
                             hint="fix each file listed (or leave it out), then run the batch again")
    if not items:
        raise StoryFileError(f"no story files or briefs under {', '.join(map(str, paths))}",
                             hint="give *.yaml / *.json story files or briefs (see examples/), or folders of them")
    return items


def _complete(ws: Workspace, sid: str, kind: str) -> bool:
    wanted = "BranchRanked" if kind == DIRECT else "StoryCompleted"
    return bool(ws.store.read(sid, MAIN, types=[wanted], limit=1))


def run_batch(
    ws: Workspace, items: Sequence[BatchItem], pool: Pool | Callable[[], Pool], *, profile: str | None = None,
    config: str | os.PathLike[str] | None = None, seed: int | None = None, max_rounds: int | None = None,
    story_format: str | None = None, budget_usd: float | None = None, iterations: int = 4,
    on_result: Callable[[JobResult], None] | None = None, on_progress: Callable[[JobProgress], None] | None = None,
) -> BatchResult:
    """Create what is missing, then run every unfinished story as a job; finished ones are skipped.

    ``pool``: an open pool (the caller's to close), or a function opening one, called only if some job is
    left to run and closed here. ``on_progress``: each running job's shot and stage as its log grows."""
    started = time.perf_counter()
    jobs, rows = _prepare(ws, items, profile=profile, config=config, seed=seed, max_rounds=max_rounds,
                          story_format=story_format, budget_usd=budget_usd, iterations=iterations, on_result=on_result)
    if not jobs:  # nothing to run: no pool (and no Ray) is started
        return BatchResult([rows[i.story_id] for i in items], "none", 0, time.perf_counter() - started)
    opened = pool() if callable(pool) else None
    running = opened if opened is not None else pool
    assert not callable(running)
    try:
        with watch(ws, jobs, on_progress):
            for row in running.run(jobs, on_result=on_result):
                rows[row.story_id] = row
    finally:
        if opened is not None:
            opened.close()
    return BatchResult([rows[i.story_id] for i in items], running.name, running.workers,
                       time.perf_counter() - started)


def _prepare(
    ws: Workspace, items: Sequence[BatchItem], *, profile: str | None, config: str | os.PathLike[str] | None,
    seed: int | None, max_rounds: int | None, story_format: str | None, budget_usd: float | None, iterations: int,
    on_result: Callable[[JobResult], None] | None,
) -> tuple[list[Job], dict[str, JobResult]]:
    """Record what is missing; the jobs left to run and the rows of the stories already finished (skipped)."""
    from codirector.engine.director.direction import create_brief

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
        kind = branch_kind(ws, item.story_id, MAIN)  # as the log says, which is what a worker will run
        if _complete(ws, item.story_id, kind):
            rows[item.story_id] = JobResult(item.story_id, MAIN, kind, "skipped",
                                            events=ws.store.branch(item.story_id, MAIN).head_position, worker="-")
            if on_result is not None:
                on_result(rows[item.story_id])
            continue
        prices = None if config is None else os.fspath(config)
        jobs.append(Job(item.story_id, MAIN, budget_usd=budget_usd, prices=prices))
    return jobs, rows


# ---------------------------------------------------------------------------- progress, from the shared database


@dataclass(frozen=True)
class JobProgress:
    """Where a running job is, as its branch's log says: the shot it is on (of ``total``) and its last step."""

    story_id: str
    branch: str
    kind: str  # run | direct
    shot: int  # the shot started last (0: not yet); for a brief, the pulls chosen so far
    total: int  # shots planned (for a brief, 0)
    stage: str  # the last event, in words ("keyframe generated")
    holder: str  # who holds the branch's lease ("vm (pid 123)")

    def line(self) -> str:
        where = f"{self.story_id}/{self.branch}"
        if self.kind == DIRECT:
            return f"{where}: {self.shot} direction(s) chosen, {self.stage} ({self.holder})"
        of = f"shot {self.shot}/{self.total}" if self.shot else f"{self.total} shots planned"
        return f"{where}: {of}, {self.stage} ({self.holder})"


def _words(event_type: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", " ", event_type).lower()


@dataclass
class _Seen:
    after: int = 0
    shot: int = 0
    total: int = 0
    last: str = "starting"


def _advance(ws: Workspace, job: Job, kind: str, seen: _Seen) -> None:
    """Fold the events the job's branch gained since ``seen.after`` into ``seen``."""
    for e in ws.store.read(job.story_id, job.branch, after=seen.after):
        seen.after = e.position
        seen.last = _words(e.type)
        if e.type == "ModelCalled":
            agent = e.payload.get("agent")
            seen.last = f"{e.payload.get('kind', 'a')} model answered" + (f" ({agent})" if agent else "")
        elif isinstance(created := e.event, StoryCreated):
            spec = created.spec
            seen.total = (len(spec.shots) if isinstance(spec, StoryRecord) else 0) or spec.num_shots or 0
        elif e.type == "ShotPlanned" and e.shot is not None:
            seen.total = max(seen.total, e.shot)
        elif e.type == "ShotStarted" and e.shot is not None:
            seen.shot = e.shot
        elif e.type == "DirectionChosen" and kind == DIRECT:
            seen.shot += 1


@contextmanager
def watch(ws: Workspace, jobs: Sequence[Job], on_progress: Callable[[JobProgress], None] | None, *,
          every: float = 0.5) -> Iterator[None]:
    """While the block runs, call ``on_progress`` for each job whose branch is leased and whose log grew, every
    ``every`` seconds, from a thread of its own; it reads only the database, so the jobs may run anywhere."""
    if on_progress is None or not jobs:
        yield
        return
    stop = threading.Event()
    wanted = {(j.story_id, j.branch): j for j in jobs}
    kinds = {key: branch_kind(ws, *key) for key in wanted}
    seen: dict[tuple[str, str], _Seen] = {}

    def look() -> None:
        for lease in ws.leases.all():
            job = wanted.get((lease.story_id, lease.branch))
            if job is None or not lease.live:
                continue
            state = seen.setdefault((job.story_id, job.branch), _Seen())
            before = (state.after, state.shot)
            kind = kinds[(job.story_id, job.branch)]
            _advance(ws, job, kind, state)
            if (state.after, state.shot) != before:
                on_progress(JobProgress(job.story_id, job.branch, kind, state.shot, state.total, state.last,
                                        lease.holder()))

    def loop() -> None:
        while not stop.wait(every):
            try:
                look()
            except CodirectorError:  # a read that failed (a busy database): the next look catches up
                continue

    thread = threading.Thread(target=loop, name="batch progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)

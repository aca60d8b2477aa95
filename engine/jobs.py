"""Jobs: the unit of parallel work (DESIGN §10). A job = "run or resume (story, branch)".

    spec = WorkspaceSpec(db_url, blobs_url, cache_dir)      # all a worker needs to reach storage
    worker = Worker(Workspace.open(*spec), name="w1")       # backends are built once per config, then reused
    worker.run(Job("lighthouse"))                            # -> JobResult (status, events, calls, seconds)

    create_story(ws, "stories/lighthouse.yaml", ...)        # the driver's part: StoryCreated (blobs first)

Invariants:
- A job is data (ids and numbers, no handles), so it can travel to another process or machine.
- Running a job is idempotent: it continues the branch from the log under the branch's lease
  (a dead holder's lease is taken over at once on its own machine, else waited out to its TTL),
  so running it twice, or again after its worker died at any point, gives the same log, and a
  recorded answer is never requested again.
- A worker builds each distinct set of backends once (keyed by the recorded backend tables) and
  reuses it for every later job: model weights load once per worker, not once per story.
- A job's own failure (a ``CodirectorError``: bad model output, a budget reached) is returned as a
  ``failed``/``stopped`` row, never raised, so one story cannot stop a batch; anything else (a lost
  database, a bug) propagates.
- A worker given a ``budget`` uses it for every job (a pool's one cap: in-process, or a client of the
  Ray pool's shared account); otherwise a job's ``budget_usd`` caps that job alone. A job stopped by
  the budget is a ``stopped`` row; ``budget_stop`` rebuilds the ``BudgetExceeded`` it stopped with.
- Nothing here imports Ray; ``engine.scale`` holds the pools that run jobs.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from codirector.engine.loop.rerun import continuation
from codirector.engine.loop.runs import is_scratch, prepare_story, record_story
from codirector.engine.recording.budget import Budget, spending
from codirector.engine.workspace import Workspace
from codirector.errors import BudgetExceeded, CodirectorError, InvalidArgument
from codirector.events import BudgetReached
from codirector.generators.base import Backends
from codirector.generators.build import build_backends
from codirector.generators.preflight import require_ready
from codirector.generators.profiles import RunConfig
from codirector.store.event_store import MAIN

BACKEND_KINDS = ("vlm", "image", "video", "embedder")


class WorkspaceSpec(NamedTuple):
    """The three values a worker builds its ``Workspace`` from."""

    db_url: str
    blobs_url: str
    cache_dir: str

    def open(self) -> Workspace:
        return Workspace.open(self.db_url, self.blobs_url, self.cache_dir)

    @property
    def multi_node_ready(self) -> str | None:
        """None when every machine can reach this storage; else why not (for a multi-node cluster)."""
        if self.db_url.startswith("sqlite"):
            return "the database is a SQLite file on this machine (--db): give a PostgreSQL URL"
        if "://" not in self.blobs_url or self.blobs_url.startswith("file://"):
            return f"the blob store {self.blobs_url} is a folder on this machine (--blobs): give s3://… or gs://…"
        return None


@dataclass(frozen=True)
class Job:
    """Run or resume one branch of one story (``kind="run"``), or a brief's director (``kind="direct"``).

    ``evaluate``: judge the branch once it is complete (the bench). ``budget_usd``: this job's cap.
    """

    story_id: str
    branch: str = MAIN
    kind: str = "run"
    evaluate: bool = False
    budget_usd: float | None = None
    prices: str | None = None

    def continue_command(self) -> str:
        """The command that continues this job's branch by hand (after a stopped pool or studio)."""
        return continue_command(self.story_id, self.branch)


def continue_command(story_id: str, branch: str) -> str:
    """The command that continues ``branch`` of ``story_id`` where its log stops."""
    if branch == MAIN:
        return f"codirector resume {shlex.quote(story_id)}"  # quoted: pasted back into a shell, it is one word
    return f"codirector run --story {shlex.quote(story_id)} --branch {shlex.quote(branch)}"


@dataclass
class JobResult:
    """One row of a batch: what the job did, where, and how long it took."""

    story_id: str
    branch: str
    kind: str
    status: str  # completed | skipped (already complete) | stopped (budget) | failed
    events: int = 0  # the branch's head position afterwards
    written: int = 0  # events this job appended
    calls_made: int = 0
    calls_recorded: int = 0  # answered by the recording (reused or matched from the log)
    worker: str = ""
    seconds: float = 0.0
    error: str | None = None
    hint: str | None = None
    engine_seconds: float | None = None  # wall time minus the time spent inside backends (when measured)

    @property
    def ok(self) -> bool:
        return self.status in ("completed", "skipped")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["story"] = out.pop("story_id")
        out["seconds"] = round(self.seconds, 3)
        return out


def worker_name(label: str = "local") -> str:
    return f"{label}@{socket.gethostname()}:{os.getpid()}"


def backends_key(cfg: RunConfig) -> str:
    """What a set of backends is built from: the four backend tables (the loop's settings aside)."""
    return json.dumps({k: cfg.table(k) for k in BACKEND_KINDS}, sort_keys=True, default=str)


class Worker:
    """Runs whole jobs on one Workspace, building each set of backends once and reusing it."""

    def __init__(self, ws: Workspace, *, name: str | None = None, backends: Backends | None = None,
                 budget: Budget | None = None, raise_errors: bool = False) -> None:
        self.ws = ws
        self.raise_errors = raise_errors  # in-process callers that want the error itself (the director)
        self.name = name or worker_name()
        self.fixed = backends  # given (tests, an in-process director): used for every job
        self.budget = budget  # one account shared by every job of this worker (and, on Ray, the pool)
        self._built: dict[str, Backends] = {}

    def backends_for(self, story_id: str) -> Backends:
        if self.fixed is not None:
            return self.fixed
        created = self.ws.store.read(story_id, MAIN, limit=1)
        cfg = RunConfig.from_settings(created[0].payload["settings"])
        key = backends_key(cfg)
        if key not in self._built:
            self._built[key] = build_backends(cfg)
        return self._built[key]

    def _budget(self, job: Job) -> Budget | None:
        if self.budget is not None:
            return self.budget
        if job.budget_usd is None:
            return None
        meter = spending(job.budget_usd, job.prices)
        if job.kind == "run":  # a brief's director counts its own branches
            meter.count_story(self.ws.store, job.story_id, skip=is_scratch)
        return meter

    def run(self, job: Job) -> JobResult:
        """Run the job to the end (or to its error); the row says what happened."""
        from codirector.engine.director.direction import resume_direction
        from codirector.engine.evaluation.evaluate import evaluate
        from codirector.engine.loop.runs import execute

        started = time.perf_counter()
        row = JobResult(job.story_id, job.branch, job.kind, "completed", worker=self.name)
        try:
            backends = self.backends_for(job.story_id)
            timer = _timed(backends)
            budget = self._budget(job)
            if job.kind == "direct":
                with self.ws.lease(job.story_id, MAIN, wait=math.inf):
                    directed = resume_direction(self.ws, job.story_id, backends=backends, budget=budget)
                row.calls_made, row.calls_recorded = directed.calls.live, directed.calls.reused + directed.calls.matched
                row.status = "completed" if directed.completed else "stopped"
            elif job.kind == "run":
                result = execute(self.ws, job.story_id, job.branch, backends=backends, wait=math.inf,
                                 budget=budget)
                row.calls_made, row.calls_recorded = result.calls.live, result.calls.reused + result.calls.matched
                row.written = result.written
                if job.evaluate:
                    evaluate(self.ws, job.story_id, job.branch, backends=backends, budget=budget)
            else:
                raise InvalidArgument(f"unknown job kind {job.kind!r}", hint="run or direct")
            row.engine_seconds = None if timer is None else max(0.0, time.perf_counter() - started - timer())
        except CodirectorError as e:
            if self.raise_errors:
                raise
            row.status = "stopped" if isinstance(e, BudgetExceeded) else "failed"
            row.error, row.hint = e.message, e.hint
        row.events = self.ws.store.branch(job.story_id, job.branch).head_position
        row.seconds = time.perf_counter() - started
        return row


def budget_stop(ws: Workspace, row: JobResult) -> BudgetExceeded | None:
    """The error a job stopped by the budget (``status == "stopped"``) stopped with, rebuilt from its
    ``BudgetReached`` as ``Budget.exceeded`` made it, so a driver raises what one process would have."""
    if row.status != "stopped":
        return None
    marks = ws.store.read(row.story_id, row.branch, types=["BudgetReached"])
    if not marks:
        return None
    last = marks[-1]
    mark = BudgetReached.model_validate(last.payload)
    return Budget.exceeded(mark, shot=last.shot, story_id=row.story_id, branch=row.branch)


def _timed(backends: Backends) -> Callable[[], float] | None:
    """The backends' own clock, if they keep one (``busy_seconds``: the latency-simulating benchmark
    backends do), as a function returning the seconds spent in them since now; else None."""
    parts: list[Any] = [getattr(backends, k, None) for k in BACKEND_KINDS]
    if not all(hasattr(p, "busy_seconds") for p in parts):
        return None

    def busy() -> float:
        return float(sum(float(p.busy_seconds) for p in parts))

    before = busy()
    return lambda: busy() - before


# ---------------------------------------------------------------------------- the driver's part


@dataclass
class Created:
    """A story the driver made ready for a job: new, to be continued, or already complete."""

    story_id: str
    state: str  # new | continuing | complete
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def create_story(
    ws: Workspace, story_file: str | os.PathLike[str], *, story_id: str | None = None, profile: str | None = None,
    config: str | os.PathLike[str] | None = None, seed: int | None = None, max_rounds: int | None = None,
    ablations: dict[str, bool] | None = None, story_format: str | None = None, check_ready: bool = True,
) -> Created:
    """Record a story file's ``StoryCreated`` (reference images first) unless the id holds the same story.

    This is what ``start_run`` records before it runs ``main``; a worker then runs the story from the
    log alone, so the story file need not exist on the worker's machine. ``AlreadyExists`` when the id
    holds a different story.
    """
    sid, cfg, new = prepare_story(story_file, profile=profile, config=config, seed=seed, max_rounds=max_rounds,
                                  story_id=story_id, ablations=ablations, story_format=story_format)
    with ws.lease(sid, MAIN, wait=math.inf):  # no job runs main while the story is being created
        note = continuation(ws, sid, new)
        if note is not None:
            return Created(sid, "continuing" if note else "complete", note)
        if check_ready:
            require_ready(cfg)
        record_story(ws, sid, new)
    return Created(sid, "new")


def is_brief_file(path: Path) -> bool:
    """Whether a file is an advertising brief (it names a product and an audience) rather than a story."""
    if path.is_dir() or path.suffix.lower() not in (".yaml", ".yml", ".json"):
        return False
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "product" in data and "target_audience" in data and "shots" not in data


__all__ = ["Created", "Job", "JobResult", "Worker", "WorkspaceSpec", "budget_stop", "continue_command", "create_story",
           "is_brief_file", "worker_name"]

"""The worker every pool runs jobs with: in this process, on threads, or inside a Ray actor.

    worker = Worker(spec.open(), name=worker_name("w1"))   # backends are built once per config, then reused
    row = worker.run(Job("lighthouse"))                    # -> JobResult (status, events, calls, seconds)

Invariants:
- A job is continued by ``engine.continuation.continue_branch`` and nothing else: the worker never
  asks what kind of branch it holds; the row's ``kind`` is what the continuation module says it is.
- Running a job is idempotent: the branch continues from the log under its lease, waited for as long
  as it takes (a dead holder's lease is taken over at once on its own machine, else waited out to
  its TTL), so running it twice, or again after its worker died at any point, gives the same log.
- A worker builds each distinct set of backends once (keyed by the recorded backend tables) and
  reuses it for every later job: model weights load once per worker, not once per story.
- A job's own failure (a ``CodirectorError``) is returned as a ``failed``/``stopped`` row, never
  raised; anything else (a lost database, a bug) propagates.
- A worker given a ``budget`` uses it for every job (a pool's one cap: in-process, or a client of the
  Ray pool's shared account); otherwise a job's ``budget_usd`` caps that job's story alone.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

from codirector.engine.continuation import DIRECT, RUN, branch_kind, continue_branch
from codirector.engine.jobs import Job, JobResult, worker_name
from codirector.engine.loop.runs import is_scratch
from codirector.engine.recording.budget import Budget, spending
from codirector.engine.workspace import Workspace
from codirector.errors import BudgetExceeded, CodirectorError
from codirector.generators.base import Backends
from codirector.generators.build import build_backends
from codirector.generators.profiles import RunConfig
from codirector.store.event_store import MAIN

BACKEND_KINDS = ("vlm", "image", "video", "embedder")


def backends_key(cfg: RunConfig) -> str:
    """What a set of backends is built from: the four backend tables (the loop's settings aside)."""
    return json.dumps({k: cfg.table(k) for k in BACKEND_KINDS}, sort_keys=True, default=str)


class Worker:
    """Runs whole jobs on one Workspace, building each set of backends once and reusing it."""

    def __init__(self, ws: Workspace, *, name: str | None = None, backends: Backends | None = None,
                 budget: Budget | None = None) -> None:
        self.ws = ws
        self.name = name or worker_name()
        self.fixed = backends  # given (tests): used for every job
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
        meter.count_story(self.ws.store, job.story_id, skip=is_scratch)  # the cap is the story's, all its branches
        return meter

    def run(self, job: Job) -> JobResult:
        """Continue the job's branch to the end (or to its error); the row says what happened."""
        started = time.perf_counter()
        row = JobResult(job.story_id, job.branch, RUN, "completed", worker=self.name)
        try:
            row.kind = branch_kind(self.ws, job.story_id, job.branch)
            backends = self.backends_for(job.story_id)
            timer = _timed(backends)
            done = continue_branch(self.ws, job.story_id, job.branch, backends=backends, budget=self._budget(job),
                                   wait=math.inf, evaluate=job.evaluate)
            row.calls_made, row.calls_recorded = done.calls.live, done.calls.reused + done.calls.matched
            row.written = done.written
            if done.kind == DIRECT and not done.completed:  # a director stopped short of its ranking
                row.status = "stopped"
            row.engine_seconds = None if timer is None else max(0.0, time.perf_counter() - started - timer())
        except CodirectorError as e:
            row.status = "stopped" if isinstance(e, BudgetExceeded) else "failed"
            row.error, row.hint = e.message, e.hint
        row.events = self.ws.store.branch(job.story_id, job.branch).head_position
        row.seconds = time.perf_counter() - started
        return row


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


__all__ = ["Worker", "backends_key", "worker_name"]

"""Runs started from the studio: in the server's own worker threads, or as jobs on a Ray pool, under the branch lease.

    runner = Runner(lambda: Studio(home=...), workers=2)
    runner.submit(studio, "lighthouse", "storm")   # Studio.run_branch in a worker thread of this server
    runner = Runner(make_studio, pool=open_ray_pool(studio.spec, workers=2))   # `serve --workers 2`
    runner.submit(studio, "lighthouse", "storm")   # engine.jobs.Job("lighthouse", "storm") on a Ray worker
    runner.job("lighthouse", "storm")              # queued / running / done / failed, the error, the worker

Invariants:
- A job is exactly the call the CLI makes: in a thread, ``Studio.run_branch`` for a branch and
  ``Studio.resume`` for a main branch, on a Studio of its own (its own Workspace, so its own lease:
  two jobs of one branch can never share a lease by re-entrance); on a pool, the ``engine.jobs.Job``
  that ``batch`` runs. Either way the branch continues through ``engine.continuation.continue_branch``,
  which reads from the log whether it is a story's run or a brief's director.
  The branch lease is what prevents double runs, across this server, the CLI and other machines;
  ``submit`` refuses early when a live lease is held or this server already has the job in hand,
  only to answer faster.
- At most ``workers`` jobs are in hand at once (a pool's: one per Ray worker); the rest wait here,
  ``queued``, in submission order. A job's failure never reaches the caller of ``submit``: it is
  recorded on the job (the pages show it), whether the run raised, its worker's row said ``failed``
  or ``stopped``, or Ray gave up on its worker.
- What a page shows about a run comes from the log and the lease table; the job record here adds
  only what the log cannot hold: that a job is waiting for a worker, who ran it, or the error that
  ended it. Ray is imported only by the pool (``engine.scale.ray_pool``), never here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from codirector.engine import jobs as engine_jobs
from codirector.engine.studio import Studio
from codirector.errors import BranchBusy, CodirectorError
from codirector.store.event_store import MAIN

if TYPE_CHECKING:
    from codirector.engine.jobs import Submitter

_log = logging.getLogger(__name__)


@dataclass
class Job:
    """A run this server was asked to make."""

    story: str
    branch: str
    state: str = "queued"  # queued | running | done | failed
    error: str | None = None
    submitted: float = 0.0
    finished: float | None = None
    worker: str | None = None  # who ran it: a thread of this server, or a Ray worker (name@host:pid)

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


def with_fix(message: str, hint: str | None) -> str:
    """A job's error as the page shows it: the message, then its fix in brackets when there is one."""
    return message + (f" (fix: {hint})" if hint else "")


def describe(e: BaseException) -> str:
    """One line for a job's error: the message and its fix for ours, the cause's first line for Ray's."""
    cause = getattr(e, "cause", None)  # a RayTaskError carries the exception raised in the worker
    if isinstance(cause, BaseException):
        e = cause
    if isinstance(e, CodirectorError):
        return with_fix(e.message, e.hint)
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


class Runner:
    """Runs branches: in ``workers`` threads of this server, or (``pool``) as jobs on its workers."""

    def __init__(self, make_studio: Callable[[], Studio], *, workers: int = 2, pool: Submitter | None = None) -> None:
        self.make_studio = make_studio
        self.pool = pool
        size = pool.workers if pool is not None else max(1, workers)
        self._threads = ThreadPoolExecutor(max_workers=size, thread_name_prefix="codirector-run")
        self._jobs: dict[tuple[str, str], Job] = {}
        self._lock = threading.Lock()
        self._stopping = False

    @property
    def where(self) -> str:
        """Where runs started from the page go, for the server's startup line."""
        if self.pool is None:
            return "runs started here keep going in this process"
        n = self.pool.workers
        return f"runs started here go to {n} Ray worker{'s' if n != 1 else ''}"

    def job(self, story: str, branch: str) -> Job | None:
        with self._lock:
            return self._jobs.get((story, branch))

    def jobs(self) -> dict[tuple[str, str], Job]:
        with self._lock:
            return dict(self._jobs)

    def submit(self, studio: Studio, story: str, branch: str) -> Job:
        """Queue a run of ``story``/``branch``; ``BranchBusy`` if it is being run already, ``NotFound`` if there
        is no such branch."""
        studio.store.branch(story, branch)
        lease = studio.workspace.leases.get(story, branch)
        if lease is not None and lease.live:
            raise lease.busy()
        with self._lock:
            current = self._jobs.get((story, branch))
            if current is not None and current.active:
                raise BranchBusy(f"{story}/{branch} is already {current.state} in this studio",
                                 hint="its page follows it; wait for it to finish")
            job = self._jobs[(story, branch)] = Job(story, branch, submitted=time.time())
        self._threads.submit(self._run, job)
        return job

    def _run(self, job: Job) -> None:
        job.state = "running"
        try:
            if self.pool is None:
                self._run_here(job)
            else:
                self._run_on_pool(self.pool, job)
        except CodirectorError as e:
            job.state, job.error = "failed", describe(e)
        except Exception as e:  # the worker must outlive any failure; the log keeps what was done
            if self._stopping:  # the pool was closed under it: expected, not a bug to report
                again = engine_jobs.continue_command(job.story, job.branch)
                job.state, job.error = "failed", with_fix("the studio stopped before the run finished", again)
            else:
                _log.exception("run of %s/%s failed", job.story, job.branch)
                job.state, job.error = "failed", describe(e)
        finally:
            job.finished = time.time()

    def _run_here(self, job: Job) -> None:
        job.worker = engine_jobs.worker_name("studio")
        with self.make_studio() as studio:
            if job.branch == MAIN:
                studio.resume(job.story)
            else:
                studio.run_branch(job.story, job.branch)
        job.state = "done"

    def _run_on_pool(self, pool: Submitter, job: Job) -> None:
        row = pool.submit(engine_jobs.Job(job.story, job.branch)).result()
        job.worker = row.worker
        if row.ok:
            job.state = "done"
            return
        why = row.error or f"the run {row.status}"
        job.state, job.error = "failed", with_fix(why, row.hint)

    def shutdown(self, *, wait: bool = False) -> None:
        """Stop taking jobs and close the pool (its workers stop); in threads, running jobs continue unless
        the process ends. Either way an unfinished run's lease expires and ``codirector resume`` continues it."""
        self._stopping = True
        self._threads.shutdown(wait=wait, cancel_futures=True)
        if self.pool is not None:
            self.pool.close()


__all__ = ["Job", "Runner", "describe"]

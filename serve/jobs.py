"""Runs started from the studio: each in a background thread, with its own Studio, under the branch lease.

    runner = Runner(lambda: Studio(home=...), workers=2)
    runner.submit("lighthouse", "storm")        # Studio.run_branch in a worker thread
    runner.job("lighthouse", "storm")           # queued / running / done / failed, and the error

Invariants:
- A job is exactly the call the CLI makes (``Studio.run_branch`` for a branch, ``Studio.resume`` for
  a main branch), on a Studio of its own (its own Workspace, so its own lease: two jobs of one
  branch can never share a lease by re-entrance). The branch lease is what prevents double runs,
  across this server, the CLI and other machines; ``submit`` refuses early when a live lease is
  held or this server already has the job in hand, only to answer faster.
- What a page shows about a run comes from the log and the lease table; the job record here adds
  only what the log cannot hold: that a job is waiting for a worker, or the error that ended it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from codirector.engine.studio import Studio
from codirector.errors import BranchBusy, CodirectorError
from codirector.store.event_store import MAIN

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

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


class Runner:
    """A small pool of worker threads running branches."""

    def __init__(self, make_studio: Callable[[], Studio], *, workers: int = 2) -> None:
        self.make_studio = make_studio
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="codirector-run")
        self._jobs: dict[tuple[str, str], Job] = {}
        self._lock = threading.Lock()

    def job(self, story: str, branch: str) -> Job | None:
        with self._lock:
            return self._jobs.get((story, branch))

    def jobs(self) -> dict[tuple[str, str], Job]:
        with self._lock:
            return dict(self._jobs)

    def submit(self, studio: Studio, story: str, branch: str) -> Job:
        """Queue a run of ``story``/``branch``; ``BranchBusy`` if it is being run already."""
        lease = studio.workspace.leases.get(story, branch)
        if lease is not None and lease.live:
            raise lease.busy()
        with self._lock:
            current = self._jobs.get((story, branch))
            if current is not None and current.active:
                raise BranchBusy(f"{story}/{branch} is already {current.state} in this studio",
                                 hint="its page follows it; wait for it to finish")
            job = self._jobs[(story, branch)] = Job(story, branch, submitted=time.time())
        self._pool.submit(self._run, job)
        return job

    def _run(self, job: Job) -> None:
        job.state = "running"
        try:
            with self.make_studio() as studio:
                if job.branch == MAIN:
                    studio.resume(job.story)
                else:
                    studio.run_branch(job.story, job.branch)
            job.state = "done"
        except CodirectorError as e:
            job.state, job.error = "failed", e.message + (f" (fix: {e.hint})" if e.hint else "")
        except Exception as e:  # the worker must outlive any failure; the log keeps what was done
            _log.exception("run of %s/%s failed", job.story, job.branch)
            job.state, job.error = "failed", f"{type(e).__name__}: {e}"
        finally:
            job.finished = time.time()

    def shutdown(self, *, wait: bool = False) -> None:
        """Stop taking jobs; running ones continue unless the process ends (their leases then expire)."""
        self._pool.shutdown(wait=wait, cancel_futures=True)


__all__ = ["Job", "Runner"]

"""The in-process pool: jobs run here, one after another (no ``--workers``/``--ray``; Ray is never imported).

Invariant: it runs exactly what a Ray worker runs (``engine.scale.worker.Worker``), on the caller's
Workspace, so a batch in one process and a batch on Ray write the same logs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from codirector.engine.jobs import Job, JobResult, worker_name
from codirector.engine.recording.budget import Budget
from codirector.engine.scale.worker import Worker
from codirector.engine.workspace import Workspace
from codirector.generators.base import Backends


class LocalPool:
    """One in-process worker; ``backends``/``budget`` (optional) are shared by every job."""

    workers = 1
    name = "in-process"

    def __init__(self, ws: Workspace, *, backends: Backends | None = None, budget: Budget | None = None) -> None:
        self.worker = Worker(ws, name=worker_name("local"), backends=backends, budget=budget)

    def run(self, jobs: Sequence[Job], *, on_result: Callable[[JobResult], None] | None = None) -> list[JobResult]:
        out = []
        for job in jobs:
            row = self.worker.run(job)
            if on_result is not None:
                on_result(row)
            out.append(row)
        return out

    def close(self) -> None:
        pass  # the Workspace is the caller's

"""Jobs: the unit of parallel work (docs/architecture.md §10). A job = "continue (story, branch)";
this module is its data.

    spec = WorkspaceSpec(db_url, blobs_url, cache_dir)      # all a worker needs to reach storage
    job = Job("lighthouse", "storm", budget_usd=2.0)        # what travels to a worker (ids and numbers)
    row = pool.run([job])[0]                                # -> JobResult (status, events, calls, seconds)

What a job does is ``engine.continuation.continue_branch`` (the log says whether the branch is a
story's run or a brief's director); who does it is a ``Pool`` (``engine.scale``), whose workers
(``engine.scale.worker.Worker``) build backends once and turn every job into a ``JobResult``.

Invariants:
- A job is data (ids and numbers, no handles, no kind: the log says what the branch is), so it can
  travel to another process or machine.
- A job's own failure (a ``CodirectorError``: bad model output, a budget reached) is a
  ``failed``/``stopped`` row, never raised, so one story cannot stop a batch; ``budget_stop``
  rebuilds the ``BudgetExceeded`` a ``stopped`` row stopped with.
- Nothing here imports Ray, the loop or the director.
"""

from __future__ import annotations

import os
import shlex
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple, Protocol

from codirector.engine.recording.budget import Budget
from codirector.engine.workspace import Workspace
from codirector.errors import BudgetExceeded
from codirector.events import BudgetReached
from codirector.store.event_store import MAIN


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
    """Continue one branch of one story where its log stops: a story's run, or a brief's director on its main
    branch (``engine.continuation`` decides, from the log). ``evaluate``: judge the branch once it is complete
    (the bench). ``budget_usd``: this job's cap (a story's: all its branches), at ``prices`` (a TOML file).
    """

    story_id: str
    branch: str = MAIN
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


class Pool(Protocol):
    """Runs jobs; ``workers`` is how many at once (``engine.scale`` opens them)."""

    workers: int
    name: str

    def run(self, jobs: Sequence[Job], *, on_result: Callable[[JobResult], None] | None = None) -> list[JobResult]:
        ...

    def close(self) -> None:
        ...


class Submitter(Protocol):
    """A pool that also takes single jobs, from any thread, as they come (the studio server's runs)."""

    workers: int
    name: str

    def submit(self, job: Job) -> Future[JobResult]:
        ...

    def close(self) -> None:
        ...


__all__ = ["Job", "JobResult", "Pool", "Submitter", "WorkspaceSpec", "budget_stop", "continue_command", "worker_name"]

"""Pools that run jobs (``engine.jobs``): in-process one after another, or on Ray actors (DESIGN §10).

    pool = open_pool(spec, ws=ws)                          # no --workers/--ray: in-process, Ray never imported
    pool = open_pool(spec, workers=4, address=None)        # a local Ray with 4 worker actors
    pool = open_pool(spec, address="ray://head:10001", gpus_per_worker=1)   # join a cluster: one actor per GPU
    rows = pool.run(jobs, on_result=print)                 # JobResults in the order of ``jobs``

Invariants:
- ``local`` never imports Ray; ``ray_pool`` is the only module that does, and it is imported only
  when ``--workers`` or ``--ray`` is given, so every other command starts without it.
- A pool has no scheduler, queue or retry loop of its own: the local one runs jobs in order; the
  Ray one hands them to Ray's ``ActorPool``, and a dead worker is Ray's to restart (actor restarts)
  and its job Ray's to retry (task retries); the retried job resumes its branch (``engine.jobs``).
- A multi-node cluster is refused before any work starts unless every node can reach the storage
  (a PostgreSQL database and an object-store blob URL; ``WorkspaceSpec.multi_node_ready``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

from codirector.engine.jobs import Job, JobResult, WorkspaceSpec
from codirector.engine.recording.budget import Budget
from codirector.engine.workspace import Workspace
from codirector.errors import ConfigError, InvalidArgument
from codirector.generators.base import Backends

RAY_EXTRA = 'pip install "codirector[ray]"'


class Pool(Protocol):
    """Runs jobs; ``workers`` is how many at once."""

    workers: int
    name: str

    def run(self, jobs: Sequence[Job], *, on_result: Callable[[JobResult], None] | None = None) -> list[JobResult]:
        ...

    def close(self) -> None:
        ...


def wants_ray(workers: int | None, address: str | None) -> bool:
    return workers is not None or address is not None


@contextmanager
def ray_pool_or_none(spec: WorkspaceSpec, *, workers: int | None = None, address: str | None = None,
                     gpus_per_worker: float = 0.0, budget: Budget | None = None) -> Iterator[Pool | None]:
    """A Ray pool for the block when ``workers`` or ``address`` is given (closed after it), else None."""
    if not wants_ray(workers, address):
        yield None
        return
    pool = open_pool(spec, workers=workers, address=address, gpus_per_worker=gpus_per_worker, budget=budget)
    try:
        yield pool
    finally:
        pool.close()


def open_pool(
    spec: WorkspaceSpec, *, ws: Workspace | None = None, workers: int | None = None, address: str | None = None,
    gpus_per_worker: float = 0.0, backends: Backends | None = None, budget: Budget | None = None,
    env: dict[str, str] | None = None,
) -> Pool:
    """The in-process pool (no ``workers`` and no ``address``), else a Ray pool; ``ConfigError`` when Ray
    is missing or the cluster cannot reach the storage. ``env``: more environment for the Ray workers."""
    if not wants_ray(workers, address):
        from codirector.engine.scale.local import LocalPool

        return LocalPool(ws if ws is not None else spec.open(), backends=backends, budget=budget)
    if workers is not None and workers < 1:
        raise InvalidArgument(f"--workers must be 1 or more, got {workers}")
    if gpus_per_worker < 0:
        raise InvalidArgument(f"--gpus-per-worker must be 0 or more, got {gpus_per_worker}")
    if budget is not None and budget.capped:
        raise InvalidArgument("--budget is a cap shared by one process; with --workers/--ray it is not supported here",
                              hint="run without --workers, or cap each story: `codirector batch ... --budget USD`")
    try:
        from codirector.engine.scale.ray_pool import RayPool
    except ImportError as e:
        if e.name is not None and e.name.split(".")[0] == "ray":
            raise ConfigError("--workers/--ray run jobs on Ray, which is not installed here",
                              hint=f"{RAY_EXTRA} (or drop --workers/--ray to run in this process)") from None
        raise
    return RayPool(spec, workers=workers, address=address, gpus_per_worker=gpus_per_worker, env=env)


__all__ = ["RAY_EXTRA", "Pool", "open_pool", "ray_pool_or_none", "wants_ray"]

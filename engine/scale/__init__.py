"""Pools that run jobs (``engine.jobs``) with workers (``engine.scale.worker``): in-process one after another,
or on Ray actors (docs/architecture.md §10).

    pool = open_pool(spec, ws=ws)                          # no --workers/--ray: in-process, Ray never imported
    pool = open_pool(spec, workers=4, address=None)        # a local Ray with 4 worker actors
    pool = open_pool(spec, address="ray://head:10001", gpus_per_worker=1)   # join a cluster: one actor per GPU
    rows = pool.run(jobs, on_result=print)                 # JobResults in the order of ``jobs``
    server_pool = open_ray_pool(spec, workers=2)           # takes single jobs too, from any thread (serve)
    future = server_pool.submit(Job("lighthouse", "storm"))   # a Future[JobResult]

Invariants:
- ``local`` never imports Ray; ``ray_pool`` is the only module that does, and it is imported only
  when ``--workers`` or ``--ray`` is given, so every other command starts without it.
- A pool has no scheduler, queue or retry loop of its own: the local one runs jobs in order; the
  Ray one hands a batch to Ray's ``ActorPool`` and a single job (``submit``) to its least busy
  worker, and a dead worker is Ray's to restart (actor restarts) and its job Ray's to retry (task
  retries); the retried job resumes its branch (``engine.continuation``).
- A capped ``budget`` is one cap for every job of the pool, on Ray as in one process: every call
  holds its worst case in one account before it is made (``engine.scale.ray_pool``), so N workers
  pass the limit by no more than one process can (``engine.recording.account`` states the bound).
- A multi-node cluster is refused before any work starts unless every node can reach the storage
  (a PostgreSQL database and an object-store blob URL; ``WorkspaceSpec.multi_node_ready``): a cluster on
  another machine by its address, one on this machine by its live nodes, counted by ``check_pool`` before
  anything is written (and again when the pool joins it).
- ``check_pool`` checks everything a pool needs that can be checked without starting it (the options,
  Ray installed, a ``--ray`` address answering and able to reach the storage), so a command may check
  first, write, and open the pool only if it has work for it (``engine.scale.batch``).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING

from codirector.engine.jobs import Pool, Submitter, WorkspaceSpec
from codirector.engine.recording.budget import Budget
from codirector.engine.workspace import Workspace
from codirector.errors import ConfigError, InvalidArgument
from codirector.generators.base import Backends

if TYPE_CHECKING:
    from codirector.engine.scale.ray_pool import RayPool

RAY_EXTRA = 'pip install "codirector[ray]"'


def wants_ray(workers: int | None, address: str | None) -> bool:
    return workers is not None or address is not None


def check_ray_options(workers: int | None, gpus_per_worker: float) -> None:
    """``InvalidArgument`` for a ``--workers``/``--gpus-per-worker`` out of range (before Ray is touched)."""
    if workers is not None and workers < 1:
        raise InvalidArgument(f"--workers must be 1 or more, got {workers}",
                              hint="give --workers N with N >= 1, or leave it out to run in this process")
    if gpus_per_worker < 0:
        raise InvalidArgument(f"--gpus-per-worker must be 0 or more, got {gpus_per_worker:g}",
                              hint="0 gives each worker one CPU; 1 gives each worker a whole GPU")


def _ray_missing() -> bool:
    if "ray" in sys.modules:
        return sys.modules["ray"] is None  # None: an import of it is refused (as if not installed)
    return importlib.util.find_spec("ray") is None


def _no_ray() -> ConfigError:
    return ConfigError("--workers/--ray run jobs on Ray, which is not installed here",
                       hint=f"{RAY_EXTRA} (or drop --workers/--ray to run in this process)")


def check_pool(spec: WorkspaceSpec, *, workers: int | None = None, address: str | None = None,
               gpus_per_worker: float = 0.0) -> None:
    """What ``open_pool`` would refuse, found without starting (or importing) Ray: options out of range, Ray not
    installed, a ``--ray`` address that nothing answers or whose cluster could not reach this storage."""
    if not wants_ray(workers, address):
        return
    check_ray_options(workers, gpus_per_worker)
    if _ray_missing():
        raise _no_ray()
    if address is not None:
        from codirector.engine.scale.cluster import check_address

        check_address(address, spec)
        if address != "local" and spec.multi_node_ready is not None:  # a cluster here may still have several nodes
            _ray_pool_module().check_nodes(address, spec)


@contextmanager
def ray_pool_or_none(spec: WorkspaceSpec, *, workers: int | None = None, address: str | None = None,
                     gpus_per_worker: float = 0.0, budget: Budget | None = None,
                     concurrency: int | None = None) -> Iterator[Pool | None]:
    """A Ray pool for the block when ``workers`` or ``address`` is given, threads of this process with
    ``concurrency`` above 1 (closed after it), else None (the caller runs its jobs in turn)."""
    check_concurrency(concurrency, workers, address, budget=budget)
    if not wants_ray(workers, address) and not (concurrency or 1) > 1:
        yield None
        return
    pool = open_pool(spec, workers=workers, address=address, gpus_per_worker=gpus_per_worker, budget=budget,
                     concurrency=concurrency)
    try:
        yield pool
    finally:
        pool.close()


def open_pool(
    spec: WorkspaceSpec, *, ws: Workspace | None = None, workers: int | None = None, address: str | None = None,
    gpus_per_worker: float = 0.0, backends: Backends | None = None, budget: Budget | None = None,
    env: dict[str, str] | None = None, concurrency: int | None = None,
) -> Pool:
    """The in-process pool (no ``workers`` and no ``address``), else a Ray pool; ``ConfigError`` when Ray
    is missing or the cluster cannot reach the storage. ``env``: more environment for the Ray workers.
    ``budget``: one account for every job (and the caller's own calls): shared in this process, or, on
    Ray, kept by one actor while the pool is open (``budget`` is linked to it until ``close``).
    ``concurrency``: N jobs at once on threads of this process (``engine.scale.threads``: hosted models)."""
    check_concurrency(concurrency, workers, address, budget=budget, backends=backends)
    if concurrency is not None and concurrency > 1:
        from codirector.engine.scale.threads import ThreadPool

        return ThreadPool(spec, concurrency)
    if not wants_ray(workers, address):
        from codirector.engine.scale.local import LocalPool

        return LocalPool(ws if ws is not None else spec.open(), backends=backends, budget=budget)
    check_ray_options(workers, gpus_per_worker)
    return _ray_pool(spec, workers=workers, address=address, gpus_per_worker=gpus_per_worker, env=env, budget=budget)


def check_concurrency(concurrency: int | None, workers: int | None, address: str | None, *,
                      budget: Budget | None = None, backends: Backends | None = None) -> None:
    """``--concurrency`` is a number of jobs at once in this process, and not with Ray or one shared account."""
    if concurrency is None:
        return
    if concurrency < 1:
        raise InvalidArgument(f"--concurrency must be at least 1, got {concurrency}",
                              hint="--concurrency N keeps N stories in flight in this process")
    if concurrency > 1 and wants_ray(workers, address):
        raise InvalidArgument("--concurrency runs jobs on threads of this process; --workers/--ray run them on Ray",
                              hint="choose one: --concurrency N for hosted models, --workers N for GPUs or machines")
    if concurrency > 1 and budget is not None and budget.capped:
        raise InvalidArgument("--concurrency with one --budget for the whole command is not supported yet",
                              hint="use --workers N for one cap over many workers, or run without --budget")
    if concurrency > 1 and backends is not None:
        raise InvalidArgument("--concurrency builds backends on each thread; it takes no given backends object",
                              hint="configure the backends with --profile/--config instead")


def open_ray_pool(spec: WorkspaceSpec, *, workers: int | None = None, address: str | None = None,
                  gpus_per_worker: float = 0.0, env: dict[str, str] | None = None) -> Submitter:
    """A Ray pool that takes single jobs from any thread (``submit``), as ``codirector serve --workers`` needs;
    ``InvalidArgument``/``ConfigError`` as ``open_pool``. One of ``workers`` and ``address`` is required."""
    if not wants_ray(workers, address):
        raise InvalidArgument("a Ray pool needs --workers N or --ray ADDRESS",
                              hint="give --workers 2 (a local Ray) or --ray auto (the cluster this machine is in)")
    check_ray_options(workers, gpus_per_worker)
    return _ray_pool(spec, workers=workers, address=address, gpus_per_worker=gpus_per_worker, env=env)


def _ray_pool_module() -> ModuleType:
    if _ray_missing():  # ray_pool imports Ray only when a pool starts: say it before anything runs
        raise _no_ray()
    try:
        from codirector.engine.scale import ray_pool
    except ImportError as e:
        if e.name is not None and e.name.split(".")[0] == "ray":
            raise _no_ray() from None
        raise
    return ray_pool


def _ray_pool(spec: WorkspaceSpec, *, workers: int | None, address: str | None, gpus_per_worker: float,
              env: dict[str, str] | None, budget: Budget | None = None) -> RayPool:
    pool: RayPool = _ray_pool_module().RayPool(spec, workers=workers, address=address, gpus_per_worker=gpus_per_worker,
                                               env=env, budget=budget)
    return pool


__all__ = ["RAY_EXTRA", "Pool", "Submitter", "check_pool", "check_ray_options", "open_pool", "open_ray_pool",
           "ray_pool_or_none", "wants_ray"]

"""Jobs on Ray actors: one long-lived worker per GPU (or per CPU), each running whole jobs.

The only module that imports Ray (``pip install "codirector[ray]"``).

Invariants:
- A worker actor builds its Workspace from the three storage values and its backends once per
  config (``engine.jobs.Worker``): model weights load once per worker, not once per story.
- Failure handling is Ray's own: actors restart without limit (``max_restarts=-1``) and a call
  lost with its worker is retried (``max_task_retries=-1``). A retried job resumes its branch under
  the branch lease (waiting out a dead holder's TTL), so it never repeats a recorded call.
- Distribution is Ray's: ``run`` (a batch, from one thread) hands the jobs to Ray's ``ActorPool``;
  ``submit`` (one job, from any thread: ``ActorPool`` is not thread-safe) calls the worker with the
  fewest jobs in hand, chosen under a lock, and Ray queues the call there if that worker is busy.
  No scheduler, queue or retry loop of ours.
- Workers get the driver's ``CODIRECTOR_*`` settings (plugins, lease TTL), never its storage
  values (they travel as the job's Workspace spec) and never an API key; anything else a worker
  needs (credentials) comes from its node's environment, or ``env`` when the caller passes it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, cast

import ray
from ray.util import ActorPool

from codirector.engine.jobs import Job, JobResult, Worker, WorkspaceSpec, worker_name
from codirector.errors import ConfigError, RunStateError

_NOT_FORWARDED = {"CODIRECTOR_DB", "CODIRECTOR_BLOBS", "CODIRECTOR_HOME", "CODIRECTOR_CACHE"}


def forwarded_env() -> dict[str, str]:
    """The driver's ``CODIRECTOR_*`` settings the workers need (plugins, lease TTL, …)."""
    return {k: v for k, v in os.environ.items() if k.startswith("CODIRECTOR_") and k not in _NOT_FORWARDED}


@ray.remote(max_restarts=-1, max_task_retries=-1)
class JobActor:
    """A worker process: one Workspace, backends built once, whole jobs one at a time."""

    def __init__(self, spec: WorkspaceSpec, index: int) -> None:
        self.worker = Worker(WorkspaceSpec(*spec).open(), name=worker_name(f"ray-{index}"))

    def run(self, index: int, job: Job) -> tuple[int, JobResult]:
        return index, self.worker.run(job)

    def run_one(self, job: Job) -> JobResult:
        return self.worker.run(job)

    def pid(self) -> int:
        return os.getpid()


class RayPool:
    """``workers`` JobActors on a local Ray (started here) or on the cluster at ``address``."""

    name = "ray"

    def __init__(self, spec: WorkspaceSpec, *, workers: int | None = None, address: str | None = None,
                 gpus_per_worker: float = 0.0, env: dict[str, str] | None = None) -> None:
        self._owns = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "logging_level": logging.WARNING}
            if address is None:
                kwargs["num_cpus"] = max(workers or 1, os.cpu_count() or 1) if gpus_per_worker else (workers or 1)
            ray.init(address=address, **kwargs)
            self._owns = True
        try:
            alive = [n for n in ray.nodes() if n.get("Alive")]
            why = spec.multi_node_ready
            if len(alive) > 1 and why is not None:
                raise ConfigError(f"this Ray cluster has {len(alive)} nodes, and {why}",
                                  hint="workers on other machines reach the log and the blobs only through shared "
                                       "storage: --db postgresql://… --blobs s3://bucket/prefix (see README, 'Ray')")
            if workers is None:
                res = ray.cluster_resources()
                workers = int(res.get("GPU", 0) // gpus_per_worker) if gpus_per_worker else int(res.get("CPU", 1))
                if workers < 1:
                    raise ConfigError(f"the Ray cluster has no room for a worker with {gpus_per_worker:g} GPU(s)",
                                      hint="lower --gpus-per-worker, or give --workers N")
        except BaseException:
            self.close()
            raise
        options: dict[str, Any] = {"num_gpus": gpus_per_worker} if gpus_per_worker else {"num_cpus": 1}
        env = {**forwarded_env(), **(env or {})}
        if env:
            options["runtime_env"] = {"env_vars": env}
        self.workers = workers
        self.actors = [JobActor.options(**options).remote(tuple(spec), i)  # type: ignore[attr-defined]
                       for i in range(workers)]
        self._lock = threading.Lock()
        self._in_hand = [0] * workers  # jobs given to each worker by ``submit`` and not finished

    def pids(self) -> list[int]:
        """Each worker's process id (a restarted worker has a new one)."""
        return list(ray.get([a.pid.remote() for a in self.actors]))

    def run(self, jobs: Sequence[Job], *, on_result: Callable[[JobResult], None] | None = None) -> list[JobResult]:
        pool = ActorPool(self.actors)
        for index, job in enumerate(jobs):
            pool.submit(lambda actor, item: actor.run.remote(*item), (index, job))
        out: list[JobResult | None] = [None] * len(jobs)
        while pool.has_next():
            index, row = pool.get_next_unordered()
            out[index] = row
            if on_result is not None:
                on_result(row)
        return [r for r in out if r is not None]

    def submit(self, job: Job) -> Future[JobResult]:
        """Run one job on the worker with the fewest jobs in hand (a free one, if any); callable from any
        thread. The future fails with Ray's error if the job raised or the pool was closed under it."""
        with self._lock:
            if not self.actors:
                raise RunStateError(f"the Ray pool is closed; {job.story_id}/{job.branch} was not started",
                                    hint=f"continue it with `codirector run --story {job.story_id} "
                                         f"--branch {job.branch}` (or `codirector resume {job.story_id}`)")
            slot = min(range(len(self.actors)), key=self._in_hand.__getitem__)
            self._in_hand[slot] += 1
            actor = self.actors[slot]
        future = cast("Future[JobResult]", actor.run_one.remote(job).future())

        def finished(_: Future[JobResult]) -> None:
            with self._lock:
                if slot < len(self._in_hand):
                    self._in_hand[slot] -= 1

        future.add_done_callback(finished)
        return future

    def close(self) -> None:
        lock = getattr(self, "_lock", None) or threading.Lock()
        with lock:
            actors, self.actors = getattr(self, "actors", []), []
            self._in_hand = []
        for actor in actors:
            ray.kill(actor, no_restart=True)
        if self._owns and ray.is_initialized():
            ray.shutdown()
            self._owns = False

"""Jobs on Ray actors: one long-lived worker per GPU (or per CPU), each running whole jobs.

The only module that imports Ray (``pip install "codirector[ray]"``).

Invariants:
- A worker actor builds its Workspace from the three storage values and its backends once per
  config (``engine.scale.worker.Worker``): model weights load once per worker, not once per story.
- Failure handling is Ray's own: actors restart without limit (``max_restarts=-1``) and a call
  lost with its worker is retried (``max_task_retries=-1``). A retried job resumes its branch under
  the branch lease (a dead worker's lease on this machine is taken over at once; another machine's is
  waited out to its TTL), so it never repeats a recorded call.
- Distribution is Ray's: ``run`` (a batch, from one thread) hands the jobs to Ray's ``ActorPool``;
  ``submit`` (one job, from any thread: ``ActorPool`` is not thread-safe) calls the worker with the
  fewest jobs in hand, chosen under a lock, and Ray queues the call there if that worker is busy.
  No scheduler, queue or retry loop of ours.
- A capped budget (``--budget``) is one account for the whole pool: an ``AccountActor`` (no CPU of
  its own), seeded with the driver's account when the pool opens and handed back to it when the pool
  closes. Every worker's ``Budget`` and the driver's reserve a call's worst case there before the
  call and settle its actual cost after; Ray runs the actor's methods one at a time, so N workers
  pass the limit by no more than one process can (``engine.recording.account`` states the bound).
  A worker that dies mid-call leaves holds: its restart (or the pool's close) settles them at their
  worst case, since the call may have been billed; a call that failed in a living worker releases
  its hold. If the account actor itself dies, the jobs still running fail (``RunStateError``).
- Closing the pool (at the end, or on Ctrl-C/SIGTERM of the driver) kills its workers, then releases the
  branch leases the killed workers held on this machine, once their processes are gone, so the next run
  starts at once; a worker on another machine leaves its lease to expire (``store.leases``).
- ``--ray ADDRESS`` is checked before Ray is asked to join it: an address nothing answers fails within
  seconds (``ray.init`` would retry for minutes; ``engine.scale.cluster``). A local Ray started here
  keeps Ray's default token authentication, without Ray's notice saying so on every run. Ray's notices
  to the driver (a task retried after its worker died) go to stderr: stdout is the command's (``--json``).
- Workers get the driver's ``CODIRECTOR_*`` settings (plugins, lease TTL), never its storage
  values (they travel as the job's Workspace spec) and never an API key; anything else a worker
  needs (credentials) comes from its node's environment, or ``env`` when the caller passes it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict
from typing import Any, cast

import ray
from ray.util import ActorPool

from codirector.engine.jobs import Job, JobResult, WorkspaceSpec, worker_name
from codirector.engine.recording.account import Account, Hold
from codirector.engine.recording.budget import Budget
from codirector.engine.scale.cluster import check_address
from codirector.engine.scale.worker import Worker
from codirector.errors import ConfigError, InvalidArgument, RunStateError
from codirector.generators.prices import PriceTable
from codirector.store.leases import Leases

_NOT_FORWARDED = {"CODIRECTOR_DB", "CODIRECTOR_BLOBS", "CODIRECTOR_HOME", "CODIRECTOR_CACHE"}


class _TokenNotice(logging.Filter):
    """Drops Ray's notice that a new local Ray uses token authentication (its default, which we keep): printed
    on every ``--workers`` run, it names nothing to do. The warning that authentication is off still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Token authentication is enabled" not in record.getMessage()


logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_TokenNotice())


def _notices_to_stderr() -> None:
    """Ray prints its notices to the driver (a task retried because its worker died, an actor restarting) on
    stdout, where a command's own output goes (``--json``): they are sent to stderr, with its other messages."""
    module = getattr(getattr(ray, "_private", None), "worker", None)
    original = getattr(module, "print_to_stdstream", None)
    if original is None or getattr(original, "to_stderr", False):
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        original({**data, "is_err": True}, ignore_prefix)

    to_stderr.to_stderr = True  # type: ignore[attr-defined]
    module.print_to_stdstream = to_stderr  # type: ignore[union-attr]


_notices_to_stderr()


def forwarded_env() -> dict[str, str]:
    """The driver's ``CODIRECTOR_*`` settings the workers need (plugins, lease TTL, …)."""
    return {k: v for k, v in os.environ.items() if k.startswith("CODIRECTOR_") and k not in _NOT_FORWARDED}


# A capped pool's one budget account, an ``Account`` in an actor of its own (no CPU): Ray runs its methods one at
# a time, so a check and its hold are one step for every worker.
AccountActor = ray.remote(num_cpus=0, max_restarts=0)(Account)


class SharedLedger:
    """A ``Ledger`` kept by an ``AccountActor``: what a ``Budget`` on a worker (or the driver) holds."""

    def __init__(self, actor: Any, limit_usd: float | None) -> None:
        self.actor = actor
        self._limit = limit_usd

    @property
    def limit_usd(self) -> float | None:
        return self._limit

    def _get(self, ref: Any) -> Any:
        try:
            return ray.get(ref)
        except ray.exceptions.RayActorError as e:
            raise RunStateError("the budget's account (a Ray actor) is gone, so no call can be checked against "
                                "--budget", hint="run the command again (a brief: `codirector resume BRIEF`); recorded "
                                     "calls are not paid again") from e

    def spent(self) -> float:
        return float(self._get(self.actor.spent.remote()))

    def counts(self, story_id: str, branch: str) -> bool:
        return bool(self._get(self.actor.counts.remote(story_id, branch)))

    def count(self, story_id: str, branch: str, costs: Sequence[tuple[str, float]]) -> None:
        self._get(self.actor.count.remote(story_id, branch, list(costs)))

    def reserve(self, holder: str, model: str, bound: float | None) -> Hold:
        return cast(Hold, self._get(self.actor.reserve.remote(holder, model, bound)))

    def settle(self, ticket: int | None, model: str, cost: float | None) -> None:
        self._get(self.actor.settle.remote(ticket, model, cost))

    def release(self, ticket: int) -> None:
        self._get(self.actor.release.remote(ticket))


def worker_holder(index: int) -> str:
    """The name a worker's holds go by: the same across its restarts, so a restart can settle them."""
    return f"ray-{index}"


@ray.remote(max_restarts=-1, max_task_retries=-1, concurrency_groups={"info": 1})  # type: ignore[call-overload]
class JobActor:
    """A worker process: one Workspace, backends built once, whole jobs one at a time; with ``account_name``
    (the pool's ``AccountActor``), one budget, a client of that account, shared by all its jobs."""

    def __init__(self, spec: WorkspaceSpec, index: int, account_name: str | None = None,
                 limit_usd: float | None = None, prices: PriceTable | None = None) -> None:
        budget = None
        if account_name is not None:  # by name: a handle argument would pin an object a restart needs
            account = ray.get_actor(account_name)
            holder = worker_holder(index)
            ray.get(account.drop_holder.remote(holder))  # a restart: what the dead process held may have been billed
            budget = Budget(prices=prices, ledger=SharedLedger(account, limit_usd), holder=holder)
        self.worker = Worker(WorkspaceSpec(*spec).open(), name=worker_name(f"ray-{index}"), budget=budget)

    def run(self, index: int, job: Job) -> tuple[int, JobResult]:
        return index, self.worker.run(job)

    def run_one(self, job: Job) -> JobResult:
        return self.worker.run(job)

    @ray.method(concurrency_group="info")  # answered while a job runs (the driver asks when it stops the pool)
    def pid(self) -> int:
        return os.getpid()


class RayPool:
    """``workers`` JobActors on a local Ray (started here) or on the cluster at ``address``; with a capped
    ``budget``, one account for all of them and the driver (``budget`` is the driver's, linked to it until
    ``close``)."""

    name = "ray"

    def __init__(self, spec: WorkspaceSpec, *, workers: int | None = None, address: str | None = None,
                 gpus_per_worker: float = 0.0, env: dict[str, str] | None = None, budget: Budget | None = None) -> None:
        self._owns = False
        self._budget: Budget | None = None
        self._account: Any = None
        self._driver_holder = "local"
        self._spec = spec
        self._pending: dict[tuple[str, str], int] = {}  # (story, branch) of jobs handed to workers, not finished
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "logging_level": logging.WARNING}
            if address is None:
                kwargs["num_cpus"] = max(workers or 1, os.cpu_count() or 1) if gpus_per_worker else (workers or 1)
            else:
                check_address(address, spec)
            _keeping_sigterm(lambda: ray.init(address=address, **kwargs))
            self._owns = True
        try:
            refuse_multi_node(spec)
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
        self._lock = threading.Lock()
        link: tuple[str | None, float | None, PriceTable | None] = (None, None, None)
        if budget is not None and budget.capped:
            link = self._share(budget)
        self.actors = [JobActor.options(**options).remote(tuple(spec), i, *link)  # type: ignore[attr-defined]
                       for i in range(workers)]
        self._in_hand = [0] * workers  # jobs given to each worker by ``submit`` and not finished

    def _share(self, budget: Budget) -> tuple[str, float | None, PriceTable]:
        """Move the driver's account into an ``AccountActor`` and link ``budget`` to it."""
        if not isinstance(budget.ledger, Account):
            raise InvalidArgument("this budget is shared by another Ray pool already",
                                  hint="run one pool at a time for a command's --budget")
        name = f"codirector-budget-{uuid.uuid4().hex}"
        self._account = AccountActor.options(name=name).remote(**asdict(budget.ledger))
        self._budget, self._driver_holder = budget, budget.holder
        budget.ledger, budget.holder = SharedLedger(self._account, budget.limit_usd), "driver"
        return name, budget.limit_usd, budget.prices

    def _unshare(self, workers: int) -> None:
        """Hand the account back to the driver's budget (the workers stopped: their holds are settled)."""
        budget, account, self._budget, self._account = self._budget, self._account, None, None
        if budget is None or account is None:
            return
        try:
            budget.ledger = ray.get(account.final.remote([worker_holder(i) for i in range(workers)]))
        except ray.exceptions.RayError:  # the account is gone: the driver keeps what the log says was spent
            budget.ledger = Account(budget.limit_usd)
        budget.holder = self._driver_holder
        ray.kill(account, no_restart=True)

    def pids(self) -> list[int]:
        """Each worker's process id (a restarted worker has a new one)."""
        return list(ray.get([a.pid.remote() for a in self.actors]))

    def _started(self, job: Job) -> None:
        with self._lock:
            key = (job.story_id, job.branch)
            self._pending[key] = self._pending.get(key, 0) + 1

    def _ended(self, job: Job) -> None:
        with self._lock:
            key = (job.story_id, job.branch)
            left = self._pending.get(key, 0) - 1
            if left > 0:
                self._pending[key] = left
            else:
                self._pending.pop(key, None)

    def run(self, jobs: Sequence[Job], *, on_result: Callable[[JobResult], None] | None = None) -> list[JobResult]:
        pool = ActorPool(self.actors)
        for index, job in enumerate(jobs):
            self._started(job)
            pool.submit(lambda actor, item: actor.run.remote(*item), (index, job))
        out: list[JobResult | None] = [None] * len(jobs)
        try:
            while pool.has_next():
                index, row = pool.get_next_unordered()
                self._ended(jobs[index])
                out[index] = row
                if on_result is not None:
                    on_result(row)
        except KeyboardInterrupt:
            _as_sigterm()
            raise
        return [r for r in out if r is not None]

    def submit(self, job: Job) -> Future[JobResult]:
        """Run one job on the worker with the fewest jobs in hand (a free one, if any); callable from any
        thread. The future fails with Ray's error if the job raised or the pool was closed under it."""
        with self._lock:
            if not self.actors:
                raise RunStateError(f"the Ray pool is closed; {job.story_id}/{job.branch} was not started",
                                    hint=f"continue it with `{job.continue_command()}`")
            slot = min(range(len(self.actors)), key=self._in_hand.__getitem__)
            self._in_hand[slot] += 1
            actor = self.actors[slot]
        self._started(job)
        future = cast("Future[JobResult]", actor.run_one.remote(job).future())

        def finished(_: Future[JobResult]) -> None:
            self._ended(job)
            with self._lock:
                if slot < len(self._in_hand):
                    self._in_hand[slot] -= 1

        future.add_done_callback(finished)
        return future

    def close(self) -> None:
        """Kill the workers; release the leases of the jobs they were running (on this machine); stop a Ray
        started here. Jobs cut short continue where their logs stop when run again."""
        lock = getattr(self, "_lock", None) or threading.Lock()
        with lock:
            actors, self.actors = getattr(self, "actors", []), []
            self._in_hand = []
            pending, self._pending = list(getattr(self, "_pending", {})), {}
        pids = _pids(actors) if pending else None
        for actor in actors:
            ray.kill(actor, no_restart=True)
        if pending:
            release_killed(self._spec.db_url, pending, pids)
        self._unshare(len(actors))
        if self._owns and ray.is_initialized():
            ray.shutdown()
            self._owns = False


def refuse_multi_node(spec: WorkspaceSpec) -> None:
    """``ConfigError`` when the joined cluster has more than one live node and the storage is this machine's own."""
    why = spec.multi_node_ready
    if why is None:
        return
    alive = [n for n in ray.nodes() if n.get("Alive")]
    if len(alive) > 1:
        raise ConfigError(f"this Ray cluster has {len(alive)} nodes, and {why}",
                          hint="workers on other machines reach the log and the blobs only through shared "
                               "storage: --db postgresql://… --blobs s3://bucket/prefix (see README, 'Ray')")


def check_nodes(address: str, spec: WorkspaceSpec) -> None:
    """``refuse_multi_node`` for the cluster at ``address``, asked before anything is written: joins it (unless this
    process is joined already), counts its live nodes, and leaves again. Nothing to ask when the storage is shared."""
    if spec.multi_node_ready is None:
        return
    if ray.is_initialized():
        refuse_multi_node(spec)
        return
    _keeping_sigterm(lambda: ray.init(address=address, include_dashboard=False, log_to_driver=False,
                                      logging_level=logging.WARNING))
    try:
        refuse_multi_node(spec)
    finally:
        ray.shutdown()


_sigterm: list[Callable[[int, Any], Any]] = []  # the process's own SIGTERM handler, once one arrived during a wait


def _keeping_sigterm(start: Callable[[], Any]) -> None:
    """Run ``start`` (``ray.init``, which makes SIGTERM a bare ``sys.exit``), then put back the SIGTERM handler the
    process had: the CLI's ends a command as Ctrl-C does (exit 143), so this pool is closed and its leases freed.
    A handler's exception raised inside a Ray wait reaches us as a plain ``KeyboardInterrupt``: the handler is
    wrapped to note its signal, and ``_as_sigterm`` raises the handler's own exception again."""
    if threading.current_thread() is not threading.main_thread():
        start()
        return
    handler = signal.getsignal(signal.SIGTERM)
    try:
        start()
    finally:
        if callable(handler):
            own = handler

            def noted(signum: int, frame: Any) -> Any:
                _sigterm[:] = [own]
                return own(signum, frame)

            signal.signal(signal.SIGTERM, noted)
        elif handler is not None:
            signal.signal(signal.SIGTERM, handler)


def _as_sigterm() -> None:
    """Inside ``except KeyboardInterrupt``: if it was a SIGTERM, raise what the process's handler raises for it."""
    if _sigterm:
        own = _sigterm.pop()
        own(signal.SIGTERM, None)


def _pids(actors: Sequence[Any]) -> set[int] | None:
    """The workers' process ids (asked while they run jobs), or None if some worker did not answer in time."""
    refs = [a.pid.remote() for a in actors]
    try:
        return set(ray.get(refs, timeout=3))
    except (ray.exceptions.RayError, TimeoutError):  # GetTimeoutError is both
        return None


def release_killed(db_url: str, keys: Sequence[tuple[str, str]], pids: set[int] | None, *,
                   within: float = 5.0) -> list[tuple[str, str]]:
    """Release the leases on ``keys`` that killed workers held on this machine, as soon as each worker's
    process is gone (``ray.kill`` returns before it is), within ``within`` seconds; the keys released.
    ``pids``: the workers' pids, so a lease held by any other live process is left alone (None: unknown,
    every live holder on this host is waited for). Holders on other machines keep theirs until the TTL."""
    from codirector.store.db import make_engine

    engine = make_engine(db_url)
    leases, host = Leases(engine), socket.gethostname()
    released: list[tuple[str, str]] = []
    left = list(dict.fromkeys(keys))
    deadline = time.monotonic() + within
    try:
        while left:
            for key in list(left):
                info = leases.get(*key)
                if info is None or info.host != host or (pids is not None and info.pid not in pids):
                    left.remove(key)  # free, another machine's (its TTL), or another process's
                elif leases.clear_gone(*key) is not None:
                    released.append(key)
                    left.remove(key)
            if not left or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
    finally:
        engine.dispose()
    return released

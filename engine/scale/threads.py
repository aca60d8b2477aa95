"""Many jobs at once in this process (``--concurrency N``): for hosted models, whose calls wait on a provider.

A story's shots stay sequential; what runs at once is stories. A hosted clip spends minutes waiting
at the provider and almost no CPU here, so N stories in N threads of one process keep N jobs in
flight without Ray. Ray stays the way to use many GPUs or machines (``engine.scale.ray_pool``).

Invariants:
- Each thread runs exactly what the in-process and Ray pools run (``engine.scale.worker.Worker``) on a
  Workspace of its own, opened from the same storage values (``WorkspaceSpec``): one database
  connection per thread, as one per Ray worker, so a story's log is the log it would have alone.
- What a provider may hold at once is the provider's cap (``max_in_flight``), process-wide across
  the threads (``generators.hosted.http.job_slot``): concurrency never puts more jobs at a provider.
- Ctrl-C (or SIGTERM) stops the batch at once: the threads are daemons, the leases they hold are
  released before the interrupt goes on, and a provider job left running is recorded, so ``resume``
  (or the same ``batch`` again) collects it; nothing is submitted twice.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence

from codirector.engine.jobs import Job, JobResult, WorkspaceSpec, worker_name
from codirector.engine.scale.worker import Worker
from codirector.engine.workspace import Workspace
from codirector.errors import InvalidArgument


class ThreadPool:
    """``concurrency`` worker threads in this process, each with its own Workspace and Worker."""

    name = "threads"

    def __init__(self, spec: WorkspaceSpec, concurrency: int) -> None:
        if concurrency < 1:
            raise InvalidArgument(f"--concurrency must be at least 1, got {concurrency}",
                                  hint="--concurrency N keeps N stories in flight in this process")
        self.spec = spec
        self.workers = concurrency
        self._workspaces: list[Workspace] = []
        self._lock = threading.Lock()

    def run(self, jobs: Sequence[Job], *, on_result: Callable[[JobResult], None] | None = None) -> list[JobResult]:
        todo: queue.Queue[tuple[int, Job] | None] = queue.Queue()
        for item in enumerate(jobs):
            todo.put(item)
        done: queue.Queue[tuple[int, JobResult | BaseException]] = queue.Queue()
        threads = [threading.Thread(target=self._work, args=(i, todo, done), daemon=True,
                                    name=f"codirector-job-{i}") for i in range(min(self.workers, len(jobs)))]
        for _ in threads:
            todo.put(None)  # one stop mark per thread, after the jobs
        for t in threads:
            t.start()
        rows: dict[int, JobResult] = {}
        try:
            while len(rows) < len(jobs):
                try:
                    index, row = done.get(timeout=0.2)  # a short wait: Ctrl-C is seen at once
                except queue.Empty:
                    continue
                if isinstance(row, BaseException):
                    raise row
                rows[index] = row
                if on_result is not None:
                    on_result(row)
        except BaseException:
            self.release_leases()
            raise
        return [rows[i] for i in range(len(jobs))]

    def _work(self, n: int, todo: queue.Queue[tuple[int, Job] | None],
              done: queue.Queue[tuple[int, JobResult | BaseException]]) -> None:
        ws = self.spec.open()
        with self._lock:
            self._workspaces.append(ws)
        worker = Worker(ws, name=worker_name(f"thread-{n + 1}"))
        while (item := todo.get()) is not None:
            index, job = item
            try:
                done.put((index, worker.run(job)))
            except BaseException as e:  # a bug, not a job's error (those are rows): stop the batch with it
                done.put((index, e))
                return

    def release_leases(self) -> None:
        """Give back every branch lease the threads hold (an interrupted batch continues at once)."""
        with self._lock:
            workspaces = list(self._workspaces)
        for ws in workspaces:
            ws.release_leases()

    def close(self) -> None:
        with self._lock:
            workspaces, self._workspaces = self._workspaces, []
        for ws in workspaces:
            ws.close()

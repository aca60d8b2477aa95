"""Simulated machines for the shared-storage tests: real `codirector` processes, each with its own
home, cache folder and call log, sharing one database and one blob store.

Backends are the preview ones wrapped to log every call they answer
(tests/codirector_test_plugins.py), so calls are counted at the backend, across processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codirector.engine.studio import Studio
from codirector.errors import StoryNotFound

from processes import ForkServer
from support import counting_config, normalised

__all__ = ["EXAMPLES", "LeaseClock", "Machine", "Starter", "counting_config", "normalised", "solo_log", "stopped",
           "wait_for_a_shot"]

TESTS = Path(__file__).resolve().parents[1]
EXAMPLES = TESTS.parent / "examples" / "stories"


@dataclass
class Machine:
    """One simulated machine: its own home and cache folder, the shared database and blob URLs."""

    home: Path
    db: str | None = None
    blobs: str | None = None
    cache: Path | None = None
    calls: Path = field(default=Path())
    ttl: float = 60.0
    server: ForkServer | None = None  # where set, commands are forked from it (no interpreter start-up each)

    def env(self, **extra: str) -> dict[str, str]:
        e = dict(os.environ)
        e.update(CODIRECTOR_HOME=str(self.home), CODIRECTOR_PLUGINS="codirector_test_plugins",
                 CODIRECTOR_TEST_CALL_LOG=str(self.calls), CODIRECTOR_LEASE_TTL=str(self.ttl),
                 PYTHONPATH=os.pathsep.join([str(TESTS), e.get("PYTHONPATH", "")]))
        for name, value in (("CODIRECTOR_DB", self.db), ("CODIRECTOR_BLOBS", self.blobs),
                            ("CODIRECTOR_CACHE", None if self.cache is None else str(self.cache))):
            if value is None:
                e.pop(name, None)
            else:
                e[name] = value
        e.update(extra)
        return e

    def args(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "codirector.cli", *args]

    def run(self, *args: str, ok: bool = True, **extra: str) -> Any:
        """The command's exit code, stdout and stderr (``returncode``, ``stdout``, ``stderr``)."""
        if self.server is not None:
            done: Any = self.server.run(list(args), self.env(**extra), timeout=600)
        else:
            done = subprocess.run(self.args(*args), env=self.env(**extra), capture_output=True, text=True, timeout=600)
        if ok:
            assert done.returncode == 0, f"codirector {' '.join(args)}: exit {done.returncode}\n{done.stderr}"
        return done

    def json(self, *args: str) -> object:
        return json.loads(self.run(*args, "--json").stdout)

    def start(self, *args: str, **extra: str) -> Any:
        """The running command, its stdout and stderr readable as it goes (``subprocess.Popen``'s interface)."""
        if self.server is not None:
            return self.server.start(list(args), self.env(**extra), pipes=True)
        return subprocess.Popen(self.args(*args), env=self.env(**extra), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def call_counts(self, log: Path | None = None) -> Counter[str]:
        """How often each request reached a backend (this machine's call log, or ``log``)."""
        path = log or self.calls
        return Counter(path.read_text().splitlines()) if path.exists() else Counter()

    def prepare(self, commands: list[list[str]], folder: Path, **extra: str) -> Starter:
        """One process per command, each importing codirector and then waiting for ``Starter.release``."""
        folder.mkdir(parents=True, exist_ok=True)
        if self.server is not None:  # forked with the imports done: each waits for GO, as _AT_ONCE does
            server = self.server
            return Starter([server.start(command, self.env(**extra), pipes=True,
                                         hold=(folder / f"ready-{i}", folder / "go"))
                            for i, command in enumerate(commands)], folder)
        procs = [subprocess.Popen([sys.executable, "-c", _AT_ONCE, str(folder / f"ready-{i}"), str(folder / "go"),
                                   *command], env=self.env(**extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for i, command in enumerate(commands)]
        return Starter(procs, folder)

    def start_together(self, commands: list[list[str]], folder: Path, **extra: str) -> tuple[list[Any], float]:
        """Start the commands, let each import codirector, then release them all at once. Returns the
        processes and the ``time.time()`` of the release: the moment all of them call the real CLI entry
        point (start-up alone differs by seconds on a loaded machine)."""
        starter = self.prepare(commands, folder, **extra)
        return starter.procs, starter.release()


@dataclass
class Starter:
    """Processes waiting, codirector imported, for the signal to run their command."""

    procs: list[Any]
    folder: Path

    def release(self) -> float:
        """Wait until every process is ready, then let them all go; the ``time.time()`` of the release."""
        deadline = time.monotonic() + 120
        while not all((self.folder / f"ready-{i}").exists() for i in range(len(self.procs))):
            assert time.monotonic() < deadline and all(p.poll() is None for p in self.procs), "a process did not start"
            time.sleep(0.01)
        released = time.time()
        (self.folder / "go").touch()
        return released


# Import what every codirector command imports (so the race is not one of start-up speeds), say so,
# wait for the signal, then run the real CLI entry point.
_AT_ONCE = """
import sys, time
from pathlib import Path
import codirector.cli, codirector.engine.studio, codirector.engine.loop.runs, codirector.store.leases
import codirector.engine.director.direction, codirector.generators.profiles
import alembic.runtime.migration, alembic.script, psycopg, sqlalchemy.dialects.postgresql.psycopg, yaml
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
while not go.exists():
    time.sleep(0.002)
sys.argv = ["codirector", *sys.argv[3:]]
codirector.cli.main()
"""


class LeaseClock:
    """The lease clock of a test's processes (the ``CODIRECTOR_LEASE_CLOCK_FILE`` test hook of
    ``codirector.store.leases``): ``advance`` moves it on, in the test process and in every `codirector` process
    whose environment names the file, at their next lease statement: a stopped or killed holder's lease expires
    without the test sleeping through its TTL."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0.0
        self._write()

    def advance(self, seconds: float) -> None:
        self.offset += seconds
        self._write()

    def _write(self) -> None:  # a reader sees the old offset or the new one, never a half-written file
        part = self.path.with_name(self.path.name + ".part")
        part.write_text(repr(self.offset))
        os.replace(part, self.path)


def stopped(pid: int, timeout: float = 60) -> None:
    """Return once the process ``pid`` is stopped (SIGSTOP has landed: state T in /proc/PID/stat; where there is no
    /proc, after 0.1 s)."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.parent.exists():
        time.sleep(0.1)
        return
    deadline = time.monotonic() + timeout
    while stat.read_text().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
        assert time.monotonic() < deadline, f"pid {pid} did not stop within {timeout} s"
        time.sleep(0.002)


def solo_log(m: Machine, story: Path, config: Path, story_id: str = "pier") -> list[tuple[str, int | None, str]]:
    """Run ``story`` on ``m`` uninterrupted: its normalised log, what a stopped and resumed run must equal."""
    m.run("run", str(story), "--config", str(config))
    with Studio(m.home, db=m.db) as s:
        return normalised(s.log(story_id))


def wait_for_a_shot(proc: Any, studio: Studio, story_id: str = "pier") -> None:
    """Return once ``story_id`` has a completed shot in ``studio``'s log, or ``proc`` has exited."""
    while proc.poll() is None:
        try:
            if studio.log(story_id, types=["ShotCompleted"]):
                return
        except StoryNotFound:  # not created yet
            pass
        time.sleep(0.02)

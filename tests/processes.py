"""Real `codirector` processes for tests that kill, resume and race them: their environment, a fork
server that starts them cheaply, and helpers that SIGKILL one at a chosen moment.

Invariant: each process is a separate OS process running the unmodified `codirector` entry point
(``codirector.cli.main``) with its own pid, environment, folder and standard streams; nothing in it is
mocked. Tests choose only the environment (``cli_env``: the home, the counting backends of
tests/codirector_test_plugins.py, the branch-lease TTL) and when a SIGKILL lands. A child is reaped
only once the test has read its exit code, so a pid a test may still signal is never another process's.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent


def cli_env(home: Path, calls: Path | None = None, ttl: float = 1) -> dict[str, str]:
    """The environment of a `codirector` process with its own home and the counting backends, logging their calls
    to ``calls`` (default: ``home/calls.log``), with a short branch-lease TTL."""
    e = dict(os.environ)
    e.update(CODIRECTOR_HOME=str(home), CODIRECTOR_PLUGINS="codirector_test_plugins",
             CODIRECTOR_TEST_CALL_LOG=str(calls or home / "calls.log"), CODIRECTOR_LEASE_TTL=f"{ttl:g}",
             PYTHONPATH=os.pathsep.join([str(TESTS), e.get("PYTHONPATH", "")]))
    return e


def count_events(db: Path, type: str | None = None) -> int:
    """Events (of one type) in a SQLite store, read-only; 0 while the store or its tables do not exist yet."""
    query = "SELECT count(*) FROM events" + ("" if type is None else " WHERE type = ?")
    args = () if type is None else (type,)
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute(query, args).fetchone()[0])
    except sqlite3.Error:
        return 0


def event_payloads(db: Path, type: str) -> list[dict[str, Any]]:
    """The payloads of a SQLite store's events of one type, read-only; [] while the store does not exist yet."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            rows = conn.execute("SELECT record FROM events WHERE type = ?", (type,)).fetchall()
    except sqlite3.Error:
        return []
    return [json.loads(r[0])["payload"] for r in rows]


def video_answers(db: Path) -> int:
    """How many clips a SQLite store's log holds answers for (``ModelCalled`` of kind video)."""
    return sum(1 for p in event_payloads(db, "ModelCalled") if p.get("kind") == "video")


def kill_when(proc: Any, ready: Callable[[], bool], *, delay: float = 0.0, poll: float = 0.005) -> bool:
    """SIGKILL ``proc`` ``delay`` seconds after ``ready()`` first holds. True if the kill ended it; False if it
    exited on its own first (before ``ready()`` or during the delay): then there was no crash."""
    while not ready():
        if proc.poll() is not None:
            return False
        time.sleep(poll)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return bool(proc.returncode == -signal.SIGKILL)


def kill_after_shot(proc: Any, db: Path, shot: int) -> bool:
    """SIGKILL ``proc`` as soon as the SQLite store ``db`` holds ``shot`` completed shots (see ``kill_when``)."""
    return kill_when(proc, lambda: count_events(db, "ShotCompleted") >= shot)


# What every `codirector` command imports (as `codirector.cli` loads it: the commands, the engine, the store, the
# preview and counting backends); the fork server imports it once, and each command's process starts from there.
PRELOAD = (
    "codirector.cli", "codirector.commands.runs", "codirector.commands.director", "codirector.commands.queries",
    "codirector.engine.studio", "codirector.engine.loop.runs", "codirector.engine.director.direction",
    "codirector.engine.director.rounds", "codirector.engine.evaluation.evaluate", "codirector.engine.scale.local",
    "codirector.events.upcasting", "codirector.generators.preview", "codirector.generators.preview_director",
    "codirector.generators.profiles", "codirector.generators.preflight", "codirector.store.verify",
    "codirector.store.vector_index", "codirector.store.vector_search", "codirector.store.leases",
    "codirector_test_plugins", "alembic.command", "alembic.config", "alembic.runtime.migration", "alembic.script",
    "sqlalchemy.dialects.sqlite", "sqlalchemy.dialects.postgresql.psycopg", "psycopg", "yaml", "numpy",
    "numpy.random", "PIL.Image", "PIL.ImageOps", "PIL.BmpImagePlugin", "PIL.GifImagePlugin", "PIL.JpegImagePlugin",
    "PIL.PngImagePlugin", "PIL.PpmImagePlugin", "av", "faiss",
)

# The fork server: import PRELOAD, then for each request line (JSON: argv, env, cwd, out, err, hold) fork a child
# that takes that environment, folder and standard streams (files or FIFOs), draws fresh random seeds, waits
# for the test's signal if asked (``hold``: touch READY, wait for GO), and runs the CLI's entry point with ARGV
# (what `codirector ARGV` runs; its SystemExit ends the process with the command's exit code). The server answers
# "pid PID", and "exit PID CODE" (negative CODE: the signal) once that child has ended; it reaps a child only
# when the test says so ({"reap": PID}), so a pid the test may still signal is never reused meanwhile.
_FORK_SERVER = """
import gc, importlib, json, os, random, select, signal, sys, time
for name in sys.argv[1:]:
    importlib.import_module(name)
import codirector.cli
gc.freeze()  # the collector leaves what is imported alone: a child does not copy the whole heap when it collects

def say(line):
    os.write(1, line.encode() + b"\\n")

def child(req):
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.close(wake_r)
    os.close(wake_w)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    for fd, path in ((1, req["out"]), (2, req["err"])):
        os.dup2(os.open(path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    os.environ.clear()
    os.environ.update(req["env"])
    os.chdir(req["cwd"])
    random.seed()
    import numpy
    numpy.random.seed()
    if req["hold"]:
        ready, go = req["hold"]
        open(ready, "w").close()
        while not os.path.exists(go):
            time.sleep(0.002)
    sys.argv = ["codirector", *req["argv"]]
    codirector.cli.main()
    sys.exit(0)

wake_r, wake_w = os.pipe()
os.set_blocking(wake_r, False)
os.set_blocking(wake_w, False)
signal.set_wakeup_fd(wake_w)
signal.signal(signal.SIGCHLD, lambda *_: None)
running, buf = set(), b""
while True:
    ready = select.select([0, wake_r], [], [])[0]
    if wake_r in ready:
        while True:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                break
    for pid in sorted(running):
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None:
            running.discard(pid)
            say("exit %d %d" % (pid, -info.si_status if info.si_code != os.CLD_EXITED else info.si_status))
    if 0 in ready:
        chunk = os.read(0, 65536)
        if not chunk:
            break
        buf += chunk
        while b"\\n" in buf:
            line, buf = buf.split(b"\\n", 1)
            req = json.loads(line)
            if "reap" in req:
                os.waitpid(req["reap"], 0)
                continue
            pid = os.fork()
            if pid == 0:
                child(req)
            running.add(pid)
            say("pid %d" % pid)
"""


@dataclass
class Done:
    """An ended command: exit code and what it wrote (like ``subprocess.CompletedProcess``)."""

    returncode: int
    stdout: str
    stderr: str


class Forked:
    """One `codirector` process forked by a ``ForkServer``: poll, wait, SIGKILL, like ``subprocess.Popen``.

    With ``pipes``, ``stdout`` and ``stderr`` are text streams to read while it runs (FIFOs)."""

    def __init__(self, server: ForkServer, pid: int, out: Path | None, err: Path | None, pipes: bool) -> None:
        self.server, self.pid, self._out, self._err = server, pid, out, err
        self.returncode: int | None = None
        self.stdout: Any = None
        self.stderr: Any = None
        if pipes:  # the child opens its ends for writing as it starts: these opens wait for that
            assert out is not None and err is not None
            self.stdout, self.stderr = out.open(), err.open()

    def poll(self) -> int | None:
        if self.returncode is None:
            self._ended(self.server.exit_code(self.pid, timeout=0))
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._ended(self.server.exit_code(self.pid, timeout=timeout))
            if self.returncode is None:
                raise subprocess.TimeoutExpired(f"codirector (pid {self.pid})", timeout or 0)
        return self.returncode  # type: ignore[return-value]

    def _ended(self, code: int | None) -> None:
        if code is not None:
            self.returncode = code
            self.server.reap(self.pid)

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:  # not reaped yet: the pid is still this process's
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """With ``pipes``: read both streams to their end (each in its own thread), then wait; (stdout, stderr)."""
        texts = ["", ""]

        def drain(i: int, stream: Any) -> None:
            texts[i] = stream.read()

        readers = [threading.Thread(target=drain, args=(i, s)) for i, s in enumerate((self.stdout, self.stderr))]
        for t in readers:
            t.start()
        for t in readers:
            t.join(timeout)
        self.wait(timeout)
        return texts[0], texts[1]

    def output(self) -> tuple[str, str]:
        """Its stdout and stderr, when kept in files (empty where they went to /dev/null)."""
        return tuple(p.read_text() if p is not None and p.is_file() else "" for p in (self._out, self._err))  # type: ignore[return-value]


class ForkServer:
    """Starts real `codirector` processes without paying the interpreter's start-up and imports each time.

    One server process imports what a command imports (``PRELOAD``, ~2 s of CPU), then forks a child per
    command that runs the `codirector` entry point with the given arguments, environment and folder. Each child
    is a separate OS process with its own pid: it can be SIGKILLed at any moment, several can run at once, and
    its database, leases and files are its own. Use for tests that start many commands (kill-and-resume trials,
    races).
    """

    def __init__(self, preload: tuple[str, ...] = PRELOAD) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
                   CODIRECTOR_PLUGINS="codirector_test_plugins")
        self.folder = Path(tempfile.mkdtemp(prefix="codirector-fork-"))
        self.proc = subprocess.Popen([sys.executable, "-c", _FORK_SERVER, *preload], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)
        self._buf = b""
        self._count = 0
        self._pids: list[int] = []  # answered, not yet taken by ``start``
        self._exits: dict[int, int] = {}
        self._live: dict[int, Forked] = {}
        self._lock = threading.RLock()  # tests wait for their processes from several threads

    def _read(self, timeout: float | None) -> bool:
        """Take in the server's next line (a new pid or an exit); False if none came within ``timeout``."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], left)[0]:
                return False
            chunk = os.read(fd, 4096)
            assert chunk, f"the fork server ended (exit {self.proc.wait()})"
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        kind, *numbers = line.decode().split()
        if kind == "pid":
            self._pids.append(int(numbers[0]))
        else:
            self._exits[int(numbers[0])] = int(numbers[1])
        return True

    def exit_code(self, pid: int, timeout: float | None) -> int | None:
        """The exit code of a child (negative: the signal), or None if it has not ended within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while pid not in self._exits:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not self._read(left) and (deadline is None or time.monotonic() >= deadline):
                    return None
            return self._exits[pid]

    def _send(self, request: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        with self._lock:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()

    def reap(self, pid: int) -> None:
        with self._lock:
            self._exits.pop(pid, None)
            self._live.pop(pid, None)
            self._send({"reap": pid})

    def start(self, argv: list[str], env: dict[str, str], *, capture: bool = False, pipes: bool = False,
              cwd: Path | None = None, hold: tuple[Path, Path] | None = None) -> Forked:
        """Start ``codirector ARGV``. Its stdout and stderr: kept in files with ``capture`` (``Forked.output``),
        readable while it runs with ``pipes`` (``Forked.stdout``/``stderr``), else /dev/null. ``hold``: (READY,
        GO) files; the process touches READY once started, and runs the command once GO exists."""
        self._count += 1
        out = err = None
        if capture or pipes:
            out, err = self.folder / f"{self._count}.out", self.folder / f"{self._count}.err"
            if pipes:
                os.mkfifo(out)
                os.mkfifo(err)
        with self._lock:
            self._send({"argv": argv, "env": env, "cwd": str(cwd or os.getcwd()), "out": out and str(out),
                        "err": err and str(err), "hold": hold and [str(hold[0]), str(hold[1])]})
            while not self._pids:
                assert self._read(300), "the fork server did not fork"
            pid = self._pids.pop(0)
        proc = Forked(self, pid, out, err, pipes)
        self._live[pid] = proc
        return proc

    def run(self, argv: list[str], env: dict[str, str], *, timeout: float = 600, cwd: Path | None = None) -> Done:
        """Run ``codirector ARGV`` to its end; its exit code, stdout and stderr."""
        proc = self.start(argv, env, capture=True, cwd=cwd)
        code = proc.wait(timeout)
        return Done(code, *proc.output())

    def close(self) -> None:
        for proc in list(self._live.values()):
            proc.kill()
            proc.wait(60)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(60)
        shutil.rmtree(self.folder, ignore_errors=True)

"""Branch leases: at most one live runner per (story, branch), across processes and machines.

    with BranchLease(Leases(engine), "lighthouse", "main", ttl=60) as lease:
        ...   # run the branch; a background thread renews the lease every ttl/3
    # released here, also on an error or Ctrl-C

Invariants:
- A ``branch_leases`` row names the one owner of (story, branch) until ``expires_at``. Taking it is
  one transaction of conditional statements: update the row where it is expired or already ours,
  else insert it if absent. Two runners can never both hold a live lease, on SQLite (writes are
  serialised) or on PostgreSQL (the row lock makes the loser re-check ``expires_at``, and the
  primary key refuses the second insert).
- Times are the database's clock (seconds since the epoch), never a runner's, so machines whose
  clocks disagree still agree on who holds a lease and when it expires. (A test may hand ``Leases``
  and ``BranchLease`` a clock of its own, to expire a lease at once instead of sleeping through its TTL.)
- Test hook, for tests whose lease holders are other processes: ``CODIRECTOR_LEASE_CLOCK_FILE=PATH``
  moves every lease clock of the process (the database time ``Leases`` stamps and judges by, and the
  ``BranchLease`` clock that times waits and renewals) forward by the seconds written in PATH, read
  afresh at each reading (``clock_offset``), so a test expires a stopped or killed holder's lease by
  writing the file instead of sleeping through the TTL. Unset, or PATH absent or empty: no offset, the
  real clocks (production never sets it).
- Renewing is taking again with the same owner: it extends our lease, or re-takes it if it
  expired and nobody else took it; if someone else did, the lease is lost (``BranchLease.lost``).
  Releasing deletes only our own row. A holder that dies (SIGKILL, a lost machine) stops renewing,
  and its lease expires after the TTL (``CODIRECTOR_LEASE_TTL`` seconds, default 60).
- An owner id names its process: host, pid, and (Linux) the kernel's boot id with the pid namespace
  and the process's start time. A holder on this host, this boot and namespace whose process has
  ended (no such pid, a zombie, or a pid reused by a later process) is judged gone here and its
  lease is taken over at once (``holder_gone``: a compare-and-set on its exact owner id), with a
  warning saying so; a holder on another host (or one we cannot judge) is waited out to its TTL.
- A runner checks its lease before each write (``BranchLease.check``): a lease the heartbeat lost
  stops the run with ``BranchBusy``; one not renewed for longer than half the TTL (the process
  was paused, the heartbeat starved) is renewed there and then, or found taken and the run stopped,
  so a runner that lost its lease writes nothing more after it notices.
- Leases only save duplicate work: the log's expected-position appends remain the last line of
  defence, so even a runner that lost its lease can never corrupt a branch.
- A lost database connection is retried (``store.db.retried``: backoff, bounded by
  ``CODIRECTOR_DB_RETRY_SECONDS``); every lease statement is conditional on its owner, so running it
  again after an unknown outcome is safe. A lease the heartbeat could not renew within its TTL is
  treated as lost: the run writes nothing (its appends are fenced on the owner) until ``check``
  renews it, and if the database stays unreachable past the bound, ``check`` stops the run with
  ``StoreUnreachable`` saying so (exit 6; ``resume`` continues).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from codirector.errors import BranchBusy, ConfigError, StoreError, StoreUnreachable
from codirector.store.db import connection, retried
from codirector.store.tables import LeaseRow

LEASES = LeaseRow.__table__  # type: ignore[attr-defined]
DEFAULT_TTL = 60.0
_log = logging.getLogger(__name__)


def lease_ttl(value: float | str | None = None) -> float:
    """The lease TTL in seconds: ``value``, else ``CODIRECTOR_LEASE_TTL``, else 60."""
    raw = value if value is not None else os.environ.get("CODIRECTOR_LEASE_TTL")
    if raw is None or raw == "":
        return DEFAULT_TTL
    try:
        ttl = float(raw)
    except ValueError:
        ttl = math.nan
    if not math.isfinite(ttl) or ttl <= 0:
        raise ConfigError(f"the lease TTL must be a positive number of seconds, got {raw!r}",
                          hint="set CODIRECTOR_LEASE_TTL=60 (or unset it for the default of 60 s)")
    return ttl


@functools.cache
def boot_key() -> str | None:
    """Where a pid names one process: this kernel's boot id and pid namespace (Linux); None elsewhere."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return None
    return f"{boot}.{namespace.removeprefix('pid:[').removesuffix(']')}"


def process_start(pid: int) -> str | None:
    """A running process's start time (clock ticks after boot: /proc/PID/stat field 22); None if no such process
    runs (none has that pid, or it ended and is a zombie); "" if it cannot be told (no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None if Path("/proc/self/stat").exists() else ""
    except OSError:
        return ""
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    return None if fields[0] in ("Z", "X") else fields[19]


def new_owner() -> str:
    """A lease owner id: this host, this process, a nonce (one process may run many branches), and where it can be
    judged (Linux) this boot and pid namespace and the process's start time: ``host:pid:nonce[:boot:start]``."""
    own = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    boot, start = boot_key(), process_start(os.getpid())
    return f"{own}:{boot}:{start}" if boot and start else own


def holder_gone(owner: str) -> bool:
    """Whether the process that ``owner`` names ran on this host, this boot and pid namespace, and has ended (its
    pid is gone, a zombie, or another process's now). False when it cannot be told (another host, an owner id
    without boot and start time): such a holder is waited out to its lease's TTL."""
    parts = owner.split(":")
    if len(parts) != 5 or not parts[1].isdigit():
        return False
    host, pid, _, boot, start = parts
    if host != socket.gethostname() or boot != boot_key() or int(pid) == os.getpid():
        return False
    now = process_start(int(pid))
    return now is None or (now != "" and now != start)


CLOCK_FILE = "CODIRECTOR_LEASE_CLOCK_FILE"


def clock_offset() -> float:
    """Test hook: the seconds every lease clock of this process runs ahead of the real one, as written in the file
    that ``CODIRECTOR_LEASE_CLOCK_FILE`` names; 0 when the variable is unset or the file is absent or empty."""
    path = os.environ.get(CLOCK_FILE)
    if not path:
        return 0.0
    try:
        text = Path(path).read_text().strip()
    except FileNotFoundError:
        return 0.0
    try:
        return float(text) if text else 0.0
    except ValueError:
        raise ConfigError(f"{CLOCK_FILE} names {path}, which holds {text!r}, not a number of seconds",
                          hint=f"{CLOCK_FILE} is a test hook: unset it") from None


def _monotonic() -> float:
    """``BranchLease``'s default clock: ``time.monotonic``, moved on by the test hook's ``clock_offset``."""
    return time.monotonic() + clock_offset()


def _clock(dialect: str) -> Any:
    """The database's current time in seconds since the epoch, as an SQL expression."""
    if dialect == "postgresql":
        return sa.cast(sa.extract("epoch", sa.func.clock_timestamp()), sa.Float)
    return (sa.func.julianday("now") - 2440587.5) * 86400.0


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class LeaseInfo:
    """One lease row, read at database time ``now``."""

    story_id: str
    branch: str
    owner: str
    host: str
    pid: int
    acquired_at: float
    heartbeat_at: float
    expires_at: float
    now: float

    @property
    def live(self) -> bool:
        return self.expires_at > self.now

    @property
    def heartbeat_age(self) -> float:
        return max(0.0, self.now - self.heartbeat_at)

    @property
    def expires_in(self) -> float:
        return self.expires_at - self.now

    def holder(self) -> str:
        return f"{self.host} (pid {self.pid})"

    @property
    def gone(self) -> bool:
        """Its holder was a process on this machine that has ended (``holder_gone``): no need to wait for the TTL."""
        return holder_gone(self.owner)

    def to_json(self) -> dict[str, Any]:
        return {"owner": self.owner, "host": self.host, "pid": self.pid, "live": self.live,
                "since": _stamp(self.acquired_at), "heartbeat_at": _stamp(self.heartbeat_at),
                "heartbeat_age_s": round(self.heartbeat_age, 3), "expires_at": _stamp(self.expires_at),
                "expires_in_s": round(self.expires_in, 3)}

    def busy(self) -> BranchBusy:
        """The error a second runner gets: who, since when, and when the lease expires."""
        where = f"{self.story_id}/{self.branch}"
        return BranchBusy(
            f"{where} is being run by {self.holder()} since {_stamp(self.acquired_at)} "
            f"({self.now - self.acquired_at:.0f} s ago); its lease expires at {_stamp(self.expires_at)} "
            f"(in {max(0.0, self.expires_in):.1f} s) unless renewed (last heartbeat {self.heartbeat_age:.1f} s ago)",
            hint=f"pass --wait to wait until it finishes; if that process is gone, run "
                 f"`codirector resume {self.story_id} --branch {self.branch}` once the lease expires (on "
                 f"{self.host} itself it continues at once)",
            owner=self.owner, host=self.host, pid=self.pid, since=self.acquired_at, expires_at=self.expires_at,
        )


class Leases:
    """The ``branch_leases`` table: take, renew, release and list leases.

    ``clock``: the time leases are stamped and judged by (seconds since the epoch); default the database's
    own. Tests pass one they control, so a lease expires when the test says, without sleeping through its TTL.
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], float] | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self._db_now = _clock(engine.dialect.name)

    @property
    def _now(self) -> Any:
        """Now, as an SQL expression: the database's clock (moved on by the test hook's ``clock_offset``), or
        the given clock's reading."""
        if self.clock is not None:
            return sa.literal(float(self.clock()), sa.Float)
        offset = clock_offset()
        return self._db_now + sa.literal(offset, sa.Float) if offset else self._db_now

    def _insert(self) -> Any:
        """An INSERT with ``on_conflict_do_nothing`` (both dialects have one)."""
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(LEASES)
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(LEASES)

    @retried
    def acquire(self, story_id: str, branch: str, owner: str, ttl: float) -> bool:
        """Take (or renew) the lease for ``owner``; False if another owner holds a live one."""
        now, ttl = self._now, float(ttl)
        key = (LEASES.c.story_id == story_id) & (LEASES.c.branch == branch)
        host, pid = socket.gethostname(), os.getpid()
        with connection(self.engine, write=True) as conn:
            taken = conn.execute(
                sa.update(LEASES)
                .where(key & ((LEASES.c.owner == owner) | (LEASES.c.expires_at <= now)))
                .values(owner=owner, host=host, pid=pid, heartbeat_at=now, expires_at=now + ttl,
                        acquired_at=sa.case((LEASES.c.owner == owner, LEASES.c.acquired_at), else_=now))
            ).rowcount
            if taken:
                return True
            inserted = conn.execute(  # RETURNING: the drivers disagree on an INSERT's rowcount
                self._insert()
                .values(story_id=story_id, branch=branch, owner=owner, host=host, pid=pid,
                        acquired_at=now, heartbeat_at=now, expires_at=now + ttl)
                .on_conflict_do_nothing(index_elements=["story_id", "branch"])
                .returning(LEASES.c.owner)
            ).first()
            return inserted is not None

    @retried
    def take_over(self, story_id: str, branch: str, gone: str, owner: str, ttl: float) -> bool:
        """Take the lease from the owner ``gone`` (whose process has ended) for ``owner``; False if the row changed."""
        now = self._now
        key = (LEASES.c.story_id == story_id) & (LEASES.c.branch == branch)
        with connection(self.engine, write=True) as conn:
            return bool(conn.execute(
                sa.update(LEASES).where(key & ((LEASES.c.owner == gone) | (LEASES.c.owner == owner)))  # again: ours
                .values(owner=owner, host=socket.gethostname(), pid=os.getpid(), heartbeat_at=now,
                        expires_at=now + float(ttl), acquired_at=now)
            ).rowcount)

    def clear_gone(self, story_id: str, branch: str) -> LeaseInfo | None:
        """Delete the branch's lease if its holder is a process on this machine that has ended; the row deleted."""
        info = self.get(story_id, branch)
        if info is None or not info.gone or not self.release(story_id, branch, info.owner):
            return None
        return info

    @retried
    def release(self, story_id: str, branch: str, owner: str) -> bool:
        """Delete ``owner``'s lease; False if it no longer held it."""
        with connection(self.engine, write=True) as conn:
            gone = conn.execute(sa.delete(LEASES).where(
                (LEASES.c.story_id == story_id) & (LEASES.c.branch == branch) & (LEASES.c.owner == owner))).rowcount
        return bool(gone)

    def get(self, story_id: str, branch: str) -> LeaseInfo | None:
        """The lease row of a branch (live or expired), or None."""
        found = self.all(story_id, branch=branch)
        return found[0] if found else None

    @retried
    def all(self, story_id: str | None = None, *, branch: str | None = None) -> list[LeaseInfo]:
        """Every lease row (live or expired), optionally of one story / branch."""
        query = sa.select(LEASES, self._now.label("now"))
        if story_id is not None:
            query = query.where(LEASES.c.story_id == story_id)
        if branch is not None:
            query = query.where(LEASES.c.branch == branch)
        with connection(self.engine) as conn:
            rows = conn.execute(query.order_by(LEASES.c.story_id, LEASES.c.branch)).all()
        return [LeaseInfo(r.story_id, r.branch, r.owner, r.host, int(r.pid), float(r.acquired_at),
                          float(r.heartbeat_at), float(r.expires_at), float(r.now)) for r in rows]


class BranchLease:
    """A held lease, renewed by a daemon thread every ``ttl / 3`` until the ``with`` block ends.

    ``wait``: None fails fast with ``BranchBusy``; a number of seconds (``math.inf``: no limit)
    polls until the holder releases the lease or it expires.
    """

    def __init__(self, leases: Leases, story_id: str, branch: str, *, ttl: float | None = None,
                 wait: float | None = None, owner: str | None = None,
                 clock: Callable[[], float] = _monotonic) -> None:
        self.leases = leases
        self.story_id = story_id
        self.branch = branch
        self.ttl = lease_ttl(ttl)
        self.wait = wait
        self.owner = owner or new_owner()
        self.lost: LeaseInfo | None = None
        self.took_from: LeaseInfo | None = None  # the lease of a process gone from this machine, taken at once
        self.taken_over = False  # the heartbeat (or a check) found another owner on the row
        self.renewals = 0
        self.clock = clock  # measures waits and the time since the last renewal (tests pass one they control)
        self._renewed = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> BranchLease:
        deadline = None if self.wait is None else self.clock() + self.wait
        pause = min(1.0, max(0.05, self.ttl / 4))
        while True:
            if self.leases.acquire(self.story_id, self.branch, self.owner, self.ttl):
                break
            holder = self.leases.get(self.story_id, self.branch)
            if holder is None or not holder.live:
                time.sleep(0.01)  # released or expired in between: try again
                continue
            if holder.gone and self.leases.take_over(self.story_id, self.branch, holder.owner, self.owner, self.ttl):
                self.took_from = holder
                _log.warning("%s/%s was held by %s, a process on this machine that has ended: took its lease over at "
                             "once (it would have expired in %.0f s)", self.story_id, self.branch, holder.holder(),
                             max(0.0, holder.expires_in))
                break
            if deadline is None or self.clock() >= deadline:
                raise holder.busy()
            time.sleep(min(pause, max(0.0, deadline - self.clock())))
        self._renewed = self.clock()
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lease {self.story_id}/{self.branch}", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.ttl)
            self._thread = None
        try:
            self.leases.release(self.story_id, self.branch, self.owner)
        except StoreError as e:  # it will expire on its own; never hide the error that ended the run
            _log.warning("could not release the lease on %s/%s (%s); it expires in at most %.0f s",
                         self.story_id, self.branch, e.message, self.ttl)

    def check(self) -> None:
        """Before a write: ``BranchBusy`` if this lease was taken over. A lease not renewed for over
        half its TTL (a paused process, a starved heartbeat) is renewed here first, so a runner
        that slept through its expiry learns it lost the branch before it writes, not after."""
        if not self.taken_over and self.clock() - self._renewed > self.ttl / 2:
            try:
                self._renew()
            except StoreUnreachable as e:
                where = f"{self.story_id}/{self.branch}"
                raise StoreUnreachable(
                    f"the lease on {where} could not be renewed for {self.clock() - self._renewed:.0f} s (its "
                    f"TTL is {self.ttl:g} s), so it is treated as lost and this run stopped before writing more: "
                    f"{e.message}",
                    hint=f"once the database is back, `codirector resume {self.story_id} --branch {self.branch}` "
                         "continues the branch from its log") from e
        if self.taken_over:
            where = f"{self.story_id}/{self.branch}"
            by = self.lost.holder() if self.lost is not None else "another runner"
            raise BranchBusy(
                f"this run lost the lease on {where} to {by}: it was not renewed within its {self.ttl:.0f} s TTL "
                "(the process was paused or the database unreachable), so the run stopped before writing more",
                hint=f"the new holder continues {where}; `codirector stories` shows it, and "
                     f"`codirector resume {self.story_id} --branch {self.branch} --wait` continues after it")

    def _renew(self) -> bool:
        """Take the lease again; False (and ``taken_over``) if another owner holds it."""
        if self.leases.acquire(self.story_id, self.branch, self.owner, self.ttl):
            self.renewals += 1
            self._renewed = self.clock()
            return True
        self.lost = self.leases.get(self.story_id, self.branch)
        self.taken_over = True
        _log.warning("lost the lease on %s/%s to %s; the run stops before its next write",
                     self.story_id, self.branch, self.lost.holder() if self.lost else "another runner")
        return False

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self._renew():
                    return
            except Exception as e:  # a transient database error: try again at the next beat
                late = self.clock() - self._renewed
                lost = (f"; not renewed for {late:.0f} s, past its {self.ttl:g} s TTL: treated as lost, nothing "
                        "is written until it is renewed" if late > self.ttl else "")
                _log.warning("lease heartbeat for %s/%s failed: %s%s", self.story_id, self.branch, e, lost)

    def __enter__(self) -> BranchLease:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

"""Every error codirector raises on purpose, in one tree ordered by what the caller can do about it.

    CodirectorError
    ├── InputError                 fix what you typed or wrote: a file, a name, an option, a config
    │   ├── ConfigError            (2) a profile, config file or backend name is wrong
    │   ├── StoryFileError         (2) a story or brief file is unreadable or invalid
    │   ├── InvalidArgument        (2) an option or argument is out of range, malformed or an unknown choice
    │   ├── NotReady               (13) pre-flight: a backend the run needs cannot run here (key, weights, CUDA)
    │   └── NotFound               (3) something named does not exist
    │       ├── StoryNotFound
    │       ├── BranchNotFound
    │       └── EntityNotFound
    ├── StateConflict              the request does not fit what is stored: resume, rename, wait or retry
    │   ├── RunStateError          (10) a run / resume / branch / eval request does not fit the story's state
    │   │   └── AlreadyExists      (10) a story or branch with that name is already there
    │   ├── VersionConflict        (4) an append expected another last position (someone else wrote)
    │   ├── BranchBusy             (11) another process holds the branch's lease (it is being run now)
    │   ├── StoreBusy              (6) the database is locked by another process
    │   └── BudgetExceeded         (12) the next model call could take spending past --budget (raise it, resume)
    └── SystemFailure              something under codirector failed: the stored data, the database, a model
        ├── IntegrityViolation     (5) stored data fails verification (hash chain, blob digest, index)
        ├── StoreError             (6) the database cannot be opened, reached or is not migrated
        │   └── StoreUnreachable   (6) the database stayed unreachable past the retry bound (resume continues)
        ├── ReplayDivergence       (9) replay needed a model call that the recording does not hold
        └── BackendFailure         a model could not give a usable answer
            ├── BackendError       (8) a backend failed (network, refusal, timeout, weights missing)
            │   ├── ProviderJobFailed  (8) a provider's job failed (moderation, invalid input): its reason quoted
            │   └── ProviderJobUnknown (8) the provider no longer knows a submitted job (the recorder submits anew)
            └── AgentOutputInvalid (7) a model's answer failed validation more often than allowed

(N) is the exit code ``codirector`` ends with; the intermediate classes only group (exit 1 if raised). One rule:
what the caller typed or wrote is wrong -> 2 (3 when a name does not exist, 13 when a backend cannot run here);
the request does not fit what is stored -> 4, 6, 10, 11 or 12; something underneath failed -> 5 to 9. The
README's exit-code table lists the same codes (a test compares the two).
Only `cli.py` turns these into exit codes and messages. Every message names the bad value and
says what would fix it. Driver errors are wrapped with ``raise ... from e``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CodirectorError(Exception):
    """Base class of every error codirector raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


# -- the caller's input is wrong: change the command, the file or the config ------------------------


class InputError(CodirectorError):
    """What the caller gave is wrong (a file, a name, an option, a config); nothing stored is at fault."""


class ConfigError(InputError):
    """A profile, config file, backend name or backend option is wrong."""

    exit_code = 2


class StoryFileError(InputError):
    """A story or brief file cannot be read or does not match the format."""

    exit_code = 2


class InvalidArgument(InputError):
    """An option or argument is out of range, malformed, or not one of the known choices."""

    exit_code = 2  # bad input, like a value the command line itself refuses (`--from-shot one`)


class NotReady(InputError):
    """Pre-flight found backends the run needs that cannot run here (an unset key variable, weights neither on
    disk nor downloadable, no CUDA, a missing package); raised before anything is written, listing every one."""

    exit_code = 13

    def __init__(self, message: str, *, hint: str | None = None, problems: list[str] | None = None) -> None:
        super().__init__(message, hint=hint)
        self.problems = list(problems or [])


class NotFound(InputError):
    """Something named by the user does not exist."""

    exit_code = 3


class StoryNotFound(NotFound):
    """No story with that id exists in the database."""


class BranchNotFound(NotFound):
    """No branch with that name exists in the story."""


class EntityNotFound(NotFound):
    """No entity with that name exists in the memory being read."""


# -- the request does not fit the stored state: resume, pick another name, wait, retry --------------


class StateConflict(CodirectorError):
    """The request is well formed but does not fit what the log holds now (or someone else is writing)."""


class RunStateError(StateConflict):
    """A run, resume, branch or evaluation request does not fit the story's current state."""

    exit_code = 10


class AlreadyExists(RunStateError):
    """A story or branch with that name already exists (continue it, or choose another name)."""


class VersionConflict(StateConflict):
    """An append expected a different last position: another writer got there first."""

    exit_code = 4

    def __init__(self, message: str, *, expected: int, actual: int) -> None:
        super().__init__(message, hint="re-read the branch and retry the append")
        self.expected = expected
        self.actual = actual


class BranchBusy(StateConflict):
    """Another process holds the branch's lease: it is being run now (wait, or let the lease expire)."""

    exit_code = 11

    def __init__(self, message: str, *, hint: str | None = None, owner: str | None = None, host: str | None = None,
                 pid: int | None = None, since: float | None = None, expires_at: float | None = None) -> None:
        super().__init__(message, hint=hint)
        self.owner = owner
        self.host = host
        self.pid = pid
        self.since = since
        self.expires_at = expires_at


class StoreBusy(StateConflict):
    """The database is locked by another process; waiting and retrying fixes it."""

    exit_code = 6


class BudgetExceeded(StateConflict):
    """The next model call's worst case would take spending past ``--budget``; the run stopped before it
    (``BudgetReached`` is in the log) and ``resume --budget HIGHER`` continues it."""

    exit_code = 12

    def __init__(self, message: str, *, hint: str | None = None, limit_usd: float, spent_usd: float,
                 call_worst_usd: float) -> None:
        super().__init__(message, hint=hint)
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.call_worst_usd = call_worst_usd


# -- something under codirector failed: the data, the database, a model ----------------------------


class SystemFailure(CodirectorError):
    """Stored data, the database or a model backend failed; the caller's request itself was fine."""


class IntegrityViolation(SystemFailure):
    """Stored data fails verification: a broken hash chain, a missing blob, a stale index."""

    exit_code = 5


class StoreError(SystemFailure):
    """The database cannot be opened or reached, or is not migrated."""

    exit_code = 6


class StoreUnreachable(StoreError):
    """The connection to the database was lost (a restart, a dropped socket, a failover) and it could not be
    reached again within ``CODIRECTOR_DB_RETRY_SECONDS``; what was written stays, and ``resume`` continues."""


class ReplayDivergence(SystemFailure):
    """Replay needed a model call whose request is not in the recording."""

    exit_code = 9

    def __init__(self, message: str, *, hint: str | None = None, kind: str | None = None, shot: int | None = None,
                 agent: str | None = None, diff: list[str] | None = None) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind
        self.shot = shot
        self.agent = agent
        self.diff = list(diff or [])


class BackendFailure(SystemFailure):
    """A model backend could not give a usable answer."""


class BackendError(BackendFailure):
    """A model backend failed: unreachable, refused, timed out, or its weights cannot be found."""

    exit_code = 8


class ProviderJobFailed(BackendError):
    """A hosted job ended in failure at the provider (moderation, invalid input, a model error); the message
    quotes the provider's own reason. Recorded as a failed call: ``resume`` submits again after the fix."""

    def __init__(self, message: str, *, hint: str | None = None, reason: str = "", job_id: str = "") -> None:
        super().__init__(message, hint=hint)
        self.reason = reason
        self.job_id = job_id


class ProviderJobUnknown(BackendError):
    """A job recorded as submitted is unknown to its provider now (expired, purged, a server restarted): the
    recorder records the loss and submits the job again, the only case in which it does."""

    def __init__(self, message: str, *, hint: str | None = None, job_id: str = "") -> None:
        super().__init__(message, hint=hint)
        self.job_id = job_id


class AgentOutputInvalid(BackendFailure):
    """A model's answer to an agent failed validation more times than the retry bound allows."""

    exit_code = 7


def close_matches(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Names among ``candidates`` that look like ``name`` (for "did you mean" hints)."""
    pool = list(candidates)
    found = difflib.get_close_matches(name, pool, n=n, cutoff=0.5)
    if not found:
        lowered = name.lower()
        found = [c for c in pool if lowered and (lowered in c.lower() or c.lower() in lowered)][:n]
    return found


def did_you_mean(name: str, candidates: Iterable[str], what: str) -> str:
    """A hint naming close matches, or listing what exists when nothing is close."""
    pool = sorted(set(candidates))
    plural = (what[:-1] + "ies" if what.endswith("y") and what[-2:-1] not in "aeiou"
              else what + "es" if what.endswith(("s", "x", "ch", "sh")) else what + "s")
    found = close_matches(name, pool)
    if found:
        return "did you mean " + ", ".join(repr(f) for f in found) + "?"
    if not pool:
        return f"there are no {plural} yet"
    shown = ", ".join(repr(p) for p in pool[:8])
    more = f" (and {len(pool) - 8} more)" if len(pool) > 8 else ""
    return f"known {plural}: {shown}{more}"

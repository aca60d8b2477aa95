"""Every error codirector raises on purpose, in one tree.

    CodirectorError
    ├── ConfigError              a profile, config file or backend name is wrong
    ├── StoryFileError           a story or brief file is unreadable or invalid
    ├── NotFound
    │   ├── StoryNotFound        no story with that id
    │   ├── BranchNotFound       no branch with that name in the story
    │   └── EntityNotFound       no entity with that name in memory
    ├── VersionConflict          an append expected another last position (someone else wrote)
    ├── IntegrityViolation       stored data fails verification (hash chain, blob digest, index)
    ├── StoreError               the database cannot be opened or is not migrated / is locked
    ├── AgentOutputInvalid       a model's answer failed validation more often than allowed
    ├── BackendError             a model backend failed (network, refusal, timeout, weights missing)
    ├── ReplayDivergence         replay needed a model call that the recording does not hold
    └── RunStateError            a run / resume / branch request does not fit the story's state

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


class ConfigError(CodirectorError):
    """A profile, config file, backend name or backend option is wrong."""

    exit_code = 2


class StoryFileError(CodirectorError):
    """A story or brief file cannot be read or does not match the format."""

    exit_code = 2


class NotFound(CodirectorError):
    """Something named by the user does not exist."""

    exit_code = 3


class StoryNotFound(NotFound):
    """No story with that id exists in the database."""


class BranchNotFound(NotFound):
    """No branch with that name exists in the story."""


class EntityNotFound(NotFound):
    """No entity with that name exists in the memory being read."""


class VersionConflict(CodirectorError):
    """An append expected a different last position: another writer got there first."""

    exit_code = 4

    def __init__(self, message: str, *, expected: int, actual: int) -> None:
        super().__init__(message, hint="re-read the branch and retry the append")
        self.expected = expected
        self.actual = actual


class IntegrityViolation(CodirectorError):
    """Stored data fails verification: a broken hash chain, a missing blob, a stale index."""

    exit_code = 5


class StoreError(CodirectorError):
    """The database cannot be opened, is not migrated, or is locked by another process."""

    exit_code = 6


class AgentOutputInvalid(CodirectorError):
    """A model's answer to an agent failed validation more times than the retry bound allows."""

    exit_code = 7


class BackendError(CodirectorError):
    """A model backend failed: unreachable, refused, timed out, or its weights cannot be found."""

    exit_code = 8


class ReplayDivergence(CodirectorError):
    """Replay needed a model call whose request is not in the recording."""

    exit_code = 9

    def __init__(self, message: str, *, hint: str | None = None, kind: str | None = None, shot: int | None = None,
                 agent: str | None = None, diff: list[str] | None = None) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind
        self.shot = shot
        self.agent = agent
        self.diff = list(diff or [])


class RunStateError(CodirectorError):
    """A run, resume or branch request does not fit the story's current state."""

    exit_code = 10


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
    plural = what[:-1] + "ies" if what.endswith("y") else what + "s"
    found = close_matches(name, pool)
    if found:
        return "did you mean " + ", ".join(repr(f) for f in found) + "?"
    if not pool:
        return f"there are no {plural} yet"
    shown = ", ".join(repr(p) for p in pool[:8])
    more = f" (and {len(pool) - 8} more)" if len(pool) > 8 else ""
    return f"known {plural}: {shown}{more}"

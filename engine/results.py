"""What ``Studio``'s own queries return: typed values, each with ``to_json()`` = the command's ``--json``.

Results of the engine services live next to the service that produces them; the whole set:

    init        InitResult            (here)          stories    StoryListing of StorySummary (here)
    run/resume  RunResult             loop.runs       branch     NewBranch        loop.runs
    replay      ReplayReport          loop.replay     export     ExportResult     views.export
    direct      DirectorResult        director        eval       Evaluation       evaluation.evaluate
    bench       BenchResult           evaluation      demo       DemoSummary      demo
    reindex     ReindexResult         (here)          backends   BackendsReport   (here)
    audit       Audit                 views.audit     history    EntityHistory    views.history
    diff        BranchDiff            views.diff      verify     VerifyReport     store.verify

Invariant: ``to_json()`` gives exactly the keys (and key order) the ``--json`` output has always had;
the CLI reads attributes, never those keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from codirector.store.leases import LeaseInfo


@dataclass
class InitResult:
    """What ``codirector init`` did: the home, the database and its schema revision before and after."""

    home: str
    database: str
    blobs: str
    cache: str
    revision_before: str | None
    revision: str

    @property
    def change(self) -> str:
        """``created``, ``already current`` or ``upgraded from REV``."""
        if self.revision_before is None:
            return "created"
        return "already current" if self.revision_before == self.revision else f"upgraded from {self.revision_before}"

    def to_json(self) -> dict[str, Any]:
        return {"home": self.home, "database": self.database, "blobs": self.blobs, "cache": self.cache,
                "revision_before": self.revision_before, "revision": self.revision}


@dataclass
class BranchStatus:
    """A branch as ``codirector stories`` lists it: lineage, size, progress, and who runs it now."""

    name: str
    parent: str | None
    fork_position: int
    events: int
    shots_completed: int
    status: str  # completed | ranked | empty | in progress
    created_at: str
    running: bool = False  # a live lease is held: a process is running this branch now
    lease: LeaseInfo | None = None  # the last lease taken (live or expired), if any

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "parent": self.parent, "fork_position": self.fork_position, "events": self.events,
                "shots_completed": self.shots_completed, "status": self.status, "created_at": self.created_at,
                "running": self.running, "lease": None if self.lease is None else self.lease.to_json()}


@dataclass
class StorySummary:
    """A story with its branches."""

    id: str
    title: str
    created_at: str
    branches: list[BranchStatus] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "created_at": self.created_at,
                "branches": [b.to_json() for b in self.branches]}


@dataclass
class StoryListing:
    """Every story (``codirector stories``); iterates over its ``StorySummary`` values."""

    stories: list[StorySummary] = field(default_factory=list)

    def __iter__(self) -> Iterator[StorySummary]:
        return iter(self.stories)

    def __len__(self) -> int:
        return len(self.stories)

    def __getitem__(self, i: int) -> StorySummary:
        return self.stories[i]

    def get(self, story_id: str) -> StorySummary | None:
        return next((s for s in self.stories if s.id == story_id), None)

    def to_json(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.stories]


@dataclass
class IndexRebuilt:
    """One story's vector index rebuilt from the log."""

    story: str
    vectors: int
    dim: int | None
    path: str
    snapshots_dropped: int

    def to_json(self) -> dict[str, Any]:
        return {"story": self.story, "vectors": self.vectors, "dim": self.dim, "path": self.path,
                "snapshots_dropped": self.snapshots_dropped}


@dataclass
class ReindexResult:
    """What ``codirector reindex`` rebuilt; iterates over its ``IndexRebuilt`` values."""

    indexes: list[IndexRebuilt] = field(default_factory=list)

    def __iter__(self) -> Iterator[IndexRebuilt]:
        return iter(self.indexes)

    def __len__(self) -> int:
        return len(self.indexes)

    def to_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.indexes]


@dataclass
class BackendStatus:
    """A registered backend, what it needs, whether it can run here, and whether the profile selects it."""

    kind: str
    name: str
    summary: str
    needs: str
    usable: bool
    status: str  # "ready", or why it cannot run here
    selected: bool
    capabilities: Any = None  # jobs.Capabilities of the configured model, where the backend declares them

    def to_json(self) -> dict[str, Any]:
        caps = self.capabilities.to_json() | {"summary": self.capabilities.summary()} if self.capabilities else None
        return {"kind": self.kind, "name": self.name, "summary": self.summary, "needs": self.needs,
                "usable": self.usable, "status": self.status, "selected": self.selected, "capabilities": caps}


@dataclass
class BackendsReport:
    """Every registered backend (``codirector backends``); iterates over its ``BackendStatus`` values."""

    backends: list[BackendStatus] = field(default_factory=list)
    checked_profile: bool = False  # a profile or config was given: ``selected`` marks its backends

    def __iter__(self) -> Iterator[BackendStatus]:
        return iter(self.backends)

    def __len__(self) -> int:
        return len(self.backends)

    def to_json(self) -> list[dict[str, Any]]:
        return [b.to_json() for b in self.backends]


__all__ = ["BackendStatus", "BackendsReport", "BranchStatus", "IndexRebuilt", "InitResult", "ReindexResult",
           "StoryListing", "StorySummary"]

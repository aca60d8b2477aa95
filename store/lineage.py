"""Branches as lineages: which rows a branch can see.

Invariant: a branch sees its ancestors' rows up to each fork and its own rows after its fork,
nothing else. ``walk`` turns a branch into that list of ``Segment`` s (oldest ancestor first);
``within`` turns the segments into one SQL condition on any table keyed by (story_id, branch,
position), so the event log and the snapshot cache select along a lineage the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy.engine import Row

from codirector.errors import StoreError


@dataclass(frozen=True)
class BranchInfo:
    """A branch: its parent and fork position (None/0 for main), and its head."""

    story_id: str
    name: str
    parent: str | None
    fork_position: int
    head_position: int
    head_hash: str
    created_at: str


@dataclass(frozen=True)
class StoryInfo:
    """A story and its branches."""

    id: str
    title: str
    created_at: str
    branches: tuple[BranchInfo, ...]


@dataclass(frozen=True)
class Segment:
    """Part of a branch's lineage: ``branch``'s own events with lo < position <= hi."""

    branch: str
    lo: int
    hi: int | None


def branch_info(row: Row[Any]) -> BranchInfo:
    """A ``branches`` row as a ``BranchInfo``."""
    return BranchInfo(
        story_id=row.story_id,
        name=row.name,
        parent=row.parent,
        fork_position=row.fork_position,
        head_position=row.head_position,
        head_hash=row.head_hash,
        created_at=row.created_at,
    )


def walk(story_id: str, branch: str, fork_of: Callable[[str], tuple[str | None, int]]) -> list[Segment]:
    """The lineage of ``branch``, oldest ancestor first; ``fork_of(name)`` gives (parent, fork position)."""
    segments: list[Segment] = []
    current: str | None = branch
    hi: int | None = None
    seen: set[str] = set()
    while current is not None:
        if current in seen:
            raise StoreError(f"branch lineage of {story_id!r}/{branch!r} has a cycle at {current!r}")
        seen.add(current)
        parent, fork = fork_of(current)
        segments.append(Segment(current, fork, hi))
        hi = fork if hi is None else min(hi, fork)
        current = parent
    segments.reverse()
    return segments


def within(table: Any, story_id: str, segments: list[Segment], *, upto: int | None = None) -> Any:
    """SQL condition: rows of ``table`` the lineage can see (at or before ``upto`` if given)."""
    conds = []
    for seg in segments:
        cond = and_(table.c.branch == seg.branch, table.c.position > seg.lo)
        hi = seg.hi if upto is None else upto if seg.hi is None else min(seg.hi, upto)
        if hi is not None:
            cond = and_(cond, table.c.position <= hi)
        conds.append(cond)
    return and_(table.c.story_id == story_id, or_(*conds))

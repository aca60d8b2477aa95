"""What the studio's pages show: typed page models built from ``Studio`` queries, nothing else.

Each function here takes the Studio and the page's parameters and returns a frozen value the
template renders. They call the same Studio methods the CLI commands call (``stories``, ``audit``,
``log``, ``memory``, ``history``, ``diff``, ``cost``) and fold their results with the engine's own
pure projections (``fold_run_state``), so a page never says more, or other, than the log does.

Invariants:
- No page model is cached or kept between requests: every page is a fresh query of the log. The one
  thing kept is ``SPEND``: a branch's spend at built-in prices, keyed by (database, story, branch, head
  position, head hash) and priced from the events at or before that head. A lineage's events up to a head never
  change (the log is append-only and a fork is fixed), so an entry is never stale; a branch that moves
  has a new key. It is a cache of immutable positions, not state of the app.
- A branch's status is read from the log and its lease: ``running`` while a live lease is held,
  ``complete`` once the story completed (or a brief was ranked), ``not started`` with no events,
  else ``stopped`` (a run that can be resumed).
- The prompts offered by "branch from here" are the ones the new branch would start from if left
  unchanged (the run state at the fork); only fields the user changed become overrides.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace

from cachetools import LRUCache

from codirector.engine.results import BranchStatus, StorySummary
from codirector.engine.studio import Studio
from codirector.engine.views.audit import Audit, audit_events
from codirector.engine.views.cost import CostRow
from codirector.engine.views.evidence import ShotAudit
from codirector.engine.views.state import RUN_STATE, fold_run_state
from codirector.errors import BranchNotFound, InvalidArgument, StoryNotFound, did_you_mean
from codirector.events import RecordedEvent, StoryCreated
from codirector.store.event_store import MAIN, BranchInfo

SHOTS_PER_PAGE = 20


def status_of(b: BranchStatus) -> str:
    """running | complete | not started | stopped (see the module docstring)."""
    if b.running:
        return "running"
    if b.status in ("completed", "ranked"):
        return "complete"
    return "not started" if b.status == "empty" else "stopped"


@dataclass(frozen=True)
class BranchRow:
    """One branch as the stories page and a branch's header show it."""

    story: str
    name: str
    parent: str | None
    depth: int
    fork_position: int
    from_shot: int | None
    status: str
    lease_holder: str | None  # "host (pid N)" of the live lease, or of the last one
    lease_live: bool
    shots_completed: int
    events: int
    cost_usd: float | None  # None where the page did not ask (a branch page takes it from its audit)
    unpriced: bool


@dataclass(frozen=True)
class StoryRow:
    """A story or brief with its branches in tree order (each after its parent)."""

    id: str
    title: str
    created_at: str
    kind: str  # story | brief
    branches: tuple[BranchRow, ...]

    def branch(self, name: str) -> BranchRow | None:
        return next((b for b in self.branches if b.name == name), None)


def kind_of(studio: Studio, story_id: str) -> str:
    """``brief`` for a story created from an advertising brief, else ``story``."""
    first = studio.log(story_id, MAIN, limit=1)
    created = first[0].event if first and first[0].type == "StoryCreated" else None
    return "brief" if isinstance(created, StoryCreated) and created.spec.kind == "brief" else "story"


def _from_shot(studio: Studio, story_id: str, b: BranchStatus) -> int | None:
    if b.parent is None:
        return None
    created = studio.log(story_id, b.name, types=["BranchCreated"], after=b.fork_position, limit=1)
    return created[0].shot if created else None


class SpendByHead:
    """A branch's spend at the built-in prices, kept by (database, story, branch, head position, head hash): what
    ``Studio.cost`` says of the events up to that head, which never change (see the module docstring).
    At most ``size`` entries, least recently used dropped first (``cachetools.LRUCache``); safe to share between
    request threads."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._kept: LRUCache[tuple[str, str, str, int, str], tuple[float, bool]] = LRUCache(maxsize=size)
        self._lock = threading.Lock()

    def get(self, studio: Studio, story_id: str, head: BranchInfo) -> tuple[float, bool]:
        """(USD spent, whether some of it is unpriced) by ``head.name`` up to ``head.head_position``."""
        key = (studio.home.db_url, story_id, head.name, head.head_position, head.head_hash)
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None:
            return kept
        calls = studio.log(story_id, head.name, types=["ModelCalled"], upto=head.head_position)
        cost = studio.cost(story_id, head.name, events=calls)
        spent = (cost.total_usd, bool(cost.unpriced))
        with self._lock:
            self._kept[key] = spent
        return spent


SPEND = SpendByHead()


def story_row(studio: Studio, s: StorySummary, *, costs: bool = True) -> StoryRow:
    """A story's branches as a tree: roots first, each branch's children after it (oldest first);
    ``costs`` adds each branch's spend (``SPEND``: priced once per head a branch reaches)."""
    names = {b.name for b in s.branches}
    children: dict[str | None, list[BranchStatus]] = {}
    for b in sorted(s.branches, key=lambda b: b.created_at):
        children.setdefault(b.parent if b.parent in names else None, []).append(b)
    heads = {b.name: b for b in studio.store.story(s.id).branches} if costs else {}
    rows: list[BranchRow] = []

    def visit(b: BranchStatus, depth: int) -> None:
        head = heads.get(b.name)
        usd, unpriced = SPEND.get(studio, s.id, head) if head is not None else (None, False)
        lease = b.lease
        rows.append(BranchRow(
            story=s.id, name=b.name, parent=b.parent, depth=depth, fork_position=b.fork_position,
            from_shot=_from_shot(studio, s.id, b), status=status_of(b),
            lease_holder=lease.holder() if lease is not None else None, lease_live=b.running,
            shots_completed=b.shots_completed, events=b.events, cost_usd=usd, unpriced=unpriced))
        for child in children.get(b.name, []):
            visit(child, depth + 1)

    for root in children.get(None, []):
        visit(root, 0)
    return StoryRow(s.id, s.title, s.created_at, kind_of(studio, s.id), tuple(rows))


def stories_page(studio: Studio) -> list[StoryRow]:
    """Every story and brief, newest first, with its branch tree."""
    listing = sorted(studio.stories(), key=lambda s: s.created_at, reverse=True)
    return [story_row(studio, s) for s in listing]


def find_story(studio: Studio, story_id: str) -> StoryRow:
    """The story's row (without costs), or ``StoryNotFound`` naming the close ids."""
    try:
        found = studio.stories(story_id=story_id).get(story_id)
    except StoryNotFound:
        found = None
    if found is None:
        listed = [s.id for s in studio.stories()]
        raise StoryNotFound(f"no story {story_id!r}", hint=did_you_mean(story_id, listed, "story"))
    return story_row(studio, found, costs=False)


def find_branch(story: StoryRow, branch: str) -> BranchRow:
    row = story.branch(branch)
    if row is None:
        raise BranchNotFound(f"story {story.id!r} has no branch {branch!r}",
                             hint=did_you_mean(branch, [b.name for b in story.branches], "branch"))
    return row


# ---------------------------------------------------------------------- a branch's timeline


@dataclass(frozen=True)
class Timeline:
    """A branch's shots, one page of them at a time, with the evidence of each."""

    story: StoryRow
    branch: BranchRow
    audit: Audit  # the branch's audit, with the records of this page's shots only
    shots: tuple[ShotAudit, ...]  # this page's shots
    shot_count: int  # every shot of the branch (each shot an event names)
    costs: Mapping[int, CostRow]
    page: int
    pages: int
    current_shot: int | None  # the last shot that started

    @property
    def planned(self) -> int:
        return max(self.audit.planned_shots, self.shot_count)


def timeline_page(studio: Studio, story_id: str, branch: str, page: int | None = None) -> Timeline:
    """The branch's timeline; ``page`` None is the page of the running shot (page 1 when not running).

    One read of the branch: the shots, which of them started, the page's audit records (only that
    page's shots are folded: each record equals the whole audit's, a test says so) and the cost."""
    story = find_story(studio, story_id)
    row = find_branch(story, branch)
    events = studio.log(story_id, branch)
    numbers = sorted({e.shot for e in events if e.shot is not None})
    started = [e.shot for e in events if e.type == "ShotStarted" and e.shot is not None]
    now = max(started) if started else None
    pages = max(1, -(-len(numbers) // SHOTS_PER_PAGE))
    if page is None:
        page = 1
        if row.status == "running" and now is not None:
            page = numbers.index(now) // SHOTS_PER_PAGE + 1
    if not 1 <= page <= pages:
        raise InvalidArgument(f"page must be between 1 and {pages}, got {page}")
    shown = numbers[(page - 1) * SHOTS_PER_PAGE: page * SHOTS_PER_PAGE]
    audit = audit_events(events, story_id=story_id, branch=branch, shots=set(shown))
    audit = replace(audit, cost=studio.cost(story_id, branch, events=events))
    costs = {int(r.key): r for r in (audit.cost.rows if audit.cost else []) if isinstance(r.key, int)}
    return Timeline(story, row, audit, audit.shots, len(numbers), costs, page, pages, now)


# ---------------------------------------------------------------------- one shot, and branching from it


@dataclass(frozen=True)
class PromptRow:
    """A shot's prompts as a new branch would start from them if left unchanged."""

    shot: int
    keyframe: str
    motion: str


@dataclass(frozen=True)
class ShotPage:
    story: StoryRow
    branch: BranchRow
    shot: ShotAudit
    planned_shots: int
    prompts: tuple[PromptRow, ...]  # empty when the shot has not started (no fork point yet)
    suggested_name: str


def run_state_events(studio: Studio, story_id: str, branch: str) -> list[RecordedEvent]:
    """The branch's events the run state folds (plan, revisions, starts, rewrites), and no others."""
    return studio.log(story_id, branch, types=list(RUN_STATE.types))


def branch_prompts(studio: Studio, story_id: str, branch: str, from_shot: int,
                   events: list[RecordedEvent] | None = None) -> tuple[PromptRow, ...]:
    """Shots ``from_shot``.. with the prompts they start from at the fork (``()`` if that shot never started)."""
    events = run_state_events(studio, story_id, branch) if events is None else events
    state = fold_run_state(events)
    if from_shot not in state.started:
        return ()
    fork = state.fork_position_for(from_shot)
    at_fork = fold_run_state(e for e in events if e.position <= fork)
    return tuple(PromptRow(n, at_fork.keyframe_prompt(n), at_fork.motion_prompt(n))
                 for n in range(from_shot, at_fork.num_shots + 1))


def overrides_from_form(prompts: tuple[PromptRow, ...], form: Mapping[str, str]) -> dict[str, str]:
    """``shots.N.keyframe`` / ``shots.N.motion`` for each field the form changed (whitespace aside)."""
    out: dict[str, str] = {}
    for row in prompts:
        for field, default in (("keyframe", row.keyframe), ("motion", row.motion)):
            given = form.get(f"{field}.{row.shot}")
            if given is not None and " ".join(given.split()) != " ".join(default.split()):
                out[f"shots.{row.shot}.{field}"] = given.strip()
    return out


def free_branch_name(story: StoryRow, base: str) -> str:
    taken = {b.name for b in story.branches}
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def shot_page(studio: Studio, story_id: str, branch: str, shot: int) -> ShotPage:
    """One shot: retrieval, rounds, clip, memory updates, and the form to branch from it.

    The shot's evidence is the audit of the shot's own events (``codirector log S --shot N``): every
    record of a shot is folded from events of that shot, so it equals ``Studio.audit(...).shot(N)``
    (a test says so) without folding the whole branch."""
    story = find_story(studio, story_id)
    row = find_branch(story, branch)
    planned = run_state_events(studio, story_id, branch)
    num_shots = fold_run_state(planned).num_shots
    found = audit_events(studio.log(story_id, branch, shot=shot), story_id=story_id, branch=branch).shot(shot)
    if found is None:
        raise InvalidArgument(f"{story_id}/{branch} has no shot {shot}", hint=f"shots are numbered 1..{num_shots}")
    prompts = branch_prompts(studio, story_id, branch, shot, planned)
    base = f"{branch}-from-{shot}" if branch != MAIN else f"from-{shot}"
    return ShotPage(story, row, found, num_shots, prompts, free_branch_name(story, base))


__all__ = ["SHOTS_PER_PAGE", "SPEND", "BranchRow", "PromptRow", "ShotPage", "SpendByHead", "StoryRow", "Timeline",
           "branch_prompts", "find_branch", "find_story", "free_branch_name", "kind_of", "overrides_from_form",
           "run_state_events", "shot_page", "status_of", "stories_page", "story_row", "timeline_page"]

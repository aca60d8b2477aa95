"""How a branch continues: the one place that decides whether a branch is a story's run or a brief's director.

    kind = branch_kind(ws, "dewline", "main")                  # "direct": a brief's main branch; else "run"
    done = continue_branch(ws, "lighthouse", "storm")          # Continued: its kind and what the run did
    done = continue_branch(ws, "lighthouse", evaluate=True)    # a bench job: run to the end, then judge it
    created = create_story(ws, "stories/lighthouse.yaml")      # the driver's part: StoryCreated (blobs first)

The CLI (``resume``, ``run --story``), the ``Studio``, ``batch`` and every worker of a pool (in this
process, on threads, on Ray) continue a branch through ``continue_branch``; none of them looks at the
story itself to choose what to run.

Invariants:
- What a branch is comes from its log alone: a brief's ``main`` (its ``StoryCreated`` spec has
  ``kind: brief``) holds the director's decisions and is continued by the director under main's
  lease; every other branch (a story's, or a brief's pull) is continued by the loop under its own.
  A job carries no kind of its own, so no driver can send a branch down the wrong path.
- Continuing is idempotent: the branch goes on from where its log stops and a recorded answer is
  never requested again, so running it twice, or again after a worker died, gives the same log.
- ``evaluate`` (the bench) judges a run's branch once it is complete; a director's main is never judged.
- The caller owns the budget and the pool: a parallel director's pulls run on the ``pool`` it is
  handed (``None``: one after another in this process); nothing here builds one.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codirector.engine.loop.context import Progress
from codirector.engine.loop.rerun import continuation
from codirector.engine.loop.runs import RunResult, execute, is_brief, prepare_story, record_story
from codirector.engine.recording.budget import Budget
from codirector.engine.recording.recorder import CallStats
from codirector.engine.workspace import Workspace
from codirector.generators.base import Backends
from codirector.generators.preflight import require_ready
from codirector.store.event_store import MAIN

if TYPE_CHECKING:
    from codirector.engine.director.summary import DirectorResult
    from codirector.engine.evaluation.evaluate import Evaluation
    from codirector.engine.jobs import Pool

RUN = "run"  # a story's branch (or a brief's pull), continued by the loop
DIRECT = "direct"  # a brief's main branch, continued by the director


def branch_kind(ws: Workspace, story_id: str, branch: str = MAIN) -> str:
    """``"direct"`` for a brief's main branch, ``"run"`` for any other branch, as the log says."""
    return DIRECT if branch == MAIN and is_brief(ws, story_id) else RUN


@dataclass(frozen=True)
class Continued:
    """What continuing a branch did: its kind, the run's (or director's) result, and the bench's judgement."""

    story_id: str
    branch: str
    kind: str  # run | direct
    result: RunResult | DirectorResult
    evaluation: Evaluation | None = None

    @property
    def calls(self) -> CallStats:
        return self.result.calls

    @property
    def completed(self) -> bool:
        return self.result.completed

    @property
    def written(self) -> int:
        """Events the loop appended (a director's are not counted: its pulls' runs report theirs)."""
        return self.result.written if isinstance(self.result, RunResult) else 0


def continue_branch(
    ws: Workspace, story_id: str, branch: str = MAIN, *, backends: Backends | None = None,
    budget: Budget | None = None, progress: Progress | None = None, wait: float | None = None,
    evaluate: bool = False, pool: Pool | None = None,
) -> Continued:
    """Continue ``branch`` of ``story_id`` where its log stops, as the log says it continues (``branch_kind``).

    ``wait``: seconds to wait for the branch's lease (``Workspace.lease``; ``math.inf`` for a pool's worker).
    ``budget``: the caller's meter. ``evaluate``: judge the branch once it is complete (the bench).
    ``pool``: where a parallel director runs its pulls (default: in this process, one after another)."""
    if branch_kind(ws, story_id, branch) == DIRECT:
        from codirector.engine.director.direction import resume_direction

        with ws.lease(story_id, MAIN, wait=wait):
            directed = resume_direction(ws, story_id, backends=backends, progress=progress, budget=budget, pool=pool)
        return Continued(story_id, branch, DIRECT, directed)
    result = execute(ws, story_id, branch, backends=backends, progress=progress, wait=wait, budget=budget)
    judged = None
    if evaluate:
        from codirector.engine.evaluation.evaluate import evaluate as judge

        judged = judge(ws, story_id, branch, backends=backends, progress=progress, budget=budget)
    return Continued(story_id, branch, RUN, result, judged)


# ---------------------------------------------------------------------------- the driver's part


@dataclass
class Created:
    """A story the driver made ready for a job: new, to be continued, or already complete."""

    story_id: str
    state: str  # new | continuing | complete
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def create_story(
    ws: Workspace, story_file: str | os.PathLike[str], *, story_id: str | None = None, profile: str | None = None,
    config: str | os.PathLike[str] | None = None, seed: int | None = None, max_rounds: int | None = None,
    ablations: dict[str, bool] | None = None, story_format: str | None = None, check_ready: bool = True,
) -> Created:
    """Record a story file's ``StoryCreated`` (reference images first) unless the id holds the same story.

    This is what ``start_run`` records before it runs ``main``; a worker then continues the story from
    the log alone, so the story file need not exist on the worker's machine. ``AlreadyExists`` when the
    id holds a different story.
    """
    sid, cfg, new = prepare_story(story_file, profile=profile, config=config, seed=seed, max_rounds=max_rounds,
                                  story_id=story_id, ablations=ablations, story_format=story_format)
    with ws.lease(sid, MAIN, wait=math.inf):  # no job runs main while the story is being created
        note = continuation(ws, sid, new)
        if note is not None:
            return Created(sid, "continuing" if note else "complete", note)
        if check_ready:
            require_ready(cfg)
        record_story(ws, sid, new)
    return Created(sid, "new")


def is_brief_file(path: Path) -> bool:
    """Whether a file is an advertising brief (it names a product and an audience) rather than a story."""
    if path.is_dir() or path.suffix.lower() not in (".yaml", ".yml", ".json"):
        return False
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "product" in data and "target_audience" in data and "shots" not in data


__all__ = ["DIRECT", "RUN", "Continued", "Created", "branch_kind", "continue_branch", "create_story", "is_brief_file"]

"""The benchmark harness: every story of a directory under every method, judged, in the paper's table.

``bench(ws, stories_dir)`` runs each story file (``*.yaml``, ``*.yml``, ``*.json``, in any format that
``engine.loop.formats`` reads, e.g. ST-Bench JSON) or ViStoryBench story folder once per
method (``full`` and the ablations ``no-memory``, ``no-synergy``, ``no-refine``, the flags of
``codirector run``), as story ``<stem>--<method>``, evaluates each with ``engine.evaluation``, and
averages per method into the layout of the paper's Tables 1 and 2:

    Methods | Cross-shot consistency (Average, SameGrp, CrossGrp) | VLM-as-judge-shot (Overall
    adherence) | VLM-as-judge-global (Completeness, Consistency, Narrative flow, Overall)

rendered as Markdown, CSV and JSON (``render_*`` return strings; ``write_reports`` writes files).

Invariants: re-running a bench is resumable and free where the log already answers: a story
that exists is continued (or left as it is when complete) and an evaluated branch is read back,
not judged again. A mean over no values is empty (``None``), never a made-up number.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from codirector.engine.evaluation.evaluate import Evaluation, evaluate
from codirector.engine.evaluation.metrics import NOTE as CONSISTENCY_NOTE
from codirector.engine.loop.context import Progress
from codirector.engine.loop.formats import is_story_path
from codirector.engine.loop.runs import execute, is_scratch, start_run
from codirector.engine.recording.budget import Budget
from codirector.engine.views.cost import Spend, branch_cost
from codirector.engine.workspace import Workspace
from codirector.errors import InvalidArgument, RunStateError, StoryFileError, did_you_mean
from codirector.generators.base import Backends
from codirector.generators.build import build_backends
from codirector.generators.preflight import require_ready
from codirector.generators.profiles import resolve
from codirector.store.event_store import MAIN

if TYPE_CHECKING:
    from codirector.engine.jobs import Pool

METHODS: dict[str, dict[str, bool]] = {
    "full": {},
    "no-memory": {"no_memory": True},
    "no-synergy": {"no_synergy": True},
    "no-refine": {"no_refine": True},
}
DEFAULT_METHODS = ("full", "no-memory", "no-synergy", "no-refine")

# (key in a row, column title, column group, decimals)
COLUMNS: tuple[tuple[str, str, str, int], ...] = (
    ("consistency_average", "Average", "Cross-shot consistency", 4),
    ("consistency_same_group", "SameGrp", "Cross-shot consistency", 4),
    ("consistency_cross_group", "CrossGrp", "Cross-shot consistency", 4),
    ("shot_overall", "Overall adherence", "VLM-as-judge-shot", 2),
    ("global_completeness", "Completeness", "VLM-as-judge-global", 2),
    ("global_consistency", "Consistency", "VLM-as-judge-global", 2),
    ("global_narrative_flow", "Narrative flow", "VLM-as-judge-global", 2),
    ("global_overall", "Overall", "VLM-as-judge-global", 2),
)


@dataclass
class BenchRun:
    """One story under one method: the story id it ran as, the events it wrote, and its evaluation."""

    story: str
    story_id: str
    method: str
    file: str
    events_written: int
    evaluation: Evaluation
    cost_usd: float = 0.0  # the story's spend, judging included (unpriced calls aside)
    unpriced: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"story": self.story, "story_id": self.story_id, "method": self.method, "file": self.file,
                "events_written": self.events_written, "evaluation": self.evaluation.to_json(),
                "cost_usd": round(self.cost_usd, 12), "unpriced": self.unpriced}


@dataclass
class BenchResult:
    """Per-method rows (means over stories, keyed by ``COLUMNS``) and every (story, method) run."""

    methods: list[str]
    stories: list[str]
    rows: list[dict[str, Any]]  # {"method", "stories", and one value (or None) per column key}
    runs: list[BenchRun]
    notes: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    spend: Spend = field(default_factory=Spend)  # USD per method, over its stories

    def to_json(self) -> dict[str, Any]:
        return {"methods": self.methods, "stories": self.stories,
                "columns": [{"key": k, "title": t, "group": g} for k, t, g, _ in COLUMNS],
                "rows": self.rows, "runs": [r.to_json() for r in self.runs], "notes": self.notes,
                "files": self.files, "cost": self.spend.to_json()}


def story_files(stories_dir: str | os.PathLike[str]) -> list[Path]:
    """The story files of a directory, by name; ``StoryFileError`` when there are none."""
    root = Path(stories_dir)
    if not root.is_dir():
        raise StoryFileError(f"{root} is not a directory", hint="give a folder of story files (see examples/stories/)")
    files = sorted(p for p in root.iterdir() if is_story_path(p))  # files, and ViStoryBench story folders
    if not files:
        raise StoryFileError(f"{root} holds no story files (*.yaml, *.yml, *.json, or story folders with story.json)",
                             hint="see examples/stories/ for the format")
    return files


def _mean(values: Sequence[float | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _row(method: str, evaluations: list[Evaluation]) -> dict[str, Any]:
    def judge(key: str) -> list[float | None]:
        return [None if e.story_judge is None else getattr(e.story_judge, key) for e in evaluations]

    def consistency(key: str) -> list[float | None]:
        return [(e.consistency or {}).get(key) for e in evaluations]

    values = {
        "consistency_average": _mean(consistency("average")),
        "consistency_same_group": _mean(consistency("same_group")),
        "consistency_cross_group": _mean(consistency("cross_group")),
        "shot_overall": _mean([e.shot_overall for e in evaluations]),
        "global_completeness": _mean(judge("plot_completeness")),
        "global_consistency": _mean(judge("character_consistency")),
        "global_narrative_flow": _mean(judge("narrative_flow")),
        "global_overall": _mean(judge("overall")),
    }
    return {"method": method, "stories": len(evaluations),
            **{k: (None if v is None else round(v, 6)) for k, v in values.items()}}


def bench(
    ws: Workspace, stories_dir: str | os.PathLike[str], methods: Sequence[str] = DEFAULT_METHODS,
    profile: str | None = None, config: str | os.PathLike[str] | None = None,
    backends: Backends | None = None, out_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None, story_format: str | None = None, budget: Budget | None = None,
    pool: Pool | None = None,
) -> BenchResult:
    """Run, evaluate and tabulate every story of ``stories_dir`` under every method; ``budget`` caps them all.

    ``pool`` (``--workers``/``--ray``): each (story, method) is run and judged as a job on it first; the
    table is then read back from the logs exactly as in one process, so it is the same for any pool."""
    methods = list(methods)
    for m in methods:
        if m not in METHODS:
            raise InvalidArgument(f"unknown bench method {m!r}", hint=did_you_mean(m, METHODS, "method"))
    if not methods:
        raise InvalidArgument("no bench method given", hint=f"choose from {', '.join(METHODS)}")
    files = story_files(stories_dir)
    written: dict[str, int] = {}
    if pool is not None:
        written = _run_on_pool(ws, files, methods, pool, profile=profile, config=config, story_format=story_format)
    elif backends is None:  # one set for every run: the ablations change the loop, never the backends
        backends = build_backends(resolve(profile, config))
    existing = {s.id: s for s in ws.store.stories()}
    runs: list[BenchRun] = []
    by_method: dict[str, list[Evaluation]] = {m: [] for m in methods}
    budget = budget or Budget()
    spend = Spend()
    for path in files:
        for method in methods:
            sid = f"{path.stem}--{method}"
            if sid in existing:
                if budget.capped:
                    budget.count_story(ws.store, sid, skip=is_scratch)
                result = execute(ws, sid, MAIN, backends=backends, progress=progress,  # no-op when complete
                                 budget=budget)
            else:
                result = start_run(ws, path, profile=profile, config=config, story_id=sid,
                                   ablations=METHODS[method], backends=backends, progress=progress,
                                   story_format=story_format, budget=budget)
            evaluation = evaluate(ws, sid, MAIN, backends=backends, progress=progress, budget=budget)
            by_method[method].append(evaluation)
            cost = branch_cost(ws.store.read(sid, MAIN), story_id=sid, branch=MAIN, prices=budget.prices)
            spend.add(method, cost)
            runs.append(BenchRun(path.stem, sid, method, str(path), written.get(sid, result.written), evaluation,
                                 cost.total_usd, cost.unpriced))
    rows = [_row(m, by_method[m]) for m in methods]
    notes = [f"cross-shot consistency: {CONSISTENCY_NOTE}"]
    if any(r.evaluation.preview_judged for r in runs):
        notes.append("preview judges: scores are derived from each run's log, not from pixels; use a real VLM "
                     "profile for judgements of the images")
    if any(not r.evaluation.consistency_meaningful for r in runs):
        notes.append("the embedder is untrained here: consistency values carry no meaning")
    summary = BenchResult(methods, [p.stem for p in files], rows, runs, notes, spend=spend)
    if out_dir is not None:
        summary.files = write_reports(summary, out_dir)
    return summary


def _run_on_pool(ws: Workspace, files: list[Path], methods: list[str], pool: Pool, *, profile: str | None,
                 config: str | os.PathLike[str] | None, story_format: str | None) -> dict[str, int]:
    """Record each (story, method) that is missing, then run and judge all of them as jobs on ``pool``;
    the events each job wrote, by story id. ``BudgetExceeded`` (as in one process) when a job was stopped by
    the budget, else ``RunStateError`` naming every job that did not finish."""
    from codirector.engine.continuation import create_story
    from codirector.engine.jobs import Job, budget_stop

    require_ready(resolve(profile, config))  # pre-flight: nothing is written unless the backends can run
    jobs = []
    for path in files:
        for method in methods:
            sid = f"{path.stem}--{method}"
            create_story(ws, path, story_id=sid, profile=profile, config=config, ablations=METHODS[method],
                         story_format=story_format, check_ready=False)
            jobs.append(Job(sid, MAIN, evaluate=True))
    rows = pool.run(jobs)
    stopped = next((e for e in (budget_stop(ws, r) for r in rows) if e is not None), None)
    if stopped is not None:  # the budget ran out: what one process raises (the first such story's stop)
        raise stopped
    failed = [f"{r.story_id}: {r.status} ({r.error})" for r in rows if not r.ok]
    if failed:
        raise RunStateError(f"{len(failed)} of {len(rows)} bench jobs did not finish: {'; '.join(failed)}",
                            hint="fix the cause, then run the same bench again: finished stories are kept")
    return {r.story_id: r.written for r in rows}


def _cell(value: float | None, decimals: int) -> str:
    return "" if value is None else f"{value:.{decimals}f}"


def render_markdown(result: BenchResult) -> str:
    """The table in Markdown (Markdown has no spanning headers: the column groups are named above it)."""
    groups: list[str] = []
    for _, title, group, _ in COLUMNS:
        if not groups or not groups[-1].startswith(group):
            groups.append(f"{group}: {title}")
        else:
            groups[-1] += f", {title}"
    lines = [f"Stories: {len(result.stories)} ({', '.join(result.stories)}). Columns: " + "; ".join(groups) + ".", ""]
    lines.append("| Methods | " + " | ".join(t for _, t, _, _ in COLUMNS) + " |")
    lines.append("|---|" + "---:|" * len(COLUMNS))
    for row in result.rows:
        cells = [_cell(row[k], d) or "–" for k, _, _, d in COLUMNS]
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.extend(f"Note: {n}" for n in result.notes)
    return "\n".join(lines) + "\n"


def render_csv(result: BenchResult) -> str:
    """One row per method; empty cells where there was nothing to average."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["method", *(k for k, _, _, _ in COLUMNS), "stories"])
    for row in result.rows:
        writer.writerow([row["method"], *(_cell(row[k], 6) for k, _, _, _ in COLUMNS), row["stories"]])
    return buf.getvalue()


def render_json(result: BenchResult) -> str:
    return json.dumps(result.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_reports(result: BenchResult, out_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Write ``bench.md``, ``bench.csv`` and ``bench.json`` into ``out_dir``; returns their paths."""
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": root / "bench.md", "csv": root / "bench.csv", "json": root / "bench.json"}
    result.files = {k: str(p) for k, p in paths.items()}
    paths["markdown"].write_text(render_markdown(result), encoding="utf-8")
    paths["csv"].write_text(render_csv(result), encoding="utf-8")
    paths["json"].write_text(render_json(result), encoding="utf-8")
    return result.files

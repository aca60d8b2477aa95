"""The benchmark harness: every story of a directory under every method, judged, in the paper's table.

``bench(ws, stories_dir)`` runs each story file (``*.yaml``, ``*.yml``, ``*.json``) once per
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
from typing import Any

import numpy as np

from codirector.engine.evaluation.evaluate import evaluate
from codirector.engine.evaluation.metrics import NOTE as CONSISTENCY_NOTE
from codirector.engine.loop.context import Progress
from codirector.engine.loop.runs import execute, start_run
from codirector.engine.workspace import Workspace
from codirector.errors import RunStateError, StoryFileError, did_you_mean
from codirector.generators.base import Backends
from codirector.generators.profiles import build_backends, resolve
from codirector.store.event_store import MAIN

METHODS: dict[str, dict[str, bool]] = {
    "full": {},
    "no-memory": {"no_memory": True},
    "no-synergy": {"no_synergy": True},
    "no-refine": {"no_refine": True},
}
DEFAULT_METHODS = ("full", "no-memory", "no-synergy", "no-refine")
STORY_SUFFIXES = (".yaml", ".yml", ".json")

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
class BenchResult:
    """Per-method rows (means over stories) and every (story, method) run with its evaluation."""

    methods: list[str]
    stories: list[str]
    rows: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"methods": self.methods, "stories": self.stories,
                "columns": [{"key": k, "title": t, "group": g} for k, t, g, _ in COLUMNS],
                "rows": self.rows, "runs": self.runs, "notes": self.notes, "files": self.files}


def story_files(stories_dir: str | os.PathLike[str]) -> list[Path]:
    """The story files of a directory, by name; ``StoryFileError`` when there are none."""
    root = Path(stories_dir)
    if not root.is_dir():
        raise StoryFileError(f"{root} is not a directory", hint="give a folder of story files (see examples/stories/)")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in STORY_SUFFIXES)
    if not files:
        raise StoryFileError(f"{root} holds no story files (*.yaml, *.yml, *.json)",
                             hint="see examples/stories/ for the format")
    return files


def _mean(values: Sequence[float | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _row(method: str, evaluations: list[dict[str, Any]]) -> dict[str, Any]:
    def judge(key: str) -> list[float | None]:
        return [(e.get("story_judge") or {}).get(key) for e in evaluations]

    def consistency(key: str) -> list[float | None]:
        return [(e.get("consistency") or {}).get(key) for e in evaluations]

    values = {
        "consistency_average": _mean(consistency("average")),
        "consistency_same_group": _mean(consistency("same_group")),
        "consistency_cross_group": _mean(consistency("cross_group")),
        "shot_overall": _mean([e.get("shot_overall") for e in evaluations]),
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
    progress: Progress | None = None,
) -> BenchResult:
    """Run, evaluate and tabulate every story of ``stories_dir`` under every method."""
    methods = list(methods)
    for m in methods:
        if m not in METHODS:
            raise RunStateError(f"unknown bench method {m!r}", hint=did_you_mean(m, METHODS, "method"))
    if not methods:
        raise RunStateError("no bench method given", hint=f"choose from {', '.join(METHODS)}")
    files = story_files(stories_dir)
    if backends is None:  # one set for every run: the ablations change the loop, never the backends
        backends = build_backends(resolve(profile, config))
    existing = {s.id: s for s in ws.store.stories()}
    runs: list[dict[str, Any]] = []
    by_method: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for path in files:
        for method in methods:
            sid = f"{path.stem}--{method}"
            if sid in existing:
                result = execute(ws, sid, MAIN, backends=backends, progress=progress)  # no-op when complete
            else:
                result = start_run(ws, path, profile=profile, config=config, story_id=sid,
                                   ablations=METHODS[method], backends=backends, progress=progress)
            evaluation = evaluate(ws, sid, MAIN, backends=backends, progress=progress)
            by_method[method].append(evaluation)
            runs.append({"story": path.stem, "story_id": sid, "method": method, "file": str(path),
                         "events_written": result.written, "evaluation": evaluation})
    rows = [_row(m, by_method[m]) for m in methods]
    notes = [f"cross-shot consistency: {CONSISTENCY_NOTE}"]
    if any(str(s.get("rationale", "")).startswith("preview:") for r in runs for s in r["evaluation"]["shots"]):
        notes.append("preview judges: scores are derived from each run's log, not from pixels; use a real VLM "
                     "profile for judgements of the images")
    if any(not (r["evaluation"].get("consistency") or {}).get("meaningful", True) for r in runs):
        notes.append("the embedder is untrained here: consistency values carry no meaning")
    result = BenchResult(methods, [p.stem for p in files], rows, runs, notes)
    if out_dir is not None:
        result.files = write_reports(result, out_dir)
    return result


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

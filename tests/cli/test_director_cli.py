"""The Co-Director, evaluation and bench through the command line (thin wiring of engine functions)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from typer.testing import CliRunner

from codirector.cli import app

from support import tiny_preview_config, write_story

BRIEFS = Path(__file__).resolve().parents[2] / "examples" / "briefs"
runner = CliRunner()


def test_direct_then_audit_replay_and_eval_a_pull(tmp_path: Path) -> None:
    home = ["--home", str(tmp_path / "h")]
    cfg = tiny_preview_config(tmp_path)
    brief = sorted(BRIEFS.glob("*.yaml"))[0]
    result = runner.invoke(app, [*home, "direct", str(brief), "--profile", "preview", "--config", str(cfg),
                                 "--iterations", "4", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["completed"] and len(data["pulls"]) == 4 and data["best_branch"] == data["ranking"][0]["branch"]
    story = data["story"]
    log = json.loads(runner.invoke(app, [*home, "log", story, "--json"]).stdout)
    types = [e["type"] for e in log]
    assert types.count("DirectionChosen") == 4 and types.count("RewardObserved") == 4 and types[-1] == "BranchRanked"
    listed = json.loads(runner.invoke(app, [*home, "stories", "--json"]).stdout)[0]["branches"]
    assert [b["status"] for b in listed] == ["ranked"] + ["completed"] * 4
    pull = data["pulls"][0]["branch"]
    assert runner.invoke(app, [*home, "audit", story, "--branch", pull, "--json"]).exit_code == 0
    replayed = json.loads(runner.invoke(app, [*home, "replay", story, "--branch", pull, "--json"]).stdout)
    assert replayed["identical"] and replayed["model_calls"] == 0
    refused = runner.invoke(app, [*home, "replay", story])
    assert refused.exit_code != 0 and "replay one of its branches" in refused.output
    evaluated = json.loads(runner.invoke(app, [*home, "eval", story, "--branch", pull, "--json"]).stdout)
    assert evaluated["story_judge"]["overall"] in range(1, 6) and len(evaluated["shots"]) >= 1
    resumed = json.loads(runner.invoke(app, [*home, "resume", story, "--json"]).stdout)
    assert resumed["best_branch"] == data["best_branch"] and resumed["model_calls"]["live"] == 0


def test_bench_prints_the_table_in_three_formats(tmp_path: Path) -> None:
    stories = tmp_path / "stories"
    stories.mkdir()
    write_story(stories / "pier.yaml", shots=2)
    write_story(stories / "quay.yaml", shots=2, title="The Quay")
    out = tmp_path / "bench"
    result = runner.invoke(app, ["--home", str(tmp_path / "h"), "bench", str(stories), "--config",
                                 str(tiny_preview_config(tmp_path)), "--methods", "full,no-memory", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| full |" in result.output and "| no-memory |" in result.output and "SameGrp" in result.output
    rows = list(csv.DictReader(io.StringIO((out / "bench.csv").read_text())))
    assert [r["method"] for r in rows] == ["full", "no-memory"]
    table = json.loads((out / "bench.json").read_text())
    assert [r["method"] for r in table["rows"]] == ["full", "no-memory"] and len(table["runs"]) == 4
    assert (out / "bench.md").read_text().count("\n|") >= 3

"""`batch` in one process (no Ray): one job per story, logs equal to a story run alone, re-runs skip
finished stories; the Ray-only paths refuse clearly; no query command imports Ray."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from scale.helpers import EXAMPLES, counting_config, story_log

from codirector.engine.director import bandit
from codirector.engine.jobs import WorkspaceSpec
from codirector.engine.scale import open_pool
from codirector.engine.studio import Studio
from codirector.errors import AlreadyExists, ConfigError, InvalidArgument

from support import write_story


@pytest.mark.slow
def test_batch_in_process_equals_solo_runs_and_rerun_skips(tmp_path: Path, counting_env: Path) -> None:
    cfg = counting_config(tmp_path / "c.toml")
    brief = EXAMPLES / "briefs" / "dewline_serum.yaml"
    studio = Studio(tmp_path / "batch")
    result = studio.batch([EXAMPLES / "stories", brief], config=cfg)
    assert [(r.story_id, r.kind, r.status) for r in result.rows] == [
        ("bakery", "run", "completed"), ("lighthouse", "run", "completed"), ("night_market", "run", "completed"),
        ("dewline_serum", "direct", "completed")]
    assert all(r.calls_made > 0 and r.calls_recorded == 0 and r.worker.startswith("local@") for r in result.rows)
    assert result.to_json()["completed"] == 4
    # totals per story, from the log: the counting backends' models have no price, so each story says so
    assert set(result.cost.usd) == {r.story_id for r in result.rows}
    assert set(result.cost.unpriced) == {r.story_id for r in result.rows}
    assert result.to_json()["cost"]["unpriced"]["dewline_serum"]

    solo = Studio(tmp_path / "solo")
    for name in ("bakery", "lighthouse", "night_market"):
        solo.run(EXAMPLES / "stories" / f"{name}.yaml", config=cfg)
        assert story_log(studio, name) == story_log(solo, name)
    solo.direct(brief, config=cfg)
    assert story_log(studio, "dewline_serum") == story_log(solo, "dewline_serum")

    again = studio.batch([EXAMPLES / "stories", brief], config=cfg)
    assert {r.status for r in again.rows} == {"skipped"} and sum(r.calls_made for r in again.rows) == 0
    assert studio.verify().ok


def test_batch_prefix_clash_and_changed_story(tmp_path: Path, counting_env: Path) -> None:
    cfg = counting_config(tmp_path / "c.toml")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_story(tmp_path / "a" / "pier.yaml", shots=1)
    write_story(tmp_path / "b" / "pier.yaml", shots=1)
    studio = Studio(tmp_path / "home")
    with pytest.raises(InvalidArgument, match="two files would run as story 'pier'"):
        studio.batch([tmp_path / "a", tmp_path / "b"], config=cfg)
    assert not (tmp_path / "home").exists() or not studio.store.stories()  # refused before any write
    done = studio.batch([tmp_path / "a"], config=cfg, prefix="exp1")
    assert [r.story_id for r in done.rows] == ["exp1-pier"]
    write_story(tmp_path / "a" / "pier.yaml", shots=2)  # other content under the same id
    with pytest.raises(AlreadyExists):
        studio.batch([tmp_path / "a"], config=cfg, prefix="exp1")


def test_workers_without_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    monkeypatch.delitem(sys.modules, "codirector.engine.scale.ray_pool", raising=False)
    spec = WorkspaceSpec("sqlite:///x.db", str(tmp_path), str(tmp_path))
    with pytest.raises(ConfigError, match="not installed") as e:
        open_pool(spec, workers=2)
    assert 'codirector[ray]' in (e.value.hint or "")


def test_multi_node_needs_shared_storage(tmp_path: Path) -> None:
    assert "SQLite" in (WorkspaceSpec("sqlite:///a.db", "s3://b/p", "/c").multi_node_ready or "")
    assert "folder on this machine" in (WorkspaceSpec("postgresql://h/db", str(tmp_path), "/c").multi_node_ready or "")
    assert WorkspaceSpec("postgresql://h/db", "s3://bucket/blobs", "/c").multi_node_ready is None


def test_no_query_command_imports_ray(tmp_path: Path) -> None:
    """`-X importtime` of the CLI, the studio, the demo and the in-process pool: Ray is not among them."""
    code = ("import codirector.cli, codirector.engine.studio, codirector.engine.demo, codirector.engine.jobs, "
            "codirector.engine.scale, codirector.engine.scale.local, codirector.engine.scale.batch, "
            "codirector.commands.batch, codirector.engine.director.rounds")
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True)
    modules = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "codirector.engine.scale.batch" in modules
    assert not {m for m in modules if m == "ray" or m.startswith("ray.")}


def test_pending_aware_parallel_choice_spreads_and_records() -> None:
    state = bandit.BanditState()
    seen = bandit.before(state, 1)
    chosen: list[dict[str, str]] = []
    for it in (1, 2, 3):
        c = bandit.choose(bandit.with_pending(seen, chosen), seed=1, iteration=it)
        chosen.append(c.arms)
    assert len({a["strategy"] for a in chosen}) == 3 and len({a["aesthetic"] for a in chosen}) == 3
    assert bandit.pending_counts(chosen[:2])["strategy"] == {chosen[0]["strategy"]: 1, chosen[1]["strategy"]: 1}
    # a pending arm counts +1 at its current mean
    tried = bandit.ArmStats(2, 150.0)
    s = bandit.BanditState(stats={**state.stats, "strategy": {**state.stats["strategy"], "comparative": tried}})
    bumped = bandit.with_pending(s, [{"strategy": "comparative", "narrative_mode": "vignette",
                                      "aesthetic": "clarity_energy"}])
    assert bumped.stats["strategy"]["comparative"] == bandit.ArmStats(3, 225.0)


def test_direct_parallel_in_process(tmp_path: Path, counting_env: Path) -> None:
    cfg = counting_config(tmp_path / "c.toml")
    studio = Studio(tmp_path / "home")
    result = studio.direct(EXAMPLES / "briefs" / "dewline_serum.yaml", config=cfg, iterations=6, parallel=3)
    assert result.completed and len(result.pulls) == 6
    chosen = studio.log("dewline_serum", types=["DirectionChosen"])
    rounds = [(e.payload["why"]["round"], e.payload["why"]["pending"]) for e in chosen]
    assert [r for r, _ in rounds] == [1, 1, 1, 2, 2, 2]
    assert [sum(rounds[i][1]["strategy"].values()) for i in range(6)] == [0, 1, 2, 0, 1, 2]
    assert len({e.payload["arms"]["strategy"] for e in chosen[:3]}) == 3  # the pending pulls spread the round
    branches = {b.name for b in studio.store.story("dewline_serum").branches} - {"main"}
    assert branches == {p.branch for p in result.pulls} and len(branches) == 6
    with pytest.raises(InvalidArgument, match="--parallel"):
        studio.direct(EXAMPLES / "briefs" / "dewline_serum.yaml", config=cfg, iterations=2, parallel=3,
                      story_id="other")

"""`--budget` on Ray workers: one account for the pool (an actor), as strict as the one in-process budget.

The counting backends with a price: $0.01 per image (no worst case stated, so the first image call is
unbounded and the dearest image bounds the rest), everything else free. A capped batch on two workers
makes exactly as many priced calls as the same batch in one process, and spends the same; `bench` and
`direct --parallel` on workers stop with the in-process message and exit code 12; a worker killed under a
cap leaves no hold behind; `batch --budget` (a cap per story) gives the same rows and spend on workers."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from scale.helpers import EXAMPLES, counting_config
from typer.testing import CliRunner

from codirector.cli import app
from codirector.engine.recording.account import Account
from codirector.engine.recording.budget import spending
from codirector.engine.scale import open_pool
from codirector.engine.scale.batch import collect, run_batch
from codirector.engine.studio import Studio
from codirector.errors import BudgetExceeded

from support import write_story

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session")]
IMAGE_USD = 0.01
PRICES = f"""
[prices."plan-driven"]
input_per_million = 0
[prices."storyboard-v1"]
per_image = {IMAGE_USD}
[prices."animatic-v1"]
per_second = 0
[prices."hash-16"]
input_per_million = 0
"""


def priced_config(path: Path) -> Path:
    counting_config(path)
    path.write_text(path.read_text() + PRICES)
    return path


def spend(studio: Studio, story_ids: list[str]) -> tuple[int, float, list[dict[str, Any]]]:
    """Answered image calls, USD spent (from the logs, every branch) and the BudgetReached marks."""
    images, usd, marks = 0, 0.0, []
    for sid in (s.id for s in studio.store.stories() if s.id in story_ids):  # in turn, a later one may not exist
        for b in studio.store.story(sid).branches:
            own = [e for e in studio.log(sid, b.name) if e.branch == b.name]
            calls = [e.payload for e in own if e.type == "ModelCalled" and e.payload.get("error") is None]
            images += sum(p["kind"] == "image" for p in calls)
            usd += sum(IMAGE_USD * p["usage"]["images"] for p in calls if p["kind"] == "image")
            marks += [e.payload for e in own if e.type == "BudgetReached"]
    return images, usd, marks


def test_a_capped_batch_on_two_workers_spends_as_in_one_process(tmp_path: Path, counting_env: Path) -> None:
    """35 image calls in all; a cap of $0.185 lets 18 through, in one process and on two workers alike."""
    cfg = priced_config(tmp_path / "c.toml")
    cap = 0.185
    items = collect([EXAMPLES / "stories"])
    ids = [i.story_id for i in items]
    results = {}
    for name, workers in (("one", None), ("two", 2)):
        studio = Studio(tmp_path / name)
        studio.init()
        meter = spending(cap, cfg)
        pool = open_pool(studio.spec, ws=studio.workspace, workers=workers, budget=meter)
        try:
            rows = run_batch(studio.workspace, items, pool, config=cfg).rows
        finally:
            pool.close()
        images, usd, marks = spend(studio, ids)
        results[name] = (rows, images, usd, marks)
        assert images == 18 and usd == pytest.approx(0.18) and usd <= cap, name  # exact worst cases: never past
        assert isinstance(meter.ledger, Account) and meter.ledger.held == {}, name  # handed back, no hold left
        assert meter.spent_usd == pytest.approx(usd), name  # the account agrees with the logs
        stopped = [r for r in rows if r.status == "stopped"]
        assert stopped and len(marks) == len(stopped), name  # each stopped story says why, once
        for m in marks:
            assert m["limit_usd"] == cap and m["spent_usd"] <= cap < m["spent_usd"] + m["call_worst_usd"]
            assert m["model"] == "storyboard-v1" and m["call_worst_usd"] == pytest.approx(IMAGE_USD)
        assert all(r.status in ("completed", "stopped") for r in rows), [r.to_json() for r in rows]
        assert all("budget reached" in (r.error or "") for r in stopped)
    one, two = results["one"], results["two"]
    assert [r.status for r in one[0]] == ["completed", "stopped", "stopped"]  # in turn: the first one finishes
    assert len({r.worker for r in two[0]}) == 2  # both workers spent from the one account


def test_a_worker_killed_under_a_cap_leaves_no_hold_behind(tmp_path: Path, counting_env: Path) -> None:
    """SIGKILL one worker mid-batch: Ray restarts it, the restart settles what it held at its worst case (the
    call may have been billed), the retried job resumes; the account ends with no hold, never below the logs,
    and above them by at most the one image the dead worker may have had in flight."""
    cfg = priced_config(tmp_path / "c.toml")
    cap = 0.185
    studio = Studio(tmp_path / "home")
    studio.init()
    items = collect([EXAMPLES / "stories"])
    meter = spending(cap, cfg)
    pool = open_pool(studio.spec, workers=2, budget=meter)
    rows: list[Any] = []
    try:
        victim = pool.pids()[0]  # type: ignore[attr-defined]
        runner = threading.Thread(target=lambda: rows.extend(run_batch(studio.workspace, items, pool, config=cfg).rows))
        runner.start()
        time.sleep(2.0)
        os.kill(victim, signal.SIGKILL)
        runner.join(timeout=300)
        assert not runner.is_alive(), "the batch did not finish"
        assert victim not in pool.pids()  # type: ignore[attr-defined]
    finally:
        pool.close()
    assert {r.status for r in rows} <= {"completed", "stopped"} and "stopped" in {r.status for r in rows}, \
        [r.to_json() for r in rows]
    _, usd, marks = spend(studio, [i.story_id for i in items])
    assert usd <= cap and all(m["spent_usd"] <= cap for m in marks)
    assert isinstance(meter.ledger, Account) and meter.ledger.held == {} and not meter.ledger.probes
    assert usd - 1e-9 <= meter.spent_usd <= usd + IMAGE_USD + 1e-9
    assert studio.verify().ok
    print(f"\nworker SIGKILLed under a ${cap} cap: logs ${usd:.4f}, account ${meter.spent_usd:.4f}, "
          f"{[(r.story_id, r.status, r.worker) for r in rows]}")


def normalised_error(output: str) -> str:
    """The error line and hint with the story, branch and shot masked (which job meets the cap first varies)."""
    text = re.sub(r"\(shot \d+\)", "(shot N)", output)
    text = re.sub(r"resume \S+( --branch \S+)?", "resume STORY", text)
    return "\n".join(line.strip() for line in text.splitlines() if "budget" in line)


def test_bench_on_workers_stops_at_the_cap_like_one_process(tmp_path: Path, counting_env: Path) -> None:
    cfg = priced_config(tmp_path / "c.toml")
    stories = tmp_path / "stories"
    stories.mkdir()
    write_story(stories / "pier.yaml", shots=2)
    write_story(stories / "quay.yaml", shots=2, seed=9)
    runner = CliRunner()
    out, summary = {}, {}
    for name, extra in (("one", []), ("two", ["--workers", "2"])):
        home = tmp_path / name
        done = runner.invoke(app, ["--home", str(home), "bench", str(stories), "--methods", "full", "--config",
                                   str(cfg), "--budget", "0.035", *extra])
        assert done.exit_code == 12, done.output
        images, usd, marks = spend(Studio(home), ["pier--full", "quay--full"])
        assert images == 3 and usd <= 0.035 and marks, name
        out[name] = normalised_error(done.output)
        more = runner.invoke(app, ["--home", str(home), "bench", str(stories), "--methods", "full", "--config",
                                   str(cfg), "--budget", "1", "--json", *extra])  # a higher budget finishes it
        assert more.exit_code == 0, more.output
        summary[name] = json.loads(more.stdout)["cost"]
    assert out["one"] == out["two"] and "budget reached: $0.0300 of $0.0350 spent" in out["one"], out
    assert summary["one"] == summary["two"] and 0.03 < summary["one"]["total_usd"] <= 1, summary


def test_parallel_director_on_workers_raises_the_budget_error(tmp_path: Path, counting_env: Path) -> None:
    cfg = priced_config(tmp_path / "c.toml")
    brief = EXAMPLES / "briefs" / "dewline_serum.yaml"
    errors = {}
    for name, workers in (("one", None), ("two", 2)):
        studio = Studio(tmp_path / name)
        with pytest.raises(BudgetExceeded) as e:
            studio.direct(brief, config=cfg, iterations=2, parallel=2, budget=0.065, workers=workers)
        errors[name] = e.value
        images, usd, _ = spend(studio, ["dewline_serum"])
        assert images == 6 and usd <= 0.065, name
    assert errors["one"].exit_code == errors["two"].exit_code == 12
    assert normalised_error(errors["one"].message) == normalised_error(errors["two"].message)


def test_batch_budget_caps_each_story_alike_on_workers(tmp_path: Path, counting_env: Path) -> None:
    """`batch --budget` caps each story on its own: the same rows and the same spend (`--json`) on two workers."""
    cfg = priced_config(tmp_path / "c.toml")
    runner = CliRunner()
    shown = {}
    for name, extra in (("one", []), ("two", ["--workers", "2"])):
        done = runner.invoke(app, ["--home", str(tmp_path / name), "batch", str(EXAMPLES / "stories"), "--config",
                                   str(cfg), "--budget", "0.055", "--json", *extra])
        assert done.exit_code == 1, done.output  # a stopped story is a job that did not finish
        out = json.loads(done.stdout)
        shown[name] = ([(r["story"], r["status"], r["calls_made"]) for r in out["jobs"]], out["cost"])
        assert [r["status"] for r in out["jobs"]] == ["stopped"] * 3
        assert all(usd == pytest.approx(0.05) for usd in out["cost"]["usd"].values()), out["cost"]
    assert shown["one"] == shown["two"]

"""`batch`, `bench` and `direct --parallel` on Ray worker actors (one local Ray for the whole run):
logs equal to one-process runs; SIGKILL of a worker mid-batch is absorbed by Ray's actor restarts and
task retries, the retried job resumes its branch and no recorded call is requested again; the same
on PostgreSQL + a loopback S3 bucket."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from scale.helpers import EXAMPLES, backend_keys, counting_config, story_log

from codirector.engine.jobs import Job
from codirector.engine.scale import open_pool
from codirector.engine.scale.batch import collect, run_batch
from codirector.engine.studio import Studio
from codirector.errors import RunStateError

from support import write_story

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session")]
STORIES = ("bakery", "lighthouse", "night_market")
TRIALS = int(os.environ.get("CODIRECTOR_CHAOS_TRIALS", "10"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list]]:  # type: ignore[type-arg]
    """Each bundled story (and a brief) run alone, in one process."""
    root = tmp_path_factory.mktemp("reference")
    cfg = counting_config(root / "c.toml")
    old = os.environ.get("CODIRECTOR_PLUGINS")
    os.environ["CODIRECTOR_PLUGINS"] = "codirector_test_plugins"
    try:
        solo = Studio(root / "home")
        for name in STORIES:
            solo.run(EXAMPLES / "stories" / f"{name}.yaml", config=cfg)
        solo.direct(EXAMPLES / "briefs" / "dewline_serum.yaml", config=cfg)
        return {sid: story_log(solo, sid) for sid in (*STORIES, "dewline_serum")}
    finally:
        if old is None:
            os.environ.pop("CODIRECTOR_PLUGINS", None)
        else:
            os.environ["CODIRECTOR_PLUGINS"] = old


def test_batch_on_two_workers_equals_one_process(tmp_path: Path, counting_env: Path, reference) -> None:  # type: ignore[no-untyped-def]
    cfg = counting_config(tmp_path / "c.toml")
    studio = Studio(tmp_path / "home")
    result = studio.batch([EXAMPLES / "stories", EXAMPLES / "briefs" / "dewline_serum.yaml"], config=cfg, workers=2)
    assert [r.status for r in result.rows] == ["completed"] * 4, [r.to_json() for r in result.rows]
    assert result.pool == "ray" and len({r.worker for r in result.rows}) == 2
    for sid, log in reference.items():
        assert story_log(studio, sid) == log, sid
    assert studio.verify().ok


def test_sigkill_a_worker_mid_batch(tmp_path: Path, counting_env: Path) -> None:
    """TRIALS batches of three new stories on one pool of two workers; in each, one worker is SIGKILLed at a
    random moment. Each story's log must equal its run alone in one process (a second home)."""
    cfg = counting_config(tmp_path / "c.toml")
    studio, solo = Studio(tmp_path / "home"), Studio(tmp_path / "solo")
    studio.init()
    pool = open_pool(studio.spec, workers=2)
    rng = random.Random(2026)
    try:
        pids = pool.pids()  # type: ignore[attr-defined]
        warm = _stories(tmp_path / "warm", "warm", 0)
        t = time.perf_counter()
        run_batch(studio.workspace, collect([warm]), pool, config=cfg)
        duration = time.perf_counter() - t
        for trial in range(TRIALS):
            folder = _stories(tmp_path / f"t{trial}", f"t{trial}", trial + 1)
            items = collect([folder])
            before = len(counting_env.read_text().splitlines())
            rows: list = []  # type: ignore[type-arg]

            def batch(rows: list = rows, items: list = items) -> None:  # type: ignore[type-arg]
                rows.extend(run_batch(studio.workspace, items, pool, config=cfg).rows)

            runner = threading.Thread(target=batch)
            runner.start()
            time.sleep(rng.uniform(0.0, duration))
            victim = rng.choice(pids)
            os.kill(victim, signal.SIGKILL)
            recorded_at_kill = {k for i in items if i.story_id in studio.workspace.story_ids()
                                for k in backend_keys(studio, i.story_id)}
            runner.join(timeout=300)
            assert not runner.is_alive(), f"trial {trial}: the batch did not finish"
            assert [r.status for r in rows] == ["completed"] * len(items), [r.to_json() for r in rows]
            lines = Counter(counting_env.read_text().splitlines()[before:])
            twice = {k for k, n in lines.items() if n > 1}
            assert not twice & recorded_at_kill, f"trial {trial}: recorded calls requested again"
            assert len(twice) <= 1 and all(lines[k] == 2 for k in twice), f"trial {trial}: {twice}"
            for item in items:  # the reference: the same story run alone, in one process
                solo.run(item.path, config=cfg)
                assert story_log(studio, item.story_id) == story_log(solo, item.story_id), f"trial {trial}"
            pids_now = pool.pids()  # type: ignore[attr-defined]
            assert victim not in pids_now  # Ray restarted the killed worker
            pids = pids_now
        report = studio.verify()
        assert report.ok, [p.line() for p in report.problems]
    finally:
        pool.close()
    with pytest.raises(RunStateError) as closed:  # a closed pool starts nothing, and says how to go on by hand
        pool.submit(Job("pier", "night"))  # type: ignore[attr-defined]
    assert "was not started" in closed.value.message
    assert closed.value.hint == "continue it with `codirector run --story pier --branch night`"
    print(f"\n{TRIALS} workers SIGKILLed mid-batch: every batch completed with the one-process logs; verify ok")


def _stories(folder: Path, prefix: str, seed: int) -> Path:
    """Three 3-shot stories whose every text is tagged with its name, so no two stories make the same request
    (the call log counts requests, not stories)."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    for j in range(3):
        tag = f"{prefix}-s{j}"
        path = write_story(folder / f"{tag}.yaml", shots=3, seed=100 * seed + j, title=f"Pier {tag}")
        data = yaml.safe_load(path.read_text())
        for member in data["cast"]:
            member["description"] += f" ({tag})"
        for shot in data["shots"]:
            shot["keyframe"] += f" ({tag})"
            shot["motion"] += f" ({tag})"
            for ev in shot.get("evolves", []):
                ev["description"] += f" ({tag})"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


@pytest.mark.postgres
def test_batch_on_postgres_and_s3(tmp_path: Path, counting_env: Path, pg_url: str, s3_bucket: str,
                                  reference: dict[str, dict[str, list]]) -> None:  # type: ignore[type-arg]
    cfg = counting_config(tmp_path / "c.toml")
    studio = Studio(tmp_path / "home", db=pg_url, blobs=s3_bucket)
    studio.init()
    aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    pool = open_pool(studio.spec, workers=2, env=aws)  # the workers reach the loopback bucket like the driver
    try:
        result = run_batch(studio.workspace, collect([EXAMPLES / "stories"]), pool, config=cfg)
    finally:
        pool.close()
    assert [r.status for r in result.rows] == ["completed"] * 3, [r.to_json() for r in result.rows]
    for sid in STORIES:
        assert story_log(studio, sid) == reference[sid]
    report = studio.verify()
    assert report.ok and report.blobs > 0, [p.line() for p in report.problems]
    assert not (tmp_path / "home" / "blobs").exists()


def test_bench_on_workers_gives_the_same_table(tmp_path: Path, counting_env: Path) -> None:
    cfg = counting_config(tmp_path / "c.toml")
    stories = tmp_path / "stories"
    stories.mkdir()
    write_story(stories / "pier.yaml", shots=2)
    write_story(stories / "quay.yaml", shots=2, seed=9)
    methods = ["full", "no-memory"]
    one = Studio(tmp_path / "one").bench(stories, methods=methods, config=cfg)
    many = Studio(tmp_path / "many").bench(stories, methods=methods, config=cfg, workers=2)
    assert many.rows == one.rows and len(one.rows) == 2
    assert [r.events_written for r in many.runs] == [r.events_written for r in one.runs]

"""``batch --concurrency N``: N stories in flight in one process, within the provider's cap, with the logs
each story would have alone; Ctrl-C stops it at once and a second batch continues without waiting."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codirector.cli import app as cli
from codirector.engine.studio import Studio

from hosted_loopback import FAL_TEST_KEY, FalServer, fal_config
from processes import ForkServer, cli_env
from support import counting_config, write_story

runner = CliRunner()


def stories(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        write_story(folder / f"s{i}.yaml", shots=2, title=f"Story {i}", seed=10 + i)
    return folder


def without_jobs(studio: Studio, sid: str) -> list[tuple[str, int | None]]:
    return [(e.type, e.shot) for e in studio.log(sid)]


def test_concurrency_keeps_stories_in_flight_within_the_providers_cap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _isolated_home: Path) -> None:
    monkeypatch.setenv("FAL_KEY", FAL_TEST_KEY)
    monkeypatch.setenv("CODIRECTOR_PLUGINS", "codirector_test_plugins")
    folder = stories(tmp_path / "stories", 4)
    server = FalServer(job_seconds=0.3)
    try:
        config = fal_config(tmp_path / "fal.toml", server, extra="max_in_flight = 2")
        result = runner.invoke(cli, ["batch", str(folder), "--config", str(config), "--concurrency", "4", "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["completed"] == 4 and report["pool"] == "threads" and report["workers"] == 4
        assert len({row["worker"] for row in report["jobs"]}) > 1  # the stories ran on several threads
        assert 1 < server.max_in_flight <= 2  # concurrent, and never past the provider's cap
        assert len(server.submits()) == 8  # one job per clip
        together = Studio(_isolated_home)

        server.job_seconds = 0.02  # the one-at-a-time runs are only the logs to compare with: no overlap to see
        alone_home = tmp_path / "alone"
        for i in range(4):
            code = runner.invoke(cli, ["--home", str(alone_home), "run", str(folder / f"s{i}.yaml"), "--config",
                                       str(config)]).exit_code
            assert code == 0
        alone = Studio(alone_home)
        for i in range(4):
            assert without_jobs(together, f"s{i}") == without_jobs(alone, f"s{i}")
            clips = [e.payload["blob"] for e in together.log(f"s{i}") if e.type == "VideoGenerated"]
            assert clips == [e.payload["blob"] for e in alone.log(f"s{i}") if e.type == "VideoGenerated"]
    finally:
        server.close()


def test_concurrency_is_refused_with_ray_and_below_one(tmp_path: Path) -> None:
    folder = stories(tmp_path / "stories", 1)
    result = runner.invoke(cli, ["batch", str(folder), "--concurrency", "2", "--workers", "2"])
    assert result.exit_code == 2 and "--concurrency" in result.output and "--workers" in result.output
    result = runner.invoke(cli, ["batch", str(folder), "--concurrency", "0"])
    assert result.exit_code == 2 and "at least 1" in result.output


def leases(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT count(*) FROM branch_leases").fetchone()[0])


@pytest.mark.slow
def test_ctrl_c_stops_a_concurrent_batch_and_the_next_one_continues_at_once(
        tmp_path: Path, fork_server: ForkServer) -> None:
    folder = stories(tmp_path / "stories", 3)
    server = FalServer(job_seconds=2.0)
    try:
        home = tmp_path / "home"
        env = cli_env(home, ttl=60)  # a lease left behind would hold the next batch for a minute
        env["FAL_KEY"] = FAL_TEST_KEY
        config = fal_config(tmp_path / "fal.toml", server)
        proc = fork_server.start(["batch", str(folder), "--config", str(config), "--concurrency", "3"], env)
        deadline = time.monotonic() + 60
        while len(server.submits()) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, "the batch ended before its jobs ran"
            time.sleep(0.01)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
        assert time.monotonic() - sent < 10
        assert leases(home / "codirector.db") == 0  # every lease given back
        server.job_seconds = 0.05
        started = time.monotonic()
        again = fork_server.run(["batch", str(folder), "--config", str(config), "--concurrency", "3"], env)
        assert again.returncode == 0, again.stderr
        assert time.monotonic() - started < 30  # no wait for a lease to expire
        assert len(server.submits()) == 6  # the three in flight were collected, the three second shots submitted
    finally:
        server.close()


def test_direct_on_threads_writes_what_one_at_a_time_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODIRECTOR_PLUGINS", "codirector_test_plugins")
    monkeypatch.setenv("CODIRECTOR_TEST_CALL_LOG", str(tmp_path / "calls.log"))
    config = str(counting_config(tmp_path / "counting.toml"))
    brief = str(Path(__file__).resolve().parents[2] / "examples" / "briefs" / "dewline_serum.yaml")
    logs = []
    for name, extra in (("threads", ["--concurrency", "2"]), ("alone", [])):
        home = str(tmp_path / name)
        result = runner.invoke(cli, ["--home", home, "direct", brief, "--iterations", "2", "--parallel", "2",
                                     "--config", config, "--json", *extra])
        assert result.exit_code == 0, result.output
        studio = Studio(home)
        logs.append({b.name: [(e.type, e.shot, e.payload.get("blob")) for e in studio.log("dewline_serum", b.name)]
                     for b in studio.store.story("dewline_serum").branches})
    assert logs[0] == logs[1] and len(logs[0]) >= 3  # main and both pulls, event for event

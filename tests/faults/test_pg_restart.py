"""PostgreSQL restarted (stop, 5 s, start) in the middle of a 4-story batch on two Ray workers: every job rides it
out (reads, lease heartbeats and appends retried within CODIRECTOR_DB_RETRY_SECONDS), the batch completes, each
log equals its one-process run, verify passes, and no model call was requested more often than in that run.

The server restarted is this module's own (tests/support.py's ``PostgresServer`` in a temporary folder, restarted
on the same port and data folder), never the session's, which other tests share."""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from scale.helpers import EXAMPLES, counting_config, story_log

from codirector.engine.studio import Studio

from support import PostgresServer, pg_bindir

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.usefixtures("ray_session")]
JOBS = [EXAMPLES / "stories" / f"{name}.yaml" for name in ("bakery", "lighthouse", "night_market")]
JOBS.append(EXAMPLES / "briefs" / "dewline_serum.yaml")
DOWN_S = 5.0


class RestartableServer(PostgresServer):
    """A throwaway cluster that can be stopped and started again on the same port with its data kept."""

    def _ctl(self, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), *args], check=True,
                       capture_output=True, timeout=120)

    def halt(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")  # clients' sessions are terminated, as in a restart or failover

    def resume(self) -> None:
        opts = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        self._ctl("-o", opts, "-l", str(self.base / "log"), "-w", "start")


@pytest.fixture
def own_pg() -> Iterator[RestartableServer]:
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it")
    server = RestartableServer(bindir)
    server.start()
    yield server
    server.stop()


def solo_runs(root: Path, calls: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, dict], Counter[str]]:  # type: ignore[type-arg]
    """Each job run alone in one process (SQLite): the logs, and the calls its backends were asked."""
    root.mkdir(parents=True, exist_ok=True)
    cfg = counting_config(root / "c.toml")
    with monkeypatch.context() as m:
        m.setenv("CODIRECTOR_TEST_CALL_LOG", str(calls))
        solo = Studio(root / "home")
        for path in JOBS:
            if path.parent.name == "briefs":
                solo.direct(path, config=cfg)
            else:
                solo.run(path, config=cfg)
        logs = {sid: story_log(solo, sid) for sid in (p.stem for p in JOBS)}
        solo.close()
    return logs, Counter(calls.read_text().splitlines())


def test_postgres_restarted_mid_batch(tmp_path: Path, counting_env: Path, own_pg: RestartableServer,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODIRECTOR_DB_RETRY_SECONDS", "30")  # forwarded to the workers with the other settings
    reference, asked_once = solo_runs(tmp_path / "solo", tmp_path / "solo-calls.log", monkeypatch)
    total = sum(asked_once.values())

    url = own_pg.create_database("restart")
    studio = Studio(tmp_path / "home", db=url)
    studio.init()
    rows: list = []  # type: ignore[type-arg]
    failed: list[BaseException] = []

    def batch() -> None:
        try:
            rows.extend(studio.batch(JOBS, config=counting_config(tmp_path / "c.toml"), workers=2).rows)
        except BaseException as e:  # noqa: BLE001 - reported by the test below
            failed.append(e)

    runner = threading.Thread(target=batch)
    runner.start()
    deadline = time.monotonic() + 120
    while (len(counting_env.read_text().splitlines()) if counting_env.exists() else 0) < total // 3:
        assert runner.is_alive() and time.monotonic() < deadline, f"the batch ended before the restart: {failed}"
        time.sleep(0.02)
    made_before = len(counting_env.read_text().splitlines())
    t = time.monotonic()
    own_pg.halt()
    time.sleep(DOWN_S)
    own_pg.resume()
    outage = time.monotonic() - t
    assert runner.is_alive(), f"the batch ended during the outage: {failed or [r.to_json() for r in rows]}"
    runner.join(timeout=180)
    assert not runner.is_alive(), "the batch did not finish after the restart"
    assert not failed, failed
    assert [r.status for r in rows] == ["completed"] * 4, [r.to_json() for r in rows]
    for sid, log in reference.items():
        assert story_log(studio, sid) == log, sid
    asked = Counter(counting_env.read_text().splitlines())
    assert asked == asked_once  # every call as often as in the one-process runs: none repeated
    report = studio.verify()
    assert report.ok, [p.line() for p in report.problems]
    studio.close()
    print(f"\nPostgreSQL down {outage:.1f} s after {made_before}/{total} calls; 4 jobs completed, logs equal, "
          f"verify ok, {total} calls, none repeated")

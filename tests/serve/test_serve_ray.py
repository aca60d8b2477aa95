"""`codirector serve --workers/--ray`: runs started from the page are jobs on a Ray pool.

Over real HTTP (a StudioServer on 127.0.0.1): a branch started from a shot runs in a Ray worker
process, not the server's, verifies, and writes the same log as the same branch run by the server's
own thread runner; a job that fails in its worker shows its error; a live lease is still refused
before anything is queued. The CLI refuses ``--workers 0`` and names the extra when Ray is missing.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from scale.helpers import counting_config, story_log
from typer.testing import CliRunner

from codirector.cli import app as cli
from codirector.engine.studio import Studio
from codirector.errors import ConfigError, InvalidArgument
from codirector.serve.jobs import Job, Runner

from support import write_story

STORY = "pier"
PROMPT = "Ada and Ben shelter in a boathouse as a storm rolls in"


@dataclass
class Home:
    root: Path
    config: Path


@pytest.fixture(scope="module")
def pier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    """A completed 2-shot story, run in this process with the counting backends (the Ray workers load
    them too: the ``ray_session`` fixture and the forwarded CODIRECTOR_PLUGINS)."""
    base = tmp_path_factory.mktemp("serve-ray")
    old = os.environ.get("CODIRECTOR_PLUGINS")
    os.environ["CODIRECTOR_PLUGINS"] = "codirector_test_plugins"
    try:
        home = Home(base / "home", counting_config(base / "c.toml"))
        with Studio(home.root) as studio:
            studio.init()
            studio.run(write_story(base / "pier.yaml", shots=2), config=home.config, story_id=STORY)
        yield home
    finally:
        if old is None:
            os.environ.pop("CODIRECTOR_PLUGINS", None)
        else:
            os.environ["CODIRECTOR_PLUGINS"] = old


def post(url: str, path: str, form: str) -> int:
    request = urllib.request.Request(url + path, data=form.encode(), method="POST", headers={"Origin": url})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def finished(runner: Runner, story: str, branch: str, *, within: float = 180) -> Job:
    """The runner's record of a job, once it is no longer queued or running."""
    deadline = time.monotonic() + within
    while True:
        job = runner.job(story, branch)
        if job is not None and not job.active:
            return job
        assert time.monotonic() < deadline, f"{story}/{branch} still {job.state if job else 'unknown'}"
        time.sleep(0.2)


def branch_from_the_page(root: Path, *, workers: int | None) -> tuple[Job, list[int]]:
    """Serve ``root`` (on a Ray pool of ``workers``, or the thread runner), branch ``alt`` from shot 2 with a new
    keyframe prompt through POST /action/branch, and wait for the run; its job record and the pool's pids."""
    from codirector.engine.scale import open_ray_pool
    from codirector.serve.app import create_app
    from codirector.serve.server import StudioServer

    studio = Studio(root)
    pool = open_ray_pool(studio.spec, workers=workers) if workers else None
    pids = pool.pids() if pool is not None else []  # type: ignore[attr-defined]
    try:
        with StudioServer.start(create_app(studio, pool=pool)) as server:
            runner = server.app.state.studio_app.runner
            assert runner.where == ("runs started here go to 2 Ray workers" if workers == 2
                                    else "runs started here keep going in this process")  # the startup line's
            form = f"story={STORY}&branch=main&name=alt&shot=2&keyframe.2={urllib.parse.quote(PROMPT)}"
            assert post(server.url, "/action/branch", form) == 200  # redirected to the branch's timeline
            job = finished(runner, STORY, "alt")
            with urllib.request.urlopen(f"{server.url}/timeline?story={STORY}&branch=alt", timeout=60) as r:
                assert b'data-status="complete"' in r.read()
    finally:
        studio.close()
    return job, pids


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_branch_from_the_page_runs_on_a_ray_worker(pier: Home, tmp_path: Path) -> None:
    solo = tmp_path / "solo"
    shutil.copytree(pier.root, solo)  # the same completed story, for the thread runner's run of the branch
    job, pids = branch_from_the_page(pier.root, workers=2)
    assert (job.state, job.error) == ("done", None)
    pid = int((job.worker or "").rsplit(":", 1)[-1])
    assert pid != os.getpid() and pid in pids, (job.worker, pids)  # a Ray worker process ran it

    here, _ = branch_from_the_page(solo, workers=None)
    assert (here.state, here.error) == ("done", None) and here.worker is not None
    assert int(here.worker.rsplit(":", 1)[-1]) == os.getpid()  # the thread runner: in the server's process

    with Studio(pier.root) as ray_run, Studio(solo) as thread_run:
        log = story_log(ray_run, STORY)
        assert any(t == "StoryCompleted" for t, *_ in log["alt"])
        assert any(PROMPT in payload for *_, payload in log["alt"])
        assert log["alt"] == story_log(thread_run, STORY)["alt"]
        report = ray_run.verify(STORY)
        assert report.ok, [p.line() for p in report.problems]


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_a_failed_job_shows_its_error_and_refusals_come_first(pier: Home) -> None:
    """A worker that cannot build the story's backends (no plugin there) fails the job: the page shows why.
    A live lease, or a branch that does not exist, is refused before anything is queued."""
    from codirector.engine.scale import open_ray_pool
    from codirector.serve.app import create_app
    from codirector.serve.server import StudioServer

    studio = Studio(pier.root)
    studio.branch(STORY, from_shot=2, name="stranded", overrides={"shots.2.keyframe": "Ben waits alone at dusk"})
    pool = open_ray_pool(studio.spec, workers=1, env={"CODIRECTOR_PLUGINS": ""})  # no counting backends there
    try:
        with StudioServer.start(create_app(studio, pool=pool)) as server:
            runner = server.app.state.studio_app.runner
            with studio.workspace.lease(STORY, "stranded"):  # as a CLI process would hold it
                assert post(server.url, "/action/run", f"story={STORY}&branch=stranded") == 409
            assert post(server.url, "/action/run", f"story={STORY}&branch=ghost") == 404
            assert runner.jobs() == {}  # both refused before anything was queued

            assert post(server.url, "/action/run", f"story={STORY}&branch=stranded") == 200
            job = finished(runner, STORY, "stranded")
            assert job.state == "failed" and job.error and "counting" in job.error, job
            assert job.worker and int(job.worker.rsplit(":", 1)[-1]) != os.getpid()
            with urllib.request.urlopen(f"{server.url}/timeline?story={STORY}&branch=stranded", timeout=60) as r:
                assert 'data-job="failed"' in (html := r.read().decode()) and "counting" in html
    finally:
        studio.close()


def test_serve_workers_zero_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--home", str(tmp_path / "h"), "serve", "--workers", "0", "--port", "0"])
    assert result.exit_code == InvalidArgument.exit_code, result.output
    assert "--workers must be 1 or more, got 0" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "h").exists()  # refused before anything started


def test_serve_workers_without_ray_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    monkeypatch.delitem(sys.modules, "codirector.engine.scale.ray_pool", raising=False)
    home = ["--home", str(tmp_path / "h")]
    assert CliRunner().invoke(cli, [*home, "init"]).exit_code == 0
    result = CliRunner().invoke(cli, [*home, "serve", "--workers", "2", "--port", "0"])
    assert result.exit_code == ConfigError.exit_code, result.output
    assert "Ray, which is not installed" in result.output and 'pip install "codirector[ray]"' in result.output
    assert "Traceback" not in result.output

"""A provider job is never paid for twice: SIGKILL a run while a fal job is queued, and while it runs, then resume.

Each run is a real `codirector` process (the session's fork server); the clips come from a ``FalServer`` on
loopback whose jobs take long enough to be killed in. After ``resume`` the server has seen exactly one submit
per clip, the recorded clip of the interrupted shot is the job that was in flight, and the log equals an
uninterrupted run's, ids and timestamps aside (job ids, and the server's port, differ from run to run).
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from codirector.engine.studio import Studio

from hosted_loopback import FAL_TEST_KEY, FalServer, fal_config
from processes import ForkServer, cli_env, event_payloads, kill_when, video_answers
from support import normalised, write_story


def fal_env(home: Path) -> dict[str, str]:
    env = cli_env(home, ttl=0.5)
    env["FAL_KEY"] = FAL_TEST_KEY
    return env



def without_job_ids(log: list[Any]) -> list[tuple[str, int | None, str]]:
    """The log as ``normalised`` gives it, each job's id replaced by its order of submission and the loopback
    server's address (a new port each run) by SERVER."""
    out = []
    names: dict[str, str] = {}
    for kind, shot, payload in normalised(log):
        data = json.loads(payload)
        ticket = data.get("ticket")
        if ticket is not None:
            names.setdefault(ticket["job_id"], f"job{len(names) + 1}")
            data["ticket"] = {"provider": ticket["provider"], "job_id": names[ticket["job_id"]]}
        job = (data.get("response") or {}).get("job") if isinstance(data.get("response"), dict) else None
        if job is not None:
            data["response"]["job"] = {"provider": job["provider"], "job_id": names.get(job["job_id"], "?")}
        text = re.sub(r"http://(127\.0\.0\.1|localhost):\d+", "SERVER", json.dumps(data, sort_keys=True))
        out.append((kind, shot, text))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("when", ["queued", "running"])
def test_sigkill_while_a_fal_job_is_in_flight_then_resume(tmp_path: Path, fork_server: ForkServer, when: str) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=3)

    reference_server = FalServer(job_seconds=0.05)
    try:
        ref_home = tmp_path / "reference"
        config = fal_config(tmp_path / "ref.toml", reference_server)
        done = fork_server.run(["run", str(story), "--config", str(config)], fal_env(ref_home))
        assert done.returncode == 0, done.stderr
        reference = without_job_ids(Studio(ref_home).log("pier"))
    finally:
        reference_server.close()

    server = FalServer(job_seconds=1.2)  # IN_QUEUE for its first 0.4 s, then IN_PROGRESS
    try:
        home = tmp_path / when
        db = home / "codirector.db"
        config = fal_config(tmp_path / f"{when}.toml", server)
        proc = fork_server.start(["run", str(story), "--config", str(config)], fal_env(home))

        def second_job_in_flight() -> bool:  # shot 2's job is in the log, its answer is not
            return len(event_payloads(db, "ProviderJobSubmitted")) >= 2 and video_answers(db) == 1

        killed = kill_when(proc, second_job_in_flight, delay=0.05 if when == "queued" else 0.7, poll=0.005)
        killed_at = time.monotonic()
        assert killed, "the run finished before it could be killed"
        in_flight = event_payloads(db, "ProviderJobSubmitted")[-1]["ticket"]["job_id"]
        assert server.jobs[in_flight].state(killed_at) == ("IN_QUEUE" if when == "queued" else "IN_PROGRESS")
        assert video_answers(db) == 1 and len(server.submits()) == 2

        resumed = fork_server.run(["resume", "pier", "--wait"], fal_env(home))
        assert resumed.returncode == 0, resumed.stderr
        assert len(server.submits()) == 3  # one per clip: the job in flight was collected, not submitted again
        studio = Studio(home)
        log = studio.log("pier")
        shot2 = next(e for e in log if e.type == "VideoGenerated" and e.shot == 2)
        assert studio.blobs.get(shot2.payload["blob"]) == server.output_of(server.jobs[in_flight])
        assert without_job_ids(log) == reference
        assert fork_server.run(["verify", "pier"], fal_env(home)).returncode == 0
    finally:
        server.close()


@pytest.mark.slow
def test_ctrl_c_leaves_the_job_running_and_resume_collects_it(tmp_path: Path, fork_server: ForkServer) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=2)
    server = FalServer(job_seconds=3.0)
    try:
        home = tmp_path / "home"
        db = home / "codirector.db"
        config = fal_config(tmp_path / "fal.toml", server)
        proc = fork_server.start(["run", str(story), "--config", str(config)], fal_env(home), capture=True)
        deadline = time.monotonic() + 60
        while not event_payloads(db, "ProviderJobSubmitted"):
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its first job"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
        _, err = proc.output()
        job_id = event_payloads(db, "ProviderJobSubmitted")[0]["ticket"]["job_id"]
        assert job_id in err and "still running at the provider" in err and "codirector resume" in err
        assert not server.jobs[job_id].done(time.monotonic())  # it was left running, not waited for
        resumed = fork_server.run(["resume", "pier", "--wait"], fal_env(home))
        assert resumed.returncode == 0, resumed.stderr
        assert len(server.submits()) == 2  # the job Ctrl-C left running was collected
    finally:
        server.close()

"""A ComfyUI prompt is never queued twice: SIGKILL a run while a prompt runs on the server, then resume.

Each run is a real `codirector` process (the session's fork server); the clips come from a ``ComfyServer`` on
loopback whose prompts take long enough to be killed in. After ``resume`` the server has seen exactly one
``/prompt`` per clip, the interrupted shot's clip is the prompt that was running, and the log equals an
uninterrupted run's, ids and timestamps aside (prompt ids and the server's port differ from run to run).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from comfyui_loopback import ComfyServer, comfy_config

from codirector.engine.studio import Studio

from processes import ForkServer, cli_env, event_payloads, kill_when, video_answers
from support import normalised, write_story


def without_job_ids(log: list[Any]) -> list[tuple[str, int | None, str]]:
    """The log as ``normalised`` gives it, each prompt id replaced by its order of queueing, servers and the
    absolute workflow path (each run's own folder) left out."""
    out = []
    names: dict[str, str] = {}
    for kind, shot, payload in normalised(log):
        data = json.loads(payload)
        ticket = data.get("ticket")
        if ticket is not None:
            names.setdefault(ticket["job_id"], f"job{len(names) + 1}")
            data["ticket"] = {"provider": ticket["provider"], "job_id": names[ticket["job_id"]]}
        job = data["response"].get("job") if isinstance(data.get("response"), dict) else None
        if job is not None:
            data["response"]["job"] = {"provider": job["provider"], "job_id": names.get(job["job_id"], "?")}
        if kind == "StoryCreated":
            data = {k: v for k, v in data.items() if k not in ("settings", "source")}
        out.append((kind, shot, json.dumps(data, sort_keys=True)))
    return out


@pytest.mark.slow
def test_sigkill_while_a_prompt_runs_then_resume(tmp_path: Path, fork_server: ForkServer) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=3)

    reference_server = ComfyServer(job_seconds=0.05)
    try:
        (tmp_path / "ref").mkdir()
        config = comfy_config(tmp_path / "ref", [reference_server])
        done = fork_server.run(["run", str(story), "--config", str(config)], cli_env(tmp_path / "reference"))
        assert done.returncode == 0, done.stderr
        reference = without_job_ids(Studio(tmp_path / "reference").log("pier"))
    finally:
        reference_server.close()

    server = ComfyServer(job_seconds=1.5)
    try:
        home = tmp_path / "killed"
        db = home / "codirector.db"
        (tmp_path / "cfg").mkdir()
        config = comfy_config(tmp_path / "cfg", [server])
        proc = fork_server.start(["run", str(story), "--config", str(config)], cli_env(home, ttl=0.5), capture=True)

        def second_prompt_running() -> bool:  # shot 2's prompt is in the log, its answer is not
            return len(event_payloads(db, "ProviderJobSubmitted")) >= 2 and video_answers(db) == 1

        assert kill_when(proc, second_prompt_running, delay=0.5), f"the run ended before its kill: {proc.output()}"
        in_flight = event_payloads(db, "ProviderJobSubmitted")[-1]["ticket"]["job_id"]
        assert len(server.posts("/prompt")) == 2 and in_flight not in server.history  # still running there

        resumed = fork_server.run(["resume", "pier", "--wait"], cli_env(home, ttl=0.5))
        assert resumed.returncode == 0, resumed.stderr
        assert len(server.posts("/prompt")) == 3  # one per clip: the running prompt was collected, not queued again
        studio = Studio(home)
        log = studio.log("pier")
        shot2 = next(e for e in log if e.type == "VideoGenerated" and e.shot == 2)
        assert studio.blobs.get(shot2.payload["blob"]) == server.output_of(in_flight)
        assert without_job_ids(log) == reference
        assert fork_server.run(["verify", "pier"], cli_env(home)).returncode == 0
    finally:
        server.close()

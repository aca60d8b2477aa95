"""`stories` after a SIGKILL: the dead run is not shown as running, and the table says the next run takes over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from processes import ForkServer, cli_env, kill_after_shot
from support import counting_config, write_story


@pytest.mark.slow
def test_a_killed_run_is_not_listed_as_running(tmp_path: Path, fork_server: ForkServer) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=3)
    home = tmp_path / "home"
    env = cli_env(home, ttl=600)  # the lease would outlive the test: only "its process has ended" frees it
    proc = fork_server.start(["run", str(story), "--config", str(counting_config(tmp_path / "c.toml"))], env)
    assert kill_after_shot(proc, home / "codirector.db", 1)
    listed = fork_server.run(["stories", "--json"], env)
    assert listed.returncode == 0, listed.stderr
    (pier,) = json.loads(listed.stdout)
    (main,) = pier["branches"]
    assert main["running"] is False and main["lease"]["live"] is True  # held on paper, by a process that is gone
    table = fork_server.run(["stories"], {**env, "COLUMNS": "300"})  # wide enough for one line a branch
    assert "its process has ended: the next run takes over at once" in table.stdout

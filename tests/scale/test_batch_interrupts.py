"""`batch` stopped and started again, as real `codirector` processes: Ctrl-C (SIGINT) of a batch on two Ray workers
exits 130 within seconds, kills the workers and frees their branch leases, so the next batch starts at once and
ends with the logs of uninterrupted runs; per-story progress is shown while the workers run; a re-run with nothing
left to do starts no pool; `--ray` that nothing answers fails in seconds naming the address; every bad file of a
batch is reported at once, before anything is written."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scale.helpers import counting_config, story_log

from codirector.engine.scale.batch import collect
from codirector.engine.scale.cluster import check_address, check_reachable
from codirector.engine.studio import Studio
from codirector.errors import ConfigError, StoryFileError
from codirector.store.leases import process_start

from processes import ForkServer, cli_env
from support import write_story

STORIES = ("pier-a", "pier-b", "pier-c")


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "stories"
    folder.mkdir()
    for i, name in enumerate(STORIES):
        write_story(folder / f"{name}.yaml", shots=2, seed=10 + i, title=f"Pier {name}")
    return folder


def _leases(db: Path) -> list[tuple[str, str, int]]:
    """(story, host, pid) of every lease row, read-only; [] while the store does not exist yet."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return [(s, h, int(p)) for s, h, p in conn.execute("SELECT story_id, host, pid FROM branch_leases")]
    except sqlite3.Error:
        return []


@pytest.fixture
def ray_dir() -> Iterator[Path]:
    """A short folder for a command's own local Ray (its socket paths must stay under 108 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="cdr-ray-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _ray_env(home: Path, ray_dir: Path, **extra: str) -> dict[str, str]:
    """A command's environment with its own Ray folders (the local Ray it starts keeps out of the user's)."""
    env = cli_env(home, ttl=60)  # a lease left behind would outlive the test
    env.update(HOME=str(ray_dir / "home"), RAY_TMPDIR=str(ray_dir / "r"), **extra)
    return env


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "exit_code", "said"), [(signal.SIGINT, 130, "interrupted"),
                                                       (signal.SIGTERM, 143, "terminated")])
def test_sigint_of_a_batch_on_ray_workers_frees_their_leases_and_the_next_batch_starts_at_once(
    tmp_path: Path, fork_server: ForkServer, counting_env: Path, ray_dir: Path, sig: int, exit_code: int, said: str
) -> None:
    """Ctrl-C (SIGINT), and SIGTERM as a scheduler sends it (Ray's own SIGTERM handler must not replace the CLI's)."""
    pytest.importorskip("ray", reason='Ray is not installed: pip install "codirector[ray]"')
    cfg = counting_config(tmp_path / "c.toml")
    folder = _folder(tmp_path)
    home = tmp_path / "home"
    db = home / "codirector.db"
    # each worker's first model call hangs for 60 s: both jobs are mid-run, holding their leases, at the SIGINT
    env = _ray_env(home, ray_dir, CODIRECTOR_TEST_FIRST_CALL_DELAY="60")
    batch = fork_server.start(["batch", str(folder), "--config", str(cfg), "--workers", "2"], env, capture=True)
    deadline = time.monotonic() + 240
    while len(held := _leases(db)) < 2:
        assert batch.poll() is None, f"the batch ended first: {batch.output()}"
        assert time.monotonic() < deadline, "the two workers never held their branches"
        time.sleep(0.1)
    time.sleep(1.5)  # a few progress reads (every 0.5 s) while the workers hang in their first call
    t0 = time.monotonic()
    batch.send_signal(sig)
    code = batch.wait(60)
    stopped = time.monotonic() - t0
    out, err = batch.output()
    assert code == exit_code, err
    signame = signal.Signals(sig).name
    assert stopped < 10, f"exit {stopped:.1f} s after {signame}"
    assert said in err and "resume" in err
    assert "Token authentication" not in err + out  # no Ray notice on every run
    for story, host, pid in held:  # progress: each running story's shot and stage, and who runs it
        assert f"{story}/main: shot 1/2, " in err and f"({host} (pid {pid}))" in err, err
        assert process_start(pid) is None, f"worker {pid} still runs"
    assert _leases(db) == []  # released by the driver, not left to the 60 s TTL
    listed = json.loads(fork_server.run(["stories", "--json"], env).stdout)
    assert not any(b["running"] for s in listed for b in s["branches"])

    t0 = time.monotonic()
    again = fork_server.run(["batch", str(folder), "--config", str(cfg), "--json"], cli_env(home, ttl=60))
    took = time.monotonic() - t0
    assert again.returncode == 0, again.stderr
    assert "took its lease over" not in again.stderr  # nothing was left to take over
    assert took < 60  # well within the TTL a held lease would have made it wait
    assert {r["status"] for r in json.loads(again.stdout)["jobs"]} == {"completed"}

    solo = Studio(tmp_path / "solo")
    studio = Studio(home)
    for name in STORIES:
        solo.run(folder / f"{name}.yaml", config=cfg)
        assert story_log(studio, name) == story_log(solo, name), name
    assert studio.verify().ok
    print(f"\nbatch --workers 2: exit {code} {stopped:.2f} s after {signame}, leases freed; the next batch took "
          f"{took:.1f} s (logs equal to solo runs)")


@pytest.mark.slow
def test_a_rerun_with_nothing_left_starts_no_pool(tmp_path: Path, fork_server: ForkServer, counting_env: Path,
                                                  ray_dir: Path) -> None:
    cfg = counting_config(tmp_path / "c.toml")
    folder = _folder(tmp_path)
    home = tmp_path / "home"
    assert Studio(home).batch([folder], config=cfg).ok
    t0 = time.monotonic()
    done = fork_server.run(["batch", str(folder), "--config", str(cfg), "--workers", "2", "--json"],
                           _ray_env(home, ray_dir))
    took = time.monotonic() - t0
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["pool"] == "none" and result["workers"] == 0 and result["skipped"] == len(STORIES)
    assert not (ray_dir / "r").exists()  # no local Ray was started
    human = fork_server.run(["batch", str(folder), "--config", str(cfg), "--workers", "2"], _ray_env(home, ray_dir))
    assert "(nothing left to run: no workers started)" in human.stdout
    print(f"\nskip-only batch --workers 2: {took:.2f} s")


def test_ray_that_nothing_answers_fails_in_seconds_naming_the_address(
    tmp_path: Path, fork_server: ForkServer, counting_env: Path
) -> None:
    cfg = counting_config(tmp_path / "c.toml")
    folder = _folder(tmp_path)
    home = tmp_path / "home"
    t0 = time.monotonic()
    done = fork_server.run(["batch", str(folder), "--config", str(cfg), "--ray", "127.0.0.1:1"], cli_env(home))
    took = time.monotonic() - t0
    assert done.returncode == 2, done.stderr
    assert "--ray 127.0.0.1:1: nothing answers at 127.0.0.1:1" in done.stderr and "ray start --head" in done.stderr
    assert took < 20, f"{took:.1f} s"
    assert not (home / "codirector.db").exists()  # refused before anything was written
    # another machine's cluster with this machine's SQLite file: refused before connecting (TEST-NET: nothing there)
    far = fork_server.run(["batch", str(folder), "--config", str(cfg), "--ray", "203.0.113.7:6379"], cli_env(home))
    assert far.returncode == 2 and "joins a cluster on another machine" in far.stderr and "SQLite" in far.stderr
    print(f"\n--ray 127.0.0.1:1 failed after {took:.2f} s")


def test_address_checks(tmp_path: Path) -> None:
    from codirector.engine.jobs import WorkspaceSpec

    listening = socket.create_server(("127.0.0.1", 0))
    try:
        port = listening.getsockname()[1]
        check_reachable(f"127.0.0.1:{port}")  # something answers: Ray is left to join it
        check_reachable(f"ray://localhost:{port}")
    finally:
        listening.close()
    with pytest.raises(ConfigError, match=f"nothing answers at 127.0.0.1:{port}"):
        check_reachable(f"ray://127.0.0.1:{port}")
    check_reachable("auto")  # the cluster this machine is in: Ray's own lookup
    local = WorkspaceSpec(f"sqlite:///{tmp_path / 'a.db'}", str(tmp_path / "blobs"), str(tmp_path))
    shared = WorkspaceSpec("postgresql://db.example/codirector", "s3://bucket/blobs", str(tmp_path))
    with pytest.raises(ConfigError, match="joins a cluster on another machine, and the database is a SQLite file"):
        check_address("ray://203.0.113.7:10001", local)
    with pytest.raises(ConfigError, match="nothing answers at 127.0.0.1:1"):
        check_address("127.0.0.1:1", shared)


def test_every_bad_file_of_a_batch_is_reported_at_once(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "no-shots.yaml").write_text("title: x\n")
    (folder / "broken.yaml").write_text("{{{")
    (tmp_path / "other").mkdir()
    write_story(tmp_path / "other" / "pier-a.yaml", shots=1)  # a second file that would run as pier-a
    with pytest.raises(StoryFileError) as e:
        collect([folder, tmp_path / "other", tmp_path / "missing"])
    lines = e.value.message.splitlines()
    assert lines[0] == "4 problems in the batch's files; nothing was run:"
    assert any("broken.yaml" in line and "not valid YAML" in line for line in lines)
    assert any("no-shots.yaml" in line for line in lines)
    assert any("two files would run as story 'pier-a'" in line for line in lines)
    assert any("missing does not exist" in line for line in lines)
    assert [i.story_id for i in collect([folder / "pier-b.yaml"])] == ["pier-b"]

"""A real multi-node Ray cluster on this machine (Ray's own test harness, ``ray.cluster_utils.Cluster``: a head
and a second node, each with its own raylet, on 127.0.0.1), PostgreSQL and an S3 bucket on loopback.

- Every process of the second node (its raylet, its workers, everything under them) is SIGKILLed while a job
  runs there: Ray restarts the worker on the head, the job's lease (a dead process on this machine) is taken
  over, and `codirector batch --ray` completes every story with the log a one-process run writes; `verify` passes.
- The same cluster refuses a SQLite home (and a blob folder) before anything is written.

The cluster lives in a process of its own (``HOST``), so the session's local Ray (``ray_session``) is untouched:
one process can be joined to only one cluster. The driver is a real `codirector` process (the fork server)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from scale.helpers import backend_keys, counting_config, story_log

from codirector.engine.studio import Studio
from codirector.store.db import make_engine
from codirector.store.event_store import MAIN

from processes import TESTS, ForkServer, cli_env
from support import write_story

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
psutil = pytest.importorskip("psutil", reason="psutil comes with Ray")
if find_spec("ray") is None:  # found, not imported: collecting this file does not load Ray (the cluster imports it)
    pytest.skip('Ray is not installed: pip install "codirector[ray]"', allow_module_level=True)

# The cluster's process: a head with HEAD_CPUS CPUs and a second node with one, both on 127.0.0.1 with small object
# stores; it prints the address and the second node's process ids, then waits. "reap" on stdin: forget the second
# node (its processes were killed; their exits are collected); end of stdin: the cluster is shut down.
HOST = """
import json, sys
from ray.cluster_utils import Cluster
common = {"node_ip_address": "127.0.0.1", "object_store_memory": 78_643_200}
cluster = Cluster(initialize_head=True, head_node_args={**common, "num_cpus": int(sys.argv[1]),
                                                        "include_dashboard": False})
node = cluster.add_node(**common, num_cpus=1)
cluster.wait_for_nodes()
pids = [p.process.pid for procs in node.all_processes.values() for p in procs]
raylet = node.all_processes["raylet"][0].process.pid
print(json.dumps({"address": cluster.address, "raylet": raylet, "pids": pids}), flush=True)
for line in sys.stdin:
    if line.strip() == "reap" and node in cluster.worker_nodes:
        cluster.remove_node(node, allow_graceful=False)
        print("reaped", flush=True)
cluster.shutdown()
"""


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie, not yet collected by its parent, has)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class TwoNodes:
    """The cluster of ``HOST``, started in a process of its own with its own HOME and Ray folder."""

    def __init__(self, env: dict[str, str], head_cpus: int = 2) -> None:
        for attempt in (1, 2):
            self.proc = subprocess.Popen([sys.executable, "-c", HOST, str(head_cpus)], env=env, text=True,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if line:
                break
            # On a loaded machine Ray's GCS can miss its own start-up deadline ("Timed out waiting for file
            # .../gcs_server_port_..."): that is Ray starting, not what these tests check, so start it once more.
            code = self.proc.wait()
            assert attempt == 1, f"the cluster did not start twice (exit {code}; Ray's own error is above)"
        info = json.loads(line)
        self.address: str = info["address"]
        self.raylet: int = info["raylet"]
        self.node_pids: list[int] = info["pids"]

    def on_node(self) -> set[int]:
        """Every live process of the second node: its own (raylet, agents) and everything under its raylet."""
        pids = set(self.node_pids)
        try:
            pids |= {p.pid for p in psutil.Process(self.raylet).children(recursive=True)}
        except psutil.NoSuchProcess:
            pass
        return {p for p in pids if _running(p)}

    def kill_node(self) -> set[int]:
        """SIGKILL every process of the second node at once; the pids killed."""
        victims = self.on_node()
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("reap\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "reaped"
        deadline = time.monotonic() + 10  # a SIGKILLed process with many threads takes a moment to end
        while any(_running(p) for p in victims) and time.monotonic() < deadline:
            time.sleep(0.01)
        left = {p: psutil.Process(p).status() for p in victims if _running(p)}
        assert not left, f"still running 10 s after SIGKILL: {left}"
        return victims

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def ray_env(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """HOME and a Ray folder of their own (short: Ray's socket paths have a length limit), shared by the cluster
    and the driver; the cluster's workers inherit the AWS_* variables that reach the loopback bucket."""
    # A worker that ran a local Ray earlier holds that Ray's RAY_* variables (its token auth among them): neither this
    # cluster nor its driver may inherit them, or the cluster's GCS never comes up and the driver asks for a token.
    for name in [k for k in os.environ if k.startswith("RAY_")]:
        monkeypatch.delenv(name)
    tmp = Path(tempfile.mkdtemp(prefix="codirector-mn-"))
    (tmp / "home").mkdir()
    env = {"HOME": str(tmp / "home"), "RAY_TMPDIR": str(tmp / "r"),
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           # Ray turns a 127.0.0.1 address into this machine's network address, where a cluster bound to loopback
           # does not listen; with this, a driver takes 127.0.0.1 as its own address (Ray's switch for one-machine
           # clusters, named for the platforms where it is the default)
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    yield env
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def cluster(ray_env: dict[str, str]) -> Iterator[TwoNodes]:
    # Ray waits 30 s for its GCS to write its port file; beside another worker's Ray on two cores that has run out
    # (RAY_gcs_server_port_wait_time_s is Ray's own override, ray/_private/node.py start_gcs_server).
    nodes = TwoNodes({**os.environ, "RAY_gcs_server_port_wait_time_s": "120", **ray_env})
    yield nodes
    nodes.close()


def _stories(folder: Path, n: int, shots: int) -> list[Path]:
    """``n`` stories whose every text is tagged with its name, so no two make the same request."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for j in range(n):
        tag = f"mn{j}"
        path = write_story(folder / f"{tag}.yaml", shots=shots, seed=300 + j, title=f"Pier {tag}")
        data = yaml.safe_load(path.read_text())
        for member in data["cast"]:
            member["description"] += f" ({tag})"
        for shot in data["shots"]:
            shot["keyframe"] += f" ({tag})"
            shot["motion"] += f" ({tag})"
            for ev in shot.get("evolves", []):
                ev["description"] += f" ({tag})"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        paths.append(path)
    return paths


def _job_on_node(studio: Studio, cluster: TwoNodes, *, timeout: float = 240) -> tuple[str, int]:
    """Wait until a job running on the second node has completed a shot; its story and worker pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        node = cluster.on_node()
        for lease in studio.workspace.leases.all():
            if lease.live and lease.pid in node and studio.store.read(lease.story_id, MAIN, types=["ShotCompleted"]):
                return lease.story_id, lease.pid
        time.sleep(0.05)
    raise AssertionError("no job ran on the second node: Ray placed both workers on the head")


def _refused(fork_server: ForkServer, argv: list[str], env: dict[str, str]) -> Any:
    t = time.perf_counter()
    done = fork_server.run(argv, env, timeout=180)
    return done, time.perf_counter() - t


def test_sigkill_a_node_mid_batch(tmp_path: Path, counting_env: Path, pg_url: str, s3_bucket: str,
                                  cluster: TwoNodes, ray_env: dict[str, str], fork_server: ForkServer) -> None:
    cfg = counting_config(tmp_path / "c.toml")
    paths = _stories(tmp_path / "stories", 4, shots=4)
    calls = tmp_path / "cluster-calls.log"
    env = {**cli_env(tmp_path / "home", calls, ttl=2), **ray_env}

    # 1. The same cluster refuses this machine's own storage, before anything is written.
    sqlite_home = tmp_path / "sqlite-home"
    argv = ["batch", str(tmp_path / "stories"), "--config", str(cfg), "--ray", cluster.address, "--workers", "2"]
    done, took = _refused(fork_server, argv, {**env, "CODIRECTOR_HOME": str(sqlite_home)})
    assert done.returncode == 2, done.stderr
    assert "this Ray cluster has 2 nodes, and the database is a SQLite file on this machine" in done.stderr
    assert "--db postgresql://" in done.stderr
    assert not (sqlite_home / "codirector.db").exists() and not any(sqlite_home.rglob("*.db")), \
        sorted(map(str, sqlite_home.rglob("*")))
    folder = tmp_path / "blob-folder"
    done, took_blobs = _refused(fork_server, ["--db", pg_url, "--blobs", str(folder), *argv], env)
    assert done.returncode == 2, done.stderr
    assert f"this Ray cluster has 2 nodes, and the blob store {folder} is a folder on this machine" in done.stderr
    assert not folder.exists()
    engine = make_engine(pg_url)
    assert not sa.inspect(engine).has_table("events")  # the refused batch did not even create the tables
    engine.dispose()
    shared = Studio(tmp_path / "home", db=pg_url, blobs=s3_bucket)
    shared.init()

    # 2. A batch on PostgreSQL + S3; every process of the second node SIGKILLed while a job runs there.
    argv = ["--db", pg_url, "--blobs", s3_bucket, "batch", str(tmp_path / "stories"), "--config", str(cfg),
            "--ray", cluster.address, "--workers", "2", "--json"]
    started = time.perf_counter()
    driver = fork_server.start(argv, env, capture=True)
    try:
        story, worker = _job_on_node(shared, cluster)
        recorded_at_kill = {k for sid in shared.workspace.story_ids() for k in backend_keys(shared, sid)}
        before_kill = calls.read_text().splitlines() if calls.exists() else []
        killed = cluster.kill_node()
        killed_at = time.perf_counter() - started
        assert worker in killed
        code = driver.wait(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(60)
    out, err = driver.output()
    assert code == 0, err[-3000:]
    result = json.loads(out)
    assert [r["status"] for r in result["jobs"]] == ["completed"] * 4, result["jobs"]
    assert result["pool"] == "ray" and result["workers"] == 2

    # Each story's log equals its run alone in one process; no recorded call was requested again.
    solo = Studio(tmp_path / "solo")
    for path in paths:
        solo.run(path, config=cfg)
        assert story_log(shared, path.stem) == story_log(solo, path.stem), path.stem
    lines = Counter(calls.read_text().splitlines())
    twice = {k for k, n in lines.items() if n > 1}
    assert not twice & recorded_at_kill, "recorded calls requested again"
    assert len(twice) <= 1 and all(lines[k] == 2 for k in twice), twice  # at most the call in flight at the kill
    report = shared.verify()
    assert report.ok and report.blobs > 0, [p.line() for p in report.problems]
    resumed = next(r for r in result["jobs"] if r["story"] == story)
    assert resumed["calls_recorded"] > 0 and f":{worker}" not in resumed["worker"]  # resumed by a new worker
    print(f"\nrefused SQLite in {took:.1f} s and a blob folder in {took_blobs:.1f} s; node killed "
          f"({len(killed)} processes) {killed_at:.1f} s into the batch while {story} ran there (pid {worker}, "
          f"{len(before_kill)} calls made); batch done in {result['seconds']:.1f} s, {story} finished on "
          f"{resumed['worker']} with {resumed['calls_recorded']} calls from the log; logs equal; verify ok")

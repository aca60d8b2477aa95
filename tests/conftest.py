"""Fixtures for every test: an isolated home, databases (SQLite and a real PostgreSQL), tiny models, and
ONE local Ray per pytest process (session), started with its own HOME and temp folder; its workers load
the counting backends (tests/codirector_test_plugins.py) as a plugin."""

from __future__ import annotations

import fnmatch
import functools
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.testing

from processes import ForkServer
from support import PostgresServer, build_lineage_story, chromium, pg_bindir, register_tiny_clip

TESTS = Path(__file__).resolve().parent

# Under pytest-xdist the workers are the parallelism: each gets its share of the cores for OpenMP and BLAS (torch,
# numpy, faiss; inherited by the processes it starts) rather than a pool as wide as the machine, which with N workers
# oversubscribes the cores N times and burns CPU in the pools' spin-waits. Set before anything imports them.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _threads = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_name, _threads)

# Tests that share an expensive fixture (fast-lane files only) run on one xdist worker, so it is built (and its
# libraries imported) once, not once per worker: (node ids, as fnmatch patterns; the group).
SHARED_FIXTURE_GROUPS = (
    *((f"tests/serve/{f}::*", "studio") for f in ("test_pages.py", "test_limits.py", "test_security.py",
                                                   "test_media.py")),  # studio_home
    ("tests/generators/test_diffusers_backends.py::*", "diffusers"),  # tiny_pipelines, and diffusers itself
    ("tests/generators/test_real_run.py::*", "diffusers"),
    ("tests/generators/test_backend_contract.py::*-diffusers]", "diffusers"),
    *((f"tests/{f}::*", "postgres") for f in ("store/test_event_store_contract.py", "store/test_leases.py",
                                               "store/test_migrations.py", "faults/test_db_connection_loss.py",
                                               "engine/test_postgres_run.py")),  # pg_server
    ("tests/cli/test_queries.py::*", "lineage"),  # lineage_template
    ("tests/store/test_verify.py::*", "lineage"),
)


def shared_fixture_group(nodeid: str) -> str | None:
    return next((group for pattern, group in SHARED_FIXTURE_GROUPS if fnmatch.fnmatchcase(nodeid, pattern)), None)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """xdist's ``load`` distribution (the default of `-n N`), except that the tests of one SHARED_FIXTURE_GROUPS
    group go to the same worker: a work unit each (the largest first), every other test a unit of its own, given to
    whichever worker is free. (``--dist loadgroup`` would do this from ``xdist_group`` marks, but with pytest 9.2
    it silently stopped grouping: pytest-dev/pytest-xdist#1386.)"""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return shared_fixture_group(nodeid) or nodeid

    return SharedFixtureScheduling(config, log)  # type: ignore[arg-type]


# typer's CliRunner.invoke builds the click command tree of the app it is given, every command's signature and type
# hints read again (~25 ms for `codirector`), at each call; the tests make ~300 calls: built once per app instead.
typer.testing._get_command = functools.cache(typer.testing._get_command)

REQUIRE_PG = os.environ.get("CODIRECTOR_REQUIRE_PG") == "1"
REQUIRE_BROWSER = os.environ.get("CODIRECTOR_REQUIRE_BROWSER") == "1"
# CI (.ci/run) installs ".[test]", which brings gcsfs and the GCS emulator, and sets CODIRECTOR_REQUIRE_PG=1
REQUIRE_GCS = REQUIRE_PG or os.environ.get("CODIRECTOR_REQUIRE_GCS") == "1"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own CODIRECTOR_HOME and no inherited database URL or API key."""
    home = tmp_path / "home"
    monkeypatch.setenv("CODIRECTOR_HOME", str(home))
    monkeypatch.delenv("CODIRECTOR_DB", raising=False)
    monkeypatch.delenv("CODIRECTOR_BLOBS", raising=False)
    monkeypatch.delenv("CODIRECTOR_CACHE", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    bindir = pg_bindir()
    if bindir is None:
        if REQUIRE_PG:
            pytest.fail("CODIRECTOR_REQUIRE_PG=1 but no PostgreSQL binaries found (apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it")
    server = PostgresServer(bindir).start()
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    return pg_server.create_database("t_" + uuid.uuid4().hex[:12])


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on SQLite and on a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """An S3-compatible server (moto) on 127.0.0.1 and a free port; its endpoint URL."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log lines in the test output
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh empty bucket on the loopback S3 server, as ``s3://BUCKET/blobs``; the standard AWS
    variables (endpoint, dummy credentials, region) are set for this test and its subprocesses."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "codirector-test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "codirector-test-secret-0123456789")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "CODIRECTOR_BLOBS"):
        monkeypatch.delenv(name, raising=False)
    bucket = "t-" + uuid.uuid4().hex[:12]
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/blobs"


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[str]:
    """A GCS-compatible server (gcp-storage-emulator, the JSON API in memory) on 127.0.0.1 and a free port; its
    URL. A skip where the emulator or gcsfs is not installed (a failure in CI, which installs ".[test]")."""
    import importlib.util
    import logging

    missing = " and ".join(m for m in ("gcp_storage_emulator", "gcsfs") if importlib.util.find_spec(m) is None)
    if missing:
        install = 'pip install -e ".[test]"'
        if REQUIRE_GCS:
            pytest.fail(f"{missing} not installed, which CI requires (CODIRECTOR_REQUIRE_PG=1): {install}")
        pytest.skip(f"{missing} not installed: {install}")
    from gcp_storage_emulator.server import create_server

    logging.getLogger("gcp_storage_emulator").setLevel(logging.CRITICAL)  # no access log lines in the test output
    server = create_server("127.0.0.1", 0, in_memory=True)
    server.start()
    host, port = server._api._httpd.server_address[:2]  # no public accessor for the port it bound
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def gcs_bucket(gcs_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh empty bucket on the loopback GCS server, as ``gs://BUCKET/blobs``. gcsfs and google-cloud-storage find
    the server through STORAGE_EMULATOR_HOST, set for this test and its subprocesses; gcsfs takes its credentials
    its usual way, here from an empty gcloud config (nothing of the developer's), so it ends up anonymous."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no application-default credentials
    monkeypatch.setenv("NO_GCE_CHECK", "true")  # and no probe of a cloud metadata server
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "GCSFS_DEFAULT_PROJECT", "CODIRECTOR_BLOBS"):
        monkeypatch.delenv(name, raising=False)
    bucket = "t-" + uuid.uuid4().hex[:12]
    storage.Client(project="codirector-test", credentials=AnonymousCredentials()).create_bucket(bucket)
    return f"gs://{bucket}/blobs"


@pytest.fixture(scope="session")
def tiny_clip() -> str:
    """Name of a tiny open_clip config (random weights, 32-d), registered with open_clip."""
    return register_tiny_clip()


@pytest.fixture(scope="session")
def tiny_embedder(tiny_clip: str):  # type: ignore[no-untyped-def]
    from codirector.generators.embedder import OpenClipEmbedder

    return OpenClipEmbedder(tiny_clip, "none", device="cpu")


@pytest.fixture
def browser() -> str:
    """Headless Chromium, or a skip (a failure where CI requires it)."""
    exe = chromium()
    if exe is None:
        if REQUIRE_BROWSER:
            pytest.fail("CODIRECTOR_REQUIRE_BROWSER=1 but Chromium is not installed (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    return exe


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    ray = pytest.importorskip("ray", reason='Ray is not installed: pip install "codirector[ray]"')
    tmp = Path(tempfile.mkdtemp(prefix="codirector-ray-"))
    saved = {k: os.environ.get(k) for k in ("HOME", "RAY_TMPDIR", "PYTHONPATH", "CODIRECTOR_PLUGINS")}
    os.environ.update(HOME=str(tmp), RAY_TMPDIR=str(tmp / "r"), CODIRECTOR_PLUGINS="codirector_test_plugins",
                      PYTHONPATH=os.pathsep.join([str(TESTS), saved["PYTHONPATH"] or ""]))
    try:  # the workers inherit this environment
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    yield
    ray.shutdown()


@pytest.fixture
def counting_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The counting backends in this process and in the workers (forwarded CODIRECTOR_* settings); the call log."""
    log = tmp_path / "calls.log"
    monkeypatch.setenv("CODIRECTOR_PLUGINS", "codirector_test_plugins")
    monkeypatch.setenv("CODIRECTOR_TEST_CALL_LOG", str(log))
    monkeypatch.setenv("CODIRECTOR_LEASE_TTL", "1")
    return log


@pytest.fixture(scope="session")
def fork_server() -> Iterator[ForkServer]:
    """Real `codirector` processes for kill-and-resume and race tests, forked from one that has done the imports."""
    server = ForkServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def lineage_template(tmp_path_factory: pytest.TempPathFactory, tiny_embedder) -> Path:  # type: ignore[no-untyped-def]
    from codirector.engine.studio import Studio

    home = tmp_path_factory.mktemp("lineage") / "home"
    studio = Studio(home)
    studio.init()
    build_lineage_story(studio, tiny_embedder)
    studio.close()
    return home


@pytest.fixture
def lineage_home(lineage_template: Path, tmp_path: Path) -> Path:
    """A home (``tmp_path/home``) holding the lighthouse story of ``support.build_lineage_story``: a copy of one
    built per session, so each test may change its own."""
    return Path(shutil.copytree(lineage_template, tmp_path / "home"))

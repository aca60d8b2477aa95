"""#26 acceptance 2: every connection to the S3 server blackholed for 10 s in the middle of a 4-story batch on two
Ray workers (PostgreSQL log, S3 blobs through tests/tcp_proxy.py). The batch completes, every log equals its
one-process run, verify passes (no unreferenced blob either), and the backends saw exactly the calls of the
one-process runs: no recorded call was made twice."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from scale.helpers import EXAMPLES, counting_config, story_log

from codirector.engine.scale import open_pool
from codirector.engine.scale.batch import collect, run_batch
from codirector.engine.studio import Studio

from tcp_proxy import TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.usefixtures("ray_session")]
ITEMS = [*(EXAMPLES / "stories" / f"{n}.yaml" for n in ("bakery", "lighthouse", "night_market")),
         EXAMPLES / "briefs" / "dewline_serum.yaml"]
BLACKHOLE_S = 10.0


@pytest.fixture
def proxy(s3_server: str) -> Iterator[TcpProxy]:
    p = TcpProxy("127.0.0.1", int(urlparse(s3_server).port or 0))
    yield p
    p.close()


def test_a_blackholed_s3_mid_batch_is_ridden_out(tmp_path: Path, counting_env: Path, pg_url: str, s3_bucket: str,
                                                 proxy: TcpProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = counting_config(tmp_path / "c.toml")
    solo = Studio(tmp_path / "solo")  # the reference: each item alone, one process, local blobs
    for item in collect(ITEMS):
        if item.path.parent.name == "briefs":
            solo.direct(item.path, config=cfg)
        else:
            solo.run(item.path, config=cfg)
    reference_calls = Counter(counting_env.read_text().splitlines())
    counting_env.unlink()

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.port}")  # the driver and the workers
    studio = Studio(tmp_path / "home", db=pg_url, blobs=s3_bucket)
    studio.init()
    aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    pool = open_pool(studio.spec, workers=2, env=aws)
    rows: list = []  # type: ignore[type-arg]
    took: list[float] = []

    def batch() -> None:
        t = time.monotonic()
        rows.extend(run_batch(studio.workspace, collect(ITEMS), pool, config=cfg).rows)
        took.append(time.monotonic() - t)

    runner = threading.Thread(target=batch)
    try:
        runner.start()
        deadline = time.monotonic() + 120
        while not (counting_env.exists() and len(counting_env.read_text().splitlines()) >= 8):
            assert time.monotonic() < deadline and runner.is_alive(), "the batch never got going"
            time.sleep(0.05)
        proxy.blackhole(BLACKHOLE_S)  # mid-batch: the workers are generating and writing blobs
        assert runner.is_alive()
        connections = proxy.connections
        runner.join(timeout=300)
        assert not runner.is_alive(), "the batch did not finish"
    finally:
        pool.close()
    assert [r.status for r in rows] == ["completed"] * 4, [r.to_json() for r in rows]
    assert took[0] > BLACKHOLE_S and proxy.connections > connections  # it waited, and came back through the proxy
    for item in collect(ITEMS):
        assert story_log(studio, item.story_id) == story_log(solo, item.story_id), item.story_id
    assert Counter(counting_env.read_text().splitlines()) == reference_calls  # no call made twice, none missing
    report = studio.verify()
    assert report.ok and report.blobs > 0, [p.line() for p in report.problems]
    assert report.unreferenced == []

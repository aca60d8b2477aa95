"""Shared-storage benchmark: what blobs in an object store and branch leases cost.

Run:  python benchmarks/bench_shared.py                 (a minute or so on 2 cores)
      python benchmarks/bench_shared.py --count 50 --json out.json [--pg postgresql://...]

Every number is measured in this one run on this machine:
- blob put (new), put (already stored: the content-addressed no-op), and get (with the digest
  check) for three sizes (an embedding, a keyframe, a clip), on the local store (temp file, fsync,
  rename) and on an S3 store through s3fs, talking HTTP to an S3-compatible server (moto) started
  here on 127.0.0.1. moto is a Python emulator, so the S3 column is the client's and the protocol's
  cost plus moto's, not a real bucket's: a real S3 adds network round trips and is usually slower
  per small object, faster per large one.
- the cost of one lease heartbeat (the conditional UPDATE that renews a lease) on SQLite and, when
  a PostgreSQL server can be had (``--pg URL``, or the Debian binaries the tests use), on PostgreSQL;
  and what that costs per hour of running at the default TTL (one heartbeat every TTL/3 = 20 s).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from codirector.store.blobs import BlobStore, open_blobs
from codirector.store.event_store import EventStore
from codirector.store.leases import DEFAULT_TTL, Leases

SIZES = {"embedding 2 KiB": 2 * 1024, "keyframe 100 KiB": 100 * 1024, "clip 2 MiB": 2 * 1024 * 1024}


def start_s3() -> tuple[Any, str]:
    """A loopback S3-compatible server, a fresh bucket, and the standard AWS variables pointing at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    bucket = "bench-" + uuid.uuid4().hex[:8]
    boto3.client("s3").create_bucket(Bucket=bucket)
    return server, f"s3://{bucket}/blobs"


def measure_blobs(store: BlobStore, size: int, count: int) -> dict[str, float]:
    payloads = [os.urandom(size) for _ in range(count)]
    t = time.perf_counter()
    digests = [store.put(p) for p in payloads]
    put_s = time.perf_counter() - t
    t = time.perf_counter()
    for p in payloads:
        store.put(p)
    again_s = time.perf_counter() - t
    t = time.perf_counter()
    for d in digests:
        store.get(d)
    get_s = time.perf_counter() - t
    mib = size * count / 2**20
    return {"put_ms": put_s / count * 1000, "put_mib_s": mib / put_s, "put_existing_ms": again_s / count * 1000,
            "get_ms": get_s / count * 1000, "get_mib_s": mib / get_s}


def measure_heartbeat(url: str, beats: int) -> dict[str, float]:
    store = EventStore.open(url, create=True)
    leases = Leases(store.engine)
    leases.acquire("bench", "main", "me", DEFAULT_TTL)
    times = []
    for _ in range(beats):
        t = time.perf_counter()
        ok = leases.acquire("bench", "main", "me", DEFAULT_TTL)  # a heartbeat is taking our own lease again
        times.append(time.perf_counter() - t)
        assert ok
    t = time.perf_counter()
    for i in range(beats // 4):  # a full take + release cycle, as a run's start and end
        leases.acquire("bench", f"b{i}", "me", DEFAULT_TTL)
        leases.release("bench", f"b{i}", "me")
    cycle = (time.perf_counter() - t) / max(1, beats // 4)
    store.close()
    times.sort()
    p50 = statistics.median(times) * 1000
    per_hour = 3600 / (DEFAULT_TTL / 3)
    return {"p50_ms": p50, "p95_ms": times[int(len(times) * 0.95)] * 1000, "take_release_ms": cycle * 1000,
            "beats_per_hour": per_hour, "ms_per_hour": p50 * per_hour}


def postgres_url(given: str | None) -> tuple[str | None, Any]:
    if given:
        return given, None
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    try:
        from support import PostgresServer, pg_bindir  # the tests' loopback server
    except ImportError:
        return None, None
    bindir = pg_bindir()
    if bindir is None:
        return None, None
    server = PostgresServer(bindir).start()
    return server.create_database("bench_" + uuid.uuid4().hex[:8]), server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=40, help="blobs of each size per store (default 40)")
    parser.add_argument("--beats", type=int, default=400, help="heartbeats measured per database (default 400)")
    parser.add_argument("--pg", help="a PostgreSQL URL (default: start the tests' loopback server if installed)")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()

    results: dict[str, Any] = {"blobs": {}, "heartbeat": {}}
    server, s3_url = start_s3()
    pg_url, pg_server = postgres_url(args.pg)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            stores = {"local": open_blobs(Path(tmp) / "blobs"), "s3 (moto, loopback)": open_blobs(s3_url)}
            for label, size in SIZES.items():
                count = max(4, args.count if size < 2**20 else args.count // 4)
                for name, store in stores.items():
                    results["blobs"][f"{label} / {name}"] = measure_blobs(store, size, count)
            results["heartbeat"]["sqlite"] = measure_heartbeat(f"sqlite:///{Path(tmp) / 'leases.db'}", args.beats)
            if pg_url:
                results["heartbeat"]["postgresql"] = measure_heartbeat(pg_url, args.beats)
    finally:
        server.stop()
        if pg_server is not None:
            pg_server.stop()

    print("\n## codirector shared-storage benchmark\n")
    print("| blob size / store | put new | put existing | get (digest checked) |")
    print("|---|---|---|---|")
    for key, r in results["blobs"].items():
        print(f"| {key} | {r['put_ms']:.2f} ms ({r['put_mib_s']:.1f} MiB/s) | {r['put_existing_ms']:.2f} ms | "
              f"{r['get_ms']:.2f} ms ({r['get_mib_s']:.1f} MiB/s) |")
    print("\n| lease heartbeat | p50 | p95 | take + release | per hour at TTL 60 s |")
    print("|---|---|---|---|---|")
    for db, r in results["heartbeat"].items():
        print(f"| {db} | {r['p50_ms']:.2f} ms | {r['p95_ms']:.2f} ms | {r['take_release_ms']:.2f} ms | "
              f"{r['beats_per_hour']:.0f} beats, {r['ms_per_hour']:.0f} ms of a background thread |")
    if "postgresql" not in results["heartbeat"]:
        print("\n(no PostgreSQL: pass --pg URL or install the postgresql package)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

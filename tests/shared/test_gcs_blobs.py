"""A story whose blobs live in a GCS bucket on a loopback GCS emulator (gcp-storage-emulator), reached by the real
gcsfs client from real `codirector` processes: `init`, `run`, `verify` re-hashing every blob in the bucket, the
damage found after one byte flips there, and a missing bucket named at `init`. The log is SQLite in the home, so
this needs no PostgreSQL; test_shared_storage.py does the same and more on PostgreSQL + S3."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from support import write_story


def _bucket(url: str) -> tuple[Any, str]:
    """The bucket a ``gs://BUCKET/PREFIX`` URL names, through google-cloud-storage (not gcsfs), and its prefix."""
    from google.auth.credentials import AnonymousCredentials  # installed with gcsfs, which gcs_bucket requires
    from google.cloud import storage

    name, _, prefix = url[len("gs://"):].partition("/")
    return storage.Client(project="codirector-test", credentials=AnonymousCredentials()).bucket(name), prefix


def _bucket_objects(url: str) -> dict[str, int]:
    bucket, prefix = _bucket(url)
    return {b.name: b.size for b in bucket.list_blobs(prefix=prefix)}


@pytest.mark.slow  # several `codirector` processes, each paying the interpreter start-up: not the fast lane
def test_a_story_keeps_its_blobs_in_a_gcs_bucket_and_verify_rehashes_them_there(  # type: ignore[no-untyped-def]
    machine, counting: Path, gcs_bucket: str, tmp_path: Path
) -> None:
    a = machine("a", blobs=gcs_bucket)
    init = a.json("init")
    assert init["blobs"].startswith(gcs_bucket) and _bucket_objects(gcs_bucket) == {}  # type: ignore[index]
    run = a.json("run", str(write_story(tmp_path / "pier.yaml", shots=3)), "--config", str(counting))
    assert run["completed"] is True  # type: ignore[index]

    objects = _bucket_objects(gcs_bucket)
    assert len(objects) > 5 and all(size > 0 for size in objects.values()), objects
    assert not (a.home / "blobs").exists(), "the home must hold no blob when --blobs names a bucket"
    report = a.json("verify")
    assert report["ok"] is True and report["blobs"] == len(objects)  # type: ignore[index]

    # flip one byte of one object in the bucket: verify fails and names it
    key = sorted(objects)[len(objects) // 2]
    bucket, _ = _bucket(gcs_bucket)
    body = bytearray(bucket.blob(key).download_as_bytes())
    body[len(body) // 2] ^= 0x01
    bucket.blob(key).upload_from_string(bytes(body))
    digest = key.rsplit("/", 2)[-2] + key.rsplit("/", 1)[-1]
    damaged = a.run("verify", ok=False)
    assert damaged.returncode == 5
    assert f"blob {digest[:12]}…, which is altered" in damaged.stdout, damaged.stdout


def test_init_names_a_missing_gcs_bucket(machine, gcs_bucket: str) -> None:  # type: ignore[no-untyped-def]
    m = machine("a", blobs="gs://no-such-bucket-anywhere/blobs")
    done = m.run("init", ok=False)
    assert done.returncode == 6 and "bucket 'no-such-bucket-anywhere'" in done.stderr, done.stderr
    assert f"(endpoint {os.environ['STORAGE_EMULATOR_HOST']}) does not exist" in done.stderr
    assert "create the bucket" in done.stderr

"""Content-addressed blobs: named by sha256, written atomically, idempotent, damage detected.

One contract, three stores: the local folder, an S3 bucket on a loopback S3-compatible server (moto)
reached by the real s3fs/botocore client, and a GCS bucket on a loopback GCS emulator
(gcp-storage-emulator) reached by the real gcsfs client, both over HTTP. Damage is done behind the
store's back with each service's own client (boto3, google-cloud-storage).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from codirector.errors import ConfigError, IntegrityViolation, StoreError
from codirector.store.blobs import BlobStore, FsspecBlobStore, LocalBlobStore, digest_of, open_blobs


@pytest.fixture(params=["local", "s3", "gs"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return open_blobs(tmp_path / "blobs")
    blobs = open_blobs(request.getfixturevalue({"s3": "s3_bucket", "gs": "gcs_bucket"}[request.param]))
    blobs.ensure()
    return blobs


def _tamper(store: BlobStore, digest: str, data: bytes | None) -> None:
    """Change (or, with None, delete) a stored blob behind the store's back."""
    if isinstance(store, LocalBlobStore):
        path = store.path(digest)
        path.unlink() if data is None else path.write_bytes(data)
        return
    assert isinstance(store, FsspecBlobStore)
    bucket, _, prefix = store.root.partition("/")
    key = f"{prefix}/{digest[:2]}/{digest[2:]}"
    if store.protocol == "gs":
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        blob = storage.Client(project="codirector-test", credentials=AnonymousCredentials()).bucket(bucket).blob(key)
        blob.delete() if data is None else blob.upload_from_string(data)
        return
    import boto3

    client = boto3.client("s3")
    client.delete_object(Bucket=bucket, Key=key) if data is None else client.put_object(Bucket=bucket, Key=key,
                                                                                          Body=data)


def test_put_get_idempotent(store: BlobStore) -> None:
    d = store.put(b"frame bytes")
    assert d == digest_of(b"frame bytes") and store.get(d) == b"frame bytes"
    assert store.exists(d) and not store.exists(digest_of(b"other"))
    assert store.put(b"frame bytes") == d
    e = store.put(b"")
    assert sorted(store.digests()) == sorted([d, e]) and store.get(e) == b""


def test_put_of_an_existing_digest_writes_nothing(store: BlobStore) -> None:
    d = store.put(b"abc")
    _tamper(store, d, b"abd")  # same size: only a re-write would repair it
    assert store.put(b"abc") == d
    with pytest.raises(IntegrityViolation, match="altered") as info:
        store.get(d)
    assert d[:12] in info.value.message


def test_check_reports_missing_and_altered(store: BlobStore) -> None:
    d = store.put(b"abc")
    assert store.check(d) is None
    _tamper(store, d, b"abd")
    assert "altered" in str(store.check(d))
    _tamper(store, d, None)
    assert store.check(d) == "missing"
    with pytest.raises(IntegrityViolation, match="missing"):
        store.get(d)


def test_malformed_digest_is_refused(store: BlobStore) -> None:
    with pytest.raises(IntegrityViolation, match="not a blob digest"):
        store.get("../../etc/passwd")


def test_local_writes_leave_no_temp_files(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    blobs.put(b"frame bytes")
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.rglob("*"))


def test_urls_choose_the_store(tmp_path: Path) -> None:
    assert isinstance(open_blobs(str(tmp_path)), LocalBlobStore)
    local = open_blobs(f"file://{tmp_path}/b")
    assert isinstance(local, LocalBlobStore) and local.root == tmp_path / "b"
    s3 = open_blobs("s3://bucket/some/prefix/")
    assert isinstance(s3, FsspecBlobStore) and s3.root == "bucket/some/prefix" and s3.bucket == "bucket"
    if importlib.util.find_spec("gcsfs") is not None:
        gs = open_blobs("gs://films")
        assert isinstance(gs, FsspecBlobStore) and gs.describe() == "gs://films"
    else:  # an extra that is not installed is named with the command that installs it
        with pytest.raises(ConfigError, match="gcsfs") as info:
            open_blobs("gs://films")
        assert 'codirector[gcs]' in str(info.value.hint)
    with pytest.raises(ConfigError, match="unknown blob store URL scheme 'nope'"):
        open_blobs("nope://x")
    with pytest.raises(ConfigError, match="names no bucket"):
        open_blobs("s3://")
    with pytest.raises(ConfigError, match="carries credentials") as info:
        open_blobs("s3://AKIA:hunter2@bucket/p")
    assert "hunter2" not in str(info.value)


def test_credentials_never_appear_in_descriptions_or_errors(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = open_blobs(s3_bucket)
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    assert secret not in blobs.describe() and "127.0.0.1" in blobs.describe()
    missing = open_blobs("s3://no-such-bucket-here/x")
    with pytest.raises(StoreError, match="does not exist") as info:
        missing.ensure()
    assert secret not in str(info.value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("CODIRECTOR_BLOB_RETRY_SECONDS", "0")  # a refused connection is transient: no retries here
    with pytest.raises(StoreError) as down:
        open_blobs(s3_bucket).put(b"x")
    assert "cannot" in down.value.message and secret not in str(down.value)
    assert "AWS_ENDPOINT_URL" in str(down.value.hint)


def test_gs_errors_name_the_bucket_and_the_emulator(gcs_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import gcsfs.retry

    blobs = open_blobs(gcs_bucket)
    assert blobs.describe() == f"{gcs_bucket} (endpoint {os.environ['STORAGE_EMULATOR_HOST']})"
    with pytest.raises(StoreError, match="bucket 'no-such-bucket-here' .* does not exist"):
        open_blobs("gs://no-such-bucket-here/x").ensure()
    with pytest.raises(ConfigError, match="carries credentials") as info:
        open_blobs("gs://user:hunter2@bucket/p")
    assert "hunter2" not in str(info.value) and "GOOGLE_APPLICATION_CREDENTIALS" in str(info.value.hint)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # nothing listens there
    # gcsfs retries a refused connection 6 times with 1+2+4+8+16 s of back-off, a fixed policy: sleep 0 instead
    fast = SimpleNamespace(sleep=lambda seconds: asyncio.sleep(0))
    monkeypatch.setattr(gcsfs.retry, "asyncio", fast)
    monkeypatch.setenv("CODIRECTOR_BLOB_RETRY_SECONDS", "0")  # and none of ours
    with pytest.raises(StoreError) as down:
        open_blobs(gcs_bucket).put(b"x")
    assert "cannot" in down.value.message and "127.0.0.1:9" in down.value.message
    assert "STORAGE_EMULATOR_HOST" in str(down.value.hint) and "AWS_" not in str(down.value.hint)


def test_local_blobs_never_import_s3fs(tmp_path: Path) -> None:
    code = ("import sys; from codirector.store.blobs import open_blobs; b = open_blobs(sys.argv[1]); "
            "b.get(b.put(b'x')); s = open_blobs('s3://bucket/p'); s.describe(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('s3fs', 'fsspec', 'botocore', 'gcsfs')))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""Content-addressed blobs: named by sha256, written atomically, idempotent, damage detected.

One contract, two stores: the local folder and an S3 bucket on a loopback S3-compatible server
(moto), reached by the real s3fs/botocore client over HTTP.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codirector.errors import ConfigError, IntegrityViolation, StoreError
from codirector.store.blobs import BlobStore, FsspecBlobStore, LocalBlobStore, digest_of, open_blobs


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return open_blobs(tmp_path / "blobs")
    blobs = open_blobs(request.getfixturevalue("s3_bucket"))
    blobs.ensure()
    return blobs


def _tamper(store: BlobStore, digest: str, data: bytes | None) -> None:
    """Change (or, with None, delete) a stored blob behind the store's back."""
    if isinstance(store, LocalBlobStore):
        path = store.path(digest)
        path.unlink() if data is None else path.write_bytes(data)
        return
    assert isinstance(store, FsspecBlobStore)
    import boto3

    bucket, _, prefix = store.root.partition("/")
    key = f"{prefix}/{digest[:2]}/{digest[2:]}"
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
    with pytest.raises(StoreError) as down:
        open_blobs(s3_bucket).put(b"x")
    assert "cannot" in down.value.message and secret not in str(down.value)
    assert "AWS_ENDPOINT_URL" in str(down.value.hint)


def test_local_blobs_never_import_s3fs(tmp_path: Path) -> None:
    code = ("import sys; from codirector.store.blobs import open_blobs; b = open_blobs(sys.argv[1]); "
            "b.get(b.put(b'x')); s = open_blobs('s3://bucket/p'); s.describe(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('s3fs', 'fsspec', 'botocore', 'gcsfs')))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""Content-addressed blobs: named by sha256, written atomically, idempotent, damage detected."""

from __future__ import annotations

from pathlib import Path

import pytest

from codirector.errors import IntegrityViolation
from codirector.store.blobs import BlobStore, digest_of


def test_put_get_idempotent_and_atomic(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    d = blobs.put(b"frame bytes")
    assert d == digest_of(b"frame bytes") and blobs.get(d) == b"frame bytes"
    assert blobs.put(b"frame bytes") == d
    assert list(blobs.digests()) == [d]
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.rglob("*"))  # no temp files left


def test_check_reports_missing_and_altered(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    d = blobs.put(b"abc")
    assert blobs.check(d) is None
    blobs.path(d).write_bytes(b"abd")
    assert "altered" in str(blobs.check(d))
    blobs.path(d).unlink()
    assert blobs.check(d) == "missing"
    with pytest.raises(IntegrityViolation, match="missing"):
        blobs.get(d)


def test_malformed_digest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(IntegrityViolation, match="not a blob digest"):
        BlobStore(tmp_path).path("../../etc/passwd")

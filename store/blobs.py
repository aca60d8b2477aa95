"""Content-addressed blob store: images, clips, embeddings and large model responses.

Invariant: a blob's file name is the sha256 of its bytes, and a file only ever appears under its
name complete (temp file in the same folder, fsync, atomic rename, fsync of the folder). Writers
put a blob BEFORE appending the event that names it, so a crash can leave an unreferenced blob
but never an event naming a missing one. Writing the same bytes twice is a no-op.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from codirector.errors import IntegrityViolation

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def digest_of(data: bytes) -> str:
    """The sha256 hex digest that names ``data`` in the store."""
    return hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    """``digest`` if it is a well-formed blob name, else ``IntegrityViolation``."""
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise IntegrityViolation(f"{digest!r} is not a blob digest (64 lowercase hex characters)")
    return digest


class BlobStore:
    """Files named by their sha256 under ``root/ab/cdef...``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        check_digest(digest)
        return self.root / digest[:2] / digest[2:]

    def put(self, data: bytes) -> str:
        """Store ``data`` durably and return its digest (idempotent)."""
        digest = digest_of(data)
        target = self.path(digest)
        if target.exists() and target.stat().st_size == len(data):
            return digest
        write_atomically(target, data)
        _fsync_dir(target.parent)
        return digest

    def get(self, digest: str) -> bytes:
        """The bytes of a blob; ``IntegrityViolation`` if it is missing."""
        path = self.path(digest)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise IntegrityViolation(
                f"blob {digest[:12]}… is missing from {self.root}",
                hint="restore the home folder's blobs/ from a backup; `codirector verify` lists every damaged one",
            ) from None

    def exists(self, digest: str) -> bool:
        return self.path(digest).exists()

    def check(self, digest: str) -> str | None:
        """None if the blob is present and intact, else what is wrong with it."""
        path = self.path(digest)
        if not path.exists():
            return "missing"
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != digest:
            return f"altered (its bytes now hash to {actual[:12]}…)"
        return None

    def digests(self) -> Iterator[str]:
        """Every blob digest present on disk."""
        if not self.root.exists():
            return
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir() and len(sub.name) == 2:
                for f in sorted(sub.iterdir()):
                    if not f.name.startswith(".tmp-"):
                        yield sub.name + f.name


def write_atomically(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write a file so that it appears complete or not at all (temp file, fsync, rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

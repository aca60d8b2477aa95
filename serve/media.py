"""Pictures and clips for the studio: blobs by validated digest, and small thumbnails of keyframes.

Invariants:
- A blob is named only by its digest, and a name that is not 64 lowercase hex characters is refused
  (404) before the blob store is touched: no request names a path.
- A local blob is read only from a regular file that is not a symlink, in a folder that is not one
  (opened without following links, so nothing swapped in between check and read is followed): a
  link in the blob folder, to a secret, a device or a pipe, is 404 here, as if absent.
- Only media is served (PNG, JPEG, WebP, GIF, MP4, WebM, recognised by their first bytes); any other
  blob (embeddings, recorded answers) is 404 here, as if absent.
- Blobs are content-addressed, so a response never changes: it is cached by the browser for good
  (``immutable``), and thumbnails (``generators.imaging.thumbnail``) are cached in memory by (digest, width),
  bounded in count.
- Thumbnail widths come from a short fixed list, so the cache cannot be grown by asking for odd sizes.
"""

from __future__ import annotations

import os
import re
import stat
import threading

from cachetools import LRUCache

from codirector.errors import IntegrityViolation
from codirector.generators.imaging import thumbnail
from codirector.store.blobs import BlobStore, LocalBlobStore, digest_of

DIGEST = re.compile(r"[0-9a-f]{64}")
WIDTHS = (96, 160, 320, 640)
IMMUTABLE = "public, max-age=31536000, immutable"


def valid_digest(text: str) -> bool:
    return DIGEST.fullmatch(text) is not None


def media_type(data: bytes) -> str | None:
    """The MIME type of an image or video blob from its first bytes; None for anything else."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[4:8] == b"ftyp":
        return "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    return None


def blob_bytes(blobs: BlobStore, digest: str) -> bytes | None:
    """The bytes of a (valid) digest's blob to serve, re-hashed; None when absent or, locally, not a plain file."""
    if not isinstance(blobs, LocalBlobStore):
        return blobs.get(digest) if blobs.exists(digest) else None
    path = blobs.path(digest)
    if path.parent.is_symlink():
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a link: ELOOP; a pipe: no wait
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        data = f.read()
    if digest_of(data) != digest:
        raise IntegrityViolation(f"blob {digest[:12]}… in {blobs.describe()} is altered",
                                 hint="restore it from a backup; `codirector verify` lists every damaged blob")
    return data


def width_for(asked: int) -> int:
    """The smallest offered thumbnail width at least ``asked`` wide (the largest when none is)."""
    return next((w for w in WIDTHS if w >= asked), WIDTHS[-1])


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` inclusive for a single ``bytes=`` range within ``size``; None for the whole blob."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if first == "":
            start, end = max(0, size - int(last)), size - 1
        else:
            start, end = int(first), (int(last) if last else size - 1)
    except ValueError:
        return None
    end = min(end, size - 1)
    return (start, end) if 0 <= start <= end else None


class Thumbnails:
    """A bounded, thread-safe cache of thumbnails by (digest, width), filled from the blob store: the
    ``capacity`` most recently used are kept (``cachetools.LRUCache``)."""

    def __init__(self, blobs: BlobStore, capacity: int = 2048) -> None:
        self.blobs = blobs
        self.capacity = capacity
        self._items: LRUCache[tuple[str, int], bytes] = LRUCache(maxsize=capacity)
        self._lock = threading.Lock()

    def get(self, digest: str, width: int) -> bytes | None:
        """The thumbnail, or None when the blob is absent or not an image."""
        key = (digest, width_for(width))
        with self._lock:
            kept = self._items.get(key)
        if kept is not None:
            return kept
        data = blob_bytes(self.blobs, digest)
        if data is None or not (media_type(data) or "").startswith("image/"):
            return None
        made = thumbnail(data, key[1])
        with self._lock:
            self._items[key] = made
        return made

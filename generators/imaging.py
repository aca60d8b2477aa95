"""Pixel helpers every image and video backend shares: frame-size checks, cover-crop, PNG bytes; and the one
thumbnail and ``data:`` URI helper the audit report, the lineage picture, the contact sheets and the studio use.

Invariants:
- A backend hands back exactly the size it was asked for. When a model picks its own size,
  ``cover`` scales the image to cover the frame and crops it centred: never letterboxed, never
  stretched, and an image that already fits is returned as it is.
- ``png`` is deterministic: the same pixels give the same bytes (no timestamps, no optimiser).
- A thumbnail fits its box (``width`` wide, ``height`` tall, by default four times the width) keeping
  the aspect ratio, and is never enlarged; ``thumbnail`` encodes it as a JPEG (quality 80).
- A size no frame can have (zero or negative) is a ``BackendError`` naming the value, raised
  before any work.

PIL is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from codirector.errors import BackendError


def check_frame_size(width: int, height: int, what: str = "image") -> None:
    """Width and height must be positive; the error says which value is wrong and where to set it."""
    if width <= 0 or height <= 0:
        raise BackendError(f"an {what} must have a positive width and height, got {width}x{height}",
                           hint="set [run] width and height, e.g. width = 512 and height = 288")


def cover(im: Any, width: int, height: int) -> Any:
    """``im`` (a PIL image) as RGB, scaled to cover ``width`` x ``height`` and cropped centred."""
    from PIL import Image, ImageOps

    im = im.convert("RGB")
    if im.size == (width, height):
        return im
    return ImageOps.fit(im, (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))


def png(im: Any) -> bytes:
    """A PIL image as PNG bytes."""
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def thumbnail_image(data: bytes, width: int, height: int | None = None) -> Any:
    """An image's bytes as an RGB PIL image fitting ``width`` x ``height`` (default ``4 * width``), never enlarged.

    Raises PIL's error (``UnidentifiedImageError``, ``OSError``) when ``data`` is not an image."""
    from PIL import Image

    box = (width, height or width * 4)
    source = Image.open(io.BytesIO(data))
    source.draft("RGB", box)  # JPEG: decode at reduced size
    im = source.convert("RGB")
    im.thumbnail(box)
    return im


def thumbnail(data: bytes, width: int, height: int | None = None, *, quality: int = 80) -> bytes:
    """A JPEG of an image's bytes fitting ``width`` x ``height`` (default ``4 * width``), never enlarged."""
    buf = io.BytesIO()
    thumbnail_image(data, width, height).save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def data_uri(data: bytes, mime: str) -> str:
    """``data:MIME;base64,...``: bytes inlined in a page, an SVG or a request."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"

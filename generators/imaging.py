"""Pixel helpers every image and video backend shares: frame-size checks, cover-crop, PNG bytes.

Invariants:
- A backend hands back exactly the size it was asked for. When a model picks its own size,
  ``cover`` scales the image to cover the frame and crops it centred: never letterboxed, never
  stretched, and an image that already fits is returned as it is.
- ``png`` is deterministic: the same pixels give the same bytes (no timestamps, no optimiser).
- A size no frame can have (zero or negative) is a ``BackendError`` naming the value, raised
  before any work.

PIL is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

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

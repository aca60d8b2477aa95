"""The audit as one self-contained HTML file: images inlined, readable without codirector.

The page is the ``audit.html`` template (``engine.views.templating``); this module hands it the ``Audit`` and
three helpers: ``image(blob, width)`` (a JPEG ``data:`` URI from ``generators.imaging``), ``checks(round)`` and
``card(entity)``.

Invariant: the page shows only what the ``Audit`` from ``audit_events`` holds (it is a rendering
of the log's projection, never a second source of truth); every shot has a ``section.shot`` with its keyframe
rounds (``img.keyframe``) and each round's ``.decision``.
"""

from __future__ import annotations

import os
from pathlib import Path

from codirector.engine.views.audit import Audit
from codirector.engine.views.describe import brief_entity
from codirector.engine.views.evidence import KeyframeRound
from codirector.engine.views.memory import Entity
from codirector.engine.views.projection import logged
from codirector.generators.imaging import data_uri, thumbnail
from codirector.store.blobs import BlobStore, write_atomically

CARD_DESCRIPTION = 180  # characters of an entity card's description (the whole of it in its tooltip)


class _Images:
    """Blob -> inline thumbnail (JPEG data URI), each (blob, width) encoded once per report."""

    def __init__(self, blobs: BlobStore, width: int = 320) -> None:
        self.blobs = blobs
        self.width = width
        self._made: dict[tuple[str, int], str] = {}

    def uri(self, digest: str | None, width: int | None = None) -> str:
        if not digest:
            return ""
        key = (digest, width or self.width)
        if key not in self._made:
            try:
                self._made[key] = data_uri(thumbnail(self.blobs.get(digest), key[1]), "image/jpeg")
            except Exception:  # a missing or non-image blob: show nothing rather than fail the report
                self._made[key] = ""
        return self._made[key]


def _checks(r: KeyframeRound) -> str:
    """A round's alignment report in a line: ``count: ok, appearance: mismatch, environment: ok``."""
    report = logged(r.alignment_report) if r.alignment_report else {}
    return ", ".join(f"{k.replace('main_character_', '')}: {v}" for k, v in report.items())


def render_html(audit: Audit, blobs: BlobStore) -> str:
    """The audit as HTML (the ``audit.html`` template of ``engine.views.templating``)."""
    from codirector.engine.views.templating import render

    images = _Images(blobs)

    def card(ent: Entity) -> str:
        return brief_entity(ent, audit.memory, CARD_DESCRIPTION)

    return render("audit.html", audit=audit, image=images.uri, checks=_checks, card=card)


def write_html(audit: Audit, blobs: BlobStore, path: str | os.PathLike[str]) -> Path:
    path = Path(path)  # (write_atomically makes the folder, and names this path if it cannot)
    write_atomically(path, render_html(audit, blobs).encode("utf-8"))
    return path

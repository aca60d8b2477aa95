"""Entity descriptions made short for a table cell or a card, keeping the part that tells states apart.

An evolved state's description copies its base's and appends the change (the paper's rule for
evolved entities: "Mia ..., now with a long knitted red scarf"), so cutting it from the front keeps
exactly the words it shares with its base and drops the ones that matter. Invariants of ``brief``:
- a description that fits is returned whole;
- a shortened one always says so with "…" where text was left out, and never exceeds ``limit``;
- for a state whose description extends its base's, the part after the shared start is kept whole
  when it fits (after as much of the shared start as there is room for), else its start is kept.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from codirector.engine.views.memory import Entity

ELLIPSIS = "…"
MIN_SHARED = 24  # a shared start shorter than this is a coincidence, not a copied base description


def _cut(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, cut at a word and ended with "…" when shortened."""
    if len(text) <= limit:
        return text
    room = max(1, limit - 1)
    head = text[:room]
    if " " in head[room // 2:]:
        head = head[: head.rindex(" ")]
    return head.rstrip(" ,;:") + ELLIPSIS


def what_differs(description: str, base_description: str | None) -> str | None:
    """The part of ``description`` after the start it shares with its base's (from a word boundary,
    leading punctuation dropped), or None when they share no real start or nothing follows it."""
    if not base_description:
        return None
    shared = os.path.commonprefix([description, base_description])
    if len(shared) < len(description) and shared and not shared.endswith(" ") \
            and description[len(shared)].isalnum() and shared[-1].isalnum():
        shared = shared[: shared.rfind(" ") + 1]  # back to the start of the word they part in
    if len(shared) < MIN_SHARED:
        return None
    rest = description[len(shared):].lstrip(" ,;:.-")
    return rest or None


def brief(description: str, limit: int, *, base_description: str | None = None) -> str:
    """``description`` within ``limit`` characters (see the module invariants)."""
    if len(description) <= limit:
        return description
    rest = what_differs(description, base_description)
    if rest is None:
        return _cut(description, limit)
    if len(rest) + 1 >= limit:
        return ELLIPSIS + _cut(rest, limit - 1)
    room = limit - len(rest) - 3  # "<start> … <rest>"
    start = _cut(description, room).removesuffix(ELLIPSIS) if room >= 12 else ""
    if start and len(start) < len(description):
        return f"{start} {ELLIPSIS} {rest}"
    return f"{ELLIPSIS}{rest}"


def brief_entity(entity: Entity, entities: Iterable[Entity], limit: int) -> str:
    """An entity's description within ``limit``, told apart from its base's (looked up in ``entities``)."""
    base = next((e.description for e in entities if e.name == entity.base_entity), None) \
        if entity.base_entity else None
    return brief(entity.description, limit, base_description=base)


__all__ = ["brief", "brief_entity", "what_differs"]

"""What memory holds: an entity state and its reference views, as plain immutable tuples.

Their own module so that both the fold (``views.memory``) and the ids it can see (``views.visible``)
use them without importing each other.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class View(NamedTuple):
    """One reference image of an entity, and where it came from."""

    blob: str
    kind: str
    shot: int | None
    round: int | None
    frame_index: int | None
    position: int
    branch: str
    embedding_id: int | None = None

    def source(self) -> dict[str, Any]:
        return {"kind": self.kind, "shot": self.shot, "round": self.round, "frame_index": self.frame_index}

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()


class Entity(NamedTuple):
    """One entity state in memory (an evolved state is its own entity with ``base_entity``)."""

    name: str
    kind: str
    description: str
    base_entity: str | None
    origin: str
    position: int
    branch: str
    shot: int | None
    text_embedding_id: int | None = None
    views: tuple[View, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = self._asdict()
        d["views"] = [v._asdict() for v in self.views]
        return d


__all__ = ["Entity", "View"]

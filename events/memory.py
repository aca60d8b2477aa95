"""Memory events: the only events that change the entity memory.

An entity is (name, description, reference views, base_entity), the paper's e_i = (n_i, d_i, P_i, b_i).
Names are unique within a branch's memory; an evolved state or new viewpoint is a NEW entity whose
``base_entity`` names the entity it derives from. Views are added, never removed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from codirector.events.base import Event

EntityKind = Literal["character", "prop", "background", "other"]
EntityOrigin = Literal["cast", "memory_controller", "video_analyzer", "planner", "user"]
ViewKind = Literal["reference", "video_frame", "cast_file", "keyframe"]


class EmbeddingRef(BaseModel):
    """A vector in the index: its id (the FAISS id), the blob holding it, and the model that made it."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    id: int
    blob: str
    model: str


class ViewSource(BaseModel):
    """Where a reference view came from: which shot and keyframe round, which clip frame."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    kind: ViewKind
    shot: int | None = None
    round: int | None = None
    frame_index: int | None = None


class EntityRegistered(Event):
    """A new entity entered memory (schema v2: ``kind`` and ``origin`` added, ``base`` renamed)."""

    schema_version = 2

    name: str
    kind: EntityKind
    description: str
    base_entity: str | None = None
    origin: EntityOrigin
    text_embedding: EmbeddingRef | None = None


class ViewAdded(Event):
    """A reference image of an entity was stored."""

    entity: str
    blob: str
    source: ViewSource
    embedding: EmbeddingRef | None = None

"""Retrieval events: what memory was consulted for a keyframe and why each reference was chosen.

One ``MemoryRetrieved`` per Retrieve&Update call holds the whole evidence: the vector shortlist
with scores, the controller's choice, near-duplicates resolved to existing entities, and the
reference view picked per entity.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from codirector.events.base import Event


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Candidate(_Frozen):
    """One entity in the vector shortlist, with its best similarity to the query."""

    entity: str
    score: float
    via: str  # "text" (description) or "image" (a view)


class ProposedEntity(_Frozen):
    """An entity the memory controller asked to create."""

    name: str
    description: str
    base_entity: str | None = None


class DuplicateResolved(_Frozen):
    """A proposed new entity that was a near-duplicate of an existing one, resolved to it."""

    proposed: str
    resolved_to: str
    score: float


class Reference(_Frozen):
    """The view of an entity sent to the image generator for this keyframe."""

    entity: str
    blob: str
    view_position: int
    score: float | None = None


class MemoryRetrieved(Event):
    """Retrieve&Update ran for a shot's keyframe round."""

    round: int
    query: str
    candidates: list[Candidate] = Field(default_factory=list)
    retrieved_existing: list[str] = Field(default_factory=list)
    new_entities: list[ProposedEntity] = Field(default_factory=list)
    duplicates_resolved: list[DuplicateResolved] = Field(default_factory=list)
    references: list[Reference] = Field(default_factory=list)
    scores_meaningful: bool = True
    memory_disabled: bool = False

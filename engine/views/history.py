"""Entity history: the lineage of an entity and every event that touched it.

A projection of the log, like memory: given the events of a branch, ``entity_history`` says when
the entity was registered (shot, origin, position), its base chain and derived states, every
view with the shot/round/frame it was cut from, and every event that mentions it with the role it
played there (registered, view added, derived from, retrieved, used as reference, updated by the
video analyzer, resolved as a duplicate).

Invariant: both halves read typed, upcast events (the memory fold and the ``MENTIONS``
projection), so an entity registered by a schema-v1 event has its lineage and its derived states
like any other. ``EntityHistory.to_json()`` is the stable ``codirector history --json`` document.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from codirector.engine.views.memory import Entity, MemoryBank, fold
from codirector.engine.views.projection import Projection, logged
from codirector.events import (
    MEMORY_EVENT_TYPES,
    EntityRegistered,
    MemoryRetrieved,
    RecordedEvent,
    ShotPlanned,
    ShotPlanRevised,
    VideoAnalyzed,
    ViewAdded,
)


def describe(e: Entity) -> dict[str, Any]:
    """An entity state as ``history --json`` shows it."""
    return {
        "name": e.name,
        "kind": e.kind,
        "description": e.description,
        "base_entity": e.base_entity,
        "origin": e.origin,
        "registered": {"position": e.position, "shot": e.shot, "branch": e.branch},
        "views": [{"blob": v.blob, **v.source(), "position": v.position, "branch": v.branch} for v in e.views],
    }


@dataclass(frozen=True)
class Mention:
    """One role the entity played in one event, with the detail worth showing."""

    position: int
    branch: str
    shot: int | None
    type: str
    role: str
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"position": self.position, "branch": self.branch, "shot": self.shot, "type": self.type,
                "role": self.role, "detail": self.detail}


@dataclass(frozen=True)
class EntityHistory:
    """An entity, its lineage (base chain, derived states, each with its views) and its mentions."""

    story: str
    branch: str
    entity: Entity
    chain: tuple[str, ...]
    derived: tuple[str, ...]
    descendants: tuple[str, ...]
    family: tuple[Entity, ...]  # the chain, then the descendants
    events: tuple[Mention, ...]
    used_as_reference_in_shots: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        """The stable ``codirector history --json`` document."""
        return {
            "story": self.story,
            "branch": self.branch,
            "entity": describe(self.entity),
            "lineage": {
                "chain": list(self.chain),
                "derived": list(self.derived),
                "descendants": list(self.descendants),
                "entities": [describe(e) for e in self.family],
            },
            "events": [m.to_json() for m in self.events],
            "used_as_reference_in_shots": list(self.used_as_reference_in_shots),
        }


# ---------------------------------------------------------------------- who mentions the entity


@dataclass
class _Mentions:
    name: str
    found: list[Mention] = field(default_factory=list)

    def add(self, ev: RecordedEvent, role: str, detail: dict[str, Any]) -> None:
        self.found.append(Mention(ev.position, ev.branch, ev.shot, ev.type, role, detail))


MENTIONS: Projection[_Mentions] = Projection("entity history")


@MENTIONS.on(EntityRegistered)
def _registered(m: _Mentions, e: EntityRegistered, ev: RecordedEvent) -> None:
    if e.name == m.name:
        m.add(ev, "registered", {"origin": e.origin, "kind": e.kind, "base_entity": e.base_entity,
                                 "description": e.description})
    elif e.base_entity == m.name:
        m.add(ev, "derived", {"entity": e.name, "origin": e.origin})


@MENTIONS.on(ViewAdded)
def _view_added(m: _Mentions, e: ViewAdded, ev: RecordedEvent) -> None:
    if e.entity == m.name:
        m.add(ev, "view_added", {"blob": e.blob, **logged(e.source)})


@MENTIONS.on(MemoryRetrieved)
def _retrieved(m: _Mentions, e: MemoryRetrieved, ev: RecordedEvent) -> None:
    if m.name in e.retrieved_existing:
        m.add(ev, "retrieved", {"round": e.round, "query": e.query})
    for ref in e.references:
        if ref.entity == m.name:
            m.add(ev, "reference", {"round": e.round, "blob": ref.blob, "score": ref.score})
    for dup in e.duplicates_resolved:
        if m.name in (dup.proposed, dup.resolved_to):
            m.add(ev, "duplicate_resolved", logged(dup))
    for new in e.new_entities:
        if new.name == m.name:
            m.add(ev, "proposed", {"round": e.round, "base_entity": new.base_entity})


@MENTIONS.on(VideoAnalyzed)
def _video_analyzed(m: _Mentions, e: VideoAnalyzed, ev: RecordedEvent) -> None:
    for upd in e.entity_updates:
        if m.name in (upd.name, upd.base_entity):
            m.add(ev, "video_update", logged(upd))


@MENTIONS.on(ShotPlanned)
def _planned(m: _Mentions, e: ShotPlanned, ev: RecordedEvent) -> None:
    if m.name in e.uses:
        m.add(ev, "planned_use", {})
    for evo in e.evolves:
        if m.name in (evo.name, evo.base_entity):
            m.add(ev, "planned_evolution", logged(evo))


@MENTIONS.on(ShotPlanRevised)
def _plan_revised(m: _Mentions, e: ShotPlanRevised, ev: RecordedEvent) -> None:
    if e.field == "uses" and m.name in e.after:
        m.add(ev, "revised_use", {"reason": e.reason})
    if e.field == "evolves":
        for evo in e.after:
            if isinstance(evo, dict) and m.name in (evo.get("name"), evo.get("base_entity")):
                m.add(ev, "revised_evolution", {**evo, "reason": e.reason})


def mentions(events: Iterable[RecordedEvent], name: str) -> list[Mention]:
    """Every role ``name`` plays in ``events``, in log order."""
    return MENTIONS.fold(_Mentions(name), events).found


def history_event_types() -> tuple[str, ...]:
    """The event types ``entity_history`` reads (memory's and ``MENTIONS``'s): what to ask the store for."""
    return tuple(sorted(set(MEMORY_EVENT_TYPES) | set(MENTIONS.types)))


def entity_history(events: Iterable[RecordedEvent], name: str, *, story_id: str, branch: str) -> EntityHistory:
    """The lineage of ``name`` and every event that mentions it (``EntityNotFound`` with suggestions).

    ``events``: the branch's events, or only those of ``history_event_types()`` (the same answer).
    """
    events = list(events)
    bank: MemoryBank = fold(e for e in events if e.type in MEMORY_EVENT_TYPES)
    entity = bank.get(name)
    chain = bank.base_chain(name)
    descendants = bank.descendants(name)
    family = chain + [d for d in descendants if d not in chain]
    found = mentions(events, name)
    reused = sorted({m.shot for m in found if m.role == "reference" and m.shot is not None})
    return EntityHistory(
        story=story_id, branch=branch, entity=entity, chain=tuple(chain), derived=tuple(bank.derived(name)),
        descendants=tuple(descendants), family=tuple(bank.entities[n] for n in family), events=tuple(found),
        used_as_reference_in_shots=tuple(reused),
    )


__all__ = ["MENTIONS", "EntityHistory", "Mention", "describe", "entity_history", "history_event_types", "mentions"]

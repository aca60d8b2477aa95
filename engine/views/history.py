"""Entity history: the lineage of an entity and every event that touched it.

A projection of the log, like memory: given the events of a branch, ``entity_history`` says when
the entity was registered (shot, origin, position), its base chain and derived states, every
view with the shot/round/frame it was cut from, and every event that mentions it with the role it
played there (registered, view added, derived from, retrieved, used as reference, updated by the
video analyzer, resolved as a duplicate).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from codirector.engine.views.memory import MemoryBank, fold
from codirector.events import RecordedEvent


def mentions(ev: RecordedEvent, name: str) -> list[tuple[str, dict[str, Any]]]:
    """The roles ``name`` plays in ``ev`` with the detail worth showing; empty if none."""
    p = ev.payload
    roles: list[tuple[str, dict[str, Any]]] = []
    t = ev.type
    if t == "EntityRegistered":
        if p.get("name") == name:
            roles.append(("registered", {"origin": p.get("origin"), "kind": p.get("kind"),
                                         "base_entity": p.get("base_entity"), "description": p.get("description")}))
        elif p.get("base_entity") == name:
            roles.append(("derived", {"entity": p.get("name"), "origin": p.get("origin")}))
    elif t == "ViewAdded" and p.get("entity") == name:
        roles.append(("view_added", {"blob": p.get("blob"), **(p.get("source") or {})}))
    elif t == "MemoryRetrieved":
        if name in p.get("retrieved_existing", []):
            roles.append(("retrieved", {"round": p.get("round"), "query": p.get("query")}))
        for ref in p.get("references", []):
            if ref.get("entity") == name:
                detail = {"round": p.get("round"), "blob": ref.get("blob"), "score": ref.get("score")}
                roles.append(("reference", detail))
        for dup in p.get("duplicates_resolved", []):
            if name in (dup.get("proposed"), dup.get("resolved_to")):
                roles.append(("duplicate_resolved", dict(dup)))
        for new in p.get("new_entities", []):
            if new.get("name") == name:
                roles.append(("proposed", {"round": p.get("round"), "base_entity": new.get("base_entity")}))
    elif t == "VideoAnalyzed":
        for upd in p.get("entity_updates", []):
            if upd.get("name") == name or upd.get("base_entity") == name:
                roles.append(("video_update", dict(upd)))
    elif t == "ShotPlanned":
        if name in p.get("uses", []):
            roles.append(("planned_use", {}))
        for evo in p.get("evolves", []):
            if name in (evo.get("name"), evo.get("base_entity")):
                roles.append(("planned_evolution", dict(evo)))
    return roles


def entity_history(events: Iterable[RecordedEvent], name: str, *, story_id: str, branch: str) -> dict[str, Any]:
    """The stable ``codirector history --json`` document for ``name``."""
    events = list(events)
    bank: MemoryBank = fold(e for e in events if e.type in ("EntityRegistered", "ViewAdded"))
    entity = bank.get(name)  # EntityNotFound with suggestions
    chain = bank.base_chain(name)
    family = chain + [d for d in bank.descendants(name) if d not in chain]

    def describe(n: str) -> dict[str, Any]:
        e = bank.entities[n]
        return {
            "name": e.name,
            "kind": e.kind,
            "description": e.description,
            "base_entity": e.base_entity,
            "origin": e.origin,
            "registered": {"position": e.position, "shot": e.shot, "branch": e.branch},
            "views": [{"blob": v.blob, **v.source(), "position": v.position, "branch": v.branch} for v in e.views],
        }

    touched: list[dict[str, Any]] = []
    reused: set[int] = set()
    for ev in events:
        for role, detail in mentions(ev, name):
            touched.append({"position": ev.position, "branch": ev.branch, "shot": ev.shot, "type": ev.type,
                            "role": role, "detail": detail})
            if role == "reference" and ev.shot is not None:
                reused.add(ev.shot)
    return {
        "story": story_id,
        "branch": branch,
        "entity": describe(entity.name),
        "lineage": {
            "chain": chain,
            "derived": bank.derived(name),
            "descendants": bank.descendants(name),
            "entities": [describe(n) for n in family],
        },
        "events": touched,
        "used_as_reference_in_shots": sorted(reused),
    }

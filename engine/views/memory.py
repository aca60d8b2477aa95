"""Entity memory as a fold of the log: M at (branch, position) = fold(memory events up to it).

The paper's memory is M = {e_i = (n_i, d_i, P_i, b_i)}: name, description, reference views and an
optional base entity for evolved states and new viewpoints. Here each entity also keeps its kind,
origin, the shot/position that registered it and, per view, where the view came from.

Invariants:
- ``fold`` and ``apply`` are pure with respect to the log: the same events give the same memory.
  ``apply(bank, event)`` returns a new bank; ``fold`` uses one private copy for speed.
- The fold reads typed, upcast events (the ``MEMORY`` projection, ``views.projection``), so a
  schema-v1 ``EntityRegistered`` enters memory exactly as a current one would.
- Names are unique. A repeated registration or a view for an unknown entity (which the engine
  never writes) is kept out of memory and listed in ``anomalies`` instead of failing the read.
- Snapshots are a cache of ``to_json()``; ``MemoryReader`` is tested to give exactly the plain fold.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from codirector.engine.views.projection import Projection
from codirector.errors import EntityNotFound, RunStateError, did_you_mean
from codirector.events import MEMORY_EVENT_TYPES, EntityRegistered, RecordedEvent, ViewAdded
from codirector.store.event_store import EventStore, Segment
from codirector.store.snapshots import SnapshotCache

MEMORY_SNAPSHOT_KIND = "memory"
MEMORY_SNAPSHOT_SCHEMA = 1


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


@dataclass
class MemoryBank:
    """The entity memory at ``position``; entities keep their registration order."""

    position: int = 0
    entities: dict[str, Entity] = field(default_factory=dict)
    anomalies: list[str] = field(default_factory=list)

    # -- queries ------------------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return name in self.entities

    def __len__(self) -> int:
        return len(self.entities)

    def __iter__(self) -> Iterator[Entity]:
        return iter(self.entities.values())

    def names(self) -> list[str]:
        return list(self.entities)

    def get(self, name: str) -> Entity:
        """The entity named ``name`` or ``EntityNotFound`` suggesting close names."""
        try:
            return self.entities[name]
        except KeyError:
            raise EntityNotFound(
                f"no entity {name!r} in memory at position {self.position}",
                hint=did_you_mean(name, self.entities, "entity"),
            ) from None

    def base_chain(self, name: str) -> list[str]:
        """``name``'s ancestry from the root entity down to ``name`` (Mia, Mia_red_scarf, ...)."""
        chain = [self.get(name).name]
        seen = {name}
        base = self.entities[name].base_entity
        while base is not None and base in self.entities and base not in seen:
            chain.append(base)
            seen.add(base)
            base = self.entities[base].base_entity
        return list(reversed(chain))

    def derived(self, name: str) -> list[str]:
        """Entities whose ``base_entity`` is ``name`` (its evolved states and viewpoints)."""
        return [e.name for e in self.entities.values() if e.base_entity == name]

    def descendants(self, name: str) -> list[str]:
        """Every entity derived from ``name``, directly or through other derived states."""
        out: list[str] = []
        todo = self.derived(name)
        while todo:
            n = todo.pop(0)
            if n not in out:
                out.append(n)
                todo.extend(self.derived(n))
        return out

    def vector_owners(self) -> dict[int, tuple[str, View | None]]:
        """Every embedding id visible in this memory -> (entity, view or None for its description)."""
        owners: dict[int, tuple[str, View | None]] = {}
        for e in self.entities.values():
            if e.text_embedding_id is not None:
                owners[e.text_embedding_id] = (e.name, None)
            for v in e.views:
                if v.embedding_id is not None:
                    owners[v.embedding_id] = (e.name, v)
        return owners

    def copy(self) -> MemoryBank:
        return MemoryBank(self.position, dict(self.entities), list(self.anomalies))

    # -- serialisation (snapshots, --json) -----------------------------------------------

    def to_json(self) -> str:
        """Compact snapshot form: entities and views as positional rows (field order of the tuples)."""
        return orjson.dumps(
            {"position": self.position, "entities": list(self.entities.values()), "anomalies": self.anomalies},
            default=tuple,  # Entity/View are NamedTuples: written as plain arrays
        ).decode()

    @staticmethod
    def from_json(text: str) -> MemoryBank:
        data = orjson.loads(text)
        make_view, make_entity = View._make, Entity._make
        entities: dict[str, Entity] = {}
        was_enabled = gc.isenabled()
        gc.disable()  # thousands of new objects, none cyclic: don't let the collector scan them all
        try:
            for row in data["entities"]:
                row[-1] = tuple(map(make_view, row[-1]))
                entities[row[0]] = make_entity(row)
        finally:
            if was_enabled:
                gc.enable()
        return MemoryBank(int(data["position"]), entities, list(data.get("anomalies", [])))


# ---------------------------------------------------------------------- the fold


MEMORY: Projection[MemoryBank] = Projection("memory")


@MEMORY.on(EntityRegistered)
def _entity_registered(bank: MemoryBank, e: EntityRegistered, ev: RecordedEvent) -> None:
    if e.name in bank.entities:
        bank.anomalies.append(f"position {ev.position}: {e.name!r} registered twice; first kept")
        return
    ref = e.text_embedding
    bank.entities[e.name] = Entity(
        name=e.name,
        kind=e.kind,
        description=e.description,
        base_entity=e.base_entity,
        origin=e.origin,
        position=ev.position,
        branch=ev.branch,
        shot=ev.shot,
        text_embedding_id=ref.id if ref else None,
    )


@MEMORY.on(ViewAdded)
def _view_added(bank: MemoryBank, e: ViewAdded, ev: RecordedEvent) -> None:
    entity = bank.entities.get(e.entity)
    if entity is None:
        bank.anomalies.append(f"position {ev.position}: view for unknown entity {e.entity!r} ignored")
        return
    src, ref = e.source, e.embedding
    view = View(
        blob=e.blob,
        kind=src.kind,
        shot=src.shot,
        round=src.round,
        frame_index=src.frame_index,
        position=ev.position,
        branch=ev.branch,
        embedding_id=ref.id if ref else None,
    )
    bank.entities[entity.name] = entity._replace(views=entity.views + (view,))


def mutate(bank: MemoryBank, ev: RecordedEvent) -> None:
    """Change ``bank`` in place by one event (any event moves its position)."""
    MEMORY.apply(bank, ev)
    bank.position = max(bank.position, ev.position)


def apply(bank: MemoryBank, ev: RecordedEvent) -> MemoryBank:
    """The memory after one more event (a new bank; ``bank`` is unchanged)."""
    new = bank.copy()
    mutate(new, ev)
    return new


def fold(events: Iterable[RecordedEvent], initial: MemoryBank | None = None) -> MemoryBank:
    """The memory after ``events`` (starting from ``initial``, which is not changed)."""
    bank = initial.copy() if initial is not None else MemoryBank()
    for ev in events:
        mutate(bank, ev)
    return bank


# ---------------------------------------------------------------------- reading with snapshots


def owner_of(segments: list[Segment], position: int) -> str:
    """The branch whose own events hold ``position`` in a lineage."""
    for seg in reversed(segments):
        if position > seg.lo and (seg.hi is None or position <= seg.hi):
            return seg.branch
    return segments[0].branch


class MemoryReader:
    """Memory at any (branch, position), from the newest snapshot plus the events after it."""

    def __init__(self, store: EventStore, *, snapshot_after: int = 200, use_snapshots: bool = True) -> None:
        self.store = store
        self.cache = SnapshotCache(store)
        self.snapshot_after = snapshot_after
        self.use_snapshots = use_snapshots

    def at(self, story_id: str, branch: str = "main", position: int | None = None) -> MemoryBank:
        """Memory of ``branch`` as it stood at ``position`` (default: its head)."""
        info = self.store.branch(story_id, branch)
        upto = info.head_position if position is None else position
        if upto < 0 or upto > info.head_position:
            raise RunStateError(
                f"position {upto} is outside {story_id!r}/{branch!r}, which has positions 1..{info.head_position}"
            )
        start, after = MemoryBank(), 0
        if self.use_snapshots:
            snap = self.cache.latest(
                story_id, branch, MEMORY_SNAPSHOT_KIND, upto=upto, schema_version=MEMORY_SNAPSHOT_SCHEMA
            )
            if snap is not None:
                after, start = snap[0], MemoryBank.from_json(snap[1])
        events = self.store.read(story_id, branch, after=after, upto=upto, types=MEMORY_EVENT_TYPES)
        bank = fold(events, start)
        bank.position = upto
        if self.use_snapshots and len(events) >= self.snapshot_after:
            self.snapshot(story_id, branch, bank)
        return bank

    def snapshot(self, story_id: str, branch: str, bank: MemoryBank) -> None:
        """Cache ``bank`` under the branch that owns its position."""
        segments = self.store.lineage(story_id, branch)
        owner = owner_of(segments, bank.position) if bank.position else branch
        self.cache.save(
            story_id, owner, MEMORY_SNAPSHOT_KIND, bank.position, MEMORY_SNAPSHOT_SCHEMA, bank.to_json()
        )


def stale_snapshots(store: EventStore, story_id: str) -> list[tuple[str, int]]:
    """Memory snapshots that differ from the plain fold at their position: (branch, position)."""
    bad: list[tuple[str, int]] = []
    by_branch: dict[str, list[tuple[int, int, str]]] = {}
    for branch, position, schema, state in SnapshotCache(store).all(story_id, MEMORY_SNAPSHOT_KIND):
        by_branch.setdefault(branch, []).append((position, schema, state))
    for branch, snaps in by_branch.items():
        events = store.read(story_id, branch, upto=max(p for p, _, _ in snaps), types=MEMORY_EVENT_TYPES)
        bank, i = MemoryBank(), 0
        for position, schema, state in snaps:
            while i < len(events) and events[i].position <= position:
                mutate(bank, events[i])
                i += 1
            bank.position = position
            if schema != MEMORY_SNAPSHOT_SCHEMA:
                continue  # an old format is never read, so it cannot mislead
            try:
                same = MemoryBank.from_json(state).to_json() == bank.to_json()
            except (ValueError, TypeError, IndexError, KeyError):
                same = False
            if not same:
                bad.append((branch, position))
    return bad


def position_at_shot(events: Iterable[RecordedEvent], shot: int) -> int:
    """The position whose memory shot ``shot``'s keyframe was made with (its ``KeyframeSelected``)."""
    last_seen = 0
    for ev in events:
        if ev.shot is not None:
            last_seen = max(last_seen, ev.shot)
        if ev.type == "KeyframeSelected" and ev.shot == shot:
            return ev.position
    hint = f"this branch has reached shot {last_seen}" if last_seen else "no shot has run on this branch yet"
    raise RunStateError(f"shot {shot} has no selected keyframe on this branch", hint=hint)


__all__ = [
    "MEMORY", "MEMORY_EVENT_TYPES", "Entity", "MemoryBank", "MemoryReader", "View", "apply", "fold", "mutate",
    "owner_of", "position_at_shot",
]

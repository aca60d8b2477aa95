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
- ``visible()`` (the embedding ids a bank can see, in the index's search form) is kept by the fold
  as events arrive (``views.visible``); it is derived, never compared or stored.
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import accumulate
from operator import sub
from typing import Any

import orjson

from codirector.engine.views.entities import Entity, View
from codirector.engine.views.projection import Projection
from codirector.engine.views.visible import VisibleVectors
from codirector.errors import EntityNotFound, RunStateError, did_you_mean
from codirector.events import MEMORY_EVENT_TYPES, EntityRegistered, RecordedEvent, ViewAdded
from codirector.store.event_store import EventStore, Segment
from codirector.store.snapshots import SnapshotCache

MEMORY_SNAPSHOT_KIND = "memory"
MEMORY_SNAPSHOT_SCHEMA = 2  # 2: the columnar form of ``MemoryBank.to_json``; 1 (rows) is never read


@dataclass
class MemoryBank:
    """The entity memory at ``position``; entities keep their registration order."""

    position: int = 0
    entities: dict[str, Entity] = field(default_factory=dict)
    anomalies: list[str] = field(default_factory=list)
    vectors: VisibleVectors | None = field(default=None, compare=False, repr=False)  # None: built on need

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

    def visible(self) -> VisibleVectors:
        """The embedding ids this memory can see, sorted, with their owners (kept by the fold)."""
        if self.vectors is None:
            self.vectors = VisibleVectors.of(self.entities.values())
        return self.vectors

    def vector_owners(self) -> dict[int, tuple[str, View | None]]:
        """Every embedding id visible in this memory -> (entity, view or None for its description)."""
        return dict(self.visible().owners())

    def copy(self) -> MemoryBank:
        vectors = None if self.vectors is None else self.vectors.copy()
        return MemoryBank(self.position, dict(self.entities), list(self.anomalies), vectors)

    # -- serialisation (snapshots, --json) -----------------------------------------------

    def to_json(self) -> str:
        """The snapshot form: entities and views as columns (see ``_columns``), which decode cheaply."""
        return orjson.dumps(_columns(self)).decode()

    @staticmethod
    def from_json(text: str) -> MemoryBank:
        """The bank ``to_json`` wrote (``ValueError`` for text of another layout)."""
        return _from_columns(orjson.loads(text))


# ---------------------------------------------------------------------- the snapshot form
#
# One JSON object: ``position``, ``anomalies``, the field names of ``Entity`` and ``View`` (a
# check against a layout written by other code), and one array per field: ``entities`` holds
# ``Entity``'s columns with ``views`` replaced by each entity's view count, ``views`` holds
# ``View``'s columns for all views, entity by entity. Repeated strings (kinds, origins, branch
# names) are stored once in ``words`` and referred to by index. Decoding builds every tuple
# with C-level calls (``zip`` + ``tuple.__new__``), no per-entity Python code: that is what makes
# a snapshot several times cheaper to read than the events it stands for.

_ENTITY_WORDS = frozenset({"kind", "origin", "branch"})
_VIEW_WORDS = frozenset({"kind", "branch"})


def _columns(bank: MemoryBank) -> dict[str, Any]:
    words: dict[str, int] = {}

    def coded(column: tuple[Any, ...]) -> list[int]:
        return [words.setdefault(w, len(words)) for w in column]

    entities = list(bank.entities.values())
    views = [v for e in entities for v in e.views]
    e_cols = list(zip(*entities, strict=True)) if entities else [() for _ in Entity._fields]
    v_cols = list(zip(*views, strict=True)) if views else [() for _ in View._fields]
    e_out = [coded(c) if f in _ENTITY_WORDS else list(c) for f, c in zip(Entity._fields, e_cols, strict=True)]
    e_out[-1] = [len(e.views) for e in entities]
    v_out = [coded(c) if f in _VIEW_WORDS else list(c) for f, c in zip(View._fields, v_cols, strict=True)]
    return {"position": bank.position, "anomalies": bank.anomalies, "entity_fields": Entity._fields,
            "view_fields": View._fields, "words": list(words), "entities": e_out, "views": v_out}


def _from_columns(data: dict[str, Any]) -> MemoryBank:
    if data.get("entity_fields") != list(Entity._fields) or data.get("view_fields") != list(View._fields):
        raise ValueError("a memory snapshot written for other Entity/View fields")
    words = data["words"]
    e_cols, v_cols = data["entities"], data["views"]
    for names, cols in ((Entity._fields, e_cols), (View._fields, v_cols)):
        for i, name in enumerate(names):
            if name in (_ENTITY_WORDS if cols is e_cols else _VIEW_WORDS):
                cols[i] = list(map(words.__getitem__, cols[i]))
    was_enabled = gc.isenabled()
    gc.disable()  # thousands of new tuples, none cyclic: don't let the collector scan them all
    try:
        views = tuple(map(partial(tuple.__new__, View), zip(*v_cols, strict=True)))
        ends = list(accumulate(e_cols[-1]))  # entity i's views are views[ends[i] - count[i] : ends[i]]
        e_cols[-1] = list(map(views.__getitem__, map(slice, map(sub, ends, e_cols[-1]), ends)))
        entities = dict(zip(e_cols[0], map(partial(tuple.__new__, Entity), zip(*e_cols, strict=True)), strict=True))
    finally:
        if was_enabled:
            gc.enable()
    return MemoryBank(int(data["position"]), entities, list(data["anomalies"]))


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
    if ref and bank.vectors is not None:
        bank.vectors.add(ref.id, e.name, None)


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
    if ref and bank.vectors is not None:
        bank.vectors.add(ref.id, entity.name, view)


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
    bank = initial.copy() if initial is not None else MemoryBank(vectors=VisibleVectors())
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
    """Memory at any (branch, position), from the newest snapshot plus the events after it.

    A decoded snapshot is kept in this process (``DECODED_KEPT`` per store, newest used first),
    keyed by where it is stored: scrubbing through one story in the studio decodes each snapshot
    once. That is safe because a snapshot is written once and equals the fold at its position,
    which the append-only log never changes; ``fold`` copies it before applying the tail.
    ``keep_decoded=False`` reads every snapshot from the database (what a fresh process pays).
    """

    def __init__(
        self, store: EventStore, *, snapshot_after: int = 200, use_snapshots: bool = True, keep_decoded: bool = True
    ) -> None:
        self.store = store
        self.cache = SnapshotCache(store)
        self.snapshot_after = snapshot_after
        self.use_snapshots = use_snapshots
        self.keep_decoded = keep_decoded

    def at(self, story_id: str, branch: str = "main", position: int | None = None) -> MemoryBank:
        """Memory of ``branch`` as it stood at ``position`` (default: its head)."""
        info = self.store.branch(story_id, branch)
        upto = info.head_position if position is None else position
        if upto < 0 or upto > info.head_position:
            raise RunStateError(
                f"position {upto} is outside {story_id!r}/{branch!r}, which has positions 1..{info.head_position}"
            )
        after, start = self._snapshot(story_id, branch, upto) if self.use_snapshots else (0, None)
        events = self.store.read(story_id, branch, after=after, upto=upto, types=MEMORY_EVENT_TYPES)
        bank = fold(events, start)
        bank.position = upto
        if self.use_snapshots and len(events) >= self.snapshot_after:
            self.snapshot(story_id, branch, bank)
        return bank

    def _snapshot(self, story_id: str, branch: str, upto: int) -> tuple[int, MemoryBank | None]:
        """The newest snapshot visible at (``branch``, ``upto``): its position and the decoded bank
        (shared: ``fold`` copies it), or (0, None)."""
        if not self.keep_decoded:  # one query: where and what
            snap = self.cache.latest(
                story_id, branch, MEMORY_SNAPSHOT_KIND, upto=upto, schema_version=MEMORY_SNAPSHOT_SCHEMA
            )
            return (0, None) if snap is None else (snap[0], MemoryBank.from_json(snap[1]))
        found = self.cache.newest(
            story_id, branch, MEMORY_SNAPSHOT_KIND, upto=upto, schema_version=MEMORY_SNAPSHOT_SCHEMA
        )
        if found is None:
            return 0, None
        key = (story_id, *found)
        with _DECODED_LOCK:
            kept = _DECODED.setdefault(self.store, {})
            bank = kept.pop(key, None)
        if bank is None:
            state = self.cache.state(story_id, found[0], MEMORY_SNAPSHOT_KIND, found[1])
            if state is None:  # dropped meanwhile: fold from the start
                return 0, None
            bank = MemoryBank.from_json(state)
            bank.visible()  # once per kept snapshot: every bank folded from it copies these
        with _DECODED_LOCK:
            kept[key] = bank  # the most recently used last
            while len(kept) > DECODED_KEPT:
                del kept[next(iter(kept))]
        return found[1], bank

    def snapshot(self, story_id: str, branch: str, bank: MemoryBank) -> None:
        """Cache ``bank`` under the branch that owns its position."""
        segments = self.store.lineage(story_id, branch)
        owner = owner_of(segments, bank.position) if bank.position else branch
        self.cache.save(
            story_id, owner, MEMORY_SNAPSHOT_KIND, bank.position, MEMORY_SNAPSHOT_SCHEMA, bank.to_json()
        )


DECODED_KEPT = 8
# per store: (story, owning branch, position) -> the decoded snapshot stored there
_DECODED: weakref.WeakKeyDictionary[EventStore, dict[tuple[str, str, int], MemoryBank]] = weakref.WeakKeyDictionary()
_DECODED_LOCK = threading.Lock()


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

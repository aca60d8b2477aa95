"""The embedding ids a memory can see, kept in the form the vector index searches.

``MemoryBank.visible()`` is a ``VisibleVectors``: the ids of the vectors the bank names (every
entity's description and every embedded view), sorted, with the entity and view owning each. The
fold adds ids as events arrive, so a search never rebuilds them from the entities:

- ``ids()`` is a read-only sorted int64 array without duplicates; ``owners()`` maps each id to
  (entity, view or None for the description), the later of two vectors under one id winning.
- ``rows(index)`` is the rows of ``index`` holding those ids (``VisibleRows``), what
  ``VectorIndex.search`` scores without looking any id up. Rows never move (the index only
  appends), so the rows found for one state are the base of the next: only the ids added since
  are looked up.

Invariant: whatever mix of folding, copying and snapshot decoding made a bank, ``ids()`` equals
``sorted(owners())`` and ``owners()`` equals what ``VisibleVectors.of(bank)`` builds from the
entities alone (tested). A state, once merged (``_State``), never changes: copies of a bank share
it, and a bank's position is immutable, so nothing cached on a state is ever stale (the rows
are checked against the index's size only when some id was missing from it).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from codirector.store.vector_search import VisibleRows

if TYPE_CHECKING:
    from codirector.engine.views.entities import Entity, View
    from codirector.store.vector_index import VectorIndex

Owner = tuple[str, "View | None"]
_NONE = np.empty(0, dtype=np.int64)
_NONE.flags.writeable = False


class _State:
    """One merged visible set (never changed once built) and where its rows were found."""

    __slots__ = ("ids", "owners", "located", "base", "parent", "fresh")

    def __init__(self, ids: np.ndarray, owners: dict[int, Owner], base: tuple[Any, VisibleRows] | None = None,
                 parent: _State | None = None, fresh: np.ndarray = _NONE) -> None:
        self.ids = ids
        self.owners = owners
        self.located: tuple[Any, VisibleRows] | None = None  # (weak ref to an index, its rows here)
        # where the rows of the state this one grew from come from: only ``fresh`` is looked up here
        self.base = base  # that state's rows, found before this one was made
        self.parent = parent  # or that state itself (a root: it has no parent), its rows not found yet
        self.fresh = fresh

    def rows(self, index: VectorIndex) -> VisibleRows:
        found = self.located
        if found is not None and found[0]() is index and (found[1].complete or found[1].size == len(index)):
            return found[1]
        base, todo = None, self.ids
        if self.base is not None and self.base[0]() is index and self.base[1].complete:
            base, todo = self.base[1], self.fresh
        elif self.parent is not None:  # e.g. a kept snapshot's state: found once, for every bank folded from it
            parent = self.parent.rows(index)
            if parent.complete:
                base, todo = parent, self.fresh
        rows = index.locate(todo, base)
        self.located, self.base, self.parent, self.fresh = (weakref.ref(index), rows), None, None, _NONE
        return rows


class VisibleVectors:
    """The sorted embedding ids of one memory state, grown by ``add`` (see the module docstring)."""

    __slots__ = ("_state", "_new")

    def __init__(self, state: _State | None = None, new: dict[int, Owner] | None = None) -> None:
        self._state = state if state is not None else _State(_NONE, {})
        self._new: dict[int, Owner] = new if new is not None else {}  # added since ``_state``, in order

    @classmethod
    def of(cls, entities: Iterable[Entity]) -> VisibleVectors:
        """Built from the entities alone (a decoded snapshot, a bank made by hand)."""
        visible = cls()
        for e in entities:
            if e.text_embedding_id is not None:
                visible.add(e.text_embedding_id, e.name, None)
            for v in e.views:
                if v.embedding_id is not None:
                    visible.add(v.embedding_id, e.name, v)
        visible._merged()  # one state, shared by every copy (a kept snapshot's banks folded on from it)
        return visible

    def add(self, vector_id: int, entity: str, view: View | None) -> None:
        self._new[vector_id] = (entity, view)

    def copy(self) -> VisibleVectors:
        """An independent copy: the merged state is shared (it never changes), the additions copied."""
        return VisibleVectors(self._state, dict(self._new) if self._new else None)

    def ids(self) -> np.ndarray:
        return self._merged().ids

    def owners(self) -> Mapping[int, Owner]:
        return self._merged().owners

    def rows(self, index: VectorIndex) -> VisibleRows:
        """The rows of ``index`` holding these ids, looked up once per state and index."""
        return self._merged().rows(index)

    def _merged(self) -> _State:
        """Fold the additions into a new state; the old one (shared with copies) is left as it was."""
        if self._new:
            old = self._state
            fresh = np.fromiter((v for v in self._new if v not in old.owners), dtype=np.int64)
            fresh.sort()
            ids = np.insert(old.ids, np.searchsorted(old.ids, fresh), fresh) if fresh.size else old.ids
            ids.flags.writeable = False
            root = old.located is None and old.base is None and old.parent is None and old.ids.size > 0
            self._state = _State(ids, {**old.owners, **self._new}, old.located, old if root else None, fresh)
            self._new = {}
        return self._state


__all__ = ["VisibleVectors"]

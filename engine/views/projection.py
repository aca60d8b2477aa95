"""One dispatch style for every projection of the log: handlers registered per event class.

    RUN_STATE: Projection[RunState] = Projection("run state")

    @RUN_STATE.on(ShotStarted)
    def _started(state: RunState, e: ShotStarted, ev: RecordedEvent) -> None:
        state.started[ev.shot] = ev.position

A handler gets the state to change, the typed domain event ``e`` and the envelope ``ev`` (position,
shot, branch, ids). Memory, run state, audit, history, diff and evaluation are all written this way.

Invariant: a handler only ever sees ``ev.event``, the typed event after the upcasters of
``events.upcasting`` ran, never the stored payload: a projection reads a schema-v1 row exactly as
it reads a current one. Events with no handler are skipped without being decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel

from codirector.events import Event, RecordedEvent, canonical_json

S = TypeVar("S")
E = TypeVar("E", bound=Event)

Handler = Callable[[S, E, RecordedEvent], None]


class Projection(Generic[S]):
    """A set of handlers, one per event class, that fold typed events into a state ``S``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._handlers: dict[str, Callable[[S, Any, RecordedEvent], None]] = {}

    def on(self, cls: type[E]) -> Callable[[Handler[S, E]], Handler[S, E]]:
        """Register the decorated function as the handler of ``cls`` events."""

        def register(fn: Handler[S, E]) -> Handler[S, E]:
            if cls.type in self._handlers:
                raise TypeError(f"the {self.name} projection already handles {cls.type}")
            self._handlers[cls.type] = fn
            return fn

        return register

    @property
    def types(self) -> tuple[str, ...]:
        """The event type names this projection reads (what to ask the store for)."""
        return tuple(self._handlers)

    def handles(self, ev: RecordedEvent) -> bool:
        return ev.type in self._handlers

    def apply(self, state: S, ev: RecordedEvent) -> None:
        """Change ``state`` in place by one event (a no-op for events it does not handle)."""
        handler = self._handlers.get(ev.type)
        if handler is not None:
            handler(state, ev.event, ev)

    def fold(self, state: S, events: Iterable[RecordedEvent]) -> S:
        """``state`` after ``events``, changed in place and returned."""
        handlers = self._handlers
        for ev in events:
            handler = handlers.get(ev.type)
            if handler is not None:
                handler(state, ev.event, ev)
        return state


def logged(part: BaseModel) -> dict[str, Any]:
    """A typed event part in the form the log stores it (JSON values, keys sorted), as views show it."""
    data: dict[str, Any] = orjson.loads(canonical_json(part.model_dump(mode="json")))
    return data


__all__ = ["Handler", "Projection", "logged"]

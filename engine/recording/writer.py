"""The run writer: the only way a run puts events on its branch.

A run re-executes deterministically from its start (the story's first event, or the branch's
fork). The writer is given the events the branch already holds after that start:
- while re-execution produces exactly those events, they are matched, not written (``resume``);
- once it runs past them, new events are appended with optimistic concurrency;
- if it produces something else, the code or settings changed since the log was written, and the
  run stops with ``RunStateError`` instead of silently forking history;
- run marks (``BudgetReached``: why a run stopped, not what it did; ``RunSegmentStarted``: where a
  segment of the run began) are never re-produced, so catching up steps over them; ``mark`` appends
  one at the log's head even while catching up, and no listener sees a mark;
- a replay's writer is given the original's run marks (``mirror``) and writes a copy of each at the
  position it holds there, so every event a replay writes has the position (named in payloads, e.g.
  a view's ``view_position``) that the same event has in the original;
- holding the branch lease (``lease``), it checks the lease before each write (renewing a stale one)
  and fences the write itself on the lease's owner, so a run that lost its lease stops with
  ``BranchBusy`` and writes nothing more, however long it was paused.
Every event written or matched is passed to the listeners (the loop's memory fold, progress).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from codirector.errors import RunStateError, VersionConflict
from codirector.events import RUN_MARKS, Draft, RecordedEvent
from codirector.store.event_store import EventStore
from codirector.store.leases import BranchLease

Listener = Callable[[RecordedEvent], None]


def same_event(draft: Draft, recorded: RecordedEvent) -> bool:
    """Whether a draft is what the log holds (ids and timestamps aside)."""
    return (
        draft.event.type == recorded.type
        and draft.shot == recorded.shot
        and draft.causation_id == recorded.causation_id
        and draft.event.payload() == recorded.payload
    )


class RunWriter:
    """Appends a run's events to ``story``/``branch`` after ``head``, matching ``existing`` first."""

    def __init__(
        self, store: EventStore, story_id: str, branch: str, *, head: int,
        existing: Sequence[RecordedEvent] = (), lease: BranchLease | None = None,
        mirror: Sequence[RecordedEvent] = (),
    ) -> None:
        self.store = store
        self._mirror = {e.position: e for e in mirror if e.type in RUN_MARKS}
        self.lease = lease
        self.story_id = story_id
        self.branch = branch
        self.position = head - len(existing)
        self._existing = list(existing)
        self._cursor = 0
        self.listeners: list[Listener] = []
        self.written = 0
        self.matched = 0

    @property
    def catching_up(self) -> bool:
        """True while re-execution is still inside what the log already holds (run marks stepped over)."""
        while self._cursor < len(self._existing) and self._existing[self._cursor].type in RUN_MARKS:
            self.position = self._existing[self._cursor].position
            self._cursor += 1
        return self._cursor < len(self._existing)

    def peek(self) -> RecordedEvent | None:
        """The next event the log already holds (while catching up)."""
        return self._existing[self._cursor] if self.catching_up else None

    def append(self, drafts: Sequence[Draft]) -> list[RecordedEvent]:
        """Write (or match) ``drafts`` in order; returns them as recorded."""
        out: list[RecordedEvent] = []
        i = 0
        while i < len(drafts) and self.catching_up:
            have = self._existing[self._cursor]
            if not same_event(drafts[i], have):
                raise RunStateError(
                    f"{self.story_id!r}/{self.branch!r} holds {have.type} at position {have.position}, but re-running "
                    f"it now produces {drafts[i].event.type}: the code or settings changed since it was written",
                    hint="`codirector replay` shows the difference; `codirector branch` from an earlier shot "
                    "continues with this code",
                )
            out.append(have)
            self._cursor += 1
            self.position = have.position
            self.matched += 1
            i += 1
        if i < len(drafts):
            if self.lease is not None:
                self.lease.check()
            todo, mirrored = self._with_mirrored_marks(drafts[i:])
            try:
                written = self.store.append(self.story_id, self.branch, todo, expected_position=self.position,
                                            lease_owner=self.lease.owner if self.lease is not None else None)
            except VersionConflict as e:
                raise RunStateError(
                    f"another process wrote to {self.story_id!r}/{self.branch!r} while this run was writing "
                    f"(expected position {e.expected}, found {e.actual})",
                    hint="only one run per branch at a time; wait for the other one, then `codirector resume`",
                ) from e
            self.position = written[-1].position
            written = [e for e in written if e.position not in mirrored]
            self.written += len(written)
            out.extend(written)
        for ev in out:
            for listener in self.listeners:
                listener(ev)
        return out

    def one(self, draft: Draft) -> RecordedEvent:
        return self.append([draft])[0]

    def _with_mirrored_marks(self, drafts: Sequence[Draft]) -> tuple[list[Draft], set[int]]:
        """``drafts`` with a copy of each mirrored run mark placed at its original position, and those positions."""
        if not self._mirror:
            return list(drafts), set()
        out: list[Draft] = []
        placed: set[int] = set()
        position = self.position
        for draft in drafts:
            while position + 1 in self._mirror:
                position += 1
                mark = self._mirror.pop(position)
                out.append(mark.event.at(mark.shot))
                placed.add(position)
            out.append(draft)
            position += 1
        return out, placed

    def mark(self, draft: Draft) -> RecordedEvent:
        """Append the run mark ``draft`` at the log's head, after every event the branch holds (catching up
        then steps over it); it is not counted in ``written`` and no listener sees it."""
        if draft.event.type not in RUN_MARKS:
            raise ValueError(f"{draft.event.type} is not a run mark ({', '.join(RUN_MARKS)})")
        behind = self._cursor < len(self._existing)  # still catching up: the head is the last event held
        head = self._existing[-1].position if behind else self.position
        if self.lease is not None:
            self.lease.check()
        try:
            [recorded] = self.store.append(self.story_id, self.branch, [draft], expected_position=head,
                                           lease_owner=self.lease.owner if self.lease is not None else None)
        except VersionConflict as e:
            raise RunStateError(
                f"another process wrote to {self.story_id!r}/{self.branch!r} while this run was starting "
                f"(expected position {e.expected}, found {e.actual})",
                hint="only one run per branch at a time; wait for the other one, then `codirector resume`",
            ) from e
        if behind:
            self._existing.append(recorded)
        else:
            self.position = recorded.position
        return recorded

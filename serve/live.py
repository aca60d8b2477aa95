"""Live progress: server-sent events read from the log, for a branch or for the whole home.

A stream polls the log (and the leases) every ``POLL_S`` seconds and sends a ``progress`` event
whenever what it reads changes; the page then fetches itself again and swaps its live regions.
For a branch it ends with a ``done`` event once the branch is complete and nobody runs it.

Invariants:
- A stream holds no state but the last snapshot it sent: what it reports is what the log and the
  lease table say at that moment, so a run started from the CLI, from another studio or from this
  one shows up the same way.
- Reads run in a worker thread (the event loop never blocks on the database); a stream stops when
  its client goes away, when the server shuts down, or after ``MAX_S`` (the browser reconnects).
- Each client address holds at most ``Slots.per_client`` streams at once (each polls the log): one
  more is answered 429 at once, and a slot is given back when its stream ends, however it ends.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from codirector.engine.studio import Studio

POLL_S = 0.3
KEEPALIVE_S = 15.0
MAX_S = 1800.0
RECENT = 12  # events listed with each branch update


@dataclass(frozen=True)
class BranchProgress:
    """What a branch's page needs to know to decide whether to refresh."""

    head: int
    shots_completed: int
    completed: bool
    running: bool
    holder: str | None
    recent: tuple[tuple[int, str, int | None], ...]  # (position, type, shot) of the last events

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "recent": [{"position": p, "type": t, "shot": s} for p, t, s in self.recent]}


def branch_progress(studio: Studio, story_id: str, branch: str) -> BranchProgress:
    """The branch's head, completed shots, completion and lease, read now."""
    head = studio.store.branch(story_id, branch).head_position
    marks = studio.log(story_id, branch, types=["ShotCompleted", "StoryCompleted", "BranchRanked"])
    lease = studio.workspace.leases.get(story_id, branch)
    recent = studio.log(story_id, branch, after=max(0, head - RECENT))
    return BranchProgress(
        head=head, shots_completed=len({e.shot for e in marks if e.type == "ShotCompleted"}),
        completed=any(e.type in ("StoryCompleted", "BranchRanked") for e in marks),
        running=lease is not None and lease.live, holder=lease.holder() if lease is not None and lease.live else None,
        recent=tuple((e.position, e.type, e.shot) for e in recent))


def home_progress(studio: Studio) -> tuple[tuple[str, str, int, bool], ...]:
    """Every (story, branch, head, running): it changes whenever any story moves or a run starts or stops."""
    live = {(x.story_id, x.branch) for x in studio.workspace.leases.all() if x.live}
    return tuple((s.id, b.name, b.head_position, (s.id, b.name) in live)
                 for s in studio.store.stories() for b in s.branches)


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def stream(read: Callable[[], Any], *, disconnected: Callable[[], Awaitable[bool]],
                 finished: Callable[[Any], bool] = lambda _: False, stopping: Callable[[], bool] = lambda: False,
                 encode: Callable[[Any], Any] = lambda x: x) -> AsyncIterator[str]:
    """Send ``progress`` with ``encode(read())`` on every change; ``done`` (and stop) once ``finished``."""
    last: Any = object()
    started = sent = time.monotonic()
    yield "retry: 2000\n\n"
    while not stopping() and time.monotonic() - started < MAX_S:
        if await disconnected():
            return
        now = await run_in_threadpool(read)
        if now != last:
            last = now
            sent = time.monotonic()
            yield sse("progress", encode(now))
            if finished(now):
                yield sse("done", encode(now))
                return
        elif time.monotonic() - sent > KEEPALIVE_S:
            sent = time.monotonic()
            yield ": keep-alive\n\n"
        await anyio.sleep(POLL_S)


class Slots:
    """Live streams open per client address, at most ``per_client`` each. Used on the event loop only (the
    routes that take a slot and the responses that give it back are coroutines), so it needs no lock."""

    def __init__(self, per_client: int) -> None:
        self.per_client = per_client
        self.open: Counter[str] = Counter()

    def take(self, client: str) -> bool:
        """Take one of ``client``'s slots; False when all are in use."""
        if self.open[client] >= self.per_client:
            return False
        self.open[client] += 1
        return True

    def give(self, client: str) -> None:
        self.open[client] -= 1
        if self.open[client] <= 0:
            del self.open[client]


class SlotStream(StreamingResponse):
    """A stream of events that holds one of its client's slots from the moment it is made until it ends."""

    def __init__(self, content: AsyncIterator[str], slots: Slots, client: str) -> None:
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-store"})
        self.slots = slots
        self.client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slots.give(self.client)


__all__ = ["BranchProgress", "SlotStream", "Slots", "branch_progress", "home_progress", "sse", "stream"]

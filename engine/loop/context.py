"""What one run of a branch holds while it executes: settings, writer, recorder, memory, index.

Invariant: ``memory`` and ``state`` are always the folds of every event the writer has written or
matched so far (one listener applies each event to both projections), so the loop never reasons
about a memory or a plan the log does not hold, and never updates either by hand.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from codirector.engine.agents.base import AgentContext
from codirector.engine.loop.patches import LOOP_PATCHES
from codirector.engine.recording.recorder import CallRecorder
from codirector.engine.recording.writer import RunWriter
from codirector.engine.views.memory import MemoryBank, mutate
from codirector.engine.views.state import RUN_STATE, RunState
from codirector.events import RecordedEvent
from codirector.generators.base import ImageInput
from codirector.generators.config_tables import RecordedRun, check_recorded
from codirector.store.blobs import BlobStore
from codirector.store.vector_index import VectorIndex


class Progress(Protocol):
    """Where a run reports what it is doing (the CLI draws bars; the API may log)."""

    def shot(self, shot: int, total: int, prompt: str) -> None: ...

    def step(self, what: str) -> None: ...

    def done(self, shot: int) -> None: ...


class QuietProgress:
    def begin(self, story: str, branch: str, total: int) -> None:
        pass

    def shot(self, shot: int, total: int, prompt: str) -> None:
        pass

    def step(self, what: str) -> None:
        pass

    def done(self, shot: int) -> None:
        pass


class RunSettings(RecordedRun):
    """The loop's own settings, recorded with the story: the ``[run]`` table and the paper's ablation flags (a
    frozen model; its fields, types and defaults live in ``generators.config_tables.RecordedRun``)."""

    @classmethod
    def from_table(cls, table: RecordedRun | Mapping[str, Any]) -> RunSettings:
        """The settings of a ``[run]`` table (a resolved config's, or as a story recorded it); a key the table
        lacks because the story was recorded before the key existed takes the value it ran with then
        (``RECORDED_BEFORE``). A recorded key this release no longer knows is left out, as it always was."""
        given = table.given() if isinstance(table, RecordedRun) else dict(table)
        return check_recorded(cls, {**RECORDED_BEFORE, **given}, "run")


EVOLVED_VIEWS = ("keyframe", "reference")
# [run] keys added after stories were recorded without them, and the behaviour those stories ran with.
RECORDED_BEFORE: dict[str, Any] = {"evolved_view": "reference"}


def derive_seed(story_seed: int, shot: int, round_: int, purpose: str) -> int:
    """Seeds derive from (story seed, shot, round, purpose): replay and branches regenerate exactly."""
    digest = hashlib.sha256(f"{story_seed}/{shot}/{round_}/{purpose}".encode()).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


@dataclass
class RunContext:
    """Everything a branch run needs; built by ``engine.runs``."""

    story_id: str
    branch: str
    state: RunState
    settings: RunSettings
    writer: RunWriter
    recorder: CallRecorder
    blobs: BlobStore
    index: VectorIndex
    memory: MemoryBank
    progress: Progress = field(default_factory=QuietProgress)
    scores_meaningful: bool | None = None
    patches: frozenset[str] = frozenset()  # the loop patches this run keeps (``engine.loop.patches``)

    def __post_init__(self) -> None:
        self.writer.listeners.append(self._fold)

    def _fold(self, ev: RecordedEvent) -> None:
        mutate(self.memory, ev)
        RUN_STATE.apply(self.state, ev)

    @property
    def agents(self) -> AgentContext:
        return AgentContext(self.recorder, self.writer, self.settings.agent_attempts)

    def image_input(self, label: str, digest: str) -> ImageInput:
        """A stored image as a model input (label, digest, bytes)."""
        return ImageInput(label=label, digest=digest, data=self.blobs.get(digest))

    def patched(self, name: str) -> bool:
        """Whether this run has loop patch ``name`` (``engine.loop.patches``): new behaviour if so, else the old."""
        if name not in LOOP_PATCHES:
            raise KeyError(f"unknown loop patch {name!r}; add it to engine.loop.patches.LOOP_PATCHES")
        return name in self.patches

    def seed(self, shot: int, round_: int, purpose: str) -> int:
        return derive_seed(self.state.seed, shot, round_, purpose)

"""What a story was asked to be, as recorded: the typed values inside story events.

``StoryCreated.spec`` is a ``StoryRecord`` (a story file, normalised) or a ``BriefRecord`` (an
advertising brief; its stored form says ``"kind": "brief"``, a story's says no kind), told apart by
``SpecRecord``'s discriminator; ``StoryCreated.settings`` is a ``RecordedSettings`` (the profile, one
options table per backend kind, the ``[run]`` table, the director's settings for a brief);
``ShotPlanned.evolves`` holds ``Evolution``s; ``BranchCreated.plan`` is a ``BranchPlan`` (a director
pull's own cast, storyline and direction; empty for a user's branch).

Invariant: a stored payload read into these models is written back byte for byte (the hash chain
covers its canonical JSON, and rows are never rewritten):
- a model writes exactly the keys it was given (``Recorded``): a field that was not set is left
  out, never filled in with its default, so ``{}`` stays ``{}`` and a key a payload lacked stays absent;
- values are taken as stored (``strict``: no coercion), and a number that was recorded as an int
  or a float (``Number``) keeps its form;
- backend option tables and the ``[run]`` table stay plain mappings: their keys belong to the
  backends and to ``generators.config_tables.RecordedRun`` (read typed through ``RunSettings.from_table``).
New payloads are built from the same values the code wrote before this module existed, so a run
records the same bytes it did. ``tests/events/test_seal_records.py`` re-seals a committed home and
records of every kind written before.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    model_serializer,
)

Number = int | float  # a value recorded as either keeps its form (4 stays 4, 4.0 stays 4.0)


class Recorded(BaseModel):
    """A frozen value inside an event payload that writes back exactly the keys it was given."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    @model_serializer(mode="wrap")
    def _as_recorded(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        given = self.model_fields_set
        return {k: v for k, v in handler(self).items() if k in given}


class Evolution(Recorded):
    """An evolved state (or a new viewpoint) of an entity that a shot shows first."""

    name: str
    base_entity: str
    description: str


class CastRecord(Recorded):
    """A declared entity: a story's cast member, a brief's product, a director pull's character.

    ``reference``/``extra_views``: the story file's image paths; ``reference_blob``/``extra_view_blobs``:
    the digests of those images, stored before the event that names them.
    """

    name: str
    kind: str = "character"
    description: str = ""
    reference: str | None = None
    extra_views: list[str] | None = None
    reference_blob: str | None = None
    extra_view_blobs: list[str] = Field(default_factory=list)


class ShotRecord(Recorded):
    """One shot of a story file: the keyframe prompt q0, the motion prompt m0 and the plan hints."""

    keyframe: str
    motion: str
    uses: list[str] = Field(default_factory=list)
    evolves: list[Evolution] = Field(default_factory=list)
    group: str | None = None
    cut: bool | None = None


class StoryRecord(Recorded):
    """A story file as recorded (``engine.loop.story.StorySpec``, normalised, ``None`` values left out),
    with what the run added: the source format, a derived plan's source and notes, image digests."""

    kind: Literal["story"] = "story"  # never stored: a spec without a kind is a story
    title: str = ""
    seed: int = 0
    style: str | None = None
    cast: list[CastRecord] = Field(default_factory=list)
    shots: list[ShotRecord] = Field(default_factory=list)
    story: str | None = None
    num_shots: int | None = None
    source_format: str | None = None  # a story read from another layout (``engine.loop.formats``)
    plan_source: str | None = None  # "derived from the text" (``engine.loop.derived_plan``)
    plan_notes: list[str] = Field(default_factory=list)


class BriefRecord(Recorded):
    """An advertising brief as recorded (``engine.director.briefs.BriefSpec``), with the product as its cast."""

    kind: Literal["brief"]
    product: str = ""
    brand: str = ""
    description: str = ""
    target_audience: str = ""
    num_shots: int = 1
    title: str = ""
    category: str | None = None
    seed: int = 0
    style: str | None = None
    product_image: str | None = None
    cast: list[CastRecord] = Field(default_factory=list)

    @property
    def plan_notes(self) -> list[str]:
        """A brief's plan is the director's: it carries no notes of its own."""
        return []


def _spec_kind(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return "brief" if kind == "brief" else "story"


SpecRecord = Annotated[
    Annotated[StoryRecord, Tag("story")] | Annotated[BriefRecord, Tag("brief")], Discriminator(_spec_kind)
]


class DirectorSettings(Recorded):
    """The Co-Director's own settings, recorded with a brief (``codirector direct``); the defaults are the
    director's (``engine.director.bandit`` reads them from here)."""

    iterations: int = 4
    c: Number = 50.0  # UCB exploration constant (rewards are 0-100)
    policy: str = "ucb"
    epsilon: Number = 0.1
    parallel: int = 1  # recorded only when above 1


class RecordedSettings(Recorded):
    """``StoryCreated.settings``: what ``generators.profiles.RunConfig.to_settings`` recorded (never a secret)."""

    profile: str = ""
    vlm: dict[str, Any] = Field(default_factory=dict)
    image: dict[str, Any] = Field(default_factory=dict)
    video: dict[str, Any] = Field(default_factory=dict)
    embedder: dict[str, Any] = Field(default_factory=dict)
    run: dict[str, Any] = Field(default_factory=dict)
    director: DirectorSettings | None = None


class BranchPlan(Recorded):
    """A branch's own plan context: a director pull's storyline cast, storyline, direction and card.

    A user's branch (``codirector branch``) records an empty plan."""

    cast: list[CastRecord] = Field(default_factory=list)
    storyline: str = ""
    style_instructions: str = ""
    arms: dict[str, str] = Field(default_factory=dict)
    iteration: int = 0
    card: dict[str, str] = Field(default_factory=dict)


__all__ = ["BranchPlan", "BriefRecord", "CastRecord", "DirectorSettings", "Evolution", "Number", "RecordedSettings",
           "Recorded", "ShotRecord", "SpecRecord", "StoryRecord"]

"""Story files: our schema (YAML or JSON), and the field's formats read into it, validated.

A story gives ``shots`` (each a ``keyframe`` prompt q0 and a ``motion`` prompt m0, aliases
``t2i_prompt``/``i2v_prompt``; ``cut`` says whether it starts with a cut), or ``story`` text plus
``num_shots`` for the Planner agent. ``cast``, ``uses``, ``evolves`` and ``group`` are optional plan
hints (the preview profile runs from them; ``group`` labels outfit groups for the SameGrp/CrossGrp
consistency metric). Other layouts (ST-Bench JSON, ViStoryBench folders) are found by content and
converted by ``engine.loop.formats`` before the same validation.

Invariant: a ``StorySpec`` that loads is internally consistent: every name a shot uses is
declared (in ``cast`` or an ``evolves`` at or before that shot), every ``base_entity`` exists
before it is evolved, and every reference file exists. Errors name the file, the place in it
(``shots[3].motion``, which is shot 4), what was expected and the format the file was read as.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from codirector.engine.loop.formats import NATIVE, format_named, read_story_data
from codirector.errors import StoryFileError, did_you_mean
from codirector.store.event_store import unsafe_character

KINDS = ("character", "prop", "background", "other")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _name(value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty name")
    bad = unsafe_character(value)
    if bad:  # a control, or a bidirectional-text control that makes a label read as another
        raise ValueError(f"must not contain a {bad}")
    return value.strip()


class CastMember(_Strict):
    """A declared entity: a main character, a signature prop or a background."""

    name: str
    kind: str = "character"
    description: str
    reference: str | None = None
    extra_views: list[str] | None = None  # more reference images, after ``reference``

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        return _name(v)

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in KINDS:
            raise ValueError(f"must be one of {', '.join(KINDS)}")
        return v


class Evolution(_Strict):
    """An evolved state or new viewpoint that the story needs from this shot on."""

    name: str
    base_entity: str
    description: str

    @field_validator("name", "base_entity")
    @classmethod
    def _valid_names(cls, v: str) -> str:
        return _name(v)


class ShotSpec(_Strict):
    """One planned shot: the keyframe prompt q0 and the motion prompt m0."""

    keyframe: str = Field(validation_alias=AliasChoices("keyframe", "t2i_prompt"))
    motion: str = Field(validation_alias=AliasChoices("motion", "i2v_prompt"))
    uses: list[str] = Field(default_factory=list)
    evolves: list[Evolution] = Field(default_factory=list)
    group: str | None = None
    cut: bool | None = None  # whether the shot starts with a cut (ST-Bench's `cut`); None: not said

    @field_validator("uses")
    @classmethod
    def _valid_uses(cls, v: list[str]) -> list[str]:
        return [_name(n) for n in v]

    @field_validator("keyframe", "motion")
    @classmethod
    def _text(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must be a non-empty prompt")
        return v.strip()


class StorySpec(_Strict):
    """A whole story file, normalised."""

    title: str
    seed: int = 0
    style: str | None = None
    cast: list[CastMember] = Field(default_factory=list)
    shots: list[ShotSpec] = Field(default_factory=list)
    story: str | None = None
    num_shots: int | None = Field(default=None, ge=1, le=200)

    @model_validator(mode="after")
    def _shots_or_story(self) -> StorySpec:
        if not self.shots and not (self.story and self.num_shots):
            raise ValueError("give `shots:` (a list), or `story:` text with `num_shots:` for the planner")
        if self.shots and self.story and self.num_shots and self.num_shots != len(self.shots):
            raise ValueError(f"num_shots is {self.num_shots} but {len(self.shots)} shots are listed")
        return self

    def prompt_text(self) -> str:
        """The story-level prompt (for the story judge): the text, or the shots' keyframes."""
        if self.story:
            return self.story
        return " ".join(s.keyframe for s in self.shots)


_EXPECTED = {
    "keyframe": "a keyframe prompt (`keyframe:` or `t2i_prompt:`)",
    "motion": "a motion prompt (`motion:` or `i2v_prompt:`)",
    "title": "a title",
    "description": "a description of the entity",
    "name": "a name",
    "base_entity": "the name of the entity this state evolves from",
}


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    m = re.match(r"shots\[(\d+)\]", out)
    if m:
        out += f" (shot {int(m.group(1)) + 1})"
    return out or "(top level)"


def _describe(err: Any, known: list[str]) -> str:
    loc = tuple(err["loc"])
    field = str(loc[-1]) if loc else ""
    if err["type"] == "missing":
        return f"{_where(loc)}: missing; expected {_EXPECTED.get(field, 'a value')}"
    if err["type"] == "extra_forbidden":
        hint = did_you_mean(field, known, "key")
        return f"{_where(loc)}: unknown key ({hint})"
    return f"{_where(loc)}: {err['msg'].removeprefix('Value error, ')} (got {err.get('input')!r})"[:300]


_KNOWN_KEYS = sorted(set(StorySpec.model_fields) | set(ShotSpec.model_fields) | {"t2i_prompt", "i2v_prompt"}
                     | set(CastMember.model_fields) | set(Evolution.model_fields))


def parse_story(data: Any, source: str = "<story>", *, story_format: str = NATIVE) -> StorySpec:
    """Validate already-parsed story data (in our schema); ``StoryFileError`` on the first problems found."""
    read_as = f" (read as {format_named(story_format).label})"
    if not isinstance(data, dict):
        raise StoryFileError(f"{source}: a story file must be a mapping with `title:` and `shots:`, "
                             f"got {type(data).__name__}{read_as}", hint="see examples/stories/ for the format")
    try:
        spec = StorySpec.model_validate(data)
    except ValidationError as e:
        # a misspelt key usually explains a "missing" one: report it first
        ordered = sorted(e.errors(), key=lambda err: err["type"] != "extra_forbidden")
        errors = [_describe(err, _KNOWN_KEYS) for err in ordered]
        n = len(errors) - 1
        more = f" (and {n} more problem{'s' if n > 1 else ''})" if n else ""
        raise StoryFileError(f"{source}: {errors[0]}{more}{read_as}", hint="; ".join(errors[1:4]) or
                             "fix the file and run again (see examples/stories/ for the format)") from None
    check_plan(spec, source)
    return spec


def check_plan(spec: StorySpec, source: str) -> None:
    """The plan's names are consistent (see the module invariant); ``StoryFileError`` naming the place."""
    declared: dict[str, str] = {}
    for i, c in enumerate(spec.cast):
        if c.name in declared:
            raise StoryFileError(f"{source}: cast[{i}].name: {c.name!r} is declared twice")
        declared[c.name] = "cast"
    for i, shot in enumerate(spec.shots):
        for j, evo in enumerate(shot.evolves):
            where = f"shots[{i}].evolves[{j}] (shot {i + 1})"
            if evo.base_entity not in declared:
                raise StoryFileError(
                    f"{source}: {where}: base_entity {evo.base_entity!r} is not declared before shot {i + 1}",
                    hint=did_you_mean(evo.base_entity, declared, "entity"),
                )
            if evo.name in declared:
                raise StoryFileError(f"{source}: {where}: {evo.name!r} is already declared "
                                     f"({declared[evo.name]}); an evolved state needs a new name")
            declared[evo.name] = f"evolves of shot {i + 1}"
        for j, name in enumerate(shot.uses):
            if name not in declared:
                raise StoryFileError(
                    f"{source}: shots[{i}].uses[{j}] (shot {i + 1}): {name!r} is not declared in `cast` "
                    "or in an `evolves` at or before this shot",
                    hint=did_you_mean(name, declared, "entity"),
                )


@dataclass(frozen=True)
class LoadedStory:
    """A validated story, the bytes of its cast's reference images (by name), and where it came from."""

    spec: StorySpec
    images: dict[str, list[bytes]] = field(default_factory=dict)
    format: str = NATIVE
    path: Path = Path("<story>")


def read_story(path: str | os.PathLike[str], story_format: str | None = None) -> LoadedStory:
    """Read a story file or ViStoryBench folder in any known format (found by content, or ``story_format``)."""
    raw = read_story_data(path, story_format)
    spec = parse_story(raw.data, str(raw.path), story_format=raw.format)
    images: dict[str, list[bytes]] = {}
    for i, member in enumerate(spec.cast):
        files = [member.reference] if member.reference else []
        files += member.extra_views or []
        for j, name in enumerate(files):
            where = "reference" if j == 0 and member.reference else f"extra_views[{j - bool(member.reference)}]"
            ref = (raw.folder / name).resolve()
            if not ref.is_file():
                raise StoryFileError(f"{raw.path}: cast[{i}].{where}: {name} does not exist "
                                     f"(looked at {ref})", hint="paths are relative to the story file")
            images.setdefault(member.name, []).append(ref.read_bytes())
    return LoadedStory(spec, images, raw.format, raw.path)


def load_story(path: str | Path, story_format: str | None = None) -> tuple[StorySpec, dict[str, list[bytes]]]:
    """Read and validate a story; returns the spec and each cast member's reference images' bytes."""
    story = read_story(path, story_format)
    return story.spec, story.images


def default_story_id(path: str | os.PathLike[str], spec: StorySpec) -> str:
    """A story id from the file name (``lighthouse.yaml`` -> ``lighthouse``; a story folder: its name)."""
    p = Path(path)
    if p.is_dir() or p.name == "story.json":  # a ViStoryBench story folder is named by its folder
        p = p if p.is_dir() else p.parent
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", p.resolve().name).strip("-")
    else:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", p.stem).strip("-")
    return stem or re.sub(r"[^A-Za-z0-9]+", "-", spec.title.lower()).strip("-") or "story"

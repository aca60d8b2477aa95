"""Story files: StoryBench-style shots (YAML or JSON), validated with errors that point at the line.

A story gives ``shots`` (each a ``keyframe`` prompt q0 and a ``motion`` prompt m0, aliases
``t2i_prompt``/``i2v_prompt``), or ``story`` text plus ``num_shots`` for the Planner agent.
``cast``, ``uses``, ``evolves`` and ``group`` are optional plan hints (the preview profile runs
from them; ``group`` labels outfit groups for the SameGrp/CrossGrp consistency metric).

Invariant: a ``StorySpec`` that loads is internally consistent: every name a shot uses is
declared (in ``cast`` or an ``evolves`` at or before that shot), every ``base_entity`` exists
before it is evolved, and every reference file exists. Errors name the file, the place in it
(``shots[3].motion``, which is shot 4) and what was expected.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from codirector.errors import StoryFileError, did_you_mean

KINDS = ("character", "prop", "background", "other")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _name(value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty name")
    if any(ord(c) < 32 for c in value):
        raise ValueError("must not contain control characters")
    return value.strip()


class CastMember(_Strict):
    """A declared entity: a main character, a signature prop or a background."""

    name: str
    kind: str = "character"
    description: str
    reference: str | None = None

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


def parse_story(data: Any, source: str = "<story>") -> StorySpec:
    """Validate already-parsed story data; ``StoryFileError`` on the first problems found."""
    if not isinstance(data, dict):
        raise StoryFileError(f"{source}: a story file must be a mapping with `title:` and `shots:`, "
                             f"got {type(data).__name__}", hint="see examples/stories/ for the format")
    try:
        spec = StorySpec.model_validate(data)
    except ValidationError as e:
        # a misspelt key usually explains a "missing" one: report it first
        ordered = sorted(e.errors(), key=lambda err: err["type"] != "extra_forbidden")
        errors = [_describe(err, _KNOWN_KEYS) for err in ordered]
        n = len(errors) - 1
        more = f" (and {n} more problem{'s' if n > 1 else ''})" if n else ""
        raise StoryFileError(f"{source}: {errors[0]}{more}", hint="; ".join(errors[1:4]) or
                             "fix the file and run again (see examples/stories/ for the format)") from None
    _check_names(spec, source)
    return spec


def _check_names(spec: StorySpec, source: str) -> None:
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


def load_story(path: str | Path) -> tuple[StorySpec, dict[str, bytes]]:
    """Read and validate a story file; returns the spec and the cast reference images' bytes."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StoryFileError(f"story file {path} does not exist", hint="give the path to a .yaml or .json story "
                             "(see examples/stories/)") from None
    except (UnicodeDecodeError, IsADirectoryError) as e:
        raise StoryFileError(f"{path} is not a readable text file ({e})") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        if isinstance(e, json.JSONDecodeError):
            where = f" at line {e.lineno}, column {e.colno}"
        problem = e.msg if isinstance(e, json.JSONDecodeError) else getattr(e, "problem", None) or str(e)
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise StoryFileError(f"{path} is not valid {kind}{where}: {problem}",
                             hint="fix the syntax (see examples/stories/ for the format)") from None
    spec = parse_story(data, str(path))
    references: dict[str, bytes] = {}
    for i, member in enumerate(spec.cast):
        if member.reference:
            ref = (path.parent / member.reference).resolve()
            if not ref.is_file():
                raise StoryFileError(f"{path}: cast[{i}].reference: {member.reference} does not exist "
                                     f"(looked at {ref})", hint="paths are relative to the story file")
            references[member.name] = ref.read_bytes()
    return spec, references


def default_story_id(path: str | Path, spec: StorySpec) -> str:
    """A story id from the file name (``lighthouse.yaml`` -> ``lighthouse``)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(path).stem).strip("-")
    return stem or re.sub(r"[^A-Za-z0-9]+", "-", spec.title.lower()).strip("-") or "story"

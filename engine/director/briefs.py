"""Advertising briefs (YAML or JSON), GenAD-Bench-shaped, validated with errors that point at the place.

A brief names a product, its brand, a description, the target audience and the number of shots
(optionally a title, a seed, a visual style, a category and a product reference image, whose path
is relative to the brief). The director turns it into a story whose cast holds the product as a
prop, with the reference image as its first view when one is given.

Invariant: a ``BriefSpec`` that loads is complete (every required text non-empty, ``num_shots``
within bounds) and its product image exists. Errors name the file, the place in it
(``num_shots``) and what was expected; an unknown key suggests the close ones.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from codirector.errors import StoryFileError, did_you_mean
from codirector.events.specs import BriefRecord, CastRecord

MAX_SHOTS = 12


class BriefSpec(BaseModel):
    """One advertising brief, normalised."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    product: str
    brand: str
    description: str
    target_audience: str
    num_shots: int = Field(ge=1, le=MAX_SHOTS)
    title: str | None = None
    category: str | None = None
    seed: int = 0
    style: str | None = None
    product_image: str | None = None

    @field_validator("product", "brand", "description", "target_audience")
    @classmethod
    def _text(cls, v: str) -> str:
        if not isinstance(v, str) or not v.strip():
            raise ValueError("must be non-empty text")
        if any(ord(c) < 32 and c not in "\n\t" for c in v):
            raise ValueError("must not contain control characters")
        return " ".join(v.split())

    @property
    def display_title(self) -> str:
        return self.title or f"{self.brand} {self.product}"

    def product_cast(self, reference_blob: str | None) -> CastRecord:
        """The product as a cast member of the story (a prop, with its reference image blob if any)."""
        member: dict[str, Any] = {"name": self.product, "kind": "prop", "description": self.description}
        if reference_blob is not None:  # absent, not null, without one (as it was always recorded)
            member["reference_blob"] = reference_blob
        return CastRecord.model_validate(member)

    def to_spec(self, reference_blob: str | None) -> BriefRecord:
        """``StoryCreated.spec`` for this brief: ``kind: brief``, the brief's fields and the product cast."""
        data = self.model_dump(mode="json", exclude_none=True)
        return BriefRecord.model_validate({"kind": "brief", **data, "title": self.display_title,
                                           "cast": [self.product_cast(reference_blob)]})


_EXPECTED = {
    "product": "the product's name",
    "brand": "the brand's name",
    "description": "a description of the product (what it is, what it looks like)",
    "target_audience": "who the ad speaks to",
    "num_shots": f"the number of shots, 1 to {MAX_SHOTS}",
}


def _describe(err: Any) -> str:
    loc = tuple(err["loc"])
    field = str(loc[0]) if loc else ""
    where = field or "(top level)"
    if err["type"] == "missing":
        return f"{where}: missing; expected {_EXPECTED.get(field, 'a value')}"
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown key ({did_you_mean(field, BriefSpec.model_fields, 'key')})"
    expected = f"; expected {_EXPECTED[field]}" if field in _EXPECTED else ""
    return f"{where}: {err['msg'].removeprefix('Value error, ')} (got {err.get('input')!r}){expected}"[:300]


def parse_brief(data: Any, source: str = "<brief>") -> BriefSpec:
    """Validate already-parsed brief data; ``StoryFileError`` naming the first problems found."""
    if not isinstance(data, dict):
        raise StoryFileError(f"{source}: a brief must be a mapping with product, brand, description, "
                             f"target_audience and num_shots; got {type(data).__name__}",
                             hint="see examples/briefs/ for the format")
    try:
        return BriefSpec.model_validate(data)
    except ValidationError as e:
        ordered = sorted(e.errors(), key=lambda err: err["type"] != "extra_forbidden")  # a typo explains a "missing"
        errors = [_describe(err) for err in ordered]
        n = len(errors) - 1
        more = f" (and {n} more problem{'s' if n > 1 else ''})" if n else ""
        raise StoryFileError(f"{source}: {errors[0]}{more}", hint="; ".join(errors[1:4]) or
                             "fix the brief and run again (see examples/briefs/ for the format)") from None


def load_brief(path: str | os.PathLike[str]) -> tuple[BriefSpec, bytes | None]:
    """Read and validate a brief file; returns the spec and the product image's bytes (if given)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StoryFileError(f"brief file {path} does not exist",
                             hint="give the path to a .yaml or .json brief (see examples/briefs/)") from None
    except (UnicodeDecodeError, IsADirectoryError) as e:
        raise StoryFileError(f"{path} is not a readable text file ({e})") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise StoryFileError(f"{path} is not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}",
                             hint="fix the syntax (see examples/briefs/ for the format)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise StoryFileError(f"{path} is not valid YAML{where}: {getattr(e, 'problem', None) or e}",
                             hint="fix the syntax (see examples/briefs/ for the format)") from None
    spec = parse_brief(data, str(path))
    image: bytes | None = None
    if spec.product_image:
        ref = (path.parent / spec.product_image).resolve()
        if not ref.is_file():
            raise StoryFileError(f"{path}: product_image: {spec.product_image} does not exist (looked at {ref})",
                                 hint="the path is relative to the brief file")
        image = ref.read_bytes()
    return spec, image


def default_brief_id(path: str | os.PathLike[str], spec: BriefSpec) -> str:
    """A story id from the brief's file name (``glow_serum.yaml`` -> ``glow_serum``)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(path).stem).strip("-")
    return stem or re.sub(r"[^A-Za-z0-9]+", "-", spec.display_title.lower()).strip("-") or "brief"

"""A branch's overrides (``branch --set shots.N.FIELD=VALUE``), parsed and validated as a story file is.

FIELD is ``keyframe`` or ``motion`` (a new prompt), or ``uses`` (the entities the shot shows) or
``evolves`` (the evolved states it shows first), written as in a story file, in YAML flow style
(JSON is YAML too)::

    shots.3.uses=[Ben_kilt, Amy]
    shots.3.evolves=[{name: Ben_kilt, base_entity: Ben, description: "Ben in a green kilt"}]

Invariant: overrides are all checked before anything is written. Each value passes the story
file's own rules (``engine.loop.story``), and when ``uses`` or ``evolves`` change, the plan the
branch would run (the parent's plan, shot by shot, with the overrides applied) passes the story
file's plan check: every name a shot uses is declared at or before it, every ``base_entity`` before
it is evolved, no state is declared twice. An error names the key, the shot and the field
(``shots[2].uses[0] (shot 3)``, the place a story file would have it) and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from codirector.engine.loop.formats import NATIVE, format_named
from codirector.engine.loop.story import parse_story
from codirector.engine.views.state import RunState
from codirector.errors import InvalidArgument, StoryFileError, did_you_mean

TEXT_FIELDS = ("keyframe", "motion")
PLAN_FIELDS = ("uses", "evolves")
FIELDS = (*TEXT_FIELDS, *PLAN_FIELDS)
EXAMPLES = {
    "keyframe": "shots.N.keyframe=TEXT",
    "motion": "shots.N.motion=TEXT",
    "uses": "shots.N.uses=[Ben_kilt, Amy]",
    "evolves": 'shots.N.evolves=[{name: Ben_kilt, base_entity: Ben, description: "..."}]',
}


@dataclass(frozen=True)
class Override:
    """One validated override: the shot, the field and its new value (text, names or states)."""

    key: str
    shot: int
    field: str
    value: str | list[Any]


def _key(key: str, state: RunState, from_shot: int) -> tuple[int, str]:
    parts = key.split(".")
    if len(parts) != 3 or parts[0] != "shots" or not parts[1].isdigit() or parts[2] not in FIELDS:
        raise InvalidArgument(f"cannot set {key!r}", hint="use " + ", ".join(EXAMPLES.values()))
    shot = int(parts[1])
    if shot < from_shot or shot > state.num_shots:
        raise InvalidArgument(f"cannot set {key!r}: only shots {from_shot}..{state.num_shots} run on the new "
                              "branch", hint=did_you_mean(key, [f"shots.{from_shot}.{parts[2]}"], "key"))
    return shot, parts[2]


def _value(key: str, fld: str, text: str) -> str | list[Any]:
    if fld in TEXT_FIELDS:
        if not text.strip():
            raise InvalidArgument(f"{key} must not be empty", hint=f"give the new text: {key}=TEXT")
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InvalidArgument(f"{key}: {text!r} is not a YAML or JSON list ({str(e).splitlines()[0]})",
                              hint=f"e.g. {EXAMPLES[fld].replace('shots.N', key.rsplit('.', 1)[0])}") from None
    if value is None:
        value = []
    if not isinstance(value, list):
        raise InvalidArgument(f"{key}: expected a list, got {text!r}",
                              hint=f"e.g. {EXAMPLES[fld].replace('shots.N', key.rsplit('.', 1)[0])}")
    return value


def _plan_as_story(state: RunState, changed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The branch's plan in the story file's layout (the fields its checks read)."""
    cast = [m.model_dump(include={"name", "kind", "description"}) for m in state.spec.cast]
    shots = []
    for n in sorted(state.plan):
        mine = changed.get(n, {})
        shots.append({"keyframe": mine.get("keyframe", state.plan[n].keyframe_prompt),
                      "motion": mine.get("motion", state.plan[n].motion_prompt),
                      "uses": mine.get("uses", state.uses(n)),
                      "evolves": mine.get("evolves", [e.model_dump() for e in state.evolves(n)])})
    return {"title": state.title or "story", "cast": cast, "shots": shots}


def parse_overrides(state: RunState, overrides: dict[str, str], *, from_shot: int) -> list[Override]:
    """Every override checked (see the module invariant); ``InvalidArgument`` names the first problem."""
    parsed: list[Override] = []
    changed: dict[int, dict[str, Any]] = {}
    for key, text in overrides.items():
        shot, fld = _key(key, state, from_shot)
        value = _value(key, fld, text)
        parsed.append(Override(key, shot, fld, value))
        changed.setdefault(shot, {})[fld] = value
    if not any(o.field in PLAN_FIELDS for o in parsed):
        return parsed  # prompts only: the plan's names are as the parent checked them
    keys = ", ".join(o.key for o in parsed if o.field in PLAN_FIELDS)
    try:
        spec = parse_story(_plan_as_story(state, changed), "the branch's plan")
    except StoryFileError as e:
        message = e.message.replace(f" (read as {format_named(NATIVE).label})", "")
        hint = e.hint if e.hint and not e.hint.startswith("fix the file") else \
            f"change the --set values (uses: a list of names; evolves: {EXAMPLES['evolves'][len('shots.N.evolves='):]})"
        raise InvalidArgument(f"cannot set {keys}: {message}", hint=hint) from None
    normalised = {i: s for i, s in enumerate(spec.shots, start=1)}
    out = []
    for o in parsed:  # names stripped, states in their stored form, as a story file's would be
        if o.field == "uses":
            o = Override(o.key, o.shot, o.field, list(normalised[o.shot].uses))
        elif o.field == "evolves":
            o = Override(o.key, o.shot, o.field, [e.model_dump() for e in normalised[o.shot].evolves])
        out.append(o)
    return out

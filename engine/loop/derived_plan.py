"""An offline plan for a story that declares no cast: who and what recurs, read from the shot prompts.

The preview profile's agents are plan-driven (docs/architecture.md §9): they answer from a story's ``cast`` and
each shot's ``uses``. A story from the field rarely declares either, so the preview would run with an
empty memory. ``derive_plan`` writes that plan from the text, by the fixed rules of
``engine.loop.plan_text``:
- characters: the names that recur in two or more shots; when the story names nobody, the people
  nouns that recur ("the fisherman"); each described from where it is first described;
- places: one ``bg_`` place per setting (a shot that continues without a cut keeps the previous
  shot's setting when it names none);
- props: listed object nouns that recur in two or more shots (at most three);
- each shot uses the entities it names, at most ``MAX_NEW_ENTITIES`` (4) of them new at that shot
  (the memory controller's limit); a later mention introduces the rest.

Invariants: deterministic (the same story gives the same plan, so resume and replay agree; it is
also recorded in ``StoryCreated.spec`` with ``plan_source`` and ``plan_notes``); the result is a
``StorySpec`` that passes the same validation as a declared plan and drives the same agents; it
derives no ``evolves``: text cannot show an appearance change, so none is invented, and the notes
say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from codirector.engine.agents.schemas import MAX_NEW_ENTITIES
from codirector.engine.loop.plan_text import (
    PERSON_NOUNS,
    PROP_NOUNS,
    Named,
    cap_new_per_shot,
    describe_name,
    named_subjects,
    noun_mentions,
    place_name,
    setting_of,
)
from codirector.engine.loop.story import CastMember, StorySpec, check_plan

PLAN_DERIVED = "derived from the text"
MAX_PROPS = 3
NO_EVOLUTION_NOTE = ("appearance changes are not derived from the text: every entity keeps the look it is "
                     "first described with (declare `evolves` in the story file to plan a change)")


def needs_derived_plan(spec: StorySpec, vlm_backend: str | None) -> bool:
    """True when the plan-driven preview VLM would run a story that declares no plan."""
    return vlm_backend == "preview" and not spec.cast and bool(spec.shots) and \
        not any(s.uses or s.evolves for s in spec.shots)


@dataclass
class _Plan:
    cast: dict[str, CastMember] = field(default_factory=dict)
    mentions: list[list[str]] = field(default_factory=list)  # per shot, names in order of mention


def _shot_texts(spec: StorySpec) -> list[str]:
    return [f"{s.keyframe}\n{s.motion}" for s in spec.shots]


def _characters(spec: StorySpec, plan: _Plan) -> None:
    texts = _shot_texts(spec)
    named: list[Named] = named_subjects(texts)
    for n in named:
        plan.cast[n.name] = CastMember(name=n.name, kind="character",
                                       description=describe_name(n, texts[n.shots[0]]))
    for i, text in enumerate(texts):
        here = sorted((n for n in named if i in n.shots), key=lambda n: n.first_at(text))
        plan.mentions[i].extend(n.name for n in here)
    if not named:  # nobody is named: the people the text keeps coming back to
        _recurring_nouns(texts, PERSON_NOUNS, "character", plan, limit=4)


def _recurring_nouns(texts: list[str], lexicon: frozenset[str], kind: str, plan: _Plan, *, limit: int) -> None:
    found = [noun_mentions(t, lexicon) for t in texts]
    shots_of: dict[str, set[int]] = {}
    first: dict[str, str] = {}
    for i, mentions in enumerate(found):
        for m in mentions:
            shots_of.setdefault(m.head, set()).add(i)
            first.setdefault(m.head, m.phrase)
    recurring = [h for h in shots_of if len(shots_of[h]) >= 2 and h not in plan.cast]
    recurring.sort(key=lambda h: (-len(shots_of[h]), min(shots_of[h])))
    chosen = set(recurring[:limit])
    for head in (h for h in first if h in chosen):  # in order of first mention
        plan.cast[head] = CastMember(name=head, kind=kind, description=first[head])
    for i, mentions in enumerate(found):
        for m in mentions:
            if m.head in chosen and m.head not in plan.mentions[i]:
                plan.mentions[i].append(m.head)


def _places(spec: StorySpec, plan: _Plan) -> None:
    by_head: dict[str, str] = {}
    previous: str | None = None
    for i, shot in enumerate(spec.shots):
        place = setting_of(shot.keyframe) or setting_of(shot.motion)
        name: str | None
        if place is not None:
            name = place_name(place.key) if place.key != place.head else by_head.get(place.head, place_name(place.key))
            by_head[place.head] = name
            if name not in plan.cast:
                plan.cast[name] = CastMember(name=name, kind="background", description=place.phrase)
        else:
            name = previous if shot.cut is False else None
        if name is not None:
            plan.mentions[i].append(name)
        previous = name


def derive_plan(spec: StorySpec, source: str = "<story>") -> tuple[StorySpec, list[str]]:
    """The story with a ``cast`` and per-shot ``uses`` read from its text, and notes saying so."""
    plan = _Plan(mentions=[[] for _ in spec.shots])
    _characters(spec, plan)
    _places(spec, plan)
    _recurring_nouns(_shot_texts(spec), PROP_NOUNS, "prop", plan, limit=MAX_PROPS)
    uses = cap_new_per_shot(plan.mentions, MAX_NEW_ENTITIES)
    used = {n for u in uses for n in u}
    cast = [m for m in plan.cast.values() if m.name in used]
    derived = spec.model_copy(update={
        "cast": cast, "shots": [s.model_copy(update={"uses": u}) for s, u in zip(spec.shots, uses, strict=True)],
    })
    check_plan(derived, source)

    def listed(kind: str, what: str) -> str:
        names = [m.name for m in cast if m.kind == kind]
        return f"{len(names)} {what}{'' if len(names) == 1 else 's'}" + (f" ({', '.join(names)})" if names else "")

    notes = [
        f"plan {PLAN_DERIVED}: the story declares no cast, so the preview derived one from the shot prompts: "
        f"{listed('character', 'character')}, {listed('background', 'place')}, {listed('prop', 'prop')}; "
        "each shot uses the entities it names",
        NO_EVOLUTION_NOTE,
    ]
    if not cast:
        notes[0] += " (none recur: memory stays empty)"
    return derived, notes

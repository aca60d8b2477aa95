"""The director's agents: the warm-start recommender and the creative director (storyline writer).

Like the loop's agents (``engine.agents``), each is a function: inputs -> validated pydantic
output through ``ask`` (recorded call, semantic check, bounded retry with the problems fed back).
``plan`` carries structured context for the plan-driven preview backend; real models read only
the text. The prompts are ours, written from the Co-Director facts in ``notes/codirector_bandit.md``.

Invariant: what the arms mean is fixed here (``ARM_GUIDE``, ``AESTHETICS``) and the style card a
configuration produces (``direction_card``) is built from the arms alone, so by construction it
never names the product, the brand or the audience; the writer's own ``style_instructions`` are
checked for the same rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from codirector.engine.agents.base import AgentContext, ask
from codirector.engine.director.bandit import DIMENSIONS
from codirector.events import RecordedEvent
from codirector.events.specs import BriefRecord

MAX_CAST = 6

ARM_GUIDE: dict[str, dict[str, str]] = {
    "strategy": {
        "informational": "lead with facts: what it does, how it works and the concrete benefit, shown plainly",
        "transformational": "lead with feeling: how a day, a mood or a self-image changes; emotion over specs",
        "comparative": "lead with contrast: set beside an ordinary, unnamed alternative so the difference is seen",
    },
    "narrative_mode": {
        "analytical": "problem, answer, proof, payoff: a clear argument told in pictures",
        "vignette": "several short, loosely linked moments of different people or places, tied by one thread",
        "narrative_drama": "one protagonist and one small story with rising tension and a resolution",
    },
    "aesthetic": {
        "clarity_energy": "bright, clean and lively",
        "cinematic_premium": "rich, warm and deliberate, like a feature film",
        "minimalist_focus": "calm, sparse and precise, one subject at a time",
        "kinetic_grit": "raw, fast and textured, street energy",
    },
}

# Each aesthetic archetype fixes a lighting key, a motion tempo and an audio style.
AESTHETICS: dict[str, dict[str, str]] = {
    "clarity_energy": {"lighting": "high-key daylight, even and bright, clean saturated colours",
                       "tempo": "brisk: quick, lively camera moves and snappy actions",
                       "audio": "upbeat pop with crisp percussion"},
    "cinematic_premium": {"lighting": "low-key warm directional light, shallow depth of field, rich contrast",
                          "tempo": "slow and deliberate: gliding dolly moves, unhurried actions",
                          "audio": "swelling strings and a warm, low voice-over"},
    "minimalist_focus": {"lighting": "soft diffuse light, neutral palette, generous negative space",
                         "tempo": "still frames and very slow push-ins, long holds",
                         "audio": "sparse piano, near silence"},
    "kinetic_grit": {"lighting": "hard contrasty light, grainy texture, night-time city colours",
                     "tempo": "fast handheld energy, whip pans, punchy cuts of action",
                     "audio": "a driving electronic beat"},
}


def direction_card(arms: Mapping[str, str]) -> dict[str, str]:
    """The creative director's instructions for a configuration, from the arms alone."""
    look = AESTHETICS[arms["aesthetic"]]
    return {
        "strategy": f"{arms['strategy']}: {ARM_GUIDE['strategy'][arms['strategy']]}",
        "narrative_mode": f"{arms['narrative_mode']}: {ARM_GUIDE['narrative_mode'][arms['narrative_mode']]}",
        "aesthetic": f"{arms['aesthetic']}: {ARM_GUIDE['aesthetic'][arms['aesthetic']]}",
        "lighting": look["lighting"],
        "tempo": look["tempo"],
        "audio": look["audio"],
        "keyframe_style": f"Lighting: {look['lighting']}.",
        "motion_style": f"Tempo: {look['tempo']}.",
    }


def names_forbidden(text: str, forbidden: Sequence[str]) -> list[str]:
    """Which of ``forbidden`` (product, brand, audience) ``text`` names, as whole words, ignoring case."""
    found = []
    for name in forbidden:
        name = name.strip()
        if name and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE):
            found.append(name)
    return found


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------- warm start

Strategy = Literal["informational", "transformational", "comparative"]
NarrativeMode = Literal["analytical", "vignette", "narrative_drama"]
Aesthetic = Literal["clarity_energy", "cinematic_premium", "minimalist_focus", "kinetic_grit"]


class RecommendationOutput(_Out):
    strategy: Strategy
    narrative_mode: NarrativeMode
    aesthetic: Aesthetic
    why: str

    def arms(self) -> dict[str, str]:
        return {"strategy": self.strategy, "narrative_mode": self.narrative_mode, "aesthetic": self.aesthetic}


def _menu() -> str:
    lines = []
    for dim, arms in ARM_GUIDE.items():
        lines.append(f"{dim}:")
        lines.extend(f"  - {arm}: {text}" for arm, text in arms.items())
    return "\n".join(lines)


RECOMMENDER = f"""\
You are the head of a creative agency. Before any film is made, pick the creative direction most \
likely to work for this advertising brief: one choice in each of three dimensions.

{_menu()}

Think about the product category, what the audience cares about and how they watch ads. Answer \
with JSON only: {{"strategy": ..., "narrative_mode": ..., "aesthetic": ..., "why": "<two sentences>"}}"""


def check_recommendation(out: RecommendationOutput) -> list[str]:
    return [] if out.why.strip() else ["give a short reason in why"]


def brief_text(brief: BriefRecord) -> str:
    """The brief as the agents read it."""
    lines = [f"PRODUCT: {brief.product}", f"BRAND: {brief.brand}"]
    if brief.category:
        lines.append(f"CATEGORY: {brief.category}")
    lines += [f"DESCRIPTION: {brief.description}", f"TARGET AUDIENCE: {brief.target_audience}"]
    return "\n".join(lines)


def _brief_plan(brief: BriefRecord) -> dict[str, Any]:
    return {"product": brief.product, "brand": brief.brand, "category": brief.category,
            "description": brief.description, "target_audience": brief.target_audience}


def recommend_direction(ctx: AgentContext, *, brief: BriefRecord) -> tuple[RecommendationOutput, RecordedEvent]:
    """The warm start: one recommended arm per dimension for this brief, and why."""
    user = f"{brief_text(brief)}\n\nRecommend the creative direction."
    return ask(ctx, agent="direction_recommender", system=RECOMMENDER, user=user, output=RecommendationOutput,
               check=check_recommendation, shot=None, plan=_brief_plan(brief))


# ---------------------------------------------------------------------------- creative director


class CastMemberOut(_Out):
    name: str
    kind: Literal["character", "prop", "background"]
    description: str


class AdShotOut(_Out):
    keyframe_prompt: str
    motion_prompt: str
    uses: list[str]


class StorylineOutput(_Out):
    storyline: str
    style_instructions: str
    cast: list[CastMemberOut]
    shots: list[AdShotOut]


CREATIVE_DIRECTOR = """\
You are the creative director and storyline writer of a short video ad made shot by shot: each \
shot is one still keyframe that an image model draws, then animated by a video model from a \
motion prompt. You are given the brief, the creative direction (strategy, narrative mode and \
aesthetic, with the lighting key, tempo and audio style it fixes) and the number of shots.

Write:
- storyline: the ad's story in three to five sentences, following the strategy and narrative mode.
- style_instructions: one or two sentences of visual direction (light, palette, lenses, camera \
behaviour) derived from the aesthetic. They are reused across every shot, so they must NOT name \
the product, the brand or the audience.
- cast: the recurring characters, extra props and one background per location (kind is \
character, prop or background; at most 6). Describe each so an image model can draw it the same \
way every time: for people face, hair, build and every clothing layer; for props shape, \
material, colour; for backgrounds the empty place. Do not list the product: it is already cast \
under the exact name given.
- shots: exactly the requested number, in order. keyframe_prompt is the first frame (who is where, \
framing); motion_prompt is what happens during the clip, with any camera move; uses lists the \
cast names (and the product's exact name) visible in the shot. The product must appear in at \
least one shot, and named people must keep the same names throughout.

Answer with JSON only: {"storyline": ..., "style_instructions": ..., "cast": [{"name": ..., \
"kind": ..., "description": ...}], "shots": [{"keyframe_prompt": ..., "motion_prompt": ..., \
"uses": [...]}]}"""


def check_storyline(out: StorylineOutput, *, num_shots: int, product: str, forbidden: Sequence[str]) -> list[str]:
    """Shot count, names, the product's presence, and style instructions that name nothing forbidden."""
    problems: list[str] = []
    if not out.storyline.strip():
        problems.append("storyline is empty")
    if not out.style_instructions.strip():
        problems.append("style_instructions is empty")
    named = names_forbidden(out.style_instructions, forbidden)
    if named:
        problems.append(f"style_instructions name {', '.join(repr(n) for n in named)}; describe only the look "
                        "(light, palette, lenses, camera), never the product, brand or audience")
    if len(out.shots) != num_shots:
        problems.append(f"give exactly {num_shots} shots, not {len(out.shots)}")
    if len(out.cast) > MAX_CAST:
        problems.append(f"list at most {MAX_CAST} cast members, not {len(out.cast)}")
    declared: set[str] = set()
    for member in out.cast:
        name = member.name.strip()
        if not name:
            problems.append("a cast member has an empty name")
        elif name == product:
            problems.append(f"do not list {product!r} in cast: the product is already cast under that name")
        elif name in declared:
            problems.append(f"cast member {name!r} is listed twice")
        elif not member.description.strip():
            problems.append(f"cast member {name!r} needs a description")
        declared.add(name)
    known = declared | {product}
    for i, shot in enumerate(out.shots, 1):
        if not shot.keyframe_prompt.strip() or not shot.motion_prompt.strip():
            problems.append(f"shot {i} needs a non-empty keyframe_prompt and motion_prompt")
        for name in shot.uses:
            if name not in known:
                problems.append(f"shot {i} uses {name!r}, which is neither in cast nor the product {product!r}; "
                                "declare it in cast or use an exact name")
    if out.shots and not any(product in s.uses for s in out.shots):
        problems.append(f"the product {product!r} must be in the uses of at least one shot")
    return problems


def write_storyline(
    ctx: AgentContext, *, brief: BriefRecord, arms: Mapping[str, str], num_shots: int,
    earlier: Sequence[str] = (), iteration: int = 1,
) -> tuple[StorylineOutput, RecordedEvent]:
    """The creative director's storyline, cast and shots for one configuration."""
    card = direction_card(arms)
    direction = "\n".join(f"{k.upper()}: {card[k]}" for k in ("strategy", "narrative_mode", "aesthetic", "lighting",
                                                                "tempo", "audio"))
    notes = ("\n\nWHAT THE JUDGE SAID ABOUT EARLIER DIRECTIONS (avoid these faults):\n"
             + "\n".join(f"- {n}" for n in earlier)) if earlier else ""
    user = (f"{brief_text(brief)}\n\nCREATIVE DIRECTION:\n{direction}\n\nNUMBER OF SHOTS: {num_shots}\n"
            f"THE PRODUCT'S EXACT NAME (use it in uses): {brief.product}{notes}")
    forbidden = [brief.product, brief.brand, brief.target_audience]
    plan = {**_brief_plan(brief), "num_shots": num_shots, "arms": dict(arms), "card": card, "iteration": iteration}
    return ask(ctx, agent="creative_director", system=CREATIVE_DIRECTOR, user=user, output=StorylineOutput,
               check=lambda out: check_storyline(out, num_shots=num_shots, product=brief.product,
                                                 forbidden=forbidden),
               shot=None, plan=plan)


__all__ = [
    "AESTHETICS", "ARM_GUIDE", "DIMENSIONS", "RecommendationOutput", "StorylineOutput", "check_storyline",
    "direction_card", "names_forbidden", "recommend_direction", "write_storyline",
]

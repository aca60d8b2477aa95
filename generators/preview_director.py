"""The preview answers of the Co-Director's agents and judges: deterministic, from the brief and the arms.

Nothing here looks at pixels or calls a model. The direction recommender picks arms from a hash of
the brief; the creative director fills a template storyline per configuration (passing the
director's checks); the judges score from fixed tables of the configuration plus a hash of the
brief, so a bandit has something deterministic to learn in preview. ``stable_int`` is the one hash
every preview backend takes its variety from (colours, pans, casts, jitter).

Invariant: every answer is a pure function of the hints it is given (same hints, same answer).
"""

from __future__ import annotations

import hashlib
from typing import Any

from codirector.events.arms import DIMENSIONS


def stable_int(*parts: Any) -> int:
    """A stable 48-bit integer from ``parts`` (sha256 of their text): the preview's only randomness."""
    return int(hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def recommend(plan: dict[str, Any]) -> dict[str, Any]:
    """The direction recommender: an arm per dimension, from a hash of the brief."""
    brief = (plan.get("product"), plan.get("target_audience"))
    arms = {dim: choices[stable_int("recommend", *brief, dim) % len(choices)]
            for dim, choices in DIMENSIONS.items()}
    return {**arms, "why": "preview: picked from a hash of the brief; no model read it"}


def execution(plan: dict[str, Any]) -> dict[str, Any]:
    """The ad judge: execution criteria from the configuration's craft table, scaled by how much was made."""
    arms = plan.get("arms", {})
    craft = _CRAFT.get(arms.get("aesthetic", ""), 2) + _CRAFT.get(arms.get("narrative_mode", ""), 2)
    done = int(plan.get("completed", 0)) / max(1, int(plan.get("shots", 1)))
    scores = {}
    for criterion in _CRITERIA:
        jitter = stable_int("execution", plan.get("product"), criterion, *sorted(arms.items())) % 4
        scores[criterion] = max(0, min(20, round((10 + craft + jitter) * done)))
    weakest = min(_CRITERIA, key=lambda c: (scores[c], _CRITERIA.index(c)))
    return {**scores, "primary_fault": _FAULT[weakest],
            "feedback": f"preview: scores come from a fixed table of the configuration and a hash of the brief; "
                        f"no judge looked at pixels. Weakest criterion: {weakest.replace('_', ' ')}."}


def efficacy(plan: dict[str, Any]) -> dict[str, Any]:
    """The efficacy judge: a fixed score per arm plus a hash of the brief."""
    arm = str(plan.get("arm", ""))
    affinity = stable_int("affinity", plan.get("product"), plan.get("target_audience"), plan.get("dimension"),
                          arm) % 25 - 12
    score = max(0, min(100, _EFFICACY.get(arm, 60) + affinity))
    return {"efficacy": score, "rationale": f"preview: a fixed score for {arm} plus a hash of the brief; "
                                           "no judge looked at pixels"}


_EFFICACY = {"informational": 60, "transformational": 67, "comparative": 55, "analytical": 57, "vignette": 62,
             "narrative_drama": 68, "clarity_energy": 61, "cinematic_premium": 68, "minimalist_focus": 63,
             "kinetic_grit": 55}
_CRAFT = {"clarity_energy": 3, "cinematic_premium": 4, "minimalist_focus": 3, "kinetic_grit": 1,
          "analytical": 2, "vignette": 1, "narrative_drama": 3}
_CRITERIA = ("coherence", "visual_quality", "engagement", "prompt_adherence", "logical_consistency")
_FAULT = {"coherence": "storyline", "prompt_adherence": "storyline", "visual_quality": "image",
          "engagement": "video", "logical_consistency": "video"}

_PEOPLE = (
    ("Noor", "a woman in her thirties with a short black bob, a mustard knit sweater, dark jeans and white trainers"),
    ("Teo", "a wiry man in his twenties with curly auburn hair, a denim jacket over a grey hoodie and black boots"),
    ("Marguerite", "a woman in her sixties with silver hair in a low bun, round tortoiseshell glasses, a navy "
                   "cardigan and a long green skirt"),
    ("Kofi", "a broad-shouldered man in his forties with a trimmed beard, a white linen shirt and khaki chinos"),
    ("Ines", "a teenage girl with long braids, an oversized orange windbreaker, black leggings and a yellow backpack"),
    ("Haruto", "a slim man in his fifties with grey temples, a charcoal overcoat and a burgundy scarf"),
)
_PLACES = (
    ("bg_home_kitchen", "an empty bright home kitchen: pale wood counter, white tiles, potted herbs on the sill"),
    ("bg_city_street", "an empty city pavement at dusk: brick shopfronts, a bus stop, wet asphalt"),
    ("bg_park_path", "an empty park path under plane trees, a green bench, morning light"),
    ("bg_living_room", "an empty living room: grey sofa, a low oak table, a tall window with linen curtains"),
    ("bg_small_office", "an empty small office: a desk by the window, a cork board, a desk lamp"),
)
_BEATS = {
    "analytical": (
        ("{p} in {place}, frowning at an everyday problem, medium shot",
         "{p} tries again without success and sighs; the camera holds steady"),
        ("close-up of {x} on a surface in {place}, {p}'s hand reaching for it",
         "{p} picks up {x} and turns it toward the light"),
        ("{p} using {x} in {place}, focused, medium shot", "{p} uses {x}; the problem is solved step by step"),
        ("{p} smiling with {x} in frame, close-up", "{p} nods, satisfied, and sets {x} down"),
        ("{x} in the foreground of a calm, tidy {place}, wide shot", "the camera pushes in slowly toward {x}"),
    ),
    "vignette": (
        ("{p} in {place} with {x}, medium shot", "{p} reaches for {x} in passing and carries on with the day"),
        ("{p} pausing in {place}, {x} in hand, close-up", "{p} glances at {x} and smiles to themselves"),
        ("{p} in {place}, {x} close by, wide shot", "{p} uses {x} without breaking stride"),
    ),
    "narrative_drama": (
        ("{p} alone in {place}, tense, medium shot", "{p} paces, checks the time and hesitates at the door"),
        ("{p} and {q} in {place}, at odds, two-shot", "{q} shakes their head; {p} turns away, disappointed"),
        ("{p} noticing {x} in {place}, close-up", "{p} picks up {x}; an idea dawns on their face"),
        ("{p} showing {x} to {q} in {place}, medium shot", "{q} tries {x} and breaks into a grin; they laugh together"),
        ("{p} and {q} relaxed in {place} with {x} between them, wide shot", "the camera drifts back as they talk"),
    ),
}
_TWIST = {
    "informational": "its use shown plainly, step by step",
    "transformational": "the mood visibly lifting from tense to relieved",
    "comparative": "beside a plain, unlabelled ordinary alternative that does worse",
}


def storyline(plan: dict[str, Any]) -> dict[str, Any]:
    """The creative director: a template storyline per configuration, passing the director's checks."""
    arms = plan.get("arms", {})
    mode, strategy = arms.get("narrative_mode", "analytical"), arms.get("strategy", "informational")
    product, n = str(plan.get("product", "the product")), int(plan.get("num_shots") or 1)
    start = stable_int("cast", product, *sorted(arms.items()))
    k = min(3, n) if mode == "vignette" else (2 if mode == "narrative_drama" else 1)
    people = [_PEOPLE[(start + i) % len(_PEOPLE)] for i in range(k)]
    places = [_PLACES[(start + i) % len(_PLACES)] for i in range(min(2, n) if mode == "vignette" else 1)]
    cast = [{"name": name, "kind": "character", "description": desc} for name, desc in people]
    cast += [{"name": name, "kind": "background", "description": desc} for name, desc in places]
    if strategy == "comparative":
        cast.append({"name": "ordinary_alternative", "kind": "prop",
                     "description": "a plain, unlabelled grey everyday alternative with no markings"})
    beats = _BEATS.get(mode, _BEATS["analytical"])
    shots = []
    for i in range(n):
        person = people[i % len(people)] if mode == "vignette" else people[0]
        other = people[1 % len(people)]
        place = places[i % len(places)]
        keyframe, motion = beats[i % len(beats)]
        where = "the " + place[0].removeprefix("bg_").replace("_", " ")
        fill = {"p": person[0], "q": other[0], "x": product, "place": where}
        keyframe, motion = keyframe.format(**fill), motion.format(**fill)
        uses = [person[0], place[0]]
        if "{q}" in beats[i % len(beats)][0]:
            uses.insert(1, other[0])
        if product in keyframe or i == n - 1:
            if product not in keyframe:
                keyframe = f"{keyframe}, {product} in view"
            keyframe = f"{keyframe}, {_TWIST.get(strategy, '')}".rstrip(", ")
            uses.append(product)
            if strategy == "comparative":
                uses.append("ordinary_alternative")
        shots.append({"keyframe_prompt": keyframe[0].upper() + keyframe[1:] + ".", "motion_prompt":
                      motion[0].upper() + motion[1:] + ".", "uses": list(dict.fromkeys(uses))})
    card = plan.get("card", {})
    style = str(card.get("keyframe_style") or "Even, natural light.")
    forbidden = [str(plan.get(k) or "") for k in ("product", "brand", "target_audience")]
    if any(f and f.lower() in style.lower() for f in forbidden):
        style = "Even, natural light."
    people_names = " and ".join(p[0] for p in people)
    storyline = (f"A {mode.replace('_', ' ')} ad with a {strategy} strategy: {people_names} meet {product} "
                 f"over {n} shot{'s' if n > 1 else ''}, ending on {product} in view.")
    return {"storyline": storyline, "style_instructions": style, "cast": cast, "shots": shots}

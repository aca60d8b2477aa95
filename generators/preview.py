"""The offline ``preview`` backends: plan-driven agents, storyboard panels, animatic clips.

They let the whole engine (log, memory, retrieval, replay, branches, audit) run with no model at
all, in seconds on a CPU. Invariants:
- Deterministic: the same request gives the same bytes (no clocks, no global randomness).
- Honest: the plan-driven VLM answers from the story's declared plan (``request.plan``), says
  "no judge in preview" when it accepts a keyframe, and never pretends to have looked at pixels.
- Visible: storyboard panels composite the reference images they were given, so a reader of a
  keyframe can see which memory views conditioned it; the prompt is the caption.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import textwrap
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from codirector.generators.base import (
    ImageRequest,
    ImageResult,
    VideoRequest,
    VideoResult,
    VLMAnswer,
    VLMRequest,
)
from codirector.generators.video_io import encode_mp4


def _digest_int(*parts: Any) -> int:
    return int(hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def _colour(*parts: Any, light: bool = False) -> tuple[int, int, int]:
    h = _digest_int(*parts)
    base = 150 if light else 40
    span = 90 if light else 110
    return (base + h % span, base + (h >> 8) % span, base + (h >> 16) % span)


def _font(size: int) -> Any:
    return ImageFont.load_default(size=size)


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


# ---------------------------------------------------------------------------- VLM


class PreviewVLM:
    """Plan-driven agents: every answer follows from the story plan carried in ``request.plan``."""

    backend = "preview"

    def __init__(self, model: str = "plan-driven") -> None:
        self.model = model

    def complete(self, request: VLMRequest) -> VLMAnswer:
        handler = getattr(self, f"_{request.agent}", None)
        if handler is None:
            raise NotImplementedError(f"the preview backend has no plan-driven answer for agent {request.agent!r}")
        return VLMAnswer(text=json.dumps(handler(request.plan), ensure_ascii=False), model=self.model)

    @staticmethod
    def _planner(plan: dict[str, Any]) -> dict[str, Any]:
        sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", plan.get("story", "").strip()) if s.strip()]
        n = int(plan.get("num_shots") or 1)
        if not sentences:
            sentences = ["An establishing shot."]
        shots = []
        for i in range(n):
            chunk = sentences[i * len(sentences) // n : max(i * len(sentences) // n + 1, (i + 1) * len(sentences) // n)]
            text = " ".join(chunk) if chunk else sentences[-1]
            shots.append({"keyframe_prompt": text, "motion_prompt": f"The action continues: {text}"})
        return {"shots": shots}

    @staticmethod
    def _memory_controller(plan: dict[str, Any]) -> dict[str, Any]:
        known = set(plan.get("known", []))
        cast = plan.get("cast", {})
        evolving = {e["name"]: e for e in plan.get("evolves", [])}
        retrieved: list[dict[str, Any]] = []
        new: list[dict[str, Any]] = []
        for name in [*plan.get("uses", []), *(n for n in evolving if n not in plan.get("uses", []))]:
            if name in known:
                if {"name": name} not in retrieved:
                    retrieved.append({"name": name})
            elif all(n["name"] != name for n in new):
                evo = evolving.get(name)
                if evo is not None:
                    new.append({"name": name, "description": evo["description"], "base_entity": evo["base_entity"]})
                else:
                    desc = cast.get(name, {}).get("description") or name.replace("_", " ")
                    new.append({"name": name, "description": desc, "base_entity": None})
        return {"retrieved_existing": retrieved, "new_entities": new}

    @staticmethod
    def _keyframe_analyzer(plan: dict[str, Any]) -> dict[str, Any]:
        return {
            "decision": "accept",
            "reasons": ["no judge in preview"],
            "alignment_report": {"main_character_count": "unclear", "main_character_appearance": "unclear",
                                 "environment": "unclear"},
            "refined_keyframe_prompt": "",
        }

    @staticmethod
    def _motion_refiner(plan: dict[str, Any]) -> dict[str, Any]:
        motion = plan.get("motion", "")
        return {"refined_video_motion_prompt": f"Starting from the keyframe as composed: {motion}"}

    @staticmethod
    def _video_analyzer(plan: dict[str, Any]) -> dict[str, Any]:
        known = set(plan.get("known", []))
        last = max(0, int(plan.get("frames", 1)) - 1)
        updates = [
            {"name": e["name"], "description": e["description"], "frame_index": last,
             "base_entity": e.get("base_entity")}
            for e in plan.get("next_evolves", []) if e["name"] not in known
        ][:4]
        prompt = plan.get("next_keyframe", "")
        carried = [n for n in plan.get("carry", []) if n]
        if carried:
            prompt = f"{prompt} Keep the look of {', '.join(carried)} from the previous shot."
        return {"entity_updates": updates, "refined_next_shot": {"keyframe_prompt": prompt}}

    # -- the director's agents and the judges: deterministic answers; no judge looks at pixels ----

    @staticmethod
    def _direction_recommender(plan: dict[str, Any]) -> dict[str, Any]:
        brief = (plan.get("product"), plan.get("target_audience"))
        arms = {dim: choices[_digest_int("recommend", *brief, dim) % len(choices)] for dim, choices in _ARMS.items()}
        return {**arms, "why": "preview: picked from a hash of the brief; no model read it"}

    @staticmethod
    def _creative_director(plan: dict[str, Any]) -> dict[str, Any]:
        return _ad_storyline(plan)

    @staticmethod
    def _ad_judge(plan: dict[str, Any]) -> dict[str, Any]:
        arms = plan.get("arms", {})
        craft = _CRAFT.get(arms.get("aesthetic", ""), 2) + _CRAFT.get(arms.get("narrative_mode", ""), 2)
        done = int(plan.get("completed", 0)) / max(1, int(plan.get("shots", 1)))
        scores = {}
        for criterion in _CRITERIA:
            jitter = _digest_int("execution", plan.get("product"), criterion, *sorted(arms.items())) % 4
            scores[criterion] = max(0, min(20, round((10 + craft + jitter) * done)))
        weakest = min(_CRITERIA, key=lambda c: (scores[c], _CRITERIA.index(c)))
        return {**scores, "primary_fault": _FAULT[weakest],
                "feedback": f"preview: scores come from a fixed table of the configuration and a hash of the brief; "
                            f"no judge looked at pixels. Weakest criterion: {weakest.replace('_', ' ')}."}

    @staticmethod
    def _efficacy_judge(plan: dict[str, Any]) -> dict[str, Any]:
        arm = str(plan.get("arm", ""))
        affinity = _digest_int("affinity", plan.get("product"), plan.get("target_audience"), plan.get("dimension"),
                               arm) % 25 - 12
        score = max(0, min(100, _EFFICACY.get(arm, 60) + affinity))
        return {"efficacy": score, "rationale": f"preview: a fixed score for {arm} plus a hash of the brief; "
                                               "no judge looked at pixels"}

    @staticmethod
    def _shot_judge(plan: dict[str, Any]) -> dict[str, Any]:
        content = 3 + (int(plan.get("references", 0)) > 0) + (plan.get("keyframe_how") == "accepted")
        action = 3 + bool(plan.get("motion_refined")) + (int(plan.get("frames", 0)) >= 2)
        camera = 4
        return {"content_match": content, "action_match": action, "camera_match": camera,
                "overall": round((content + action + camera) / 3),
                "rationale": "preview: derived from the run's log (references used, keyframe accepted, motion "
                             "refined); no judge looked at pixels"}

    @staticmethod
    def _story_judge(plan: dict[str, Any]) -> dict[str, Any]:
        shots = max(1, int(plan.get("shots", 1)))
        plot = 1 + round(4 * int(plan.get("completed", 0)) / shots)
        chars = 2 + round(3 * int(plan.get("with_references", 0)) / shots)
        flow = 2 + round(3 * int(plan.get("refined_next", 0)) / (shots - 1)) if shots > 1 else 4
        return {"plot_completeness": plot, "character_consistency": chars, "narrative_flow": flow,
                "overall": round((plot + chars + flow) / 3),
                "strongest_aspect": "preview: every planned shot was generated and logged",
                "weakest_aspect": "preview: scores are derived from the run's log (memory references, refined "
                                  "prompts); no judge looked at pixels"}


# The director's arms as the preview backend knows them (generators never import the engine), and the
# fixed tables its judges score from, so a bandit has something deterministic to learn in preview.
_ARMS = {
    "strategy": ("informational", "transformational", "comparative"),
    "narrative_mode": ("analytical", "vignette", "narrative_drama"),
    "aesthetic": ("clarity_energy", "cinematic_premium", "minimalist_focus", "kinetic_grit"),
}
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


def _ad_storyline(plan: dict[str, Any]) -> dict[str, Any]:
    """A template storyline per configuration: deterministic, plan-driven, passing the director's checks."""
    arms = plan.get("arms", {})
    mode, strategy = arms.get("narrative_mode", "analytical"), arms.get("strategy", "informational")
    product, n = str(plan.get("product", "the product")), int(plan.get("num_shots") or 1)
    start = _digest_int("cast", product, *sorted(arms.items()))
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


# ---------------------------------------------------------------------------- images


class StoryboardImageGenerator:
    """Storyboard panels: a backdrop, the reference views composited in, the prompt as caption."""

    backend = "storyboard"

    def __init__(self, model: str = "storyboard-v1") -> None:
        self.model = model

    def generate(self, request: ImageRequest) -> ImageResult:
        w, h = request.width, request.height
        im = self._backdrop(request, w, h)
        draw = ImageDraw.Draw(im)
        if request.purpose == "reference":
            self._figure(im, request)
        refs = [Image.open(io.BytesIO(r.data)).convert("RGB") for r in request.references]
        if refs:
            self._composite(im, refs, [r.label for r in request.references], request)
        self._caption(draw, request.prompt, w, h)
        draw.rectangle([0, 0, w - 1, h - 1], outline=(20, 20, 20), width=2)
        return ImageResult(png=_png(im), width=w, height=h, model=self.model)

    @staticmethod
    def _backdrop(request: ImageRequest, w: int, h: int) -> Image.Image:
        top = np.array(_colour("sky", request.prompt, request.seed, light=True), dtype=np.float32)
        bottom = np.array(_colour("ground", request.prompt), dtype=np.float32)
        t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
        grad = (top * (1 - t) + bottom * t).repeat(w, axis=1)
        im = Image.fromarray(grad.astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(im)
        horizon = int(h * (0.45 + (request.seed % 17) / 100))
        draw.line([(0, horizon), (w, horizon)], fill=_colour("line", request.prompt), width=2)
        return im

    @staticmethod
    def _figure(im: Image.Image, request: ImageRequest) -> None:
        """A simple silhouette for an entity's reference view (no references given)."""
        draw = ImageDraw.Draw(im)
        w, h = im.size
        c = _colour("figure", request.prompt)
        cx, base = w // 2, int(h * 0.8)
        head = max(8, h // 10)
        draw.ellipse([cx - head, base - 5 * head, cx + head, base - 3 * head], fill=c)
        body = [cx - int(1.6 * head), base - 3 * head, cx + int(1.6 * head), base]
        draw.rounded_rectangle(body, radius=head // 2, fill=c)

    @staticmethod
    def _composite(im: Image.Image, refs: list[Image.Image], labels: list[str], request: ImageRequest) -> None:
        """Paste each reference as a labelled thumbnail, side by side (as many as fit, at least 8 px wide)."""
        w, h = im.size
        n = min(len(refs), max(1, (w - 16) // 12))
        slot_w = max(12, (w - 16) // n)
        box_h = max(10, int(h * 0.62))
        shift = (request.seed % 9) - 4  # rounds differ visibly, a little
        draw = ImageDraw.Draw(im)
        font = _font(max(9, h // 26))
        for i, (ref, label) in enumerate(zip(refs[:n], labels[:n], strict=True)):
            thumb = ref.copy()
            thumb.thumbnail((max(8, slot_w - 10), max(8, box_h - 18)))
            x = 8 + i * slot_w + (slot_w - thumb.width) // 2 + shift
            y = int(h * 0.08) + max(0, (box_h - 18 - thumb.height) // 2)
            im.paste(thumb, (x, y))
            draw.rectangle([x - 1, y - 1, x + thumb.width, y + thumb.height], outline=(255, 255, 255), width=1)
            draw.text((x, y + thumb.height + 2), label[:24], fill=(255, 255, 255), font=font,
                      stroke_width=1, stroke_fill=(0, 0, 0))

    @staticmethod
    def _caption(draw: ImageDraw.ImageDraw, prompt: str, w: int, h: int) -> None:
        size = max(9, h // 24)
        font = _font(size)
        lines = textwrap.wrap(prompt, width=max(20, int(w / (size * 0.55))))[:3]
        band = (len(lines) * (size + 3)) + 8
        draw.rectangle([0, h - band, w, h], fill=(15, 15, 20))
        for i, line in enumerate(lines):
            draw.text((6, h - band + 4 + i * (size + 3)), line, fill=(240, 240, 235), font=font)


# ---------------------------------------------------------------------------- video


class AnimaticVideoGenerator:
    """A slow pan and zoom over the keyframe: deterministic, instant, no model."""

    backend = "animatic"

    def __init__(self, model: str = "animatic-v1") -> None:
        self.model = model

    def generate(self, request: VideoRequest) -> VideoResult:
        w, h = request.width, request.height
        key = Image.open(io.BytesIO(request.keyframe.data)).convert("RGB").resize((w, h), Image.Resampling.BICUBIC)
        h0 = _digest_int(request.prompt, request.seed)
        zoom_in = h0 % 2 == 0
        pan = ((h0 >> 1) % 3 - 1) * 0.06  # left, none or right, as a share of the width
        frames = []
        n = request.num_frames
        for i in range(n):
            t = i / max(1, n - 1)
            z = 1.0 + 0.12 * (t if zoom_in else 1 - t)
            cw, ch = w / z, h / z
            cx = w / 2 + pan * w * (t - 0.5)
            left = min(max(0.0, cx - cw / 2), w - cw)
            top = (h - ch) / 2
            crop = key.resize((w, h), Image.Resampling.BICUBIC, box=(left, top, left + cw, top + ch))
            frames.append(np.asarray(crop))
        data = encode_mp4(frames, request.fps)
        return VideoResult(mp4=data, frames=n, fps=request.fps, width=w, height=h, model=self.model)

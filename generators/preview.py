"""The offline ``preview`` backends: plan-driven agents, storyboard panels, animatic clips.

They let the whole engine (log, memory, retrieval, replay, branches, audit) run with no model at
all, in seconds on a CPU. Invariants:
- Deterministic: the same request gives the same bytes (no clocks, no global randomness).
- Honest: the plan-driven VLM answers from the story's declared plan (``request.hints``), says
  "no judge in preview" when it accepts a keyframe, and never pretends to have looked at pixels.
  It declares ``reads_hints = True``, so the recorder keys its calls by the hints too (a real
  model's key never holds them: see ``generators.base``).
- Visible: storyboard panels composite the reference images they were given, so a reader of a
  keyframe can see which memory views conditioned it; the prompt is the caption.
"""

from __future__ import annotations

import io
import json
import re
import textwrap
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from codirector.errors import BackendError
from codirector.generators import preview_director
from codirector.generators.base import (
    ImageRequest,
    ImageResult,
    VideoRequest,
    VideoResult,
    VLMAnswer,
    VLMRequest,
)
from codirector.generators.imaging import check_frame_size, cover, png
from codirector.generators.preview_director import stable_int
from codirector.generators.video_io import encode_mp4


def _colour(*parts: Any, light: bool = False) -> tuple[int, int, int]:
    h = stable_int(*parts)
    base = 150 if light else 40
    span = 90 if light else 110
    return (base + h % span, base + (h >> 8) % span, base + (h >> 16) % span)


def _font(size: int) -> Any:
    return ImageFont.load_default(size=size)


# ---------------------------------------------------------------------------- VLM


class PreviewVLM:
    """Plan-driven agents: every answer follows from the story plan carried in ``request.hints``."""

    backend = "preview"
    reads_hints = True

    def __init__(self, model: str = "plan-driven") -> None:
        self.model = model

    def complete(self, request: VLMRequest) -> VLMAnswer:
        handler = getattr(self, f"_{request.agent}", None) if request.agent.isidentifier() else None
        if handler is None:
            known = sorted(n[1:] for n in vars(PreviewVLM) if n.startswith("_") and not n.startswith("__"))
            raise BackendError(f"the preview backend has no plan-driven answer for agent {request.agent!r}",
                               hint=f"it answers {', '.join(known)}; use a real [vlm] backend for other agents")
        return VLMAnswer(text=json.dumps(handler(request.hints), ensure_ascii=False), model=self.model)

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
        """The shot's declared entities: reuse what memory holds, propose the rest. A state the shot
        ``evolves`` is proposed here, for the shot that first shows it, with its ``base_entity``
        (proposed first itself, from the cast, if memory does not hold it yet)."""
        known = set(plan.get("known", []))
        cast = plan.get("cast", {})
        evolving = {e["name"]: e for e in plan.get("evolves", [])}
        retrieved: list[dict[str, Any]] = []
        new: list[dict[str, Any]] = []

        def propose(name: str) -> None:
            if name in known:
                if {"name": name} not in retrieved:
                    retrieved.append({"name": name})
                return
            if any(n["name"] == name for n in new):
                return
            evo = evolving.get(name)
            if evo is None:
                desc = cast.get(name, {}).get("description") or name.replace("_", " ")
                new.append({"name": name, "description": desc, "base_entity": None})
                return
            if evo["base_entity"] not in known and evo["base_entity"] != name:
                if evo["base_entity"] in evolving or evo["base_entity"] in cast:
                    propose(evo["base_entity"])
            new.append({"name": name, "description": evo["description"], "base_entity": evo["base_entity"]})

        for name in [*plan.get("uses", []), *(n for n in evolving if n not in plan.get("uses", []))]:
            propose(name)
        return {"retrieved_existing": retrieved, "new_entities": new[:4]}  # the paper's limit

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
        """No memory update: the plan declares no state that this clip shows and memory lacks (a state
        the next shot ``evolves`` is not in this clip; the next shot's memory controller proposes it,
        and the next shot's keyframe gives its view). The next prompt keeps the carried entities' look."""
        prompt = plan.get("next_keyframe", "")
        carried = [n for n in plan.get("carry", []) if n]
        if carried:
            prompt = f"{prompt} Keep the look of {', '.join(carried)} from the previous shot."
        return {"entity_updates": [], "refined_next_shot": {"keyframe_prompt": prompt}}

    # -- the director's agents and judges: deterministic answers from ``preview_director`` ------

    _direction_recommender = staticmethod(preview_director.recommend)
    _creative_director = staticmethod(preview_director.storyline)
    _ad_judge = staticmethod(preview_director.execution)
    _efficacy_judge = staticmethod(preview_director.efficacy)

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


# ---------------------------------------------------------------------------- images


class StoryboardImageGenerator:
    """Storyboard panels: a backdrop, the reference views composited in, the prompt as caption."""

    backend = "storyboard"

    def __init__(self, model: str = "storyboard-v1") -> None:
        self.model = model

    def generate(self, request: ImageRequest) -> ImageResult:
        w, h = request.width, request.height
        check_frame_size(w, h)
        im = self._backdrop(request, w, h)
        draw = ImageDraw.Draw(im)
        if request.purpose == "reference":
            self._figure(im, request)
        refs = [Image.open(io.BytesIO(r.data)).convert("RGB") for r in request.references]
        if refs:
            self._composite(im, refs, [r.label for r in request.references], request)
        self._caption(draw, request.prompt, w, h)
        draw.rectangle([0, 0, w - 1, h - 1], outline=(20, 20, 20), width=2)
        return ImageResult(png=png(im), width=w, height=h, model=self.model, usage={"images": 1, "size": f"{w}x{h}"})

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
        check_frame_size(w, h, "animatic clip")
        key = cover(Image.open(io.BytesIO(request.keyframe.data)), w, h)
        h0 = stable_int(request.prompt, request.seed)
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
        return VideoResult(mp4=data, frames=n, fps=request.fps, width=w, height=h, model=self.model,
                           usage={"video_seconds": round(n / request.fps, 6), "frames": n})


# ---------------------------------------------------------------------------- embedder


class HashEmbedder:
    """Deterministic unit vectors from content hashes: no model, and no meaning (``meaningful`` is False
    by default, so retrieval does not trust its scores). For tests and benchmarks that need an embedder
    which loads nothing; the same text or pixels always give the same vector, on any machine."""

    backend = "hash"

    def __init__(self, dim: int = 16, *, meaningful: bool = False) -> None:
        self.dim = dim
        self.meaningful = meaningful
        self.name = f"hash-{dim}"

    def vector(self, data: bytes) -> np.ndarray:
        """The unit vector of ``data``: normal draws seeded by the first 8 bytes of its sha256."""
        import hashlib

        seed = int.from_bytes(hashlib.sha256(data).digest()[:8], "big")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype("float32")
        unit: np.ndarray = v / np.linalg.norm(v)
        return unit

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.vector(t.encode()) for t in texts])

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        return np.stack([self.vector(im.tobytes()) for im in images])

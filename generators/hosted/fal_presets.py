"""How our requests map onto the inputs of the main model families on fal, and what each can do.

A preset is matched by the app id's prefix (``fal-ai/kling-video/`` ...). It names the input fields
(first frame, references, duration, aspect ratio, seed), how a duration is written (``"5"``,
``"8s"`` or a frame count), the output field, and the family's capabilities and list price. Any
other app works through an ``arguments`` table in the config, which builds a preset from scratch:

    [video.arguments]
    image_field = "image_url"          # takes the keyframe as a data: URI
    references_field = "reference_image_urls"   # optional: memory's views
    max_references = 3
    duration_field = "duration"        # optional, with duration_style = "string" | "seconds_s" | "number" | "frames"
    durations = [5, 10]
    aspect_field = "aspect_ratio"      # optional, with aspect_ratios = ["16:9", "9:16", "1:1"]
    seed_field = "seed"                # optional
    output_field = "video"             # where the result's file is
    [video.arguments.fixed]            # extra fields sent as they are
    resolution = "720p"

Field names and durations were read from fal's model pages (``fal.ai/models/<app id>/llms.txt``,
checked 2026-12-07); the service itself was not reachable from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from codirector.errors import ConfigError, did_you_mean
from codirector.generators.jobs import Capabilities

DURATION_STYLES = ("string", "seconds_s", "number", "frames")


@dataclass(frozen=True)
class Preset:
    """One family's input fields, output field and capabilities on fal."""

    name: str
    kind: str  # "video" | "image"
    prefixes: tuple[str, ...]
    capabilities: Capabilities
    prompt_field: str = "prompt"
    image_field: str | None = "image_url"
    references_field: str | None = None
    duration_field: str | None = None
    duration_style: str = "string"
    aspect_field: str | None = None
    seed_field: str | None = None
    size_field: str | None = None
    output_field: str = "video"
    fixed: dict[str, Any] = field(default_factory=dict)

    def format_duration(self, seconds: float, fps: float) -> Any:
        if self.duration_style == "seconds_s":
            return f"{seconds:g}s"
        if self.duration_style == "number":
            return seconds
        if self.duration_style == "frames":
            return max(1, round(seconds * fps))
        return f"{seconds:g}"

    def matches(self, model: str) -> bool:
        return any(model == p or model.startswith(p) for p in self.prefixes)


_VIDEO_ASPECTS = ("16:9", "9:16", "1:1")

PRESETS: tuple[Preset, ...] = (
    # Kling 2.x image-to-video: image_url, duration "5" | "10", no seed; the aspect follows the image.
    Preset("kling", "video", ("fal-ai/kling-video/",),
           Capabilities(durations=(5.0, 10.0), priced_by="second", max_in_flight=4),
           duration_field="duration", fixed={"negative_prompt": "blur, distort, and low quality"}),
    # Wan 2.2 A14B image-to-video: a frame count and rate instead of a duration; seed; aspect ratio.
    Preset("wan", "video", ("fal-ai/wan/", "fal-ai/wan-i2v"),
           Capabilities(aspect_ratios=_VIDEO_ASPECTS, priced_by="second", max_in_flight=4),
           duration_field="num_frames", duration_style="frames", aspect_field="aspect_ratio", seed_field="seed"),
    # Seedance (ByteDance) image-to-video: duration as "5", seed, aspect ratio.
    Preset("seedance", "video", ("fal-ai/bytedance/seedance/",),
           Capabilities(durations=(5.0, 10.0), aspect_ratios=(*_VIDEO_ASPECTS, "4:3", "3:4", "21:9"),
                        priced_by="second", max_in_flight=4),
           duration_field="duration", aspect_field="aspect_ratio", seed_field="seed"),
    # MiniMax Hailuo 02: duration "6" | "10".
    Preset("hailuo", "video", ("fal-ai/minimax/",),
           Capabilities(durations=(6.0, 10.0), priced_by="second", max_in_flight=4),
           duration_field="duration", fixed={"prompt_optimizer": False}),
    # Veo 3 / 3.1 image-to-video: duration "8s", aspect ratio, audio off (it doubles the price).
    Preset("veo", "video", ("fal-ai/veo3",),
           Capabilities(durations=(4.0, 6.0, 8.0), aspect_ratios=("16:9", "9:16"), priced_by="second",
                        max_in_flight=2),
           duration_field="duration", duration_style="seconds_s", aspect_field="aspect_ratio",
           fixed={"generate_audio": False}),
    # Vidu reference-to-video: the keyframe leads the reference list, memory's views follow it.
    Preset("vidu-reference", "video", ("fal-ai/vidu/",),
           Capabilities(references=6, durations=(4.0, 8.0), aspect_ratios=_VIDEO_ASPECTS, priced_by="second",
                        max_in_flight=4),
           image_field=None, references_field="reference_image_urls", duration_field="duration",
           duration_style="number", aspect_field="aspect_ratio", seed_field="seed"),
    # Image editing with several references.
    Preset("qwen-image-edit", "image", ("fal-ai/qwen-image-edit",),
           Capabilities(references=3, priced_by="image", max_in_flight=4),
           image_field=None, references_field="image_urls", seed_field="seed", size_field="image_size",
           output_field="images"),
    Preset("flux-kontext", "image", ("fal-ai/flux-pro/kontext", "fal-ai/flux-kontext"),
           Capabilities(references=4, aspect_ratios=("21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16"),
                        priced_by="image", max_in_flight=4),
           image_field=None, references_field="image_urls", aspect_field="aspect_ratio", seed_field="seed",
           output_field="images"),
    Preset("gemini-image", "image", ("fal-ai/nano-banana", "fal-ai/gemini"),
           Capabilities(references=3, priced_by="image", max_in_flight=4),
           image_field=None, references_field="image_urls", output_field="images"),
)

# The first frame of a video model that takes references too (a preset whose image_field is None leads the
# reference list with the keyframe; see ``FalVideoGenerator.input_for``).


def preset_for(kind: str, model: str, arguments: dict[str, Any] | None = None) -> Preset:
    """The preset for ``model`` (or one built from an ``arguments`` table); ``ConfigError`` naming the fix."""
    base = next((p for p in PRESETS if p.kind == kind and p.matches(model)), None)
    if arguments:
        return from_arguments(kind, model, arguments, base)
    if base is None:
        known = [p for q in PRESETS if q.kind == kind for p in q.prefixes]
        raise ConfigError(
            f"[{kind}] model {model!r} has no built-in fal preset",
            hint=f"add a [{kind}.arguments] table saying which field takes the image (see README, 'Hosted models'); "
            + did_you_mean(model, known, "preset prefix"))
    return base


_ARGUMENT_KEYS = ("image_field", "references_field", "max_references", "duration_field", "duration_style",
                  "durations", "aspect_field", "aspect_ratios", "seed_field", "size_field", "prompt_field",
                  "output_field", "fixed", "price_unit")


def from_arguments(kind: str, model: str, arguments: dict[str, Any], base: Preset | None) -> Preset:
    """A preset from a config's ``arguments`` table, on top of the matching built-in one when there is one."""
    where = f"[{kind}.arguments]"
    unknown = [k for k in arguments if k not in _ARGUMENT_KEYS]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}", hint=did_you_mean(unknown[0], _ARGUMENT_KEYS, "key"))
    start = base or Preset(f"custom {kind}", kind, (model,),
                           Capabilities(priced_by="second" if kind == "video" else "image"),
                           output_field="video" if kind == "video" else "images",
                           image_field="image_url" if kind == "video" else None)

    def text(key: str, default: str | None) -> str | None:
        value = arguments.get(key, default)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(f"{where} {key} must be a field name (a string), got {value!r}")
        return value

    style = arguments.get("duration_style", start.duration_style)
    if style not in DURATION_STYLES:
        raise ConfigError(f"{where} duration_style = {style!r} is not one of {', '.join(DURATION_STYLES)}")
    fixed = arguments.get("fixed", {})
    if not isinstance(fixed, dict):
        raise ConfigError(f"{where} fixed must be a table of field = value, got {fixed!r}")
    try:
        durations = tuple(float(d) for d in arguments.get("durations", start.capabilities.durations))
        refs = int(arguments.get("max_references", start.capabilities.references))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: durations must be numbers and max_references a whole number ({e})") from None
    aspects = tuple(str(a) for a in arguments.get("aspect_ratios", start.capabilities.aspect_ratios))
    references_field = text("references_field", start.references_field)
    caps = replace(start.capabilities, durations=durations, aspect_ratios=aspects,
                   references=refs if references_field else 0)
    return replace(start, name=f"{start.name} + arguments" if base else start.name, capabilities=caps,
                   prompt_field=text("prompt_field", start.prompt_field) or "prompt",
                   image_field=text("image_field", start.image_field), references_field=references_field,
                   duration_field=text("duration_field", start.duration_field), duration_style=style,
                   aspect_field=text("aspect_field", start.aspect_field),
                   seed_field=text("seed_field", start.seed_field), size_field=text("size_field", start.size_field),
                   output_field=text("output_field", start.output_field) or start.output_field,
                   fixed={**start.fixed, **fixed})


def reference_limit(kind: str, options: dict[str, Any]) -> int:
    """How many memory views a fal ``[kind]`` table sends besides the first frame (0 when its model takes none)."""
    model = options.get("model")
    if not isinstance(model, str):
        return 0
    try:
        preset = preset_for(kind, model, options.get("arguments"))
    except ConfigError:
        return 0
    return preset.capabilities.references


def video_reference_limit(options: dict[str, Any]) -> int:
    return reference_limit("video", options)


def image_reference_limit(options: dict[str, Any]) -> int:
    return reference_limit("image", options)

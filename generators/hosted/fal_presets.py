"""How our requests map onto the inputs of the main model families on fal, and what each can do.

A preset is matched by the app id (``fal-ai/kling-video/v2.1/standard/image-to-video`` ...). It names the input fields
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

Checked 2026-12-07 against fal's model pages (``https://fal.ai/models/<app id>/llms.txt``: input schema and
price) and the endpoint types fal publishes in its JavaScript client (``fal-ai/fal-js``,
``libs/client/src/types/endpoints.ts``); the service itself was not reachable from here. A preset names the
app ids it was checked against: an id ending in ``/`` covers every app under it, any other id only itself, so
a text-to-video or reference-to-video sibling of a checked app (other fields) is not sent an image-to-video
request by mistake. None of these video families takes reference images *besides* a first frame: the
reference-to-video apps (Vidu) take references only, so the keyframe leads their reference list.
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
    frame_rate: float | None = None  # "frames": the model's own rate (Wan bills frames at 16 per second)

    def format_duration(self, seconds: float, fps: float) -> Any:
        if self.duration_style == "seconds_s":
            return f"{seconds:g}s"
        if self.duration_style == "number":
            return seconds
        if self.duration_style == "frames":
            return max(1, round(seconds * (self.frame_rate or fps)))
        return f"{seconds:g}"

    def matches(self, model: str) -> bool:
        """``model`` is one of the app ids checked, or under one that ends in ``/``."""
        return any(model == p or (p.endswith("/") and model.startswith(p)) for p in self.prefixes)


_VIDEO_ASPECTS = ("16:9", "9:16", "1:1")
_FAL = "https://fal.ai/models/"

# Checked 2026-12-07 (see the module docstring); the comment of each preset says what its pages said. The
# prices of the default app ids are in generators/data/prices.toml (``prices.BUILTIN``); an app whose page gave no
# price is unpriced.
PRESETS: tuple[Preset, ...] = (
    # Kling 2.0 master, 2.1 standard/pro/master, 2.5 turbo standard/pro image-to-video: image_url (required),
    # duration "5" | "10" (a string), negative_prompt, cfg_scale; no seed and no aspect ratio (the image's);
    # 2.1 pro and 2.5 turbo pro also take tail_image_url (a last frame), unused. Output: video.url.
    Preset("kling", "video", ("fal-ai/kling-video/v2.1/standard/image-to-video",
                              "fal-ai/kling-video/v2/master/image-to-video",
                              "fal-ai/kling-video/v2.1/pro/image-to-video",
                              "fal-ai/kling-video/v2.1/master/image-to-video",
                              "fal-ai/kling-video/v2.5-turbo/standard/image-to-video",
                              "fal-ai/kling-video/v2.5-turbo/pro/image-to-video"),
           Capabilities(durations=(5.0, 10.0), priced_by="second", max_in_flight=4),
           duration_field="duration", fixed={"negative_prompt": "blur, distort, and low quality"}),
    # Kling 2.6 pro image-to-video: the first frame is start_image_url (not image_url), duration "5" | "10",
    # generate_audio (sent as false), end_image_url unused; no seed, no aspect ratio.
    Preset("kling-2.6", "video", ("fal-ai/kling-video/v2.6/pro/image-to-video",),
           Capabilities(durations=(5.0, 10.0), priced_by="second", max_in_flight=4),
           image_field="start_image_url", duration_field="duration", fixed={"generate_audio": False}),
    # Wan 2.2 A14B image-to-video (and its /lora app): image_url, num_frames 17..161 (default 81) at
    # frames_per_second 4..60 (default 16), aspect_ratio auto | 16:9 | 9:16 | 1:1, seed, resolution 480p | 580p |
    # 720p (default 720p). fal bills "video seconds calculated at 16 frames per second", so we ask for whole seconds
    # at 16 fps (2..10 s = 32..160 frames) and send frames_per_second = 16: the seconds asked are the seconds billed.
    Preset("wan", "video", ("fal-ai/wan/v2.2-a14b/image-to-video", "fal-ai/wan/v2.2-a14b/image-to-video/lora"),
           Capabilities(durations=tuple(float(s) for s in range(2, 11)), aspect_ratios=_VIDEO_ASPECTS,
                        priced_by="second", max_in_flight=4),
           duration_field="num_frames", duration_style="frames", frame_rate=16.0, aspect_field="aspect_ratio",
           seed_field="seed", fixed={"frames_per_second": 16}),
    # Seedance 1.0 pro fast image-to-video (fal redirects v1/pro/image-to-video to it): image_url, duration "2".."12"
    # (a string), aspect_ratio 21:9 | 16:9 | 4:3 | 1:1 | 3:4 | 9:16 | auto, seed, resolution (default 1080p).
    Preset("seedance", "video", ("fal-ai/bytedance/seedance/v1/pro/fast/image-to-video",
                                 "fal-ai/bytedance/seedance/v1/pro/image-to-video"),
           Capabilities(durations=tuple(float(s) for s in range(2, 13)),
                        aspect_ratios=("21:9", "16:9", "4:3", "1:1", "3:4", "9:16"), priced_by="second",
                        max_in_flight=4),
           duration_field="duration", aspect_field="aspect_ratio", seed_field="seed"),
    # MiniMax Hailuo 02 standard (and 2.3 standard) image-to-video: image_url, duration "6" | "10",
    # prompt_optimizer (sent as false: the prompt is ours), resolution 512P | 768P (default 768P); no seed, no aspect.
    Preset("hailuo", "video", ("fal-ai/minimax/hailuo-02/standard/image-to-video",
                               "fal-ai/minimax/hailuo-2.3/standard/image-to-video"),
           Capabilities(durations=(6.0, 10.0), priced_by="second", max_in_flight=4),
           duration_field="duration", fixed={"prompt_optimizer": False}),
    # Veo 3 / 3.1 (fast, lite) image-to-video: image_url, duration "4s" | "6s" | "8s", aspect_ratio auto | 16:9 |
    # 9:16, generate_audio (sent as false: audio doubles the price or more). Veo 3.1 takes a seed too; Veo 3's page
    # lists none, so none is sent. reference-to-video (image_urls only) is not matched.
    Preset("veo", "video", ("fal-ai/veo3/image-to-video", "fal-ai/veo3.1/image-to-video",
                            "fal-ai/veo3.1/fast/image-to-video", "fal-ai/veo3.1/lite/image-to-video"),
           Capabilities(durations=(4.0, 6.0, 8.0), aspect_ratios=("16:9", "9:16"), priced_by="second",
                        max_in_flight=2),
           duration_field="duration", duration_style="seconds_s", aspect_field="aspect_ratio",
           fixed={"generate_audio": False}),
    # Vidu Q1 reference-to-video: reference_image_urls (required, up to 7), aspect_ratio 16:9 | 9:16 | 1:1, seed,
    # movement_amplitude, bgm; no first-frame field and no duration field (Q1 makes 5 s clips). The keyframe leads
    # the reference list, memory's views follow it: 6 besides the keyframe.
    Preset("vidu-reference", "video", ("fal-ai/vidu/q1/reference-to-video",),
           Capabilities(references=6, durations=(5.0,), aspect_ratios=_VIDEO_ASPECTS, priced_by="second",
                        max_in_flight=4),
           image_field=None, references_field="reference_image_urls", aspect_field="aspect_ratio",
           seed_field="seed"),
    # Qwen-Image-Edit-Plus (= 2509) and 2511: image_urls, image_size (a preset name or {width, height}), seed,
    # negative_prompt; output images[].url. fal's pages state no limit on image_urls: 3 is Qwen's own advice.
    Preset("qwen-image-edit", "image", ("fal-ai/qwen-image-edit-plus", "fal-ai/qwen-image-edit-2509",
                                        "fal-ai/qwen-image-edit-2511"),
           Capabilities(references=3, priced_by="image", max_in_flight=4),
           image_field=None, references_field="image_urls", seed_field="seed", size_field="image_size",
           output_field="images"),
    # The first Qwen-Image-Edit: one image_url (the first reference), image_size, seed.
    Preset("qwen-image-edit-single", "image", ("fal-ai/qwen-image-edit",),
           Capabilities(references=1, priced_by="image", max_in_flight=4),
           image_field="image_url", seed_field="seed", size_field="image_size", output_field="images"),
    # FLUX.1 Kontext [pro] / [max] multi: image_urls, aspect_ratio 21:9 .. 9:21, seed; output images[].url.
    # fal states no limit on image_urls; 4 is what we send.
    Preset("flux-kontext", "image", ("fal-ai/flux-pro/kontext/multi", "fal-ai/flux-pro/kontext/max/multi"),
           Capabilities(references=4, aspect_ratios=("21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16",
                                                     "9:21"),
                        priced_by="image", max_in_flight=4),
           image_field=None, references_field="image_urls", aspect_field="aspect_ratio", seed_field="seed",
           output_field="images"),
    # Gemini 2.5 Flash Image ("nano banana") edit: image_urls, aspect_ratio auto | 21:9 .. 9:16, seed;
    # output images[].url. fal states no limit on image_urls; 3 is what we send.
    Preset("gemini-image", "image", ("fal-ai/nano-banana/edit", "fal-ai/gemini-25-flash-image/edit"),
           Capabilities(references=3, aspect_ratios=("21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3",
                                                     "9:16"),
                        priced_by="image", max_in_flight=4),
           image_field=None, references_field="image_urls", aspect_field="aspect_ratio", seed_field="seed",
           output_field="images"),
)

# The model page of each preset's first (default) app id, where its fields and price were read.
DEFAULT_APPS: dict[str, str] = {p.name: p.prefixes[0] for p in PRESETS}


def model_page(app: str) -> str:
    return f"{_FAL}{app}/llms.txt"


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
            hint=f"add a [{kind}.arguments] table naming the app's fields, at least "
            + ("image_field (e.g. \"image_url\")" if kind == "video" else "references_field (e.g. \"image_urls\")")
            + " (see README, 'Hosted models'); "
            + did_you_mean(model, known, "app id with a preset"))
    return base


_ARGUMENT_KEYS = ("image_field", "references_field", "max_references", "duration_field", "duration_style",
                  "durations", "aspect_field", "aspect_ratios", "seed_field", "size_field", "prompt_field",
                  "output_field", "fixed", "price_unit", "frame_rate")


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
    rate = arguments.get("frame_rate", start.frame_rate)
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0):
        raise ConfigError(f"{where} frame_rate must be frames per second (a number above 0), got {rate!r}")
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
                   fixed={**start.fixed, **fixed}, frame_rate=None if rate is None else float(rate))


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


def capabilities(kind: str, options: dict[str, Any]) -> Capabilities | None:
    """What the model of a fal ``[kind]`` table can take (its preset's, or its arguments table's); ``None`` when the
    table names no model or one without a preset (``backends`` shows the check's reason instead)."""
    model = options.get("model")
    if not isinstance(model, str) or not model:
        return None
    try:
        return preset_for(kind, model, options.get("arguments")).capabilities
    except ConfigError:
        return None


def video_capabilities(options: dict[str, Any]) -> Capabilities | None:
    return capabilities("video", options)


def image_capabilities(options: dict[str, Any]) -> Capabilities | None:
    return capabilities("image", options)

"""The backend registry: one path by which every backend, built-in or third-party, becomes known.

Built-in backends are registered by ``_register_builtins`` through the same ``register`` call a
plugin uses. Plugins are found through the ``codirector.backends`` entry-point group (installed
packages) and the ``CODIRECTOR_PLUGINS`` environment variable (comma-separated module names,
for backends that are not packaged); either way a plugin is a function
``register_backends(register)``. Factories are import paths, loaded only when a backend
is created, so listing backends imports no torch, diffusers or openai.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from codirector.errors import ConfigError, did_you_mean

KINDS = ("vlm", "image", "video", "embedder")


@dataclass(frozen=True)
class BackendInfo:
    """A registered backend: what it is, what it needs, and how to build and check it."""

    kind: str
    name: str
    factory: str  # "module:callable" taking the backend's options as keyword arguments
    summary: str
    needs: str
    check: str | None = None  # "module:callable" -> Readiness (or a plugin's (usable, why)); cheap, no downloads
    references: str | None = None  # "module:callable" -> how many memory views a request may carry (pure, cheap)
    capabilities: str | None = None  # "module:callable" (options) -> jobs.Capabilities | None (pure, cheap)


@dataclass(frozen=True)
class Readiness:
    """What a backend's cheap check found: whether it can run here, what it saw, and the fix when it cannot.

    ``fallback`` names the backend a run uses instead (docs/architecture.md §9: image-to-video without CUDA becomes
    ``animatic``): such a backend is a note for the user, not a problem.
    """

    ready: bool
    detail: str
    fix: str | None = None
    fallback: str | None = None


_REGISTRY: dict[tuple[str, str], BackendInfo] = {}
_LOADED = False
_PLUGINS_LOADED: set[str] = set()


def register(info: BackendInfo) -> None:
    """Make a backend known (a later registration of the same kind and name replaces it)."""
    if info.kind not in KINDS:
        raise ConfigError(f"backend {info.name!r} has unknown kind {info.kind!r}", hint=f"kinds are {', '.join(KINDS)}")
    _REGISTRY[(info.kind, info.name)] = info


def _register_builtins(reg: Callable[[BackendInfo], None]) -> None:
    g = "codirector.generators"
    reg(BackendInfo("vlm", "preview", f"{g}.preview:PreviewVLM",
                    "plan-driven agents: answers from the story's cast/uses/evolves, accepts every keyframe",
                    "nothing"))
    reg(BackendInfo("vlm", "openai", f"{g}.openai_vlm:OpenAIVLM",
                    "any OpenAI-compatible chat API (OpenAI, vLLM, Ollama, LM Studio) with structured output",
                    "OPENAI_API_KEY (or api_key_env) and network access to base_url",
                    f"{g}.openai_vlm:check_vlm"))
    reg(BackendInfo("image", "storyboard", f"{g}.preview:StoryboardImageGenerator",
                    "deterministic storyboard panels: references composited, prompt as caption", "nothing"))
    reg(BackendInfo("image", "openai", f"{g}.openai_images:OpenAIImageGenerator",
                    "OpenAI Images API: images.generate, images.edit with the reference list",
                    "OPENAI_API_KEY (or api_key_env) and network access",
                    f"{g}.openai_images:check_images"))
    reg(BackendInfo("image", "diffusers", f"{g}.diffusers_image:DiffusersImageGenerator",
                    "diffusers text-to-image with references (QwenImageEditPlus, FLUX.2, SD/SDXL + IP-Adapter)",
                    "diffusers weights on disk or downloadable; a GPU for useful speed",
                    f"{g}.diffusers_image:check"))
    reg(BackendInfo("video", "animatic", f"{g}.preview:AnimaticVideoGenerator",
                    "deterministic pan/zoom over the keyframe (no model)", "nothing"))
    reg(BackendInfo("video", "diffusers", f"{g}.diffusers_video:DiffusersVideoGenerator",
                    "diffusers image-to-video: Wan2.2 I2V, LTX-Video, CogVideoX I2V",
                    "CUDA and the model weights", f"{g}.diffusers_video:check"))
    h = f"{g}.hosted"
    reg(BackendInfo("image", "fal", f"{h}.fal:FalImageGenerator",
                    "fal queue API: multi-reference edit models (Qwen-Image-Edit, FLUX Kontext, Gemini image)",
                    "FAL_KEY (or api_key_env) and network access", f"{h}.fal:check_image",
                    references=f"{h}.fal_presets:image_reference_limit",
                    capabilities=f"{h}.fal_presets:image_capabilities"))
    reg(BackendInfo("video", "fal", f"{h}.fal:FalVideoGenerator",
                    "fal queue API: image-to-video apps (Kling, Wan, Seedance, Hailuo, Veo, Vidu references)",
                    "FAL_KEY (or api_key_env) and network access", f"{h}.fal:check",
                    references=f"{h}.fal_presets:video_reference_limit",
                    capabilities=f"{h}.fal_presets:video_capabilities"))
    reg(BackendInfo("image", "comfyui", f"{h}.comfyui:ComfyImageGenerator",
                    "your ComfyUI servers: an API-format edit workflow (Qwen-Image-Edit, Kontext), [image.bind]",
                    "a ComfyUI server (base_url, or a list: a pool) with the workflow's nodes and weights",
                    f"{h}.comfyui:check_image"))
    reg(BackendInfo("video", "comfyui", f"{h}.comfyui:ComfyVideoGenerator",
                    "your ComfyUI servers: an API-format image-to-video workflow (Wan 2.2 I2V) bound by [video.bind]",
                    "a ComfyUI server (base_url, or a list: a pool) with the workflow's nodes and weights",
                    f"{h}.comfyui:check", references=f"{h}.comfyui:reference_limit"))
    reg(BackendInfo("video", "openai-videos", f"{h}.openai_videos:OpenAIVideosGenerator",
                    "the /v1/videos shape on a gateway (LiteLLM proxy, aggregators): the keyframe as input_reference",
                    "a gateway base_url (not OpenAI's host: Sora was shut down), OPENAI_API_KEY (or api_key_env)",
                    f"{h}.openai_videos:check", capabilities=f"{h}.openai_videos:video_capabilities"))
    reg(BackendInfo("video", "google", f"{h}.google:GoogleVideoGenerator",
                    "Veo on the Gemini API (predictLongRunning): the keyframe as first frame, up to 3 reference views",
                    "GEMINI_API_KEY (or api_key_env) and network access", f"{h}.google:check",
                    references=f"{h}.google:video_reference_limit", capabilities=f"{h}.google:video_capabilities"))
    reg(BackendInfo("image", "google", f"{h}.google:GoogleImageGenerator",
                    "Gemini image models (Nano Banana) via generateContent, memory's views as inline images",
                    "GEMINI_API_KEY (or api_key_env) and network access", f"{h}.google:check_image",
                    references=f"{h}.google:image_reference_limit", capabilities=f"{h}.google:image_capabilities"))
    reg(BackendInfo("embedder", "open_clip", f"{g}.embedder:OpenClipEmbedder",
                    "open_clip text and image embeddings (a pretrained tag or a local checkpoint)",
                    "the weights on disk (or network for a tag); 'none' = random weights",
                    f"{g}.embedder:check"))


def _load() -> None:
    """Built-ins and entry points once per process; ``CODIRECTOR_PLUGINS`` modules as they appear in it
    (a module named there after the first lookup, e.g. set by a notebook or a worker, is still loaded)."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        _register_builtins(register)
        for ep in entry_points(group="codirector.backends"):
            try:
                ep.load()(register)
            except Exception as e:  # a broken plugin must not take the tool down
                import logging

                logging.getLogger(__name__).warning("backend plugin %s failed to load: %s", ep.name, e)
    for module in filter(None, (m.strip() for m in os.environ.get("CODIRECTOR_PLUGINS", "").split(","))):
        if module in _PLUGINS_LOADED:
            continue
        try:
            hook = importlib.import_module(module).register_backends
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"CODIRECTOR_PLUGINS names {module!r}, which cannot be loaded ({e})",
                              hint="a plugin module must be importable and define register_backends(register)") from e
        hook(register)
        _PLUGINS_LOADED.add(module)


def backends() -> list[BackendInfo]:
    """Every registered backend, by kind then name."""
    _load()
    return sorted(_REGISTRY.values(), key=lambda b: (KINDS.index(b.kind), b.name))


def info(kind: str, name: str) -> BackendInfo:
    """The registration of ``kind``/``name``, or ``ConfigError`` listing the known ones."""
    _load()
    try:
        return _REGISTRY[(kind, name)]
    except KeyError:
        known = [n for (k, n) in _REGISTRY if k == kind]
        raise ConfigError(
            f"unknown {kind} backend {name!r}", hint=did_you_mean(name, known, f"{kind} backend")
        ) from None


def find(kind: str, name: str) -> BackendInfo | None:
    """The registration of ``kind``/``name``, or ``None`` when there is none."""
    _load()
    return _REGISTRY.get((kind, name))


def _resolve(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def load_factory(path: str) -> Any:
    """The callable a registration's ``factory`` names (``"module:callable"``); importing its module only."""
    return _resolve(path)


def create(kind: str, name: str, options: dict[str, Any] | None = None) -> Any:
    """Build backend ``kind``/``name`` with ``options`` (its config table minus ``backend``)."""
    reg = info(kind, name)
    factory = _resolve(reg.factory)
    try:
        return factory(**(options or {}))
    except TypeError as e:
        raise ConfigError(
            f"bad option for the {kind} backend {name!r}: {e}",
            hint=f"see `codirector backends` for what {name!r} takes",
        ) from e


def readiness(kind: str, name: str, options: dict[str, Any] | None = None) -> Readiness:
    """Whether a backend can run here, what its check saw and the fix (cheap: no download, no model load).

    A check returns a ``Readiness``; a plugin's may return the older ``(usable, why)`` pair.
    """
    reg = info(kind, name)
    if reg.check is None:
        return Readiness(True, "ready")
    try:
        found = _resolve(reg.check)(**(options or {}))
    except ImportError as e:
        return Readiness(False, f"missing package: {e.name}", fix=f"pip install {e.name}")
    except TypeError as e:
        return Readiness(False, f"bad option for the {kind} backend {name!r}: {e}",
                         fix=f"see `codirector backends` for what {name!r} takes")
    if isinstance(found, Readiness):
        return found
    ok, why = found
    return Readiness(bool(ok), str(why), None if ok else f"see `codirector backends` for what {name!r} needs")


def usable(kind: str, name: str, options: dict[str, Any] | None = None) -> tuple[bool, str]:
    """Whether a backend can run here, and why not (``readiness`` without the fix)."""
    found = readiness(kind, name, options)
    return found.ready, found.detail


def reference_limit(kind: str, table: dict[str, Any]) -> int:
    """How many memory views a request of the ``[kind]`` table's backend may carry besides its first frame.

    Pure and cheap (no backend is built), so a replay, which has no backends, builds the same requests.
    """
    name = table.get("backend")
    if not isinstance(name, str):
        return 0
    _load()
    reg = _REGISTRY.get((kind, name))
    if reg is None or reg.references is None:
        return 0
    options = {k: v for k, v in table.items() if k != "backend"}
    return int(_resolve(reg.references)(options))


def capabilities(kind: str, name: str, options: dict[str, Any] | None = None) -> Any:
    """The ``jobs.Capabilities`` of backend ``kind``/``name`` with ``options`` (its table minus ``backend``), where
    the backend declares them; ``None`` when it does not or its options cannot say (no model, a bad table).

    Pure and cheap like ``reference_limit``: no backend is built, nothing is imported beyond the declaring module.
    """
    _load()
    reg = _REGISTRY.get((kind, name))
    if reg is None or reg.capabilities is None:
        return None
    try:
        return _resolve(reg.capabilities)(dict(options or {}))
    except ConfigError:
        return None

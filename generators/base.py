"""The interfaces every model backend implements, and the requests and results they exchange.

Four kinds: a VLM (text + images in, JSON text out), an image generator (prompt + reference
images in, an image out), a video generator (keyframe + motion prompt in, a clip out) and an
embedder (texts or images in, unit vectors out). The engine talks to models only through these.

Invariants:
- Requests are plain data: everything that affects the output is a field, so the call recorder
  can hash a request into a key (``request_fields``) and replay can diff two requests.
- A backend's key holds only what that backend receives. ``VLMRequest.hints`` (the story plan's
  declared intent) is read by plan-driven backends alone (``reads_hints = True``, the preview
  VLM); a real model never sees it, so it is in the key of hint-reading backends only, and
  editing a hint never changes the key of a call made with a real model.
- Images travel as bytes plus their blob digest (the digest goes into the key, the bytes to the
  model). No request or result ever carries an API key.
- Backends raise ``BackendError`` (with a fix) for failures they understand; results are data.
- Results report usage (``VLMAnswer.usage``, ``ImageResult.usage``, ``VideoResult.usage``: numbers
  only, keys as in ``events.calls``). A backend that bills may also offer ``usage_bound(request)``:
  the most usage that request can bill, computed before the call (``--budget`` checks it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class ImageInput:
    """An image handed to a model: a label the prompt refers to, its blob digest, its bytes."""

    label: str
    digest: str
    data: bytes = field(repr=False, compare=False)


@dataclass(frozen=True)
class VLMRequest:
    """One agent turn: instructions, text and images in; JSON matching ``schema`` out.

    ``hints`` is structured context from the story plan (what a shot uses, what evolves). Only a
    backend with ``reads_hints = True`` (the plan-driven preview VLM) answers from it; real models
    never see it, and it is not part of their recording key. ``schema_name`` and ``json_schema``
    describe the expected output for structured-output APIs.
    """

    agent: str
    system: str
    user: str
    images: tuple[ImageInput, ...] = ()
    schema_name: str = ""
    json_schema: dict[str, Any] = field(default_factory=dict)
    temperature: float = 0.0
    hints: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VLMAnswer:
    """What a VLM returned: the raw text (validated by the agent), usage and the exact model."""

    text: str
    model: str
    usage: dict[str, Any] | None = None
    refusal: str | None = None


@dataclass(frozen=True)
class ImageRequest:
    """Generate one image: a keyframe (with entity references) or an entity's reference view."""

    prompt: str
    purpose: str  # "keyframe" | "reference"
    seed: int
    width: int
    height: int
    references: tuple[ImageInput, ...] = ()
    style: str | None = None

    def styled_prompt(self) -> str:
        """The prompt followed by the visual style: the text every image model is given for it."""
        parts = [self.prompt.strip()]
        if self.style and self.style.strip():
            parts.append(f"Visual style: {self.style.strip()}.")
        return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class ImageResult:
    """A generated image as PNG bytes."""

    png: bytes
    width: int
    height: int
    model: str
    usage: dict[str, Any] | None = None  # what the call used (see ``events.calls``): tokens, images, seconds


@dataclass(frozen=True)
class VideoRequest:
    """Animate one keyframe following a motion prompt.

    ``references`` are memory's views of the shot's entities, sent to a video model that accepts
    reference images besides the first frame (``generators.jobs.Capabilities.references``), so identity
    is held inside the clip and not only at its first frame. Empty for every other backend, and then
    not part of the key (keys recorded before references existed stay valid).
    """

    keyframe: ImageInput
    prompt: str
    seed: int
    num_frames: int
    fps: float
    width: int
    height: int
    references: tuple[ImageInput, ...] = ()


@dataclass(frozen=True)
class VideoResult:
    """A generated clip as MP4 bytes, with its exact frame count and rate."""

    mp4: bytes
    frames: int
    fps: float
    width: int
    height: int
    model: str
    usage: dict[str, Any] | None = None  # what the call used (see ``events.calls``): seconds of video, of compute


@runtime_checkable
class VLM(Protocol):
    """A vision-language model answering agents with JSON text.

    A backend may also set ``reads_hints = True`` (see ``reads_hints``); the protocol does not
    require it, and a backend without it is keyed as a real model.
    """

    backend: str
    model: str

    def complete(self, request: VLMRequest) -> VLMAnswer: ...


@runtime_checkable
class ImageGenerator(Protocol):
    backend: str
    model: str

    def generate(self, request: ImageRequest) -> ImageResult: ...


@runtime_checkable
class VideoGenerator(Protocol):
    backend: str
    model: str

    def generate(self, request: VideoRequest) -> VideoResult: ...


@runtime_checkable
class Embedder(Protocol):
    """Text and images into one space of unit vectors (float32, shape (n, dim))."""

    backend: str
    name: str
    meaningful: bool

    def embed_texts(self, texts: list[str]) -> np.ndarray: ...

    def embed_images(self, images: list[Any]) -> np.ndarray: ...


@dataclass
class Backends:
    """The set of backends one run uses (built from a profile and config)."""

    vlm: VLM
    image: ImageGenerator
    video: VideoGenerator
    embedder: Embedder
    notes: list[str] = field(default_factory=list)


def image_fields(images: tuple[ImageInput, ...]) -> list[dict[str, str]]:
    """How images appear in a request key: label and blob digest, never bytes."""
    return [{"label": im.label, "blob": im.digest} for im in images]


def reads_hints(backend: object) -> bool:
    """Whether ``backend`` answers from ``VLMRequest.hints`` (plan-driven), rather than from the messages."""
    return bool(getattr(backend, "reads_hints", False))


def request_fields(request: VLMRequest | ImageRequest | VideoRequest, *, hints: bool = False) -> dict[str, Any]:
    """Everything in a request that affects the output, as plain JSON (the recorder hashes this).

    ``hints=True`` adds ``VLMRequest.hints`` (under the name ``plan``, as logs have always held it)
    for a backend that reads them; a real model's fields are exactly what it receives.
    """
    if isinstance(request, VLMRequest):
        fields: dict[str, Any] = {
            "agent": request.agent,
            "system": request.system,
            "user": request.user,
            "images": image_fields(request.images),
            "schema_name": request.schema_name,
            "json_schema": request.json_schema,
            "temperature": request.temperature,
        }
        if hints:
            fields["plan"] = request.hints
        return fields
    if isinstance(request, ImageRequest):
        return {
            "prompt": request.prompt,
            "purpose": request.purpose,
            "seed": request.seed,
            "width": request.width,
            "height": request.height,
            "references": image_fields(request.references),
            "style": request.style,
        }
    video: dict[str, Any] = {
        "keyframe": image_fields((request.keyframe,))[0],
        "prompt": request.prompt,
        "seed": request.seed,
        "num_frames": request.num_frames,
        "fps": request.fps,
        "width": request.width,
        "height": request.height,
    }
    if request.references:
        video["references"] = image_fields(request.references)
    return video

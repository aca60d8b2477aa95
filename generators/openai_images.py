"""Keyframes and reference views from the OpenAI Images API (images.generate, images.edit).

Invariants:
- Images come back at exactly the requested width x height: the API's nearest supported size is
  requested and the result is scaled to cover the frame and cropped centred (``imaging.cover``),
  never letterboxed.
- Every reference image is sent (``images.edit``, up to 16, each with its real MIME type) and the
  prompt says which entity each one shows; more than 16 is refused before any request.
- The key and the failures are handled by ``openai_client`` (never in a message, a log or a result);
  a model OpenAI has shut down is named with its replacement, in the pre-flight (``preflight.check_backend``)
  and in the error of a request the server refused for it.
"""

from __future__ import annotations

import base64
import io
import math
import os
import re
from typing import Any

from codirector.errors import BackendError, ConfigError
from codirector.generators.base import ImageInput, ImageRequest, ImageResult
from codirector.generators.imaging import check_frame_size, cover, png
from codirector.generators.openai_client import (
    OpenAIConnection,
    availability,
    image_mime,
    scrub,
    server_message,
    usage_numbers,
)
from codirector.generators.prices import image_input_tokens_bound, image_output_tokens_bound, text_tokens_bound
from codirector.generators.profiles import OPENAI_IMAGE_MODEL, openai_shutdowns
from codirector.generators.registry import Readiness

IMAGE_SIZES = ((1024, 1024), (1536, 1024), (1024, 1536))
MAX_EDIT_IMAGES = 16


def nearest_size(width: int, height: int) -> str:
    """The supported GPT-image size whose aspect ratio is closest to ``width`` x ``height``."""
    check_frame_size(width, height)
    target = math.log(width / height)
    w, h = min(IMAGE_SIZES, key=lambda s: abs(math.log(s[0] / s[1]) - target))
    return f"{w}x{h}"


def fit_png(data: bytes, width: int, height: int) -> bytes:
    """An image scaled to cover ``width`` x ``height`` and cropped centred, as PNG bytes."""
    from PIL import Image

    try:
        opened = Image.open(io.BytesIO(data))
        opened.load()
    except Exception as e:  # PIL raises several types for undecodable data
        raise BackendError(f"the image the server returned cannot be decoded ({e})",
                           hint="the server answered with something other than an image") from e
    return png(cover(opened, width, height))


class OpenAIImageGenerator(OpenAIConnection):
    """Keyframes and reference views from the OpenAI Images API.

    No references: ``images.generate``. With references: ``images.edit`` with every reference
    image (up to 16, each sent as an ``image[]`` part with its MIME type) and a prompt that says
    which entity each image shows. The API's nearest size for the frame's aspect ratio is
    requested (unless ``size`` is configured) and the result is scaled to cover the requested
    width x height and cropped centred, so frames always have the configured size.

    The request's seed is part of the recorded request key but is NOT honoured: the Images API
    takes no seed, so regenerating the same request can give another image (the recording, not
    the API, makes replay exact).

    The default model is the ``openai`` profile's (``profiles.OPENAI_IMAGE_MODEL``). A request refused
    because its model is one OpenAI shut down (``profiles.OPENAI_SHUTDOWNS``) fails with a message that
    gives the shutdown date and the ``[image] model`` to set instead.
    """

    backend = "openai"
    section = "image"

    def __init__(
        self,
        model: str = OPENAI_IMAGE_MODEL,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 300.0,
        max_retries: int = 2,
        quality: str | None = None,
        input_fidelity: str | None = None,
        size: str | None = None,
    ) -> None:
        super().__init__(model=model, base_url=base_url, api_key_env=api_key_env, timeout=timeout,
                         max_retries=max_retries)
        if size is not None and size != "auto" and not re.fullmatch(r"\d+x\d+", size):
            raise ConfigError(f"[image] size must look like 1536x1024 (or \"auto\"), got {size!r}",
                              hint="GPT image models take 1024x1024, 1536x1024 or 1024x1536")
        if input_fidelity is not None and input_fidelity not in ("low", "high"):
            raise ConfigError(f"[image] input_fidelity must be \"low\" or \"high\", got {input_fidelity!r}")
        self.quality = quality
        self.input_fidelity = input_fidelity
        self.size = size

    def prompt(self, request: ImageRequest) -> str:
        """What the model is asked: the prompt, the style, and which reference shows whom."""
        parts = [request.styled_prompt()]
        if request.references:
            shown = "; ".join(f"image {i} shows {ref.label}" for i, ref in enumerate(request.references, start=1))
            parts.append(f"The attached images are references, not the scene: {shown}. Keep each one's identity, "
                         "face, hair, clothing and colours exactly as in its reference, and compose a new image.")
        return " ".join(p for p in parts if p)

    def files(self, references: tuple[ImageInput, ...]) -> list[tuple[str, bytes, str]]:
        if len(references) > MAX_EDIT_IMAGES:
            raise BackendError(
                f"images.edit takes at most {MAX_EDIT_IMAGES} reference images, this request has {len(references)}",
                hint="fewer entities per shot (the memory controller proposes at most 4 new ones), or another "
                "[image] backend",
            )
        out = []
        for i, ref in enumerate(references, start=1):
            mime, ext = image_mime(ref.data)
            out.append((f"reference-{i}.{ext}", ref.data, mime))
        return out

    def generate(self, request: ImageRequest) -> ImageResult:
        size = self.size or nearest_size(request.width, request.height)
        kwargs: dict[str, Any] = {"model": self.model, "prompt": self.prompt(request), "size": size, "n": 1}
        if self.quality is not None:
            kwargs["quality"] = self.quality
        what = f"the {request.purpose} image request"
        with self.translating(what):
            if request.references:
                files = self.files(request.references)
                if self.input_fidelity is not None:
                    kwargs["input_fidelity"] = self.input_fidelity
                response = self.client().images.edit(image=files, **kwargs)
            else:
                response = self.client().images.generate(**kwargs)
        if isinstance(response, str | bytes):
            raise self.not_json(response, what)
        data = getattr(response, "data", None) or []
        if not data:
            raise BackendError(f"{self.where} answered {what} without an image",
                               hint="the server returned an empty data list; try again or check the model")
        b64 = getattr(data[0], "b64_json", None)
        if not b64:
            url = getattr(data[0], "url", None)
            raise BackendError(
                f"{self.where} answered {what} with " + ("an image URL" if url else "no image data")
                + " instead of b64_json",
                hint="use a GPT image model (they always return base64), e.g. "
                f"[image] model = \"{OPENAI_IMAGE_MODEL}\"",
            )
        try:
            raw = base64.b64decode(b64, validate=True)
        except ValueError as e:
            raise BackendError(f"{self.where} answered {what} with b64_json that is not valid base64") from e
        return ImageResult(png=fit_png(raw, request.width, request.height), width=request.width,
                           height=request.height, model=self.model, usage=self._usage(response, size, len(data)))

    def translate(self, e: Exception, what: str) -> BackendError:
        """``OpenAIConnection.translate``; a refusal of a model OpenAI shut down says so, with the model to set."""
        error = super().translate(e, what)
        shutdown = openai_shutdowns().get(self.model)
        if shutdown is None or not refuses_model(e, self.model):
            return error
        said = scrub(server_message(e), os.environ.get(self.api_key_env))
        return BackendError(
            f"{self.where} refused [image] model {self.model!r} for {what} (HTTP {getattr(e, 'status_code', '?')}): "
            f"OpenAI shut that model down on {shutdown.day.isoformat()} ({said})",
            hint=f"set [image] model = \"{shutdown.replacement}\" in your --config file (the replacement OpenAI "
            "recommends, developers.openai.com/api/docs/deprecations)",
        )

    def _usage(self, response: Any, size: str, images: int) -> dict[str, Any]:
        """The Images API's ``usage`` (tokens and their details, when given), the image count and size."""
        usage = usage_numbers(getattr(response, "usage", None), ("input_tokens", "output_tokens", "total_tokens"),
                              {"input_tokens_details": ("text_tokens", "image_tokens")})
        usage.update(images=images, size=size)
        if self.quality is not None:
            usage["quality"] = self.quality
        return usage

    def usage_bound(self, request: ImageRequest) -> dict[str, Any] | None:
        """The most ``request`` can bill: its prompt's bytes as text tokens, each reference at its largest input
        cost, and the largest output for the size and quality asked. ``None`` for a model whose output tokens per
        image are not documented (``prices.IMAGE_OUTPUT_TOKENS``): the budget then bounds its calls by the dearest
        one seen so far (``engine.recording.budget``)."""
        from PIL import Image

        size = self.size or nearest_size(request.width, request.height)
        output = image_output_tokens_bound(size, self.quality, self.model)
        if output is None:
            return None
        text = text_tokens_bound(self.prompt(request))
        pictures = 0
        for ref in request.references:
            with Image.open(io.BytesIO(ref.data)) as opened:
                pictures += image_input_tokens_bound(opened.width, opened.height, self.input_fidelity)
        return {"input_tokens": text + pictures, "output_tokens": output,
                "input_tokens_details": {"text_tokens": text, "image_tokens": pictures}, "images": 1, "size": size}


def refuses_model(e: Exception, model: str) -> bool:
    """Whether a client error is the server refusing ``model`` itself (unknown, retired), not the request."""
    import openai

    if isinstance(e, openai.NotFoundError):
        return True
    if not isinstance(e, openai.BadRequestError | openai.PermissionDeniedError):
        return False
    said = server_message(e).lower()
    return getattr(e, "code", None) == "model_not_found" or getattr(e, "param", None) == "model" or (
        model.lower() in said and any(w in said for w in ("deprecat", "shut down", "retired", "does not exist")))


def check_images(**options: Any) -> Readiness:
    """Cheap: the package is importable, base_url is well formed, a key is set where needed. No network.
    (A model OpenAI has shut down is refused by the pre-flight for every table: ``preflight.check_backend``.)"""
    return availability(options, "image")

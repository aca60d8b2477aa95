"""OpenAI-compatible backends: a VLM over chat completions, and keyframes over the Images API.

Both speak the OpenAI wire format through the real ``openai`` client, so they work against OpenAI
itself and against any compatible server (vLLM, Ollama, LM Studio) named by ``base_url``.

Invariants:
- The API key never leaves the environment except in the Authorization header of a request. It is
  read at call time from the variable named by ``api_key_env`` (default ``OPENAI_API_KEY``); it is
  never an option, never stored in a result, never written to a message, an exception or a log.
  Server messages are scrubbed of it before they are quoted.
- A server that is not OpenAI (``base_url`` set to another host, e.g. a local Ollama) gets a
  placeholder key when the variable is unset, because such servers ignore it; OpenAI itself
  without a key is a ``BackendError`` naming the variable.
- Every failure the client reports becomes a ``BackendError`` whose message names what failed
  (the server, the status, the server's own words) and whose hint says what to change. Backends
  never record anything: the call recorder records the answer or the error.
- The VLM asks for structured output (``response_format`` json_schema, strict) with the agent's
  schema; servers without it get ``json_object`` mode plus the schema in the instructions,
  either by configuration or after the server said so once (remembered per instance).
- Images come back at exactly the requested width x height: the API's nearest supported size is
  requested and the result is scaled to cover the frame and cropped centred (never letterboxed).
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import logging
import math
import os
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from codirector.errors import BackendError, ConfigError
from codirector.generators.base import ImageInput, ImageRequest, ImageResult, VLMAnswer, VLMRequest

log = logging.getLogger(__name__)

OPENAI_URL = "https://api.openai.com/v1"
PLACEHOLDER_KEY = "not-needed"
DETAILS = ("auto", "low", "high")
STRUCTURED = ("json_schema", "json_object")
IMAGE_SIZES = ((1024, 1024), (1536, 1024), (1024, 1536))
MAX_EDIT_IMAGES = 16

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"GIF87a", "image/gif", "gif"),
    (b"GIF89a", "image/gif", "gif"),
)


# ---------------------------------------------------------------------------- pure helpers


def image_mime(data: bytes) -> tuple[str, str]:
    """The MIME type and file extension of an image, from its magic number."""
    for magic, mime, ext in _MAGIC:
        if data.startswith(magic):
            return mime, ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "webp"
    raise BackendError(
        f"an input image starts with {data[:8]!r}, which is not PNG, JPEG, WebP or GIF",
        hint="store images as PNG or JPEG; the blob may be damaged (`codirector verify` checks blobs)",
    )


def data_url(data: bytes) -> str:
    """An image as a base64 ``data:`` URL with its real MIME type."""
    mime, _ = image_mime(data)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def safe_url(url: str) -> str:
    """A URL fit for messages: no user, password or query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def is_openai_host(url: str) -> bool:
    """Whether ``url`` is OpenAI's own API (which needs a real key)."""
    host = (urlsplit(url).hostname or "").lower()
    return host == "openai.com" or host.endswith(".openai.com")


def resolve_base_url(base_url: str | None) -> str:
    """The option, else ``OPENAI_BASE_URL``, else OpenAI (what the ``openai`` client does too)."""
    return (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL).rstrip("/")


def nearest_size(width: int, height: int) -> str:
    """The supported GPT-image size whose aspect ratio is closest to ``width`` x ``height``."""
    if width <= 0 or height <= 0:
        raise BackendError(f"image size must be positive, got {width}x{height}", hint="set [run] width and height")
    target = math.log(width / height)
    w, h = min(IMAGE_SIZES, key=lambda s: abs(math.log(s[0] / s[1]) - target))
    return f"{w}x{h}"


def fit_png(data: bytes, width: int, height: int) -> bytes:
    """An image scaled to cover ``width`` x ``height`` and cropped centred, as PNG bytes."""
    from PIL import Image, ImageOps

    try:
        opened = Image.open(io.BytesIO(data))
        opened.load()
    except Exception as e:  # PIL raises several types for undecodable data
        raise BackendError(f"the image the server returned cannot be decoded ({e})",
                           hint="the server answered with something other than an image") from e
    im = opened.convert("RGB")
    if im.size != (width, height):
        im = ImageOps.fit(im, (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def schema_prompt(schema: dict[str, Any]) -> str:
    """The instruction added to the system prompt when the server cannot enforce a schema."""
    return ("\n\nReply with exactly one JSON object and nothing else (no prose, no code fences). "
            "It must follow this JSON schema:\n" + json.dumps(schema, ensure_ascii=False, separators=(",", ":")))


def _schema_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64]
    return cleaned or "answer"


_UNSUPPORTED = ("not supported", "unsupported", "does not support", "doesn't support", "not support",
                "unknown", "unrecognized", "not implemented", "not available", "must be one of", "must be 'text'",
                "must be json_object", "must be 'json_object'")


def says_json_schema_unsupported(message: str) -> bool:
    """Whether a 400 message says the server cannot do ``response_format`` json_schema at all.

    Only that: a message about a bad schema (``Invalid schema for response_format``) is a real
    error in the request and must not silently switch modes.
    """
    text = message.lower()
    if "response_format" not in text and "json_schema" not in text:
        return False
    return any(phrase in text for phrase in _UNSUPPORTED)


def _scrub(text: str, secret: str | None) -> str:
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    return text


def _server_message(e: Any) -> str:
    """The server's own words from an ``openai.APIStatusError``."""
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    message = str(getattr(e, "message", "") or e)
    return message


# ---------------------------------------------------------------------------- the connection


class _Connection:
    """Base URL, key lookup, the client, and the translation of client errors (shared by both backends)."""

    section = "vlm"

    def __init__(self, *, model: str, base_url: str | None, api_key_env: str, timeout: float,
                 max_retries: int) -> None:
        if not model:
            raise ConfigError(f"[{self.section}] model is empty",
                              hint="set model = \"gpt-4.1\" (or the name your server uses)")
        if not api_key_env or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", api_key_env):
            # the value is not shown: a key pasted here by mistake must not reach a message or a log
            raise ConfigError(f"[{self.section}] api_key_env must be the NAME of an environment variable (letters, "
                              "digits and underscores); the value given is not one",
                              hint="e.g. api_key_env = \"OPENAI_API_KEY\"; the key itself stays in the environment")
        if timeout <= 0:
            raise ConfigError(f"[{self.section}] timeout must be positive seconds, got {timeout!r}")
        if max_retries < 0:
            raise ConfigError(f"[{self.section}] max_retries must be 0 or more, got {max_retries!r}")
        self.model = model
        self.base_url = resolve_base_url(base_url)
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self._client: Any = None
        self._client_key: str | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, base_url={safe_url(self.base_url)!r})"

    @property
    def where(self) -> str:
        return safe_url(self.base_url)

    def _api_key(self) -> str:
        key = os.environ.get(self.api_key_env)
        if key:
            return key
        if is_openai_host(self.base_url):
            raise BackendError(
                f"no API key for {self.where}: the environment variable {self.api_key_env} is not set",
                hint=f"export {self.api_key_env}=... in the shell that runs codirector (keys are read from the "
                "environment only, never from a config file), or set base_url to a local server",
            )
        return PLACEHOLDER_KEY

    def client(self) -> Any:
        """The ``openai.OpenAI`` client, rebuilt when the key in the environment changes."""
        key = self._api_key()
        if self._client is None or key != self._client_key:
            try:
                import openai
            except ImportError as e:
                raise BackendError("the openai package is not installed", hint="pip install openai") from e
            self._client = openai.OpenAI(api_key=key, base_url=self.base_url, timeout=self.timeout,
                                         max_retries=self.max_retries)
            self._client_key = key
        return self._client

    def translate(self, e: Exception, what: str) -> BackendError:
        """A client exception as a ``BackendError`` that names the failure and the fix."""
        import openai

        key = os.environ.get(self.api_key_env)
        where, section = self.where, self.section
        tries = f"{self.max_retries + 1} attempt{'s' if self.max_retries else ''}"
        if isinstance(e, openai.APITimeoutError):
            return BackendError(
                f"{what} timed out after {self.timeout:g}s at {where} ({tries})",
                hint=f"raise [{section}] timeout (now {self.timeout:g} seconds), or check that the server is not "
                "overloaded",
            )
        if isinstance(e, openai.APIConnectionError):
            cause = e.__cause__ or e.__context__
            detail = f" ({type(cause).__name__}: {_scrub(str(cause), key)})" if cause else ""
            return BackendError(
                f"cannot connect to {where} for {what}{detail}",
                hint="check that the server is running and that base_url is right (e.g. http://localhost:11434/v1 "
                f"for Ollama, http://localhost:8000/v1 for vLLM); set [{section}] base_url or OPENAI_BASE_URL",
            )
        if isinstance(e, openai.AuthenticationError):
            return BackendError(
                f"{where} rejected the API key from {self.api_key_env} (HTTP 401) for {what}",
                hint=f"set {self.api_key_env} to a valid key for this server (the key is read from the environment)",
            )
        if isinstance(e, openai.PermissionDeniedError):
            return BackendError(
                f"{where} refused access to model {self.model!r} (HTTP 403): {_scrub(_server_message(e), key)}",
                hint=f"use a key from {self.api_key_env} that may use this model, or choose another [{section}] model",
            )
        if isinstance(e, openai.NotFoundError):
            return BackendError(
                f"{where} has no model {self.model!r} or no such endpoint (HTTP 404): "
                f"{_scrub(_server_message(e), key)}",
                hint=f"check [{section}] model (e.g. `ollama list`) and that base_url ends in /v1",
            )
        if isinstance(e, openai.RateLimitError):
            return BackendError(
                f"{where} kept answering 429 (rate limited) for {what} after {tries}: "
                f"{_scrub(_server_message(e), key)}",
                hint=f"wait and run `codirector resume` (recorded calls are not repeated), or raise [{section}] "
                "max_retries",
            )
        if isinstance(e, openai.BadRequestError):
            return BackendError(
                f"{where} rejected the {what} request (HTTP 400): {_scrub(_server_message(e), key)}",
                hint=f"the server's words above say which field; check [{section}] model and its options",
            )
        if isinstance(e, openai.APIStatusError):
            return BackendError(
                f"{where} answered HTTP {e.status_code} for {what} after {tries}: {_scrub(_server_message(e), key)}",
                hint=f"a server-side failure; try again with `codirector resume`, or raise [{section}] max_retries",
            )
        if isinstance(e, openai.APIResponseValidationError):
            return BackendError(f"{where} sent an answer to {what} that is not in the OpenAI format",
                                hint="check that base_url points at an OpenAI-compatible API (…/v1)")
        if isinstance(e, json.JSONDecodeError):
            return self.not_json(e.doc, what)
        return BackendError(f"{what} at {where} failed: {type(e).__name__}: {_scrub(str(e), key)}")

    def not_json(self, body: Any, what: str) -> BackendError:
        shown = _scrub(str(body)[:200], os.environ.get(self.api_key_env))
        return BackendError(
            f"{self.where} answered {what} with a body that is not valid JSON: {shown!r}",
            hint="check that base_url points at an OpenAI-compatible API (it usually ends in /v1) and that no "
            "proxy rewrites the answer",
        )


def _is_client_error(e: Exception) -> bool:
    import openai

    return isinstance(e, openai.OpenAIError | json.JSONDecodeError)


def _cause(e: Exception) -> Exception | None:
    """What a ``BackendError`` is chained to: not the client's error for 401/403, which quotes the server."""
    import openai

    return None if isinstance(e, openai.AuthenticationError | openai.PermissionDeniedError) else e


# ---------------------------------------------------------------------------- VLM


class OpenAIVLM(_Connection):
    """Agents' questions as chat completions with images, answered as JSON by an OpenAI-compatible API."""

    backend = "openai"
    section = "vlm"

    def __init__(
        self,
        model: str = "gpt-4.1",
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 120.0,
        max_retries: int = 2,
        structured: str = "json_schema",
        detail: str = "auto",
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> None:
        super().__init__(model=model, base_url=base_url, api_key_env=api_key_env, timeout=timeout,
                         max_retries=max_retries)
        if structured not in STRUCTURED:
            raise ConfigError(f"[vlm] structured must be one of {', '.join(STRUCTURED)}, got {structured!r}",
                              hint="json_object for servers without json_schema support")
        if detail not in DETAILS:
            raise ConfigError(f"[vlm] detail must be one of {', '.join(DETAILS)}, got {detail!r}")
        if max_tokens is not None and max_tokens < 1:
            raise ConfigError(f"[vlm] max_tokens must be at least 1, got {max_tokens!r}")
        self.structured = structured
        self.detail = detail
        self.temperature = temperature
        self.max_tokens = max_tokens

    def messages(self, request: VLMRequest, mode: str) -> list[dict[str, Any]]:
        """The chat messages for ``request`` (images as data URLs after the text)."""
        system = request.system
        if mode == "json_object" and request.json_schema:
            system += schema_prompt(request.json_schema)
        content: list[dict[str, Any]] = [{"type": "text", "text": request.user}]
        for im in request.images:
            content.append({"type": "image_url", "image_url": {"url": data_url(im.data), "detail": self.detail}})
        return [{"role": "system", "content": system}, {"role": "user", "content": content}]

    def response_format(self, request: VLMRequest, mode: str) -> dict[str, Any] | None:
        if not request.json_schema:
            return None
        if mode == "json_object":
            return {"type": "json_object"}
        return {"type": "json_schema", "json_schema": {"name": _schema_name(request.schema_name),
                                                       "schema": request.json_schema, "strict": True}}

    def complete(self, request: VLMRequest) -> VLMAnswer:
        what = f"the {request.agent} request"
        mode = self.structured
        try:
            response = self._create(request, mode)
        except Exception as e:
            if not _is_client_error(e):
                raise
            import openai

            fallback = (mode == "json_schema" and bool(request.json_schema) and isinstance(e, openai.BadRequestError)
                        and says_json_schema_unsupported(_server_message(e)))
            if not fallback:
                raise self.translate(e, what) from _cause(e)
            log.warning("%s does not support response_format json_schema (%s); using json_object mode from now on",
                        self.where, _scrub(_server_message(e), os.environ.get(self.api_key_env))[:200])
            self.structured = mode = "json_object"
            try:
                response = self._create(request, mode)
            except Exception as e2:
                if not _is_client_error(e2):
                    raise
                raise self.translate(e2, what) from _cause(e2)
        return self._answer(response, what)

    def _create(self, request: VLMRequest, mode: str) -> Any:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": self.messages(request, mode),
            "temperature": self.temperature if self.temperature is not None else request.temperature,
        }
        fmt = self.response_format(request, mode)
        if fmt is not None:
            kwargs["response_format"] = fmt
        if self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens
        return self.client().chat.completions.create(**kwargs)

    def _answer(self, response: Any, what: str) -> VLMAnswer:
        if isinstance(response, str | bytes):  # the client hands back raw text for a non-JSON content type
            raise self.not_json(response, what)
        choices = getattr(response, "choices", None)
        if not choices:
            raise BackendError(f"{self.where} answered {what} without any choice",
                               hint="check that the server is OpenAI-compatible and the model can answer chats")
        choice = choices[0]
        message = getattr(choice, "message", None)
        finish = getattr(choice, "finish_reason", None)
        refusal = getattr(message, "refusal", None) if message is not None else None
        content = getattr(message, "content", None) if message is not None else None
        if finish == "length":
            raise BackendError(
                f"the answer of {self.model!r} to {what} was cut off at its token limit (finish_reason 'length')",
                hint="raise [vlm] max_tokens, or use a model with a larger output limit",
            )
        if finish == "content_filter" and not refusal:
            refusal = "the server's content filter stopped the answer"
        if refusal:
            return VLMAnswer(text=content or "", model=str(getattr(response, "model", None) or self.model),
                             usage=_usage(response), refusal=str(refusal))
        if not isinstance(content, str) or not content.strip():
            raise BackendError(f"{self.where} answered {what} with an empty message",
                               hint="the model produced no text; try again (`codirector resume`) or another model")
        return VLMAnswer(text=content, model=str(getattr(response, "model", None) or self.model),
                         usage=_usage(response))


def _usage(response: Any) -> dict[str, Any] | None:
    usage = getattr(response, "usage", None)
    if usage is None:
        return None
    out = {k: getattr(usage, k, None) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    return {k: int(v) for k, v in out.items() if isinstance(v, int)} or None


# ---------------------------------------------------------------------------- images


class OpenAIImageGenerator(_Connection):
    """Keyframes and reference views from the OpenAI Images API.

    No references: ``images.generate``. With references: ``images.edit`` with every reference
    image (up to 16, each sent as an ``image[]`` part with its MIME type) and a prompt that says
    which entity each image shows. The API's nearest size for the frame's aspect ratio is
    requested (unless ``size`` is configured) and the result is scaled to cover the requested
    width x height and cropped centred, so frames always have the configured size.

    The request's seed is part of the recorded request key but is NOT honoured: the Images API
    takes no seed, so regenerating the same request can give another image (the recording, not
    the API, makes replay exact).
    """

    backend = "openai"
    section = "image"

    def __init__(
        self,
        model: str = "gpt-image-1",
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
        parts = [request.prompt.strip()]
        if request.style:
            parts.append(f"Visual style: {request.style.strip()}.")
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
        try:
            if request.references:
                files = self.files(request.references)
                if self.input_fidelity is not None:
                    kwargs["input_fidelity"] = self.input_fidelity
                response = self.client().images.edit(image=files, **kwargs)
            else:
                response = self.client().images.generate(**kwargs)
        except Exception as e:
            if not _is_client_error(e):
                raise
            raise self.translate(e, what) from _cause(e)
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
                hint="use a GPT image model (they always return base64), e.g. [image] model = \"gpt-image-1\"",
            )
        try:
            raw = base64.b64decode(b64, validate=True)
        except ValueError as e:
            raise BackendError(f"{self.where} answered {what} with b64_json that is not valid base64") from e
        png = fit_png(raw, request.width, request.height)
        return ImageResult(png=png, width=request.width, height=request.height, model=self.model)


# ---------------------------------------------------------------------------- checks


def _check(options: dict[str, Any]) -> tuple[bool, str]:
    if importlib.util.find_spec("openai") is None:
        return False, "the openai package is not installed (pip install openai)"
    base_url = resolve_base_url(options.get("base_url"))
    env = options.get("api_key_env") or "OPENAI_API_KEY"
    where = safe_url(base_url)
    if os.environ.get(env):
        return True, f"key from {env}; server {where}"
    if is_openai_host(base_url):
        return False, f"{env} is not set, and {where} needs a key (export {env}=...)"
    return True, f"{env} is not set; {where} is not OpenAI, so a placeholder key is sent"


def check_vlm(**options: Any) -> tuple[bool, str]:
    """Cheap: the package is importable and a key is available (or the server is not OpenAI). No network."""
    return _check(options)


def check_images(**options: Any) -> tuple[bool, str]:
    """Cheap: the package is importable and a key is available (or the server is not OpenAI). No network."""
    return _check(options)

"""The connection to an OpenAI-compatible server, shared by the chat VLM and the Images backend.

It holds the base URL and the name of the key's environment variable, builds the real ``openai``
client, and turns every client failure into a ``BackendError`` (``translating``: the one place that
does). The two backends live in ``openai_vlm`` (chat completions) and ``openai_images``
(images.generate / images.edit).

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
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from codirector.errors import BackendError, ConfigError
from codirector.generators.imaging import data_uri
from codirector.generators.registry import Readiness

OPENAI_URL = "https://api.openai.com/v1"
PLACEHOLDER_KEY = "not-needed"

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
    return data_uri(data, image_mime(data)[0])


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


def scrub(text: str, secret: str | None) -> str:
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    return text


def server_message(e: Any) -> str:
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


# What each client failure says: (``openai`` exception class, message, hint), tried in order (a subclass before its
# base). Fields: what, where, section, model, key_env, timeout, status, tries, detail (the connection error's cause)
# and said (the server's own words); every value that can quote the server is scrubbed of the key.
FAILURES = (
    ("APITimeoutError", "{what} timed out after {timeout:g}s at {where} ({tries})",
     "raise [{section}] timeout (now {timeout:g} seconds), or check that the server is not overloaded"),
    ("APIConnectionError", "cannot connect to {where} for {what}{detail}",
     "check that the server is running and that base_url is right (e.g. http://localhost:11434/v1 for Ollama, "
     "http://localhost:8000/v1 for vLLM); set [{section}] base_url or OPENAI_BASE_URL"),
    ("AuthenticationError", "{where} rejected the API key from {key_env} (HTTP 401) for {what}",
     "set {key_env} to a valid key for this server (the key is read from the environment)"),
    ("PermissionDeniedError", "{where} refused access to model {model!r} (HTTP 403): {said}",
     "use a key from {key_env} that may use this model, or choose another [{section}] model"),
    ("NotFoundError", "{where} has no model {model!r} or no such endpoint (HTTP 404): {said}",
     "check [{section}] model (e.g. `ollama list`) and that base_url ends in /v1"),
    ("RateLimitError", "{where} kept answering 429 (rate limited) for {what} after {tries}: {said}",
     "wait and run `codirector resume` (recorded calls are not repeated), or raise [{section}] max_retries"),
    ("BadRequestError", "{where} rejected {what} (HTTP 400): {said}",
     "the server's words above say which field; check [{section}] model and its options"),
    ("APIStatusError", "{where} answered HTTP {status} for {what} after {tries}: {said}",
     "a server-side failure; try again with `codirector resume`, or raise [{section}] max_retries"),
    ("APIResponseValidationError", "{where} sent an answer to {what} that is not in the OpenAI format",
     "check that base_url points at an OpenAI-compatible API (…/v1)"),
)


# ---------------------------------------------------------------------------- the connection


class OpenAIConnection:
    """Base URL, key lookup, the client, and the translation of client errors (the base of both backends)."""

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
        """A client exception as a ``BackendError`` that names the failure and the fix (``FAILURES``)."""
        import openai

        key = os.environ.get(self.api_key_env)
        if isinstance(e, json.JSONDecodeError):
            return self.not_json(e.doc, what)
        cause = e.__cause__ or e.__context__
        fields = {
            "what": what, "where": self.where, "section": self.section, "model": self.model,
            "key_env": self.api_key_env, "timeout": self.timeout, "status": getattr(e, "status_code", None),
            "tries": f"{self.max_retries + 1} attempt{'s' if self.max_retries else ''}",
            "detail": f" ({type(cause).__name__}: {scrub(str(cause), key)})" if cause else "",
            "said": scrub(server_message(e), key),
        }
        for name, message, hint in FAILURES:
            if isinstance(e, getattr(openai, name)):
                return BackendError(message.format(**fields), hint=hint.format(**fields))
        return BackendError(f"{what} at {self.where} failed: {type(e).__name__}: {scrub(str(e), key)}")

    @contextmanager
    def translating(self, what: str) -> Iterator[None]:
        """Runs the block; a client failure in it leaves as ``translate``'s ``BackendError`` (chained to the
        client's error, except where that quotes the server: ``chained_cause``). Other errors pass unchanged."""
        try:
            yield
        except Exception as e:
            if not is_client_error(e):
                raise
            raise self.translate(e, what) from chained_cause(e)

    def not_json(self, body: Any, what: str) -> BackendError:
        shown = scrub(str(body)[:200], os.environ.get(self.api_key_env))
        return BackendError(
            f"{self.where} answered {what} with a body that is not valid JSON: {shown!r}",
            hint="check that base_url points at an OpenAI-compatible API (it usually ends in /v1) and that no "
            "proxy rewrites the answer",
        )


def usage_numbers(usage: Any, names: tuple[str, ...], details: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """The integer fields ``names`` of a client usage object, and of its ``details`` sub-objects (numbers only:
    whatever else a server puts there, a key or a header included, never reaches the log)."""
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(usage, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            out[name] = value
    for name, inner in details.items():
        sub = usage_numbers(getattr(usage, name, None), inner, {})
        if sub:
            out[name] = sub
    return out


def is_client_error(e: Exception) -> bool:
    import openai

    return isinstance(e, openai.OpenAIError | json.JSONDecodeError)


def chained_cause(e: Exception) -> Exception | None:
    """What a ``BackendError`` is chained to: not the client's error for 401/403, which quotes the server."""
    import openai

    return None if isinstance(e, openai.AuthenticationError | openai.PermissionDeniedError) else e


def bad_base_url(url: str) -> str | None:
    """Why ``url`` cannot be an API base URL (None when it can): it needs http(s), a host, and no spaces."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "it must start with http:// or https://"
    if not parts.hostname or " " in url:
        return "it names no host"
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return "its port is not a number"
    return None


def availability(options: dict[str, Any], section: str) -> Readiness:
    """Cheap: the package is importable, ``base_url`` is well formed, a key is set where the server needs one.

    No network; the key's value is never read beyond "is it set", and never shown.
    """
    if importlib.util.find_spec("openai") is None:
        return Readiness(False, "the openai package is not installed", fix="pip install openai")
    explicit = options.get("base_url")
    base_url = resolve_base_url(explicit)
    why = bad_base_url(base_url)
    if why is not None:
        origin = f"[{section}] base_url" if explicit else "OPENAI_BASE_URL"
        return Readiness(False, f"{origin} {base_url!r} is not a URL: {why}",
                         fix=f"set {origin} to the server's API address, e.g. http://localhost:11434/v1 (Ollama) "
                         "or https://api.openai.com/v1")
    env = options.get("api_key_env") or "OPENAI_API_KEY"
    where = safe_url(base_url)
    if os.environ.get(env):
        return Readiness(True, f"key from {env}; server {where}")
    if is_openai_host(base_url):
        return Readiness(False, f"{env} is not set, and {where} needs an API key",
                         fix=f"export {env}=... in the shell that runs codirector (keys are read from the environment "
                         "only, never from a config file)")
    return Readiness(True, f"{env} is not set; {where} is not OpenAI, so a placeholder key is sent")

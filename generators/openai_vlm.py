"""Agents' questions as chat completions on an OpenAI-compatible server (OpenAI, vLLM, Ollama, LM Studio).

Invariants:
- The VLM asks for structured output (``response_format`` json_schema, strict) with the agent's
  schema; servers without it get ``json_object`` mode plus the schema in the instructions,
  either by configuration or after the server said so once (remembered per instance).
- The server receives the system text, the user text, the images (as data URLs), the schema and
  the temperature: exactly what the recorder keys the call by. ``VLMRequest.hints`` is never
  sent (this backend does not read hints).
- The key and the failures are handled by ``openai_client`` (never in a message, a log or a result).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from typing import Any

from codirector.errors import BackendError, ConfigError
from codirector.generators.base import VLMAnswer, VLMRequest
from codirector.generators.openai_client import (
    OpenAIConnection,
    availability,
    data_url,
    is_client_error,
    scrub,
    server_message,
    usage_numbers,
)
from codirector.generators.prices import (
    MESSAGE_OVERHEAD_TOKENS,
    max_output_tokens,
    text_tokens_bound,
    vision_tokens_bound,
)
from codirector.generators.registry import Readiness

log = logging.getLogger(__name__)

DETAILS = ("auto", "low", "high")
STRUCTURED = ("json_schema", "json_object")


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


def refuses_json_schema(e: Exception, request: VLMRequest, mode: str) -> bool:
    """Whether ``e`` is the server's 400 saying it cannot do ``response_format`` json_schema for ``request``
    (then json_object mode is used instead)."""
    if not is_client_error(e):
        return False
    import openai

    return (mode == "json_schema" and bool(request.json_schema) and isinstance(e, openai.BadRequestError)
            and says_json_schema_unsupported(server_message(e)))


class OpenAIVLM(OpenAIConnection):
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
        with self.translating(what):
            try:
                response = self._create(request, mode)
            except Exception as e:
                if not refuses_json_schema(e, request, mode):
                    raise
                said = scrub(server_message(e), os.environ.get(self.api_key_env))[:200]
                log.warning("%s does not support response_format json_schema (%s); using json_object mode from now on",
                            self.where, said)
                self.structured = mode = "json_object"
                response = self._create(request, mode)
        return self._answer(response, what)

    def usage_bound(self, request: VLMRequest) -> dict[str, Any]:
        """The most tokens ``request`` can bill: every byte of its text and schema as a token, each image at
        its largest vision cost, and an answer of ``max_tokens`` (else the model's output limit)."""
        from PIL import Image

        prompt = text_tokens_bound(request.system, request.user, schema_prompt(request.json_schema))
        for im in request.images:
            with Image.open(io.BytesIO(im.data)) as opened:
                prompt += vision_tokens_bound(opened.width, opened.height, self.detail)
        return {"prompt_tokens": prompt + MESSAGE_OVERHEAD_TOKENS,
                "completion_tokens": max_output_tokens(self.model, self.max_tokens)}

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
    """Tokens in and out as the server reported them (cached prompt tokens too, when given)."""
    usage = getattr(response, "usage", None)
    if usage is None:
        return None
    return usage_numbers(usage, ("prompt_tokens", "completion_tokens", "total_tokens"),
                         {"prompt_tokens_details": ("cached_tokens",)}) or None


def check_vlm(**options: Any) -> Readiness:
    """Cheap: the package is importable, base_url is well formed, a key is set where needed. No network."""
    return availability(options, "vlm")

"""Model-call events: the recording that makes resume and replay free of repeated calls.

``request_key`` is the sha256 of the canonical request (backend, model, output-affecting
parameters, messages or prompt, input blob digests, seed). A response is recorded here BEFORE it
is used, so a crash never causes the same paid call twice. Secrets never appear in a request.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from codirector.events.base import Event

CallKind = Literal["vlm", "image", "video", "embed"]


class ModelCalled(Event):
    """A backend answered a request (or failed; then ``error`` is set and nothing is used)."""

    kind: CallKind
    backend: str
    model: str
    agent: str | None = None
    request_key: str
    request: dict[str, Any] = Field(default_factory=dict)
    response: Any = None
    response_blob: str | None = None
    duration_ms: float = 0.0
    usage: dict[str, Any] | None = None
    error: str | None = None

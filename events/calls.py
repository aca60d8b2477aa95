"""Model-call events: the recording that makes resume and replay free of repeated calls.

``request_key`` is the sha256 of the canonical request (backend, model, output-affecting
parameters, messages or prompt, input blob digests, seed). A response is recorded here BEFORE it
is used, so a crash never causes the same paid call twice. Secrets never appear in a request.

``usage`` is what the backend reported, as numbers (never a key, a header or a URL):
- chat: ``prompt_tokens``, ``completion_tokens``, ``total_tokens`` (and ``prompt_tokens_details``
  with ``cached_tokens`` when the server gives it);
- images API: ``input_tokens``, ``output_tokens``, ``total_tokens``, ``input_tokens_details``
  (``text_tokens``, ``image_tokens``) when given, plus ``images`` (count) and ``size``;
- generated video: ``video_seconds`` and ``frames``; local backends add ``compute_seconds``
  (wall-clock seconds of generation on ``device``: GPU seconds on a GPU).
Cost is not recorded: it is usage x the prices in force when asked (``generators.prices``).

``BudgetReached`` records why a run stopped, not what it did: re-running a branch never produces
it, so resume steps over it and replay leaves it out of the comparison (``RUN_MARKS``, with
``RunSegmentStarted``: where a segment of the run began, on which release).
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


class BudgetReached(Event):
    """A run stopped before a call whose worst case would have taken its spending past ``--budget``."""

    limit_usd: float
    spent_usd: float  # spent by this budget's branches before the call
    call_worst_usd: float  # the most the call that was not made could have cost
    kind: CallKind
    backend: str
    model: str
    agent: str | None = None
    request_key: str


RUN_MARKS = ("BudgetReached", "RunSegmentStarted")  # about a run, not part of what it did


class ProviderJobSubmitted(Event):
    """A hosted provider accepted a job for the call ``request_key``; its result is not collected yet.

    Written right after the submit answers and before any polling (``generators.jobs``), so whoever
    finds it (resume, a retried worker, another machine) collects this job instead of paying for a
    second one. ``ticket`` says where the job lives and holds no secret (no key, header or signed URL).
    """

    kind: CallKind
    backend: str
    model: str
    request_key: str
    ticket: dict[str, Any]


class ProviderJobLost(Event):
    """The provider no longer knew a job recorded as submitted (expired, purged, its server restarted):
    the job is submitted again, the only case in which a recorded job is."""

    request_key: str
    job_id: str
    server: str | None = None
    reason: str


JOB_EVENTS = ("ProviderJobSubmitted", "ProviderJobLost")

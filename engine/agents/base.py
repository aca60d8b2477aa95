"""Asking an agent: build the request, call the VLM through the recorder, validate, retry.

Invariant: an answer is used only if it parses into the agent's output model AND passes the
semantic check. Each rejected answer is recorded (``AgentOutputRejected``) with its problems,
which are fed back in the next request together with the attempt number (so the retry is a new
request, never a cached one). Rejections of answers that came from the recording do not count
against the bound, so ``resume`` gets a fresh set of live attempts after a failure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from codirector.engine.agents.prompts import feedback_note
from codirector.engine.agents.schemas import strict_schema
from codirector.engine.recording.recorder import CallRecorder
from codirector.engine.recording.writer import RunWriter
from codirector.errors import AgentOutputInvalid
from codirector.events import AgentOutputRejected, RecordedEvent
from codirector.generators.base import ImageInput, VLMRequest

T = TypeVar("T", bound=BaseModel)

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


@dataclass
class AgentContext:
    """What an agent call needs from the run: the recorder, the writer, and the retry bound."""

    recorder: CallRecorder
    writer: RunWriter
    attempts: int = 3


def parse_answer(raw: str, output: type[T]) -> tuple[T | None, list[str]]:
    """The answer as ``output``, or the problems with it (as instructions)."""
    match = _FENCE.match(raw)
    text = match.group(1) if match else raw
    try:
        return output.model_validate_json(text), []
    except ValidationError as e:
        problems = []
        for err in e.errors()[:8]:
            if err["type"] == "json_invalid":
                problems.append(f"the answer is not valid JSON ({err['msg']}); answer with one JSON object only")
                break
            where = ".".join(str(p) for p in err["loc"]) or "the answer"
            got = err.get("input")
            shown = f" (got {got!r})" if got is not None and not isinstance(got, dict | list) else ""
            problems.append(f"{where}: {err['msg']}{shown}")
        return None, problems


def ask(
    ctx: AgentContext,
    *,
    agent: str,
    system: str,
    user: str,
    output: type[T],
    check: Callable[[T], list[str]],
    shot: int | None,
    images: Sequence[ImageInput] = (),
    plan: dict[str, Any] | None = None,
) -> tuple[T, RecordedEvent]:
    """The agent's validated answer and the call that produced it."""
    schema = strict_schema(output)
    errors: list[str] = []
    attempt = 0
    live_rejections = 0
    while True:
        attempt += 1
        request = VLMRequest(
            agent=agent, system=system, user=user + (feedback_note(errors, attempt) if errors else ""),
            images=tuple(images), schema_name=output.__name__, json_schema=schema, hints=plan or {},
        )
        live_before = ctx.recorder.stats.live
        raw, call = ctx.recorder.vlm(request, shot=shot)
        answer, errors = parse_answer(raw, output)
        if answer is not None:
            errors = check(answer)
            if not errors:
                return answer, call
        ctx.writer.one(AgentOutputRejected(agent=agent, attempt=attempt, errors=errors, raw_output=raw[:4000],
                                           request_key=call.payload["request_key"]).at(shot))
        if ctx.recorder.stats.live > live_before:
            live_rejections += 1
        if live_rejections >= ctx.attempts:
            raise AgentOutputInvalid(
                f"the {agent} gave {attempt} unusable answers for shot {shot}; the last: {errors[0]}",
                hint="nothing was written to memory; check the model (`codirector log STORY --type "
                "AgentOutputRejected`) and run `codirector resume` to try again",
            )

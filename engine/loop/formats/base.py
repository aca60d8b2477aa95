"""What every story format shares: its description, and errors that name format, file and place.

A format is a pair of pure functions over parsed data: ``detect(data) -> bool`` and
``convert(data, source, folder) -> dict`` (our schema, as plain data). Invariant: a format never
reads image bytes and never imports the story schema; ``engine.loop.story`` validates what it
returns and reads the files it names, the same way for every format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codirector.errors import StoryFileError

Converter = Callable[[dict[str, Any], str, Path], dict[str, Any]]


@dataclass(frozen=True)
class StoryFormat:
    """A story layout codirector reads: its name, how it is recognised, and its converter."""

    name: str
    label: str            # for messages: "StoryMem ST-Bench JSON"
    recognised_by: str    # for the "unknown layout" message: what makes a file this format
    detect: Callable[[dict[str, Any]], bool]
    convert: Converter
    aliases: tuple[str, ...] = ()


def fail(fmt: StoryFormat, source: str, where: str, problem: str, *, hint: str | None = None) -> StoryFileError:
    """A ``StoryFileError`` naming the file, the place in it, the problem and the format tried."""
    return StoryFileError(f"{source}: {where}: {problem} (read as {fmt.label})",
                          hint=hint or f"fix the file, or name another layout with --format ({fmt.name} was tried)")


def text_at(fmt: StoryFormat, source: str, where: str, value: Any, expected: str) -> str:
    """``value`` as a non-empty prompt, or the error that says what was expected there."""
    if not isinstance(value, str) or not value.strip():
        got = "nothing" if value is None else f"{type(value).__name__} {value!r}"[:120]
        raise fail(fmt, source, where, f"expected {expected}, got {got}")
    if any(ord(c) < 32 and c not in "\n\t\r" for c in value):
        raise fail(fmt, source, where, "must not contain control characters")
    return " ".join(value.split())


def list_at(fmt: StoryFormat, source: str, where: str, value: Any, expected: str) -> list[Any]:
    """``value`` as a non-empty list, or the error that says what was expected there."""
    if not isinstance(value, list) or not value:
        got = "nothing" if value is None else ("an empty list" if value == [] else type(value).__name__)
        raise fail(fmt, source, where, f"expected {expected}, got {got}")
    return value

"""Story formats: the layouts of the field, found by content and read into our story schema.

``read_story_data(path, format=None)`` parses a story file (or a ViStoryBench story folder), picks
its format (the one named, else the first of ``FORMATS`` whose ``detect`` accepts the data) and
converts it to our schema as plain data, with the folder its file paths are relative to.

Invariants: detection looks at content only, never at the file name, and the order of ``FORMATS``
makes it unambiguous (ViStoryBench's ``Characters``+``Shots``, then ST-Bench's ``scenes``, then
ours); an unknown layout is an error that lists every format read and how each is recognised;
every error names the file and, once a format is chosen, that format.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from codirector.engine.loop.formats import native, stbench, vistorybench
from codirector.engine.loop.formats.base import StoryFormat
from codirector.errors import StoryFileError, did_you_mean

FORMATS: tuple[StoryFormat, ...] = (vistorybench.FORMAT, stbench.FORMAT, native.FORMAT)
NATIVE = native.FORMAT.name
STORY_SUFFIXES = (".yaml", ".yml", ".json")
FOLDER_STORY = "story.json"  # what makes a folder one ViStoryBench story


@dataclass(frozen=True)
class StoryData:
    """A story read and converted: data in our schema, the format it came in, where its files are."""

    data: Any
    format: str
    path: Path       # the file read (``story.json`` inside a story folder)
    folder: Path     # reference paths in ``data`` are relative to it


def format_named(name: str) -> StoryFormat:
    """The format called ``name`` (or one of its aliases)."""
    for fmt in FORMATS:
        if name.lower() in (fmt.name, *fmt.aliases):
            return fmt
    raise StoryFileError(f"unknown story format {name!r}",
                         hint=did_you_mean(name.lower(), [f.name for f in FORMATS], "format") +
                         "; formats read: " + ", ".join(f.name for f in FORMATS))


def is_story_path(path: Path) -> bool:
    """A story file by suffix, or a folder holding one story (``story.json``)."""
    if path.is_dir():
        return (path / FOLDER_STORY).is_file()
    return path.is_file() and path.suffix.lower() in STORY_SUFFIXES


def _story_file(path: Path) -> Path:
    if not path.exists():
        raise StoryFileError(f"story file {path} does not exist",
                             hint="give the path to a .yaml or .json story, or a ViStoryBench story folder "
                                  "(see examples/stories/)")
    if not path.is_dir():
        return path
    if (path / FOLDER_STORY).is_file():
        return path / FOLDER_STORY
    inside = sorted(p.name for p in path.iterdir() if is_story_path(p))
    if inside:
        count = f"{len(inside)} stories" if len(inside) > 1 else "one story"
        raise StoryFileError(f"{path} is a folder of {count} ({', '.join(inside[:4])}"
                             f"{', ...' if len(inside) > 4 else ''}), not a story itself",
                             hint=f"run one of them (codirector run {path / inside[0]}), or all of them with "
                                  f"`codirector bench {path}`")
    raise StoryFileError(f"{path} is a folder without a {FOLDER_STORY}",
                         hint="a ViStoryBench story folder holds story.json and image/<character>/; "
                              "otherwise give a .yaml or .json story file")


def _parse(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (UnicodeDecodeError, OSError) as e:
        raise StoryFileError(f"{path} is not a readable text file ({e})") from None
    as_json = path.suffix.lower() == ".json"
    try:
        return json.loads(text) if as_json else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        if isinstance(e, json.JSONDecodeError):
            where, problem = f" at line {e.lineno}, column {e.colno}", e.msg
        else:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(e, "problem", None) or str(e)
        raise StoryFileError(f"{path} is not valid {'JSON' if as_json else 'YAML'}{where}: {problem}",
                             hint="fix the syntax (see examples/stories/ for the format)") from None


def detect_format(data: Any) -> StoryFormat | None:
    """The first format whose content test accepts ``data``."""
    if not isinstance(data, dict):
        return None
    return next((f for f in FORMATS if f.detect(data)), None)


def read_story_data(path: str | os.PathLike[str], story_format: str | None = None) -> StoryData:
    """Parse, detect (or take ``story_format``) and convert a story; ``StoryFileError`` on any problem."""
    given = Path(path)
    file = _story_file(given)
    data = _parse(file)
    fmt = format_named(story_format) if story_format else detect_format(data)
    if fmt is None:
        shape = (f"top-level keys: {', '.join(map(str, list(data)[:8]))}" if isinstance(data, dict) and data
                 else f"a {type(data).__name__}" if data is not None else "empty")
        listing = "; ".join(f"{f.name} ({f.label}): {f.recognised_by}" for f in FORMATS)
        raise StoryFileError(f"{file}: unknown story layout ({shape}); codirector reads: {listing}",
                             hint="reshape the file into one of these, or name the intended one with --format "
                                  "NAME to see what it lacks")
    looks_like = detect_format(data)
    if story_format and looks_like is not None and looks_like is not fmt and not fmt.detect(data):
        raise StoryFileError(f"{file}: (top level): expected {fmt.recognised_by} (read as {fmt.label})",
                             hint=f"the content looks like {looks_like.label}: drop --format, or use "
                                  f"--format {looks_like.name}")
    if fmt.name != NATIVE and not isinstance(data, dict):
        raise StoryFileError(f"{file}: (top level): expected a mapping, got {type(data).__name__} "
                             f"(read as {fmt.label})")
    converted = fmt.convert(data, str(file), file.parent) if isinstance(data, dict) else data
    return StoryData(converted, fmt.name, file, file.parent)


__all__ = ["FORMATS", "NATIVE", "STORY_SUFFIXES", "StoryData", "StoryFormat", "detect_format", "format_named",
           "is_story_path", "read_story_data"]

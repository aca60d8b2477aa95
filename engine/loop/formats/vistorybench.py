"""ViStoryBench stories (a folder with ``story.json`` and ``image/<character>/``), read into our schema.

The layout, as ViStoryBench's README and its loader (``dataset_load.py``) define it: one folder per
story holding ``story.json`` with ``Story_type`` ({en, ch}), ``Characters`` (key -> ``name_en``,
``prompt_en``, ``tag``, ...) and ``Shots`` (each with ``Setting Description``, ``Plot
Correspondence``, ``Characters Appearing``, ``Static Shot Description`` and ``Shot Perspective
Design``, every one a {en, ch} mapping), and each character's reference images under
``image/<character key>/`` (png/jpg/jpeg, sorted, sub-folders included).

Invariants: the characters become the ``cast`` (description = ``prompt_en``; the first image is the
reference, up to ``MAX_VIEWS - 1`` more become extra views), in the file's order; each shot uses the
characters it lists, plus one ``bg_`` place per setting (shots whose settings name the same place
share it), with at most ``MAX_NEW_ENTITIES`` not yet in memory (a character with an image is in
memory from the start); a shot's keyframe prompt is its static description, camera and setting, its motion
prompt is the plot. English fields are read (a plain string is accepted too); a character a shot
lists but ``Characters`` lacks is an error, never skipped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from codirector.engine.agents.schemas import MAX_NEW_ENTITIES
from codirector.engine.loop.formats.base import StoryFormat, fail, list_at, text_at
from codirector.engine.loop.plan_text import cap_new_per_shot, setting_name
from codirector.errors import did_you_mean

LANGUAGE = "en"
MAX_VIEWS = 4
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SHOT_FIELDS = ("Setting Description", "Plot Correspondence", "Characters Appearing", "Static Shot Description",
               "Shot Perspective Design")


def detect(data: dict[str, Any]) -> bool:
    return isinstance(data.get("Shots"), list) and isinstance(data.get("Characters"), dict)


def character_images(folder: Path, key: str) -> list[str]:
    """The reference images of a character, relative to the story folder, in the loader's order."""
    root = folder / "image" / key
    found: list[str] = []
    for here, dirs, files in os.walk(root):
        dirs.sort()
        found.extend(str((Path(here) / f).relative_to(folder)) for f in sorted(files)
                     if f.lower().endswith(IMAGE_SUFFIXES))
    return found


def _field(source: str, where: str, value: Any, expected: str) -> Any:
    """The English side of a {en, ch} field (or a plain value)."""
    if isinstance(value, dict):
        if LANGUAGE not in value:
            keys = ", ".join(map(str, value)) or "none"
            raise fail(FORMAT, source, where, f"has no `{LANGUAGE}` entry (keys: {keys})",
                       hint=f"codirector reads the English fields; add `{LANGUAGE}`: {expected}")
        return value[LANGUAGE]
    return value


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else text + "."


def _cast(data: dict[str, Any], source: str, folder: Path) -> list[dict[str, Any]]:
    characters = data.get("Characters")
    if not isinstance(characters, dict) or not characters:
        got = "nothing" if characters is None else type(characters).__name__
        raise fail(FORMAT, source, "Characters", f"expected a mapping of character key -> {{name_{LANGUAGE}, "
                   f"prompt_{LANGUAGE}, ...}}, got {got}")
    cast: list[dict[str, Any]] = []
    for key, info in characters.items():
        name = str(key).strip()
        where = f"Characters[{key!r}]"
        if not name:
            raise fail(FORMAT, source, where, "a character needs a non-empty key (its English name)")
        if not isinstance(info, dict):
            raise fail(FORMAT, source, where, f"expected a mapping with `prompt_{LANGUAGE}`, got {type(info).__name__}")
        description = text_at(FORMAT, source, f"{where}.prompt_{LANGUAGE}", info.get(f"prompt_{LANGUAGE}"),
                              "the character's description (text)")
        member: dict[str, Any] = {"name": name, "kind": "character", "description": description}
        images = character_images(folder, str(key))
        if images:
            member["reference"] = images[0]
            if len(images) > 1:
                member["extra_views"] = images[1:MAX_VIEWS]
        cast.append(member)
    return cast


def convert(data: dict[str, Any], source: str, folder: Path) -> dict[str, Any]:
    cast = _cast(data, source, folder)
    known = [m["name"] for m in cast]
    places: dict[str, dict[str, Any]] = {}
    shots: list[dict[str, Any]] = []
    plots: list[str] = []
    for i, shot in enumerate(list_at(FORMAT, source, "Shots", data.get("Shots"), "a list of shots")):
        where = f"Shots[{i}] (shot {i + 1})"
        if not isinstance(shot, dict):
            raise fail(FORMAT, source, where, f"expected a shot (a mapping), got {type(shot).__name__}")
        missing = [f for f in SHOT_FIELDS if f not in shot]
        if missing:
            raise fail(FORMAT, source, where, "missing " + ", ".join(f"`{f}`" for f in missing),
                       hint="every shot gives " + ", ".join(SHOT_FIELDS))
        text = {f: text_at(FORMAT, source, f"{where}.{f}", _field(source, f"{where}.{f}", shot[f], "text"), "text")
                for f in SHOT_FIELDS if f != "Characters Appearing"}
        listed = _field(source, f"{where}.Characters Appearing", shot["Characters Appearing"], "a list of names")
        if not isinstance(listed, list):
            raise fail(FORMAT, source, f"{where}.Characters Appearing.{LANGUAGE}",
                       f"expected a list of character names, got {type(listed).__name__}")
        uses: list[str] = []
        for j, raw in enumerate(listed):
            name = str(raw).strip()
            if name not in known:
                raise fail(FORMAT, source, f"{where}.Characters Appearing.{LANGUAGE}[{j}]",
                           f"{name!r} is not a key of `Characters`", hint=did_you_mean(name, known, "character"))
            if name not in uses:
                uses.append(name)
        setting = text["Setting Description"]
        bg = setting_name(setting)
        places.setdefault(bg, {"name": bg, "kind": "background", "description": setting})
        shots.append({"keyframe": " ".join(_sentence(text[f]) for f in ("Static Shot Description",
                                                                           "Shot Perspective Design",
                                                                           "Setting Description")),
                      "motion": text["Plot Correspondence"], "uses": [*uses, bg]})
        plots.append(_sentence(text["Plot Correspondence"]))
    # the memory controller's limit on new entities per shot; characters with an image are known from the start
    capped = cap_new_per_shot([s["uses"] for s in shots], MAX_NEW_ENTITIES,
                              known={m["name"] for m in cast if m.get("reference")})
    for shot, used in zip(shots, capped, strict=True):
        shot["uses"] = used
    title = f"ViStoryBench story {folder.name}"
    kind = data.get("Story_type")
    kind = kind.get(LANGUAGE) if isinstance(kind, dict) else kind
    if isinstance(kind, str) and kind.strip():
        title += f" ({kind.strip()})"
    return {"title": title, "story": " ".join(plots), "cast": [*cast, *places.values()], "shots": shots}


FORMAT = StoryFormat(
    name="vistorybench", label="ViStoryBench story", aliases=("vistory",),
    recognised_by="`Characters` (a mapping) and `Shots` (a list), in a folder's story.json with image/<character>/",
    detect=detect, convert=convert,
)

"""StoryMem's ST-Bench story scripts (JSON), read into our story schema.

The layout, as StoryMem's README ("ST-Bench", field instructions) and its pipeline define it:
``story_name``, ``story_overview`` and ``scenes``: a list of ``{scene_num, video_prompts: [...],
first_frame_prompt: [...], cut: [...]}``, where ``video_prompts[i]`` is a shot's motion prompt,
``first_frame_prompt[i]`` its keyframe prompt and ``cut[i]`` whether it starts with a cut (``true``
or the strings ``"True"``/``"False"``).

Invariant: one shot per (video prompt, first-frame prompt) pair, in scene order then list order;
the overview becomes the story text; ``cut`` is kept on the shot. A scene without
``first_frame_prompt`` (older scripts) uses each video prompt as the keyframe prompt too; lists of
different lengths are an error, never silently truncated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codirector.engine.loop.formats.base import StoryFormat, fail, list_at, text_at


def detect(data: dict[str, Any]) -> bool:
    scenes = data.get("scenes")
    return isinstance(scenes, list) and (
        "story_overview" in data or "story_name" in data
        or any(isinstance(s, dict) and "video_prompts" in s for s in scenes))


def _flag(source: str, where: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise fail(FORMAT, source, where, f"expected true or false (or \"True\"/\"False\"), got {value!r}"[:200])


def convert(data: dict[str, Any], source: str, folder: Path) -> dict[str, Any]:
    scenes = list_at(FORMAT, source, "scenes", data.get("scenes"),
                     "a list of scenes, each with `video_prompts`, `first_frame_prompt` and `cut`")
    shots: list[dict[str, Any]] = []
    for i, scene in enumerate(scenes):
        label = f"scenes[{i}]"
        if not isinstance(scene, dict):
            raise fail(FORMAT, source, label, f"expected a scene (a mapping with `video_prompts`), got "
                       f"{type(scene).__name__}")
        label += f" (scene {scene.get('scene_num', i + 1)})"
        prompts = list_at(FORMAT, source, f"{label}.video_prompts", scene.get("video_prompts"),
                          "a list of video prompts (one motion prompt per shot)")
        firsts = scene.get("first_frame_prompt")
        cuts = scene.get("cut")
        for key, values in (("first_frame_prompt", firsts), ("cut", cuts)):
            if values is not None and (not isinstance(values, list) or len(values) != len(prompts)):
                size = f"{len(values)} entries" if isinstance(values, list) else type(values).__name__
                raise fail(FORMAT, source, f"{label}.{key}", f"expected a list of {len(prompts)} entries, one per "
                           f"video prompt, got {size}", hint="give one entry per video prompt, in the same order")
        for j, prompt in enumerate(prompts):
            shot = len(shots) + 1
            motion = text_at(FORMAT, source, f"{label}.video_prompts[{j}] (shot {shot})", prompt,
                             "a motion prompt (text)")
            keyframe = motion if firsts is None else text_at(
                FORMAT, source, f"{label}.first_frame_prompt[{j}] (shot {shot})", firsts[j], "a keyframe prompt (text)")
            entry: dict[str, Any] = {"keyframe": keyframe, "motion": motion}
            if cuts is not None:
                entry["cut"] = _flag(source, f"{label}.cut[{j}] (shot {shot})", cuts[j])
            shots.append(entry)
    out: dict[str, Any] = {"title": Path(source).stem, "shots": shots}
    name, overview = data.get("story_name"), data.get("story_overview")
    if name is not None:
        out["title"] = text_at(FORMAT, source, "story_name", name, "the story's name (text)")
    if overview is not None:
        out["story"] = text_at(FORMAT, source, "story_overview", overview, "a summary of the story (text)")
    return out


FORMAT = StoryFormat(
    name="st-bench", label="StoryMem ST-Bench JSON", aliases=("stbench", "storymem"),
    recognised_by="`scenes: [{video_prompts, first_frame_prompt, cut}]` with `story_name`/`story_overview`",
    detect=detect, convert=convert,
)

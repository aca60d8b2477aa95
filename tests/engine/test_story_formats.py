"""The field's story formats (StoryMem's ST-Bench JSON, ViStoryBench folders) read by content, their
errors, and the offline plan the preview derives for a story that declares no cast.

Every story here is written by the test, in our own words, in the shape each format documents.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from codirector.cli import app
from codirector.engine.evaluation.bench import story_files
from codirector.engine.loop.derived_plan import PLAN_DERIVED, derive_plan, needs_derived_plan
from codirector.engine.loop.formats import FORMATS, read_story_data
from codirector.engine.loop.story import default_story_id, read_story
from codirector.engine.studio import Studio
from codirector.errors import StoryFileError
from codirector.generators.base import Backends, ImageInput, ImageRequest
from codirector.generators.preview import AnimaticVideoGenerator, PreviewVLM, StoryboardImageGenerator

from support import HashEmbedder, fast_config, png_bytes, tiny_preview_config

# ---------------------------------------------------------------------------- test stories

KITE_SCENES: list[dict[str, Any]] = [
    {"scene_num": 1, "cut": [True, False, True, False],
     "first_frame_prompt": [
         "Lena, a woman in her forties with cropped silver hair and a paint-stained denim apron, sits at a long "
         "bench in her cluttered workshop, gluing paper to a bamboo frame.",
         "Oskar, a freckled boy of ten in a yellow raincoat, peers through the open door of the workshop.",
         "Close-up of the half-finished red kite on the bench in the workshop, Lena's hands tying the tail.",
         "Lena and Oskar carry the red kite out of the workshop together, medium shot."],
     "video_prompts": [
         "Lena smooths the paper over the frame and hums to herself.",
         "Oskar knocks twice and steps inside; Lena waves him over.",
         "Lena ties a knot in the ribbon tail while Oskar holds the string.",
         "They walk out into the morning light, the kite held high between them."]},
    {"scene_num": 2, "cut": [True, False, False, False, "False"],
     "first_frame_prompt": [
         "Wide shot of a grassy cliff above the sea, wind bending the grass, Lena and Oskar climbing the path.",
         "Oskar on the windy cliff top, holding the kite string with both hands, the kite rising behind him.",
         "Lena kneels beside Oskar on the cliff, pointing at the kite overhead, medium shot.",
         "The red kite dips and spins above the cliff, Oskar's face tense, close-up.",
         "The kite lies in the grass on the cliff with a torn wing; Oskar kneels over it, close to tears."],
     "video_prompts": [
         "Oskar runs ahead up the path while Lena follows with the kite.",
         "The kite climbs into the sky as Oskar lets out more string; Lena claps.",
         "Lena shows Oskar how to tug the string to steady it.",
         "Oskar pulls hard on the string but the kite tumbles toward the grass.",
         "Lena puts a hand on Oskar's shoulder and picks up the broken kite."]},
    {"scene_num": 3, "cut": ["True", False, True],
     "first_frame_prompt": [
         "Back in the workshop at dusk, Lena and Oskar patch the torn kite by lamplight.",
         "Oskar proudly holding the mended kite at the workshop door, Lena smiling behind him.",
         "Wide shot: the mended red kite flying high over the cliff at sunset, Lena and Oskar small figures below."],
     "video_prompts": [
         "Oskar holds the paper still while Lena brushes glue along the tear.",
         "Oskar turns the kite in his hands, admiring the patch.",
         "The camera tilts up to follow the kite as it soars."]},
]


def kite_story(**extra: Any) -> dict[str, Any]:
    """A 12-shot ST-Bench-shaped script: two recurring characters, two places, one prop, no cast."""
    return {"story_name": "The Kite Maker",
            "story_overview": "A kite maker and the boy next door build a red kite, lose it to the wind on the "
                              "cliff, and mend it together.",
            "scenes": json.loads(json.dumps(KITE_SCENES)), **extra}


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def vistory_story(folder: Path, *, images: dict[str, int] | None = None) -> Path:
    """A ViStoryBench-shaped story folder: story.json plus image/<character>/ reference images."""
    data = {
        "Story_type": {"en": "Picture book", "ch": "绘本"},
        "Characters": {
            "Pim": {"name_en": "Pim", "name_ch": "皮姆", "tag": "non_human", "num_of_appearances": 3,
                    "prompt_en": "a small green tortoise with a chipped shell and a red knitted scarf"},
            "Odile": {"name_en": "Odile", "name_ch": "奥黛尔", "tag": "realistic_human", "num_of_appearances": 2,
                      "prompt_en": "a tall postwoman in a blue cap carrying a leather satchel"},
        },
        "Shots": [
            {"index": 1, "Setting Description": {"en": "A vegetable garden behind a stone cottage, early morning"},
             "Plot Correspondence": {"en": "Pim wakes up under a cabbage leaf"},
             "Characters Appearing": {"en": ["Pim"], "ch": ["皮姆"]},
             "Static Shot Description": {"en": "Pim blinks beneath a huge cabbage leaf dotted with dew"},
             "Shot Perspective Design": {"en": "Close-up, ground level"}},
            {"index": 2, "Setting Description": {"en": "The vegetable garden, by the gate"},
             "Plot Correspondence": {"en": "Odile arrives with a parcel addressed to Pim"},
             "Characters Appearing": {"en": ["Odile", "Pim "], "ch": ["奥黛尔", "皮姆"]},
             "Static Shot Description": {"en": "Odile leans over the gate holding out a small parcel"},
             "Shot Perspective Design": {"en": "Medium shot"}},
            {"index": 3, "Setting Description": {"en": "A narrow lane lined with hedges"},
             "Plot Correspondence": {"en": "Pim follows Odile down the lane"},
             "Characters Appearing": {"en": ["Pim", "Odile"], "ch": ["皮姆", "奥黛尔"]},
             "Static Shot Description": {"en": "Pim plods after Odile between tall hedges"},
             "Shot Perspective Design": {"en": "Wide shot, eye level"}},
        ],
    }
    write_json(folder / "story.json", data)
    colours = {"Pim": (20, 160, 60), "Odile": (30, 60, 200)}
    for name, count in (images if images is not None else {"Pim": 2, "Odile": 1}).items():
        for k in range(count):
            target = folder / "image" / name / f"{k:02d}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(png_bytes(colours[name], mark=8 * k))
    return folder


def preview_backends() -> Backends:
    """The real preview agents and generators, with the tests' fast hash embedder."""
    return Backends(vlm=PreviewVLM(), image=StoryboardImageGenerator(), video=AnimaticVideoGenerator(),
                    embedder=HashEmbedder())


def error_of(path: Path, story_format: str | None = None) -> StoryFileError:
    with pytest.raises(StoryFileError) as info:
        read_story(path, story_format)
    return info.value


# ---------------------------------------------------------------------------- ST-Bench


def test_st_bench_gives_one_shot_per_prompt_pair_in_order_with_cut(tmp_path: Path) -> None:
    story = read_story(write_json(tmp_path / "kites.json", kite_story()))
    spec = story.spec
    assert story.format == "st-bench" and spec.title == "The Kite Maker"
    assert spec.story is not None and spec.story.startswith("A kite maker and the boy next door")
    firsts = [p for s in KITE_SCENES for p in s["first_frame_prompt"]]
    motions = [p for s in KITE_SCENES for p in s["video_prompts"]]
    assert len(spec.shots) == 12
    assert [s.keyframe for s in spec.shots] == firsts and [s.motion for s in spec.shots] == motions
    assert [s.cut for s in spec.shots] == [True, False, True, False, True, False, False, False, False, True, False,
                                           True]
    assert spec.cast == [] and all(s.uses == [] for s in spec.shots)


def test_st_bench_without_first_frame_prompts_uses_the_video_prompt_and_is_found_in_yaml(tmp_path: Path) -> None:
    data = {"story_name": "Two beats", "scenes": [{"scene_num": 1, "video_prompts": ["A door opens.", "It shuts."]}]}
    path = tmp_path / "beats.yaml"
    path.write_text(yaml.safe_dump(data))
    spec = read_story(path).spec
    assert [(s.keyframe, s.motion, s.cut) for s in spec.shots] == [("A door opens.", "A door opens.", None),
                                                                   ("It shuts.", "It shuts.", None)]


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d["scenes"][1].update(cut=[True, False]),
     "kites.json: scenes[1] (scene 2).cut: expected a list of 5 entries, one per video prompt, got 2 entries "
     "(read as StoryMem ST-Bench JSON)"),
    (lambda d: d["scenes"][2]["video_prompts"].__setitem__(1, "  "),
     "kites.json: scenes[2] (scene 3).video_prompts[1] (shot 11): expected a motion prompt (text), got str '  '"),
    (lambda d: d["scenes"][0]["cut"].__setitem__(2, "maybe"),
     "kites.json: scenes[0] (scene 1).cut[2] (shot 3): expected true or false"),
    (lambda d: d["scenes"][0].pop("video_prompts"),
     "kites.json: scenes[0] (scene 1).video_prompts: expected a list of video prompts (one motion prompt per shot), "
     "got nothing"),
])
def test_broken_st_bench_names_file_place_and_fix(tmp_path: Path, change: Any, expected: str) -> None:
    data = kite_story()
    change(data)
    err = error_of(write_json(tmp_path / "kites.json", data))
    assert expected in err.message and err.hint  # the file, the place, what was expected, and the fix


# ---------------------------------------------------------------------------- ViStoryBench


def test_vistorybench_folder_gives_cast_with_images_and_shots(tmp_path: Path) -> None:
    folder = vistory_story(tmp_path / "07")
    story = read_story(folder)
    spec = story.spec
    assert story.format == "vistorybench" and story.path == folder / "story.json"
    assert spec.title == "ViStoryBench story 07 (Picture book)"
    characters = [m for m in spec.cast if m.kind == "character"]
    assert [(m.name, m.description) for m in characters] == [
        ("Pim", "a small green tortoise with a chipped shell and a red knitted scarf"),
        ("Odile", "a tall postwoman in a blue cap carrying a leather satchel")]
    assert characters[0].reference == "image/Pim/00.png" and characters[0].extra_views == ["image/Pim/01.png"]
    assert story.images["Pim"] == [png_bytes((20, 160, 60), mark=0), png_bytes((20, 160, 60), mark=8)]
    assert story.images["Odile"] == [png_bytes((30, 60, 200), mark=0)]
    assert len(spec.shots) == 3
    assert spec.shots[1].keyframe == ("Odile leans over the gate holding out a small parcel. Medium shot. "
                                      "The vegetable garden, by the gate.")
    assert spec.shots[1].motion == "Odile arrives with a parcel addressed to Pim"
    # the characters each shot lists, and one place per setting (the garden twice, then the lane)
    assert [s.uses for s in spec.shots] == [["Pim", "bg_garden"], ["Odile", "Pim", "bg_garden"],
                                            ["Pim", "Odile", "bg_lane"]]
    assert {m.name: m.kind for m in spec.cast if m.name.startswith("bg_")} == {"bg_garden": "background",
                                                                               "bg_lane": "background"}
    assert read_story(folder / "story.json").spec == spec  # the file itself reads the same
    assert default_story_id(folder, spec) == "07" and default_story_id(folder / "story.json", spec) == "07"


def test_broken_vistorybench_names_file_place_and_fix(tmp_path: Path) -> None:
    folder = vistory_story(tmp_path / "08")
    data = json.loads((folder / "story.json").read_text())
    data["Shots"][2]["Characters Appearing"]["en"] = ["Pim", "Odille"]
    write_json(folder / "story.json", data)
    err = error_of(folder)
    assert "08/story.json: Shots[2] (shot 3).Characters Appearing.en[1]: 'Odille' is not a key of `Characters` " \
           "(read as ViStoryBench story)" in err.message
    assert "did you mean 'Odile'" in str(err.hint)

    del data["Shots"][0]["Plot Correspondence"]
    write_json(folder / "story.json", data)
    err = error_of(folder)
    assert "Shots[0] (shot 1): missing `Plot Correspondence`" in err.message and "every shot gives" in str(err.hint)


def test_a_folder_of_stories_or_no_story_says_what_to_do(tmp_path: Path) -> None:
    vistory_story(tmp_path / "set" / "01")
    vistory_story(tmp_path / "set" / "02", images={})
    err = error_of(tmp_path / "set")
    assert "is a folder of 2 stories (01, 02), not a story itself" in err.message
    assert "codirector bench" in str(err.hint)
    (tmp_path / "empty").mkdir()
    assert "without a story.json" in error_of(tmp_path / "empty").message


# ---------------------------------------------------------------------------- detection and --format


def test_unknown_layout_lists_the_formats_read(tmp_path: Path) -> None:
    err = error_of(write_json(tmp_path / "odd.json", {"episodes": [{"text": "a"}]}))
    assert "odd.json: unknown story layout (top-level keys: episodes)" in err.message
    for fmt in FORMATS:
        assert f"{fmt.name} ({fmt.label})" in err.message
    err = error_of(write_json(tmp_path / "list.json", [1, 2]))
    assert "unknown story layout (a list)" in err.message


def test_format_option_names_the_format_tried(tmp_path: Path) -> None:
    path = write_json(tmp_path / "kites.json", kite_story())
    err = error_of(path, "vistorybench")
    assert "kites.json: (top level): expected `Characters` (a mapping) and `Shots` (a list)" in err.message
    assert err.message.endswith("(read as ViStoryBench story)")
    assert err.hint == "the content looks like StoryMem ST-Bench JSON: drop --format, or use --format st-bench"
    err = error_of(path, "codirector")
    assert "(read as a codirector story)" in err.message and "--format st-bench" in str(err.hint)
    # a file that is none of them, forced: the format's own checks say what is missing
    odd = write_json(tmp_path / "odd.json", {"Characters": {"Ann": {"prompt_en": "a girl"}}})
    err = error_of(odd, "vistorybench")
    assert "odd.json: Shots: expected a list of shots, got nothing (read as ViStoryBench story)" in err.message
    assert read_story(path, "storymem").format == "st-bench"  # an alias
    with pytest.raises(StoryFileError, match="unknown story format 'st_bench'") as info:
        read_story(path, "st_bench")
    assert "did you mean 'st-bench'" in str(info.value.hint)


def test_our_own_files_are_still_found_and_keep_their_messages(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"title": "T", "shots": [{"keyframe": "k", "motion": "m", "cut": False}]}))
    story = read_story(path)
    assert story.format == "codirector" and story.spec.shots[0].cut is False
    assert read_story_data(path).data["title"] == "T"
    path.write_text(yaml.safe_dump({"title": "T", "shots": [{"keyframe": "k"}]}))
    err = error_of(path)
    assert "mine.yaml: shots[0].motion (shot 1): missing; expected a motion prompt" in err.message
    assert err.message.endswith("(read as a codirector story)")


# ---------------------------------------------------------------------------- the derived plan


def test_derived_plan_reads_recurring_characters_places_and_props(tmp_path: Path) -> None:
    spec = read_story(write_json(tmp_path / "kites.json", kite_story())).spec
    assert needs_derived_plan(spec, "preview") and not needs_derived_plan(spec, "openai")
    derived, notes = derive_plan(spec)
    cast = {m.name: m for m in derived.cast}
    assert {n: m.kind for n, m in cast.items()} == {"Lena": "character", "Oskar": "character",
                                                    "bg_workshop": "background", "bg_cliff": "background",
                                                    "kite": "prop"}
    assert cast["Lena"].description == ("a woman in her forties with cropped silver hair and a paint-stained denim "
                                        "apron")
    assert cast["Oskar"].description == "a freckled boy of ten in a yellow raincoat"
    assert cast["bg_cliff"].description == "a grassy cliff"
    uses = [s.uses for s in derived.shots]
    assert uses[0] == ["Lena", "bg_workshop"]
    assert uses[1] == ["Oskar", "Lena", "bg_workshop"]
    assert uses[7] == ["Oskar", "bg_cliff", "kite"]   # Lena is not in shot 8's text
    assert uses[11] == ["Lena", "Oskar", "bg_cliff", "kite"]
    assert all(not s.evolves for s in derived.shots)
    assert [s.keyframe for s in derived.shots] == [s.keyframe for s in spec.shots]
    assert derive_plan(spec) == (derived, notes)  # deterministic
    assert PLAN_DERIVED in notes[0] and "2 characters (Lena, Oskar)" in notes[0]
    assert "appearance changes are not derived" in notes[1]


def test_a_shot_without_a_cut_keeps_the_previous_place_and_new_entities_stay_within_four(tmp_path: Path) -> None:
    data = {"story_name": "Market", "scenes": [{"scene_num": 1, "cut": [True, False, True],
            "first_frame_prompt": [
                "Ana, Bo, Cy, Dee and Eli meet at the night market with a basket.",
                "Ana laughs at something Bo says, close-up.",
                "Cy, Dee and Eli wave goodbye with the basket."],
            "video_prompts": ["They greet each other.", "Bo grins.", "Ana and Bo wave back."]}]}
    derived, _ = derive_plan(read_story(write_json(tmp_path / "m.json", data)).spec)
    uses = [s.uses for s in derived.shots]
    assert uses[0] == ["Ana", "Bo", "Cy", "Dee"]        # four new at most; the rest wait for their next mention
    assert uses[1] == ["Ana", "Bo", "bg_night_market"]  # no cut: still at the market, first mention of it
    assert uses[2] == ["Cy", "Dee", "Eli", "Ana", "Bo", "basket"]


def test_a_story_that_names_nobody_gets_the_people_it_keeps_returning_to(tmp_path: Path) -> None:
    data = {"story_name": "Bread", "scenes": [{"scene_num": 1, "video_prompts": [
        "The camera glides over the rooftops.", "The baker steps into the snow and stretches.",
        "The girl waves at the baker, breathless.", "The girl hugs the loaf and smiles.",
        "Steam curls up into the cold air."],
        "first_frame_prompt": [
        "Wide shot: a snowy mountain village at dawn, smoke rising from chimneys.",
        "An old baker with a flour-dusted beard opens the door of his bakery, warm light spilling out.",
        "A small girl in a red hooded coat runs down the street toward the bakery.",
        "Inside the bakery, the baker hands the girl a warm loaf wrapped in paper.",
        "Close-up of the loaf steaming in the girl's hands."]}]}
    derived, _ = derive_plan(read_story(write_json(tmp_path / "bread.json", data)).spec)
    assert [(m.name, m.kind, m.description) for m in derived.cast] == [  # characters, places, props
        ("baker", "character", "an old baker with a flour-dusted beard"),
        ("girl", "character", "a small girl in a red hooded coat"),
        ("bg_mountain_village", "background", "a snowy mountain village"),
        ("bg_bakery", "background", "the bakery"),
        ("bg_street", "background", "the street"),
        ("loaf", "prop", "a warm loaf")]
    assert [s.uses for s in derived.shots] == [["bg_mountain_village"], ["baker", "bg_bakery"],
                                               ["girl", "baker", "bg_street"], ["baker", "girl", "bg_bakery", "loaf"],
                                               ["girl", "loaf"]]


# ---------------------------------------------------------------------------- end to end


def _keyframe_panel_without_and_with(studio: Studio, story_id: str, shot: int) -> tuple[bytes, bytes, bytes]:
    """Re-render a shot's selected keyframe request with and without its references, and the stored panel."""
    log = studio.log(story_id)
    selected = next(e for e in log if e.type == "KeyframeSelected" and e.shot == shot).payload
    generated = next(e for e in log if e.type == "KeyframeGenerated" and e.shot == shot
                     and e.payload["round"] == selected["round"]).payload
    retrieved = [e for e in log if e.type == "MemoryRetrieved" and e.shot == shot][-1].payload
    refs = tuple(ImageInput(label=r["entity"], digest=r["blob"], data=studio.blobs.get(r["blob"]))
                 for r in retrieved["references"])
    assert [r.digest for r in refs] == generated["reference_blobs"]
    request = ImageRequest(prompt=generated["prompt"], purpose="keyframe", seed=generated["seed"],
                           width=generated["width"], height=generated["height"], references=refs)
    board = StoryboardImageGenerator()
    plain = board.generate(ImageRequest(**{**request.__dict__, "references": ()})).png
    return plain, board.generate(request).png, studio.blobs.get(selected["blob"])


def test_cast_less_twelve_shot_story_runs_offline_with_a_derived_plan(tmp_path: Path) -> None:
    story = write_json(tmp_path / "kites.json", kite_story())
    studio = Studio(tmp_path / "home")
    # frames large enough that the caption leaves the composited references visible
    result = studio.run(story, config=fast_config(tmp_path / "f.toml", width=192, height=128),
                        backends=preview_backends())
    assert result.completed and any(PLAN_DERIVED in n for n in result.notes)
    assert any("appearance changes are not derived" in n for n in result.notes)

    created = studio.log("kites")[0].payload["spec"]
    assert created["plan_source"] == PLAN_DERIVED and created["source_format"] == "st-bench"
    memory = studio.memory("kites")
    kinds = {e.name: e.kind for e in memory}
    assert [n for n, k in kinds.items() if k == "character"] == ["Lena", "Oskar"]
    assert sorted(n for n, k in kinds.items() if k == "background") == ["bg_cliff", "bg_workshop"]
    assert memory.get("Lena").description.startswith("a woman in her forties")

    planned = {e.shot: e.payload["uses"] for e in studio.log("kites", types=["ShotPlanned"])}
    assert len(planned) == 12
    for e in studio.log("kites", types=["MemoryRetrieved"]):
        p = e.payload
        chosen = [r["name"] if isinstance(r, dict) else r for r in p["retrieved_existing"]] + \
                 [n["name"] for n in p["new_entities"]]
        assert sorted(chosen) == sorted(planned[e.shot]), f"shot {e.shot}"
        assert sorted(r["entity"] for r in p["references"]) == sorted(planned[e.shot])
    for shot in (1, 8, 12):
        plain, with_refs, stored = _keyframe_panel_without_and_with(studio, "kites", shot)
        assert stored == with_refs != plain  # the panel is the composite of the retrieved references

    notes = studio.audit("kites").to_json()["notes"]
    assert any(PLAN_DERIVED in n for n in notes) and any("appearance changes are not derived" in n for n in notes)
    assert studio.replay("kites").identical  # the recorded plan: replay derives nothing new


def test_vistorybench_story_runs_with_its_images_as_cast_views(tmp_path: Path) -> None:
    folder = vistory_story(tmp_path / "07")
    studio = Studio(tmp_path / "home")
    studio.run(folder, config=fast_config(tmp_path / "f.toml"), backends=preview_backends())
    pim = studio.memory("07").get("Pim")
    assert pim.origin == "cast" and [v.kind for v in pim.views][:2] == ["cast_file", "cast_file"]
    assert [studio.blobs.get(v.blob) for v in pim.views[:2]] == [png_bytes((20, 160, 60), mark=0),
                                                                 png_bytes((20, 160, 60), mark=8)]
    assert "plan_source" not in studio.log("07")[0].payload["spec"]  # a declared cast: nothing derived


def test_bench_reads_a_folder_of_st_bench_files_and_story_folders(tmp_path: Path) -> None:
    stories = tmp_path / "stories"
    write_json(stories / "kites.json", kite_story())
    short = kite_story()
    short["scenes"] = short["scenes"][:1]
    write_json(stories / "short.json", short)
    vistory_story(stories / "07")
    (stories / "notes.txt").write_text("not a story")
    assert [p.name for p in story_files(stories)] == ["07", "kites.json", "short.json"]
    (stories / "07").rename(tmp_path / "07")
    (stories / "kites.json").unlink()
    studio = Studio(tmp_path / "home")
    result = studio.bench(stories, methods=["full"], config=fast_config(tmp_path / "f.toml"),
                          backends=preview_backends())
    assert result.stories == ["short"] and result.rows[0]["stories"] == 1
    assert studio.log("short--full")[0].payload["spec"]["plan_source"] == PLAN_DERIVED


def test_cli_run_reads_st_bench_and_reports_a_wrong_format(tmp_path: Path) -> None:
    story = write_json(tmp_path / "kites.json", kite_story())
    runner = CliRunner()
    home = str(tmp_path / "cli-home")
    bad = runner.invoke(app, ["--home", home, "run", str(story), "--format", "vistorybench"])
    assert bad.exit_code == 2 and "(read as ViStoryBench story)" in bad.output
    short = kite_story()
    short["scenes"] = short["scenes"][:1]
    small = write_json(tmp_path / "short.json", short)
    ok = runner.invoke(app, ["--home", home, "run", str(small), "--config", str(tiny_preview_config(tmp_path))])
    assert ok.exit_code == 0, ok.output
    assert PLAN_DERIVED in ok.output
    memory = runner.invoke(app, ["--home", home, "memory", "short", "--json"])
    assert memory.exit_code == 0
    assert {"Lena", "Oskar", "bg_workshop"} <= {e["name"] for e in json.loads(memory.output)["entities"]}
    audit = runner.invoke(app, ["--home", home, "audit", "short"])
    assert audit.exit_code == 0 and "appearance changes are not derived" in audit.output

"""Story files: YAML or JSON, aliases, and errors that name the file, the place and what was expected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from codirector.engine.loop.story import load_story
from codirector.engine.studio import Studio
from codirector.errors import StoryFileError

from support import fast_config, scripted_backends, write_story

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "stories"


def base_story() -> dict:
    return {"title": "T", "cast": [{"name": "Ada", "description": "a woman"}],
            "shots": [{"keyframe": f"shot {i}", "motion": "moves", "uses": ["Ada"]} for i in range(1, 5)]}


def write(tmp_path: Path, data: object, name: str = "story.yaml") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data))
    return path


def error_for(tmp_path: Path, data: object, name: str = "story.yaml") -> StoryFileError:
    with pytest.raises(StoryFileError) as info:
        load_story(write(tmp_path, data, name))
    return info.value


def test_every_example_story_loads() -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert len(files) >= 3
    for f in files:
        spec, _ = load_story(f)
        assert spec.shots and spec.title


def test_aliases_and_json(tmp_path: Path) -> None:
    data = base_story()
    data["shots"] = [{"t2i_prompt": "a frame", "i2v_prompt": "a motion"}]
    spec, _ = load_story(write(tmp_path, data, "s.json"))
    assert (spec.shots[0].keyframe, spec.shots[0].motion) == ("a frame", "a motion")


def test_missing_motion_names_file_place_and_expectation(tmp_path: Path) -> None:
    data = base_story()
    del data["shots"][3]["motion"]
    err = error_for(tmp_path, data)
    assert "story.yaml: shots[3].motion (shot 4): missing; expected a motion prompt (`motion:` or `i2v_prompt:`)" \
        in err.message


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    data = base_story()
    data["shots"][0]["keyfrme"] = data["shots"][0].pop("keyframe")
    err = error_for(tmp_path, data)
    assert "shots[0].keyfrme (shot 1): unknown key (did you mean 'keyframe'?)" in err.message


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("title: T\nshots:\n  - keyframe: [unclosed\n    motion: x\n")
    with pytest.raises(StoryFileError) as info:
        load_story(path)
    assert "broken.yaml is not valid YAML at line" in info.value.message


def test_undeclared_use_and_unknown_base(tmp_path: Path) -> None:
    data = base_story()
    data["shots"][1]["uses"] = ["Adda"]
    err = error_for(tmp_path, data)
    assert "shots[1].uses[0] (shot 2): 'Adda' is not declared" in err.message and "'Ada'" in str(err.hint)
    data = base_story()
    data["shots"][2]["evolves"] = [{"name": "Ada_hat", "base_entity": "Bob", "description": "hat"}]
    err = error_for(tmp_path, data)
    assert "base_entity 'Bob' is not declared before shot 3" in err.message


def test_missing_reference_file_and_missing_story(tmp_path: Path) -> None:
    data = base_story()
    data["cast"][0]["reference"] = "refs/ada.png"
    err = error_for(tmp_path, data)
    assert "cast[0].reference: refs/ada.png does not exist" in err.message and "relative to the story" in str(err.hint)
    with pytest.raises(StoryFileError, match="does not exist"):
        load_story(tmp_path / "nope.yaml")
    err = error_for(tmp_path, {"title": "T"})
    assert "give `shots:`" in err.message


def test_cast_reference_image_becomes_a_cast_view(tmp_path: Path) -> None:
    from support import png_bytes

    (tmp_path / "ada.png").write_bytes(png_bytes((10, 200, 30)))
    data = base_story()
    data["cast"][0]["reference"] = "ada.png"
    story = write(tmp_path, data)
    studio = Studio(tmp_path / "home")
    studio.run(story, config=fast_config(tmp_path / "f.toml"), backends=scripted_backends())
    ada = studio.memory("story").get("Ada")
    assert ada.origin == "cast" and ada.views[0].kind == "cast_file"
    assert studio.blobs.get(ada.views[0].blob) == png_bytes((10, 200, 30))


def test_story_text_goes_through_the_planner(tmp_path: Path) -> None:
    data = {"title": "Planned", "story": "A fox wakes up. It finds a hat. It wears the hat to town.", "num_shots": 3}
    studio = Studio(tmp_path / "home")
    studio.run(write(tmp_path, data), config=fast_config(tmp_path / "f.toml"), backends=scripted_backends())
    planned = studio.log("story", types=["ShotPlanned"])
    assert [e.payload["planner"] for e in planned] == ["planner agent"] * 3
    assert planned[1].payload["keyframe_prompt"] == "It finds a hat."
    assert studio.log("story")[-1].type == "StoryCompleted"


def test_existing_story_id_points_at_resume(tmp_path: Path) -> None:
    from codirector.errors import RunStateError

    story = write_story(tmp_path / "pier.yaml", shots=1)
    studio = Studio(tmp_path / "home")
    studio.run(story, config=fast_config(tmp_path / "f.toml"), backends=scripted_backends())
    again = studio.run(story, config=fast_config(tmp_path / "f.toml"), backends=scripted_backends())
    assert again.written == 0  # the same file again continues the story, which is complete
    with pytest.raises(RunStateError) as info:  # another seed is another story: refused, pointing at resume
        studio.run(story, config=fast_config(tmp_path / "f.toml"), seed=99, backends=scripted_backends())
    assert "codirector resume pier" in str(info.value.hint)

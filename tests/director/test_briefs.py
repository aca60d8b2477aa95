"""Advertising briefs: the examples load (GenAD-Bench-shaped, varied), and errors name the file, the
place and what was expected; unknown keys suggest close ones; the product image is found relative
to the brief."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from codirector.engine.director.briefs import load_brief
from codirector.errors import StoryFileError

BRIEFS = Path(__file__).resolve().parents[2] / "examples" / "briefs"


def good() -> dict:
    return {"product": "Tarnlight Lamp", "brand": "Wenbury Works", "description": "a brass desk lamp",
            "target_audience": "students who study late", "num_shots": 3}


def error_for(tmp_path: Path, data: object) -> StoryFileError:
    path = tmp_path / "brief.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(StoryFileError) as info:
        load_brief(path)
    return info.value


def test_the_example_briefs_are_many_varied_and_complete() -> None:
    files = sorted(BRIEFS.glob("*.yaml"))
    assert len(files) >= 20
    specs = [load_brief(f)[0] for f in files]
    assert len({s.brand for s in specs}) == len(specs)  # a fictional brand each
    assert len({s.category for s in specs}) >= 15
    assert all(s.target_audience and s.description and 1 <= s.num_shots <= 12 for s in specs)
    with_image = [(f, load_brief(f)[1]) for f in files if load_brief(f)[0].product_image]
    assert with_image and all(img is not None and img.startswith(b"\x89PNG") for _, img in with_image)


def test_missing_num_shots_names_the_file_the_place_and_what_was_expected(tmp_path: Path) -> None:
    data = good()
    del data["num_shots"]
    err = error_for(tmp_path, data)
    assert str(tmp_path / "brief.yaml") in err.message
    assert "num_shots: missing; expected the number of shots, 1 to 12" in err.message


def test_out_of_range_num_shots_shows_the_value(tmp_path: Path) -> None:
    err = error_for(tmp_path, {**good(), "num_shots": 40})
    assert "num_shots:" in err.message and "(got 40)" in err.message and "1 to 12" in err.message


def test_an_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    data = good()
    data["audience"] = data.pop("target_audience")
    err = error_for(tmp_path, data)
    assert err.message.endswith("audience: unknown key (did you mean 'target_audience'?) (and 1 more problem)")
    assert "target_audience: missing" in str(err.hint)


def test_empty_text_and_a_missing_image_are_refused(tmp_path: Path) -> None:
    assert "brand: must be non-empty text" in error_for(tmp_path, {**good(), "brand": "  "}).message
    err = error_for(tmp_path, {**good(), "product_image": "refs/nope.png"})
    assert "product_image: refs/nope.png does not exist" in err.message
    assert err.hint == "the path is relative to the brief file"


def test_a_brief_with_an_image_becomes_a_story_spec_with_the_product_as_a_prop(tmp_path: Path) -> None:
    spec, image = load_brief(BRIEFS / "dewline_serum.yaml")
    assert image is not None
    data = spec.to_spec("abc123").model_dump()
    assert data["kind"] == "brief" and data["num_shots"] == spec.num_shots
    assert data["cast"] == [{"name": "Dewline Night Serum", "kind": "prop", "description": spec.description,
                             "reference_blob": "abc123"}]

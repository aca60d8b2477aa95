"""Config tables as pydantic models (generators/config_tables.py): a bad file is refused when it is read, with one
message naming the file, the table, the key, the bad value and the fix (exit 2, nothing written), and a good one
records exactly the bytes it did when the tables were merged dicts."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from codirector.cli import app
from codirector.engine.loop.context import RunSettings
from codirector.engine.studio import Studio
from codirector.errors import ConfigError
from codirector.events.base import canonical_json
from codirector.generators.config_tables import PriceOverride, RecordedRun, RunTable, options_model
from codirector.generators.prices import PRICE_KEYS, PriceTable
from codirector.generators.profiles import PROFILES, RunConfig, resolve
from codirector.generators.registry import backends

from support import write_story

FIXTURE = Path(__file__).parents[1] / "fixtures" / "home-2026-12-07" / "codirector.db"
runner = CliRunner()


def refused(tmp_path: Path, text: str) -> ConfigError:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        resolve(config_path=cfg)
    return info.value


@pytest.mark.parametrize("text, message, hint", [
    ('[run]\nfps = "fast"\n', "bad.toml: [run] fps must be a number, got 'fast' (e.g. fps = 8.0)", None),
    ("[run]\nwidth = 512.5\n", "bad.toml: [run] width must be a whole number, got 512.5 (e.g. width = 512)", None),
    ("[run]\nmax_rounds = true\n", "bad.toml: [run] max_rounds must be a whole number, got true", None),
    ('[run]\nevolved_view = "clip"\n',
     "bad.toml: [run] evolved_view must be one of 'keyframe', 'reference', got 'clip'", None),
    ("[run]\nwidht = 1\n", "bad.toml: unknown [run] key 'widht'", "did you mean 'width'"),
    ("[run]\nno_memory = true\n", "bad.toml: unknown [run] key 'no_memory'", "[run] keys are width, height,"),
    ("[runn]\nwidth = 1\n", "bad.toml: unknown key 'runn'",
     "did you mean 'run'? top-level keys are profile, [vlm], [image], [video], [embedder], [run], [prices]"),
    ("run = 5\n", "bad.toml: [run] must be a table, got 5", "write [run] on a line of its own"),
    ("video = \"fal\"\n", "bad.toml: [video] must be a table, got 'fal'", "write [video] on a line of its own"),
    ("profile = 5\n", 'bad.toml: profile must be a string, got 5 (e.g. profile = "preview")', None),
    ("[vlm]\nmodel = 4.1\n", "bad.toml: [vlm] model must be a string, got 4.1", None),
    ('[video]\nbackend = "diffusers"\nmodel = "m"\nsteps = "many"\n',
     "bad.toml: [video] steps must be a whole number, got 'many' (e.g. steps = 30)", None),
    ('[video]\nbackend = "diffusers"\nmodel = "m"\nstep = 4\n',
     "bad.toml: unknown [video] key 'step' for the 'diffusers' video backend",
     "did you mean 'steps'? the 'diffusers' video backend takes model, pipeline,"),
    ('[video]\nbackend = "google"\ndurations = [4, "eight"]\n',
     "bad.toml: [video] durations must be a list of numbers, got [4, 'eight']", None),
    ('[video]\nbackend = "fal"\narguments = 3\n', "bad.toml: [video.arguments] must be a table, got 3", None),
    ('[embedder]\nmodel_config = 3\n', "bad.toml: [embedder] model_config must be a string, got 3", None),
    ('[prices."gpt-4.1"]\ninput_per_milion = 2\n', "bad.toml: unknown [prices.\"gpt-4.1\"] key 'input_per_milion'",
     "did you mean 'input_per_million'"),
    ('[prices."gpt-4.1"]\nper_second = -1\n',
     "bad.toml: [prices.\"gpt-4.1\"] per_second must be a number of USD, 0 or more, got -1", None),
    ("[prices]\nm = 3\n", "bad.toml: [prices.m] must be a table, got 3", None),
])
def test_a_bad_value_names_the_file_table_key_value_and_fix(tmp_path: Path, text: str, message: str,
                                                            hint: str | None) -> None:
    error = refused(tmp_path, text)
    shown = error.message.replace(f"{tmp_path}/", "")
    assert shown.startswith(message), shown
    if hint is not None:
        assert error.hint and hint in error.hint, error.hint
    assert "Input should" not in str(error) and "pydantic" not in str(error) and "validation error" not in str(error)


def test_free_form_tables_stay_free_form(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[video]\nbackend = "fal"\nmodel = "fal-ai/some/new-app"\n'
                   '[video.arguments]\nimage_field = "image_url"\nprompt_field = "prompt"\n'
                   '[video.arguments.fixed]\nanything = "goes"\nnested = {deep = [1, 2]}\n'
                   '[prices."any/model id:v2"]\nper_second = 0.1\n')
    resolved = resolve(config_path=cfg)
    assert resolved.video.options["arguments"]["fixed"] == {"anything": "goes", "nested": {"deep": [1, 2]}}
    assert resolved.prices["any/model id:v2"].per_second == 0.1


def test_every_profile_and_built_in_backend_has_tables_that_check() -> None:
    for name in PROFILES:
        resolved = resolve(name)
        assert resolved.to_settings().profile == name
    for b in backends():  # every built-in factory's signature makes an options model
        assert options_model(b.factory, f"{b.kind} {b.name}") is not None, b
    assert PRICE_KEYS == tuple(PriceOverride.model_fields)
    assert RunTable.model_fields.keys() <= RecordedRun.model_fields.keys() == RunSettings.model_fields.keys()


def test_values_are_recorded_as_written_and_read_back_exactly(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[run]\nfps = 16\nduplicate_threshold = 1\n[video]\nbackend = "diffusers"\nmodel = "m"\n'
                   'guidance = 5\n')
    resolved = resolve(config_path=cfg, overrides={"run": {"no_refine": True}})
    recorded = resolved.to_settings().model_dump()
    assert recorded["run"]["fps"] == 16 and isinstance(recorded["run"]["fps"], int)  # never turned into 16.0
    assert recorded["video"] == {"backend": "diffusers", "model": "m", "guidance": 5}
    assert recorded["run"]["no_refine"] is True and "no_memory" not in recorded["run"]  # ablations only when set
    again = RunConfig.from_settings(recorded).to_settings().model_dump()
    assert canonical_json(again) == canonical_json(recorded)
    assert RunSettings.from_table(resolved.run).no_refine


def test_the_2026_12_07_home_settings_read_back_to_the_same_bytes(tmp_path: Path) -> None:
    db = Path(shutil.copy(FIXTURE, tmp_path / "codirector.db"))  # a copy: reading leaves no -wal/-shm in fixtures/
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        records = [json.loads(r[0]) for r in conn.execute("SELECT record FROM events WHERE type = 'StoryCreated'")]
    assert records
    for record in records:
        stored: dict[str, Any] = record["payload"]["settings"]
        config = RunConfig.from_settings(stored)
        assert canonical_json(config.to_settings().model_dump()) == canonical_json(stored)
        assert RunSettings.from_table(stored["run"]).width == stored["run"]["width"]


def test_an_old_story_without_evolved_view_keeps_the_view_it_ran_with() -> None:
    recorded = {k: v for k, v in resolve("preview").to_settings().model_dump()["run"].items() if k != "evolved_view"}
    assert RunSettings.from_table(recorded).evolved_view == "reference"
    assert RunSettings.from_table({**recorded, "a_key_no_longer_known": 1}).width == 512  # left out, as before


def test_price_files_are_checked_by_the_same_model(tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[prices."gpt-4.1"]\ninput_per_million = "two"\n')
    with pytest.raises(ConfigError) as info:
        PriceTable.from_file(prices)
    assert info.value.message == (f"{prices}: [prices.\"gpt-4.1\"] input_per_million must be a number of USD, "
                                  "0 or more, got 'two' (e.g. input_per_million = 1.0)")


# ---------------------------------------------------------------------------- through the command line


@pytest.mark.parametrize("text, words", [
    ('profile = "preview"\n[run]\nfps = "fast"\n', "[run] fps must be a number, got 'fast' (e.g. fps = 8.0)"),
    ('profile = "preview"\n[run]\nmax_round = 2\n', "unknown [run] key 'max_round'"),
    ('profile = "preview"\n[image]\nbackend = "storyboard"\nsize = "large"\n',
     "unknown [image] key 'size' for the 'storyboard' image backend"),
    ('profile = "preview"\nrun = [1, 2]\n', "[run] must be a table, got [1, 2]"),
])
def test_run_with_a_bad_config_exits_2_naming_it_and_writes_no_story(tmp_path: Path, text: str, words: str) -> None:
    home, cfg = tmp_path / "home", tmp_path / "bad.toml"
    cfg.write_text(text)
    story = write_story(tmp_path / "pier.yaml", shots=2)
    result = runner.invoke(app, ["--home", str(home), "run", str(story), "--config", str(cfg)])
    assert result.exit_code == 2, result.output
    assert f"error: {cfg}: {words}" in result.output
    assert "Traceback" not in result.output and "Input should" not in result.output
    if "unknown" in words:
        assert "  fix: " in result.output and ("keys are" in result.output or "takes" in result.output)
    with Studio(home) as studio:
        assert studio.workspace.story_ids() == set()
    blobs = home / "blobs"
    assert not blobs.exists() or not any(p.is_file() for p in blobs.rglob("*"))

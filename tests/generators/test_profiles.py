"""Profiles and config files: overrides, clear errors, and no secret ever in a config."""

from __future__ import annotations

from pathlib import Path

import pytest

from codirector.errors import ConfigError
from codirector.generators.profiles import resolve


def test_profile_then_config_then_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('profile = "openai"\n[vlm]\nmodel = "gpt-4.1-mini"\n[run]\nmax_rounds = 2\n')
    resolved = resolve(config_path=cfg, overrides={"run": {"max_rounds": 4}})
    assert resolved.profile == "openai" and resolved.table("vlm") == {"backend": "openai", "model": "gpt-4.1-mini"}
    assert resolved.run.max_rounds == 4
    cfg.write_text('[image]\nbackend = "storyboard"\n')
    assert resolve("openai", cfg).table("image") == {"backend": "storyboard"}  # another backend: old options dropped


@pytest.mark.parametrize("text, message", [
    ('profile = "fast"\n', "unknown profile 'fast'"),
    ("[vlm]\napi_key = \"sk-live-123\"\n", "looks like a secret"),
    ("[vlm]\napi_key_env = \"sk-live-1234567890\"\n", "must name an environment variable"),
    ("[runn]\nwidth = 1\n", "unknown key 'runn'"),
    ("[run]\nwidht = 1\n", "unknown [run] key 'widht'"),
    ("[vlm\n", "is not valid TOML"),
])
def test_bad_configs_are_refused_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        resolve(config_path=cfg)
    assert message in str(info.value)
    assert "sk-live" not in str(info.value)


def test_settings_recorded_with_a_run_hold_no_secret() -> None:
    settings = resolve("openai").to_settings()
    assert settings.vlm["backend"] == "openai" and "api_key" not in str(settings.model_dump())

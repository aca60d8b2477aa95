"""Profiles and config files: which backends a run uses, and with what options.

A profile is a named set of backends; a TOML file (``--config F``) starts from a profile and
overrides any part. The keys of docs/architecture.md §9 are a contract (``profile``, ``[vlm] backend/model/
base_url``, ``[image]``, ``[video]``, ``[embedder] backend/model/pretrained``); other keys of a
table are passed to that backend as options. ``[run]`` holds the loop's own settings.
``[prices."MODEL"]`` overrides a model's price (``generators.prices``); prices are not settings:
they are read when a cost is asked for, never recorded in the log.

Invariants:
- A resolved config never holds a secret. API keys come from the environment (``OPENAI_API_KEY``,
  or the variable named by ``api_key_env``); a config that contains one is refused, because configs
  are recorded in the log.
- No profile's default is a model OpenAI has shut down. ``OPENAI_SHUTDOWNS`` holds the shutdown
  dates OpenAI announced for the models we know of (package data, generators/data/lifecycle.toml); a
  config naming one of them for OpenAI's own API is refused before anything runs once the date has
  passed (with the replacement to set), and noted before then (``model_notices``).
"""

from __future__ import annotations

import copy
import functools
import os
import re
import tomllib
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codirector.errors import ConfigError, did_you_mean
from codirector.events.specs import RecordedSettings
from codirector.generators import datafiles
from codirector.generators.openai_client import is_openai_host, resolve_base_url
from codirector.generators.prices import PriceTable

_PREVIEW_EMBEDDER = {"backend": "open_clip", "model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k",
                     "offline": True, "allow_random": True}
_REAL_EMBEDDER = {"backend": "open_clip", "model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"}
# The openai profile's keyframe model, and the OpenAI image backend's default: OpenAI's recommended replacement for
# its retired GPT image models (developers.openai.com/api/docs/deprecations, checked 2026-11-30). Sunburst is the
# 2.6 model for "more detail or precise edits" (its prompting guide); our keyframes are edits of reference views.
OPENAI_IMAGE_MODEL = "gpt-image-2.6-sunburst"

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "preview": {
        "vlm": {"backend": "preview"},
        "image": {"backend": "storyboard"},
        "video": {"backend": "animatic"},
        "embedder": _PREVIEW_EMBEDDER,
    },
    "openai": {
        "vlm": {"backend": "openai", "model": "gpt-4.1"},
        "image": {"backend": "openai", "model": OPENAI_IMAGE_MODEL},
        "video": {"backend": "diffusers", "model": "Wan-AI/Wan2.2-I2V-A14B-Diffusers"},
        "embedder": _REAL_EMBEDDER,
    },
    # Keyframes and clips as fal queue jobs; the agents on any OpenAI-compatible VLM (OPENAI_BASE_URL for others).
    "fal": {
        "vlm": {"backend": "openai", "model": "gpt-4.1"},
        "image": {"backend": "fal", "model": "fal-ai/qwen-image-edit-plus"},
        "video": {"backend": "fal", "model": "fal-ai/kling-video/v2.1/standard/image-to-video"},
        "embedder": _REAL_EMBEDDER,
    },
    # Google: the agents on Gemini through its OpenAI-compatible endpoint, keyframes from a Gemini image model,
    # clips from Veo; one key (GEMINI_API_KEY) for all three (generators.hosted.google).
    "google": {
        "vlm": {"backend": "openai", "model": "gemini-3.5-flash",
                "base_url": "https://generativelanguage.googleapis.com/v1beta/openai/",
                "api_key_env": "GEMINI_API_KEY"},
        "image": {"backend": "google", "model": "gemini-3.1-flash-image"},
        "video": {"backend": "google", "model": "veo-3.1-generate-001"},
        "embedder": _REAL_EMBEDDER,
    },
    "local": {
        "vlm": {"backend": "openai", "model": "qwen2.5vl:7b", "base_url": "http://localhost:11434/v1",
                "api_key_env": "OLLAMA_API_KEY"},
        "image": {"backend": "diffusers", "model": "Qwen/Qwen-Image-Edit-2509"},
        "video": {"backend": "diffusers", "model": "Wan-AI/Wan2.2-I2V-A14B-Diffusers"},
        "embedder": _REAL_EMBEDDER,
    },
}


@dataclass(frozen=True)
class Shutdown:
    """OpenAI's retirement of one model: the day its API stops answering, and the replacement OpenAI names."""

    day: date
    replacement: str

    def gone(self, today: date) -> bool:
        return today >= self.day


# Shutdown dates of OpenAI models a profile used or a config may still name, with OpenAI's recommended
# replacement, are package data: [openai."MODEL"] in generators/data/lifecycle.toml, each with the day its
# source (developers.openai.com/api/docs/deprecations) was read. Read once, when first asked for.
@functools.cache
def openai_shutdowns() -> dict[str, Shutdown]:
    """Each OpenAI model we know the shutdown of (generators/data/lifecycle.toml), read once."""
    return {model: Shutdown(day, replacement) for model, (day, replacement) in datafiles.lifecycle("openai").items()}


if TYPE_CHECKING:
    OPENAI_SHUTDOWNS: dict[str, Shutdown]  # openai_shutdowns(), read when first named (``__getattr__``)


def __getattr__(name: str) -> Any:
    if name == "OPENAI_SHUTDOWNS":
        return openai_shutdowns()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def utc_today() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class ModelNotice:
    """A configured model that OpenAI has shut down (``gone``) or will shut down, and the setting that fixes it."""

    kind: str
    model: str
    shutdown: Shutdown
    today: date

    @property
    def gone(self) -> bool:
        return self.shutdown.gone(self.today)

    @property
    def message(self) -> str:
        when = self.shutdown.day.isoformat()
        if self.gone:
            return f"OpenAI shut down [{self.kind}] model {self.model!r} on {when}; every request to it fails"
        days = (self.shutdown.day - self.today).days
        return f"OpenAI shuts down [{self.kind}] model {self.model!r} on {when} (in {days} day{'s' * (days != 1)})"

    @property
    def fix(self) -> str:
        return (f"set [{self.kind}] model = \"{self.shutdown.replacement}\" in your --config file (the replacement "
                "OpenAI recommends, developers.openai.com/api/docs/deprecations)")


def model_notice(kind: str, options: dict[str, Any], today: date | None = None) -> ModelNotice | None:
    """Whether the ``[kind]`` table names a model OpenAI has retired or will retire, when it is sent to OpenAI.

    Only OpenAI's own API is judged: another server (Ollama, vLLM, a proxy) may serve any name.
    """
    model = options.get("model")
    shutdown = openai_shutdowns().get(model) if isinstance(model, str) else None
    if shutdown is None or not isinstance(model, str) or options.get("backend", "openai") != "openai":
        return None
    if not is_openai_host(resolve_base_url(options.get("base_url"))):
        return None
    return ModelNotice(kind, model, shutdown, today or utc_today())


def model_notices(config: RunConfig, today: date | None = None) -> list[ModelNotice]:
    """The retired and retiring OpenAI models ``config`` names, [vlm] then [image]."""
    found = (model_notice(kind, config.table(kind), today) for kind in ("vlm", "image"))
    return [n for n in found if n is not None]


@dataclass(frozen=True)
class RunTable:
    """The ``[run]`` table: the loop's own settings and their defaults, written here only.

    ``engine.loop.context.RunSettings`` extends it with the paper's ablation flags.
    """

    width: int = 512
    height: int = 288
    num_frames: int = 17
    fps: float = 8.0
    max_rounds: int = 3
    shortlist: int = 12
    duplicate_threshold: float = 0.93
    agent_attempts: int = 3
    frames_for_analysis: int = 8
    # where an evolved state the memory controller proposes (a new entity with a base_entity) takes
    # its first view from: "keyframe", the shot's selected keyframe (what the shot shows; the keyframe
    # is drawn from its base's view), or "reference", an image generated before the keyframe. A story
    # recorded without this key ran with "reference" (``RunSettings.from_table``).
    evolved_view: str = "keyframe"


RUN_DEFAULTS: dict[str, Any] = asdict(RunTable())

SECRET_KEYS = ("api_key", "apikey", "token", "secret", "password", "authorization")
SECTIONS = ("vlm", "image", "video", "embedder", "run")


@dataclass
class RunConfig:
    """A resolved configuration: one table per backend kind plus the loop's settings."""

    profile: str
    vlm: dict[str, Any]
    image: dict[str, Any]
    video: dict[str, Any]
    embedder: dict[str, Any]
    run: dict[str, Any] = field(default_factory=lambda: dict(RUN_DEFAULTS))
    source: str | None = None
    prices: dict[str, Any] = field(default_factory=dict)  # [prices."MODEL"]: read when asked, never recorded

    def table(self, kind: str) -> dict[str, Any]:
        return dict(getattr(self, kind))

    def to_settings(self) -> RecordedSettings:
        """What is recorded in ``StoryCreated.settings`` (checked to hold no secret)."""
        data = {"profile": self.profile, **{k: copy.deepcopy(getattr(self, k)) for k in SECTIONS}}
        _refuse_secrets(data, self.source or "settings")
        return RecordedSettings.model_validate(data)

    @classmethod
    def from_settings(cls, settings: RecordedSettings | dict[str, Any]) -> RunConfig:
        """Rebuild from what ``to_settings`` recorded (resume, replay, branch); a stored payload's dict is read
        into ``RecordedSettings`` first."""
        if not isinstance(settings, RecordedSettings):
            settings = RecordedSettings.model_validate(settings)
        missing = [k for k in ("profile", *SECTIONS) if k not in settings.model_fields_set]
        if missing:
            raise ConfigError(f"recorded settings lack {missing[0]!r}", hint="this story was written by an "
                              "incompatible version of codirector")
        return cls(profile=settings.profile, vlm=dict(settings.vlm), image=dict(settings.image),
                   video=dict(settings.video), embedder=dict(settings.embedder), run=dict(settings.run))


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _refuse_secrets(value: Any, where: str, path: str = "") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if k.lower() in SECRET_KEYS:
                raise ConfigError(
                    f"{where}: {path + k} looks like a secret; secrets are never written to config or to the log",
                    hint="put the key in the environment (OPENAI_API_KEY), or name the variable with api_key_env",
                )
            if k.lower().endswith("_env") and isinstance(v, str) and not _ENV_NAME.match(v):
                raise ConfigError(
                    f"{where}: {path + k} must name an environment variable (like OPENAI_API_KEY), and its value "
                    "does not look like one; if it is a key, it must not be in a config",
                    hint="set the key in the environment and put only the variable's name here",
                )
            _refuse_secrets(v, where, f"{path}{k}.")


def resolve(profile: str | None = None, config_path: str | os.PathLike[str] | None = None,
            overrides: dict[str, dict[str, Any]] | None = None) -> RunConfig:
    """Profile defaults, then the config file, then explicit overrides (later wins)."""
    data: dict[str, Any] = {}
    source = None
    if config_path is not None:
        path = Path(config_path)
        source = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path} is not valid TOML: {e}", hint="see README, 'Switching to real models'") from e
        _refuse_secrets(data, str(path))
        unknown = [k for k in data if k not in (*SECTIONS, "profile", "prices")]
        if unknown:
            raise ConfigError(f"{path}: unknown key {unknown[0]!r}",
                              hint="top-level keys are profile, [vlm], [image], [video], [embedder], [run], [prices]")
        PriceTable.from_file(path)  # a bad [prices] table is refused before anything runs
        for section in ("image", "video"):  # a table's workflow file is relative to the config; recorded absolute
            table = data.get(section)
            if isinstance(table, dict) and isinstance(table.get("workflow"), str):
                table["workflow"] = str((path.parent / Path(table["workflow"]).expanduser()).absolute())
    name = profile or data.get("profile") or "preview"
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}", hint=did_you_mean(name, PROFILES, "profile"))
    base = copy.deepcopy(PROFILES[name])
    run = dict(RUN_DEFAULTS)
    for section in SECTIONS:
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{section}] must be a table, got {table!r}")
        if section == "run":
            bad = [k for k in table if k not in RUN_DEFAULTS]
            if bad:
                hint = did_you_mean(bad[0], RUN_DEFAULTS, "key")
                raise ConfigError(f"{source}: unknown [run] key {bad[0]!r}", hint=hint)
            run.update(table)
        elif table:
            if "backend" in table and table["backend"] != base[section].get("backend"):
                base[section] = {}  # another backend: the profile's options for the old one don't apply
            base[section].update(table)
    for section, table in (overrides or {}).items():
        if section == "run":
            run.update(table)
        else:
            base[section].update(table)
    _refuse_secrets(base, source or "config")
    return RunConfig(profile=name, run=run, source=source, prices=dict(data.get("prices", {})), **base)

"""Profiles and config files: which backends a run uses, and with what options.

A profile is a named set of backends; a TOML file (``--config F``) starts from a profile and
overrides any part. The keys of docs/architecture.md §9 are a contract (``profile``, ``[vlm] backend/model/
base_url``, ``[image]``, ``[video]``, ``[embedder] backend/model/pretrained``); other keys of a
table are passed to that backend as options. ``[run]`` holds the loop's own settings.
``[prices."MODEL"]`` overrides a model's price (``generators.prices``); prices are not settings:
they are read when a cost is asked for, never recorded in the log. Every table is a pydantic model
(``generators.config_tables``), checked when the file is read: ``RunConfig`` holds them typed.

Invariants:
- A bad file is refused by ``resolve`` before anything runs or is recorded: one ``ConfigError`` naming the
  file, the table, the key, the bad value and the fix (``generators.config_errors``).
- ``RunConfig.to_settings`` records each table as it was given (``given``) and ``from_settings`` reads a
  record back into the same tables, so a story records the bytes it did before the tables were models.
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
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codirector.errors import ConfigError, did_you_mean
from codirector.events.specs import RecordedSettings
from codirector.generators import datafiles
from codirector.generators.config_tables import (
    RUN_DEFAULTS,
    BackendTable,
    ConfigFile,
    PriceOverride,
    RecordedRun,
    check_backend_table,
    check_recorded,
    read_table,
)
from codirector.generators.openai_client import is_openai_host, resolve_base_url
from codirector.generators.registry import KINDS

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


SECRET_KEYS = ("api_key", "apikey", "token", "secret", "password", "authorization")
SECTIONS = (*KINDS, "run")


def _default_run() -> RecordedRun:
    return RecordedRun.model_validate(RUN_DEFAULTS)


@dataclass
class RunConfig:
    """A resolved configuration: one typed table per backend kind, the loop's settings, and the prices."""

    profile: str
    vlm: BackendTable
    image: BackendTable
    video: BackendTable
    embedder: BackendTable
    run: RecordedRun = field(default_factory=_default_run)
    source: str | None = None
    prices: dict[str, PriceOverride] = field(default_factory=dict)  # [prices."MODEL"]: read when asked, never recorded

    def backend(self, kind: str) -> BackendTable:
        """The ``[kind]`` table (``vlm``, ``image``, ``video`` or ``embedder``)."""
        if kind not in KINDS:
            raise KeyError(f"no backend table {kind!r}; the tables are {', '.join(KINDS)}")
        table: BackendTable = getattr(self, kind)
        return table

    def table(self, kind: str) -> dict[str, Any]:
        """The ``[kind]`` table as a plain mapping (a copy): the backend's name and its options."""
        return self.backend(kind).given()

    def to_settings(self) -> RecordedSettings:
        """What is recorded in ``StoryCreated.settings`` (checked to hold no secret): each table as given."""
        data = {"profile": self.profile, **{k: self.table(k) for k in KINDS}, "run": self.run.given()}
        _refuse_secrets(data, self.source or "settings")
        return RecordedSettings.model_validate(data)

    @classmethod
    def from_settings(cls, settings: RecordedSettings | dict[str, Any]) -> RunConfig:
        """Rebuild from what ``to_settings`` recorded (resume, replay, branch); a stored payload's dict is read
        into ``RecordedSettings`` first. The backend tables are taken as stored (their backends may not be
        installed here); ``[run]`` is read typed (``config_tables.check_recorded``)."""
        if not isinstance(settings, RecordedSettings):
            settings = RecordedSettings.model_validate(settings)
        missing = [k for k in ("profile", *SECTIONS) if k not in settings.model_fields_set]
        if missing:
            raise ConfigError(f"recorded settings lack {missing[0]!r}", hint="this story was written by an "
                              "incompatible version of codirector")
        return cls(profile=settings.profile, vlm=BackendTable.recorded(settings.vlm),
                   image=BackendTable.recorded(settings.image), video=BackendTable.recorded(settings.video),
                   embedder=BackendTable.recorded(settings.embedder),
                   run=check_recorded(RecordedRun, settings.run, "run"))


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


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}", hint="see README, 'Switching to real models'") from e


def read_config(path: str | os.PathLike[str]) -> ConfigFile:
    """A config file read into its tables: refused (``ConfigError``) when it holds a secret, a key no table takes,
    or a value of the wrong type, naming the file, the table and the key."""
    path = Path(path)
    data = _read_toml(path)
    _refuse_secrets(data, str(path))
    for section in ("image", "video"):  # a table's workflow file is relative to the config; recorded absolute
        table = data.get(section)
        if isinstance(table, dict) and isinstance(table.get("workflow"), str):
            table["workflow"] = str((path.parent / Path(table["workflow"]).expanduser()).absolute())
    return read_table(ConfigFile, data, source=str(path))


def resolve(profile: str | None = None, config_path: str | os.PathLike[str] | None = None,
            overrides: dict[str, dict[str, Any]] | None = None) -> RunConfig:
    """Profile defaults, then the config file, then explicit overrides (later wins); every table checked."""
    file, source = ConfigFile(), None
    if config_path is not None:
        file, source = read_config(config_path), str(Path(config_path))
    name = profile or file.profile or "preview"
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}", hint=did_you_mean(name, PROFILES, "profile"))
    overrides = overrides or {}
    tables: dict[str, BackendTable] = {}
    for kind in KINDS:
        table = copy.deepcopy(PROFILES[name][kind])
        mine = file.backend_table(kind).given()
        if "backend" in mine and mine["backend"] != table.get("backend"):
            table = {}  # another backend: the profile's options for the old one don't apply
        table.update(mine)
        table.update(overrides.get(kind, {}))
        _refuse_secrets(table, source or "config", f"{kind}.")  # before any value could be quoted in a refusal
        tables[kind] = read_table(BackendTable, table, source=source, table=kind)
        check_backend_table(kind, tables[kind], source)
    run = read_table(RecordedRun, {**RUN_DEFAULTS, **file.run.given(), **overrides.get("run", {})},
                     source=source, table="run")
    return RunConfig(profile=name, vlm=tables["vlm"], image=tables["image"], video=tables["video"],
                     embedder=tables["embedder"], run=run, source=source, prices=dict(file.prices))


__all__ = ["KINDS", "OPENAI_IMAGE_MODEL", "PROFILES", "RUN_DEFAULTS", "SECRET_KEYS", "SECTIONS", "ModelNotice",
           "RunConfig", "Shutdown", "model_notice", "model_notices", "openai_shutdowns", "read_config", "resolve",
           "utc_today"]

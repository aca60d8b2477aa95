"""Profiles and config files: which backends a run uses, and with what options.

A profile is a named set of backends; a TOML file (``--config F``) starts from a profile and
overrides any part. The keys of DESIGN §7 are a contract (``profile``, ``[vlm] backend/model/
base_url``, ``[image]``, ``[video]``, ``[embedder] backend/model/pretrained``); other keys of a
table are passed to that backend as options. ``[run]`` holds the loop's own settings.
``[prices."MODEL"]`` overrides a model's price (``generators.prices``); prices are not settings:
they are read when a cost is asked for, never recorded in the log.

Invariant: a resolved config never holds a secret. API keys come from the environment
(``OPENAI_API_KEY``, or the variable named by ``api_key_env``); a config that contains one is
refused, because configs are recorded in the log.
"""

from __future__ import annotations

import copy
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from codirector.errors import ConfigError, did_you_mean
from codirector.generators.prices import PriceTable

_PREVIEW_EMBEDDER = {"backend": "open_clip", "model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k",
                     "offline": True, "allow_random": True}
_REAL_EMBEDDER = {"backend": "open_clip", "model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"}

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "preview": {
        "vlm": {"backend": "preview"},
        "image": {"backend": "storyboard"},
        "video": {"backend": "animatic"},
        "embedder": _PREVIEW_EMBEDDER,
    },
    "openai": {
        "vlm": {"backend": "openai", "model": "gpt-4.1"},
        "image": {"backend": "openai", "model": "gpt-image-1"},
        "video": {"backend": "diffusers", "model": "Wan-AI/Wan2.2-I2V-A14B-Diffusers"},
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

    def to_settings(self) -> dict[str, Any]:
        """What is recorded in ``StoryCreated.settings`` (checked to hold no secret)."""
        data = {"profile": self.profile, **{k: copy.deepcopy(getattr(self, k)) for k in SECTIONS}}
        _refuse_secrets(data, self.source or "settings")
        return data

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> RunConfig:
        """Rebuild from what ``to_settings`` recorded (resume, replay, branch)."""
        try:
            tables = {k: dict(settings[k]) for k in SECTIONS}
            return cls(profile=settings["profile"], vlm=tables["vlm"], image=tables["image"], video=tables["video"],
                       embedder=tables["embedder"], run=tables["run"])
        except KeyError as e:
            raise ConfigError(f"recorded settings lack {e}", hint="this story was written by an incompatible "
                              "version of codirector") from None


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


def resolve(profile: str | None = None, config_path: str | Path | None = None,
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


def build_backends(config: RunConfig) -> Any:
    """Create the run's backends; a GPU-only video backend falls back to the animatic without CUDA.

    The pre-flight runs first: ``NotReady`` lists every backend that cannot run here, before any is built.
    """
    from codirector.generators import registry
    from codirector.generators.base import Backends
    from codirector.generators.preflight import require_ready

    require_ready(config)
    notes: list[str] = []
    made: dict[str, Any] = {}
    for kind in ("vlm", "image", "video", "embedder"):
        options = config.table(kind)
        name = options.pop("backend", None)
        if not name:
            raise ConfigError(f"[{kind}] has no backend", hint="set backend = \"...\" (see `codirector backends`)")
        if kind == "video" and name == "diffusers":
            ok, why = registry.usable(kind, name, options)
            if not ok:
                notes.append(f"video backend 'diffusers' is not usable here ({why}); using 'animatic' instead")
                name, options = "animatic", {}
        if kind == "embedder" and options.get("allow_random"):
            ok, why = registry.usable(kind, name, options)
            if "untrained" in why:
                notes.append(f"embedder: {options.get('model')} {why}; the run and its audit say so")
        made[kind] = registry.create(kind, name, options)
    return Backends(vlm=made["vlm"], image=made["image"], video=made["video"], embedder=made["embedder"], notes=notes)

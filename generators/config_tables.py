"""The config file's tables as pydantic models: what each key may hold, checked when the file is read.

A config file (``--config F``, docs/architecture.md §9) is read into a ``ConfigFile``: the top-level keys, ``[run]``
(``RunTable``), ``[prices."MODEL"]`` (``PriceOverride``, keyed by any model id) and the four backend tables
(``BackendTable``: the keys of the §9 contract typed, every other key an option of the backend). Once the profile is
merged in, each backend table is checked against the options its backend takes (``check_backend_table``: a model
built from the signature of the backend's factory). ``generators.profiles`` resolves a config through these models;
``generators.config_errors`` words a refusal.

Invariants:
- A bad config is refused when it is read, before anything is recorded, with one ``ConfigError`` (exit 2) naming
  the file, the table, the key, the bad value and the fix; never a pydantic dump.
- Where an unknown key is a mistake (the top level, ``[run]``, a price, a backend whose factory lists its options)
  it is refused with the closest known key and the known ones. Free-form tables stay free-form: ``[prices]`` is keyed
  by any model id, ``[video.arguments]`` and ``[video.bind]`` belong to their backend (which checks them), and a
  plugin backend whose factory takes ``**options`` gets any key.
- Values are checked, never converted (``strict``; a number keeps its int or float form): the tables hold, and
  ``StoryCreated.settings`` records, exactly what the file said, so a story records the bytes it did before these
  models existed (``events.specs.RecordedSettings``; ``given`` is the recorded form of a table).
"""

from __future__ import annotations

import functools
import inspect
import math
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, create_model
from pydantic_core import PydanticCustomError

from codirector.errors import ConfigError
from codirector.generators.config_errors import refusal


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PydanticCustomError("number", "a number")
    return value


def _usd(value: Any) -> int | float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or not math.isfinite(value):
        raise PydanticCustomError("usd", "a number of USD, 0 or more")
    return value


Number = Annotated[int | float, PlainValidator(_number)]  # 8 stays 8 and 8.0 stays 8.0 (what the file said)
USD = Annotated[int | float | None, PlainValidator(_usd)]


class ConfigTable(BaseModel):
    """A table of a config file: frozen, its values as written (strict), unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    def given(self) -> dict[str, Any]:
        """The keys this table was given, with their values (its recorded form)."""
        return self.model_dump(exclude_unset=True)


class RunTable(ConfigTable):
    """``[run]``: the loop's own settings and their defaults, written here only."""

    width: int = 512
    height: int = 288
    num_frames: int = 17
    fps: Number = 8.0
    max_rounds: int = 3
    shortlist: int = 12
    duplicate_threshold: Number = 0.93
    agent_attempts: int = 3
    frames_for_analysis: int = 8
    # where an evolved state the memory controller proposes (a new entity with a base_entity) takes
    # its first view from: "keyframe", the shot's selected keyframe (what the shot shows; the keyframe
    # is drawn from its base's view), or "reference", an image generated before the keyframe. A story
    # recorded without this key ran with "reference" (``engine.loop.context.RunSettings.from_table``).
    evolved_view: Literal["keyframe", "reference"] = "keyframe"


class RecordedRun(RunTable):
    """``[run]`` as a story records it: the file's table with every default filled in, and the paper's ablations,
    which come from the command line (``--no-memory`` ...; recorded only when set), never from a file."""

    no_memory: bool = False
    no_synergy: bool = False
    no_refine: bool = False


RUN_DEFAULTS: dict[str, Any] = RunTable().model_dump()


class BackendTable(BaseModel):
    """``[vlm]``, ``[image]``, ``[video]`` or ``[embedder]``: which backend, and its options.

    The keys of the §9 contract are typed here; any other key is an option of the backend, kept as written (its
    backend's own model checks it: ``check_backend_table``) and passed to it as a keyword argument."""

    model_config = ConfigDict(frozen=True, extra="allow", strict=True)

    backend: str = Field(default="", examples=["openai"])
    model: str | None = Field(default=None, examples=["gpt-4.1"])
    base_url: str | list[str] | None = Field(default=None, examples=["http://localhost:8000/v1"])  # a list: a pool
    api_key_env: str | None = Field(default=None, examples=["OPENAI_API_KEY"])

    def given(self) -> dict[str, Any]:
        """The table as written (its recorded form): the backend's name and every option given."""
        return self.model_dump(exclude_unset=True)

    @property
    def options(self) -> dict[str, Any]:
        """What the backend is built with: the table without ``backend`` (a copy)."""
        return {k: v for k, v in self.given().items() if k != "backend"}

    @classmethod
    def recorded(cls, table: Mapping[str, Any]) -> BackendTable:
        """A table as a story recorded it: taken as stored, unchecked (its backend may not be installed here)."""
        return cls.model_construct(**dict(table))


class PriceOverride(ConfigTable):
    """``[prices."MODEL"]``: the rates that replace MODEL's built-in price (``generators.prices.Price``), USD."""

    input_per_million: USD = None
    output_per_million: USD = None
    cached_input_per_million: USD = None
    text_input_per_million: USD = None
    per_image: USD = None
    per_second: USD = None


def _backend_table() -> BackendTable:
    return BackendTable()


class ConfigFile(ConfigTable):
    """A config file as written: a profile to start from, the tables that override it, and prices."""

    profile: str | None = Field(default=None, examples=["preview"])
    vlm: BackendTable = Field(default_factory=_backend_table)
    image: BackendTable = Field(default_factory=_backend_table)
    video: BackendTable = Field(default_factory=_backend_table)
    embedder: BackendTable = Field(default_factory=_backend_table)
    run: RunTable = Field(default_factory=RunTable)
    prices: dict[str, PriceOverride] = Field(default_factory=dict)  # keyed by model id: any name

    def backend_table(self, kind: str) -> BackendTable:
        """The file's ``[kind]`` table (empty when the file has none)."""
        table: BackendTable = getattr(self, kind)
        return table


Table = TypeVar("Table", bound=BaseModel)


def read_table(model: type[Table], data: Mapping[str, Any], *, source: str | None, table: str | None = None,
               owner: str | None = None) -> Table:
    """``data`` validated as ``model``, or the ``ConfigError`` naming ``source``, ``table`` and the bad key."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as e:
        raise refusal(e, model, data, source=source, table=table, owner=owner) from None


def _signature_params(factory: Any) -> list[inspect.Parameter]:
    try:
        return list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return [inspect.Parameter("options", inspect.Parameter.VAR_KEYWORD)]  # unknown: take anything


@functools.cache
def options_model(factory_path: str, label: str) -> type[BaseModel] | None:
    """The options of a backend as a model built from its factory's signature (keyword names, type hints;
    every option optional here: a missing one is its backend's to report); ``None`` when the factory takes
    ``**options`` or cannot be loaded (the pre-flight reports that)."""
    from codirector.generators import registry

    try:
        factory = registry.load_factory(factory_path)
    except Exception:  # noqa: BLE001 - a broken plugin is the pre-flight's to report, with its fix
        return None
    params = _signature_params(factory)
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    try:
        hints = typing.get_type_hints(factory.__init__ if inspect.isclass(factory) else factory)
    except Exception:  # noqa: BLE001 - a hint that cannot be resolved: check the names only
        hints = {}
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"]
    config = ConfigDict(extra="forbid", strict=True, frozen=True, arbitrary_types_allowed=True,
                        protected_namespaces=())
    try:
        return create_model(label, __config__=config, **dict(_field(p, hints.get(p.name, Any)) for p in named))
    except Exception:  # noqa: BLE001 - a hint pydantic cannot check: check the names only
        return create_model(label, __config__=config, **dict(_field(p, Any) for p in named))


def _field(p: inspect.Parameter, hint: Any) -> tuple[str, Any]:
    """One option as a field: its type hint, and its default (an example in a refusal; a required option defaults
    to ``None`` here). A name pydantic reserves (``model_config``) is the alias of a field named otherwise."""
    default = None if p.default is inspect.Parameter.empty else p.default
    if p.name.startswith("model_") or hasattr(BaseModel, p.name):
        return f"option_{p.name}", (hint, Field(default=default, alias=p.name))
    return p.name, (hint, Field(default=default))


def check_backend_table(kind: str, table: BackendTable, source: str | None) -> None:
    """Refuse an option ``table``'s backend does not take, or a value of a type it does not take (``ConfigError``).

    An unknown backend name passes here: the pre-flight reports it, with the known ones."""
    from codirector.generators import registry

    try:
        found = registry.find(kind, table.backend)
    except ConfigError:  # a plugin module that cannot be loaded: the pre-flight reports it, with its fix
        return
    if found is None:
        return
    model = options_model(found.factory, f"{kind} backend {table.backend!r}")
    if model is not None:
        read_table(model, table.options, source=source, table=kind, owner=f"the {table.backend!r} {kind} backend")


def check_recorded(model: type[Table], data: Mapping[str, Any], table: str) -> Table:
    """A recorded table read as ``model`` (keys this release no longer knows are left out, as they were ignored)."""
    known = {k: v for k, v in data.items() if k in model.model_fields}
    try:
        return model.model_validate(known)
    except ValidationError as e:
        error = refusal(e, model, known, source="the story's recorded settings", table=table)
        raise ConfigError(error.message, hint="this story was recorded with a value this release refuses; start it "
                                              "again with the value fixed in its config") from None


__all__ = ["RUN_DEFAULTS", "USD", "BackendTable", "ConfigFile", "ConfigTable", "Number", "PriceOverride",
           "RecordedRun", "RunTable", "check_backend_table", "check_recorded", "options_model", "read_table"]

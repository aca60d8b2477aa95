"""What model calls cost: a price per model, usage x price, and a call's worst case before it is made.

Prices are per model name, in USD. The built-in table (package data: generators/data/prices.toml, each
entry with the day its page was read and the page) names the API models the profiles use; a config's
``[prices."MODEL"]`` table replaces the built-in price of MODEL (keys: ``input_per_million``,
``output_per_million``, ``cached_input_per_million``, ``text_input_per_million``, ``per_image``,
``per_second``). ``per_second`` prices the ``compute_seconds`` a local backend reports (your
GPU's price per second of generation), or else the ``video_seconds`` an API generated.

Invariants:
- A model with no price is *unpriced*: its cost is ``None``, never 0. Free local backends (the
  preview VLM, storyboard, animatic, the open_clip embedder) have an explicit zero price.
- A priced call whose usage lacks what its price needs (a token price, no token counts) is
  unpriced too: its cost is unknown, not zero.
- Cost is a projection: usage as recorded x the table in force when asked. Prices are never
  written to the log, and they hold numbers and model names only (never a key or a header).
- The worst-case bounds here (``vision_tokens_bound``, ``image_output_tokens_bound``, ...) are
  upper bounds of what the API can bill for a request, so a budget checked with them holds.
"""

from __future__ import annotations

import functools
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codirector.errors import ConfigError
from codirector.generators import datafiles
from codirector.generators.config_errors import shown, toml_key
from codirector.generators.config_tables import PriceOverride, read_table


@dataclass(frozen=True)
class Price:
    """The price of one model, USD. ``None`` rates fall back to ``input_per_million``."""

    input_per_million: float = 0.0
    output_per_million: float = 0.0
    cached_input_per_million: float | None = None  # chat: usage.prompt_tokens_details.cached_tokens
    text_input_per_million: float | None = None  # images: usage.input_tokens_details.text_tokens
    per_image: float = 0.0
    per_second: float = 0.0
    source: str = "built-in"

    @property
    def by_tokens(self) -> bool:
        return any(v for v in (self.input_per_million, self.output_per_million, self.cached_input_per_million,
                               self.text_input_per_million))

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


PRICE_KEYS = tuple(f.name for f in fields(Price) if f.name != "source")

# The built-in prices are package data, generators/data/prices.toml: one entry per model with its rates, the day
# its page was read (`checked`) and the page (`source`), read once when first asked for (``builtin_prices``;
# ``BUILTIN`` is the same dict). A price's ``source`` names both: "built-in, https://..., checked 2026-11-30".
def _read_builtin() -> dict[str, Price]:
    prices: dict[str, Price] = {}
    for model, entry in datafiles.table("prices.toml").get("models", {}).items():
        where = f"generators/data/prices.toml [models.{model!r}]"
        origin = datafiles.provenance(entry, where)
        rates = {k: v for k, v in entry.items() if k not in ("checked", "source", "note")}
        price = parse_price(rates, source="generators/data/prices.toml", name=f"models.{toml_key(model)}")
        prices[model] = replace(price, source=f"built-in, {origin.describe()}")
    return prices


@functools.cache
def builtin_prices() -> dict[str, Price]:
    """The built-in price of each model (generators/data/prices.toml), read once."""
    return _read_builtin()


if TYPE_CHECKING:
    BUILTIN: dict[str, Price]  # builtin_prices(), read when first named (``__getattr__``)


def __getattr__(name: str) -> Any:
    if name == "BUILTIN":
        return builtin_prices()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Local backends that cost nothing to run: a zero price, stated (not "unpriced").
FREE_BACKENDS = ("preview", "storyboard", "animatic", "open_clip")
FREE = Price(source="built-in: local and free")

# The most a chat answer can be when no max_tokens is configured (the model's output limit).
MAX_OUTPUT_TOKENS: dict[str, int] = {"gpt-4.1": 32_768}
DEFAULT_MAX_OUTPUT_TOKENS = 32_768
MESSAGE_OVERHEAD_TOKENS = 16  # role markers and reply priming of a two-message chat

# Output tokens of one image by model, then (quality, size), where OpenAI documents them: gpt-image-1's page's
# per-image prices over its output rate (checked 2026-11-30). A model not listed has no stated bound
# (``image_output_tokens_bound`` is None), and gpt-image-1's counts are NOT reused for it: gpt-image-2.6-sunburst's
# page gives no per-image counts, it offers qualities above "high" (xhigh, max), and the gpt-image-2 family bills
# more output tokens per image than gpt-image-1 (a high 1024x1024 gpt-image-2 image is $0.211 in OpenAI's cost
# examples, as quoted by third-party price pages: about 7024 tokens at $30 per 1M, against gpt-image-1's 4160), so
# gpt-image-1's counts would not be an upper bound.
IMAGE_OUTPUT_TOKENS: dict[str, dict[str, dict[str, int]]] = {
    "gpt-image-1": {
        "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
        "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
        "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
    },
}
HIGH_FIDELITY_EXTRA_TOKENS = 6240  # the most input_fidelity="high" adds per input image


# ---------------------------------------------------------------------------- worst cases (pure)


def max_output_tokens(model: str, configured: int | None) -> int:
    """A chat answer's most tokens: ``max_tokens`` when configured, else the model's output limit."""
    return configured if configured is not None else MAX_OUTPUT_TOKENS.get(model, DEFAULT_MAX_OUTPUT_TOKENS)


def text_tokens_bound(*texts: str) -> int:
    """An upper bound of the tokens of ``texts``: their UTF-8 bytes (a BPE token is at least one byte)."""
    return sum(len(t.encode("utf-8")) for t in texts)


def vision_tokens_bound(width: int, height: int, detail: str) -> int:
    """The most tokens an image in a chat can cost (GPT-4o/4.1 tiles: 85 + 170 per 512 px tile)."""
    if detail == "low":
        return 85
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)


def image_output_tokens_bound(size: str, quality: str | None, model: str = "gpt-image-1") -> int | None:
    """The most output tokens one image of ``model`` at ``size`` can cost (``auto`` or an unknown size or quality:
    the largest); ``None`` when OpenAI documents no per-image counts for ``model`` (``IMAGE_OUTPUT_TOKENS``)."""
    counts = IMAGE_OUTPUT_TOKENS.get(model)
    if counts is None:
        return None
    table = counts.get(quality or "high", counts["high"])
    return table.get(size, max(table.values()))


def image_input_tokens_bound(width: int, height: int, input_fidelity: str | None) -> int:
    """The most input tokens one reference image can cost an image edit."""
    extra = HIGH_FIDELITY_EXTRA_TOKENS if input_fidelity == "high" else 0
    return vision_tokens_bound(width, height, "high") + extra


# ---------------------------------------------------------------------------- usage x price (pure)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _detail(usage: Mapping[str, Any], key: str, name: str) -> int:
    details = usage.get(key)
    return _int(details.get(name)) if isinstance(details, Mapping) else 0


def call_cost(price: Price, usage: Mapping[str, Any] | None) -> float | None:
    """USD for one call's usage, or ``None`` when the usage lacks what ``price`` needs."""
    usage = usage or {}
    total = 0.0
    if price.by_tokens:
        if not any(k in usage for k in ("input_tokens", "prompt_tokens", "output_tokens", "completion_tokens")):
            return None
        tokens_in = _int(usage.get("input_tokens", usage.get("prompt_tokens")))
        tokens_out = _int(usage.get("output_tokens", usage.get("completion_tokens")))
        cached = _detail(usage, "prompt_tokens_details", "cached_tokens") or \
            _detail(usage, "input_tokens_details", "cached_tokens")
        text = _detail(usage, "input_tokens_details", "text_tokens")
        rest = tokens_in
        if price.cached_input_per_million is not None and cached:
            total += cached * price.cached_input_per_million
            rest -= cached
        if price.text_input_per_million is not None and text:
            total += text * price.text_input_per_million
            rest -= text
        total += max(rest, 0) * price.input_per_million + tokens_out * price.output_per_million
        total /= 1_000_000
    if price.per_image:
        if "images" not in usage:
            return None
        total += _int(usage["images"]) * price.per_image
    if price.per_second:
        seconds = usage.get("compute_seconds", usage.get("video_seconds"))
        if not isinstance(seconds, int | float):
            return None
        total += float(seconds) * price.per_second
    return total


@dataclass(frozen=True)
class PriceTable:
    """The prices in force: the built-ins, with a config's ``[prices]`` tables replacing them per model."""

    prices: Mapping[str, Price]

    @classmethod
    def builtin(cls) -> PriceTable:
        return cls(dict(builtin_prices()))

    @classmethod
    def with_overrides(cls, tables: Mapping[str, Any] | None, where: str = "config") -> PriceTable:
        """The built-ins with ``tables`` (a TOML ``[prices]`` table: model -> keys) replacing them."""
        prices = dict(builtin_prices())
        for model, table in (tables or {}).items():
            prices[str(model)] = parse_price(table, source=where, name=f"prices.{toml_key(str(model))}")
        return cls(prices)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str] | None) -> PriceTable:
        """The built-ins and the ``[prices]`` of a TOML file (a run's config; other tables are ignored)."""
        if path is None:
            return cls.builtin()
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist",  # a run's --config, or --prices: read for [prices]
                              hint="check the path given to --config (or --prices)") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p} is not valid TOML: {e}") from e
        tables = data.get("prices", {})
        if not isinstance(tables, dict):
            raise ConfigError(f"{p}: [prices] must be a table of models, got {tables!r}",
                              hint='e.g. [prices."gpt-4.1"] input_per_million = 2.0')
        return cls.with_overrides(tables, str(p))

    def price(self, backend: str, model: str) -> Price | None:
        """The price of ``model`` (served by ``backend``); ``None`` when it has none."""
        found = self.prices.get(model)
        if found is None and backend in FREE_BACKENDS:
            return FREE
        return found

    def cost(self, backend: str, model: str, usage: Mapping[str, Any] | None) -> float | None:
        """USD for one call, or ``None`` when unpriced (no price, or usage its price cannot read)."""
        price = self.price(backend, model)
        return None if price is None else call_cost(price, usage)


def parse_price(table: Any, *, source: str, name: str) -> Price:
    """The ``[NAME]`` table of ``source`` (``prices."MODEL"``) as a ``Price``: its rates checked as a
    ``config_tables.PriceOverride`` (numbers of USD, 0 or more; known keys only)."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: [{name}] must be a table, got {shown(table)}",
                          hint=f"write [{name}] on a line of its own, its rates below it (input_per_million = 2.0)")
    rates = read_table(PriceOverride, table, source=source, table=name).given()
    values: dict[str, Any] = {k: float(v) for k, v in rates.items()}
    return replace(Price(source="config"), **values)


__all__ = ["BUILTIN", "FREE_BACKENDS", "PRICE_KEYS", "Price", "PriceTable", "builtin_prices", "call_cost",
           "image_input_tokens_bound", "image_output_tokens_bound", "max_output_tokens", "parse_price",
           "text_tokens_bound", "vision_tokens_bound"]

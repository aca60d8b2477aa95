"""Tables shipped as package data, ``generators/data/*.toml``: the built-in prices and the models' lifecycle dates.

Each file holds sections of entries, ``[SECTION."NAME"]`` (``[models."gpt-4.1"]``, ``[openai."dall-e-3"]``), and
every entry says when and where its facts were read: ``checked`` (a TOML date) and ``source`` (an https URL),
with an optional ``note``. ``table`` reads a file once per process (from the installed package, through
``importlib.resources``), refuses an entry that lacks either, and hands back its sections;
``generators.prices`` and ``generators.profiles`` turn them into their Python structures when first asked.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from datetime import date
from importlib import resources
from typing import Any

from codirector.errors import ConfigError

FILES = ("prices.toml", "lifecycle.toml")


@dataclass(frozen=True)
class Provenance:
    """When and where an entry's facts were read."""

    checked: date
    source: str
    note: str | None = None

    def describe(self) -> str:
        """``https://…, checked 2026-11-30 (note)``."""
        return f"{self.source}, checked {self.checked.isoformat()}" + (f" ({self.note})" if self.note else "")


def read_text(name: str) -> str:
    """The text of ``generators/data/NAME`` as installed."""
    return resources.files("codirector.generators").joinpath("data", name).read_text(encoding="utf-8")


def provenance(entry: dict[str, Any], where: str) -> Provenance:
    """An entry's ``checked``, ``source`` and ``note``; a ``ConfigError`` naming ``where`` when one is missing."""
    checked, source, note = entry.get("checked"), entry.get("source"), entry.get("note")
    if not isinstance(checked, date):
        raise ConfigError(f"{where}: checked must be the date its source was read, like checked = 2026-11-30, "
                          f"got {checked!r}", hint="this file ships with codirector: reinstall it, or fix the entry")
    if not isinstance(source, str) or not source.startswith("https://"):
        raise ConfigError(f"{where}: source must be the https URL the entry was read from, got {source!r}",
                          hint="this file ships with codirector: reinstall it, or fix the entry")
    if note is not None and not isinstance(note, str):
        raise ConfigError(f"{where}: note must be text, got {note!r}")
    return Provenance(checked, source, note)


@functools.cache
def table(name: str) -> dict[str, dict[str, dict[str, Any]]]:
    """The sections of ``generators/data/NAME``, each entry checked to carry ``checked`` and ``source``."""
    try:
        data = tomllib.loads(read_text(name))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"generators/data/{name} is not valid TOML: {e}",
                          hint="this file ships with codirector: reinstall it") from e
    for section, entries in data.items():
        if not isinstance(entries, dict) or not all(isinstance(e, dict) for e in entries.values()):
            raise ConfigError(f"generators/data/{name}: [{section}] must hold tables of entries, "
                              f'like [{section}."NAME"]')
        for key, entry in entries.items():
            provenance(entry, f"generators/data/{name} [{section}.{key!r}]")
    return data


def lifecycle(provider: str) -> dict[str, tuple[date, str]]:
    """``[PROVIDER."MODEL"]`` of lifecycle.toml: each model's shutdown day on the provider's own API, and the
    replacement to set instead."""
    found: dict[str, tuple[date, str]] = {}
    for model, entry in table("lifecycle.toml").get(provider, {}).items():
        day, replacement = entry.get("shutdown"), entry.get("replacement")
        if not isinstance(day, date) or not isinstance(replacement, str) or not replacement:
            raise ConfigError(f"generators/data/lifecycle.toml [{provider}.{model!r}]: needs shutdown = a date and "
                              f"replacement = a model name, got {day!r} and {replacement!r}",
                              hint="this file ships with codirector: reinstall it, or fix the entry")
        found[model] = (day, replacement)
    return found


__all__ = ["FILES", "Provenance", "lifecycle", "provenance", "read_text", "table"]

"""Package data: the price and lifecycle tables (generators/data/*.toml) say when and where every entry was read,
become the Python structures the code reads, and ship, with the templates and every subpackage, in a wheel that,
installed, finds them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from datetime import date
from pathlib import Path

import pytest

from codirector.errors import ConfigError
from codirector.generators import datafiles
from codirector.generators.hosted.google import shut_down
from codirector.generators.prices import BUILTIN, PriceTable, builtin_prices
from codirector.generators.profiles import OPENAI_IMAGE_MODEL, OPENAI_SHUTDOWNS, Shutdown, openai_shutdowns

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("codirector/generators/data/prices.toml", "codirector/generators/data/lifecycle.toml",
           "codirector/engine/views/templates/audit.html", "codirector/engine/views/templates/lineage.svg",
           "codirector/serve/templates/base.html")


def test_every_entry_says_when_and_where_it_was_read() -> None:
    for name in datafiles.FILES:
        raw = tomllib.loads(datafiles.read_text(name))  # through importlib.resources, as installed
        entries = [(f"{section}.{key}", entry) for section, table in raw.items() for key, entry in table.items()]
        assert entries, name
        for where, entry in entries:
            assert isinstance(entry.get("checked"), date) and entry["checked"] <= date.today(), (name, where)
            assert isinstance(entry.get("source"), str) and entry["source"].startswith("https://"), (name, where)
    assert set(datafiles.table("prices.toml")) == {"models"}
    assert set(datafiles.table("lifecycle.toml")) == {"openai", "google"}


def test_the_tables_become_the_structures_the_code_reads() -> None:
    assert BUILTIN is builtin_prices() and OPENAI_SHUTDOWNS is openai_shutdowns()  # read once
    prices = PriceTable.builtin()
    for model, entry in datafiles.table("prices.toml")["models"].items():
        price = prices.price("openai", model)
        assert price is not None and entry["source"] in price.source and entry["checked"].isoformat() in price.source
        assert price.source.startswith("built-in, ")
    assert BUILTIN["gpt-4.1"].input_per_million == 2.00 and BUILTIN["veo-3.1-generate-001"].per_second == 0.40
    assert OPENAI_SHUTDOWNS["dall-e-3"] == Shutdown(date(2026, 5, 12), OPENAI_IMAGE_MODEL)
    assert shut_down()["veo-3.1-generate-preview"] == (date(2026, 10, 22), "veo-3.1-generate-001")
    # every replacement named is a model that is not itself retired
    assert not {s.replacement for s in OPENAI_SHUTDOWNS.values()} & set(OPENAI_SHUTDOWNS)
    assert not {r for _, r in shut_down().values()} & set(shut_down())


def test_an_entry_without_a_source_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datafiles, "read_text", lambda name: '[models."m"]\nper_image = 1.0\nchecked = 2026-11-30\n')
    datafiles.table.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"prices.toml \[models.'m'\]: source must be the https URL"):
            datafiles.table("prices.toml")
    finally:
        datafiles.table.cache_clear()


def _ignore(folder: str, names: list[str]) -> set[str]:
    skip = {".git", ".venv", ".mypy_cache", ".ruff_cache", ".hypothesis", "tests", "benchmarks", "build", "dist",
            "__pycache__"}
    return {n for n in names if n in skip or n.endswith(".egg-info")}


@pytest.mark.slow  # builds a wheel and installs it (pip in a process of its own): not the fast lane
def test_a_wheel_ships_the_data_the_templates_and_every_subpackage(tmp_path: Path) -> None:
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=_ignore)
    packages = {"codirector/" + str(p.parent.relative_to(src)).replace(os.sep, "/") + "/__init__.py"
                for p in src.rglob("__init__.py") if p.parent != src} | {"codirector/__init__.py"}
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "--no-index", "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("codirector-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(SHIPPED) <= names, set(SHIPPED) - names
    assert packages <= names, sorted(packages - names)

    # installed from the wheel (not this tree), the package reads its tables and renders its templates
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import codirector; "
             "assert codirector.__file__.startswith(sys.argv[1]), codirector.__file__; "
             "from codirector.generators.prices import BUILTIN; from codirector.generators.profiles import "
             "OPENAI_SHUTDOWNS; from codirector.engine.views.templating import environment; "
             "[environment().get_template(n) for n in ('audit.html', 'lineage.svg')]; "
             "print(len(BUILTIN), len(OPENAI_SHUTDOWNS))")
    ran = subprocess.run([sys.executable, "-c", probe, str(site)], capture_output=True, text=True, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == [str(len(BUILTIN)), str(len(OPENAI_SHUTDOWNS))]

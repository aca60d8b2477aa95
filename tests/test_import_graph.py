"""The package's imports form no circle, and point one way between the layers (docs/architecture.md §2).

The graph is read from the source with ``ast``: every ``import`` and ``from ... import`` of a
``codirector`` module, wherever it stands (inside a function or under ``TYPE_CHECKING`` too: a
deferred import is still a dependency). ``from pkg import name`` counts as an import of the
submodule ``pkg.name`` when there is one, else of ``pkg`` (as import-linter's grimp reads it).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = {"tests", "benchmarks", "scripts", "docs", "examples", "build", "dist"}


def _sources() -> Iterator[Path]:
    """The ``.py`` files under ROOT, not looking inside the top-level folders ``_modules`` leaves out (a virtual
    environment in ``.venv`` alone holds tens of thousands of files)."""
    for entry in ROOT.iterdir():
        if entry.name in OUTSIDE or entry.name.startswith(".") or entry.name.endswith(".egg-info"):
            continue
        if entry.is_dir():
            yield from entry.rglob("*.py")
        elif entry.suffix == ".py":
            yield entry


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in _sources():
        parts = path.relative_to(ROOT).parts
        if parts[0] in OUTSIDE or parts[0].startswith(".") or parts[0].endswith(".egg-info") or "migrations" in parts:
            continue
        if any(not (ROOT.joinpath(*parts[:i]) / "__init__.py").exists() for i in range(1, len(parts))):
            continue  # a folder that is not a package
        names = ["codirector", *parts[:-1]] + ([] if parts[-1] == "__init__.py" else [parts[-1][:-3]])
        found[".".join(names)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the ``codirector`` modules it imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                subs = [f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in modules]
                targets = subs + ([source] if len(subs) < len(node.names) else [])
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph)))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


def test_the_reader_sees_the_package() -> None:
    graph = import_graph()
    assert {"codirector.cli", "codirector.engine.studio", "codirector.engine.continuation",
            "codirector.events.base"} <= set(graph)
    assert "codirector.engine.continuation" in graph["codirector.engine.scale.worker"]
    assert not any(m.startswith("codirector.tests") for m in graph)


def test_a_circle_is_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_circle() -> None:
    graph = import_graph()
    found = cycles(graph)
    shown = "\n".join(
        "  " + ", ".join(c) + "\n" + "\n".join(f"    {a} -> {b}" for a in c for b in sorted(graph[a] & set(c)))
        for c in found)
    assert not found, f"import circles (cut each: move what both sides need into a module of its own):\n{shown}"


def test_the_layer_contract_holds() -> None:
    """``lint-imports`` (import-linter, the ``test`` extra) checks pyproject's layers contract."""
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.skip('import-linter is not installed: pip install -e ".[test]"')
    done = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]

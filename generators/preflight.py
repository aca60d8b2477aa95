"""Pre-flight: can this configuration run here? Asked before a run, resume, director or benchmark writes anything.

``preflight(cfg)`` asks every backend the config names for its cheap check (``registry.readiness``) and
returns a ``Preflight``: one ``Check`` per kind, the problems with their fixes, and the notes.
``require_ready(cfg)`` raises ``NotReady`` listing every problem at once. ``build.build_backends``
calls it first, so every path that builds backends from a config (run, resume, run --branch, direct,
bench, eval; batch and the web studio when they come) is checked the same way, and ``codirector
backends --check`` shows the same answers as a table.

Invariants:
- Quick and without side effects: no model is loaded, nothing is downloaded, torch, open_clip and
  diffusers are not imported; a check reads the environment and the disk, and at most opens one
  connection to the model hub (``hub.hub_reachable``: two seconds at most, remembered for a minute).
- Complete: every problem of every backend is reported at once, each with its fix (the variable to
  set, the TOML key for a local checkpoint or folder, ``pretrained = "none"`` for tests, the package
  to install); the same problem of two backends (one unset key) is listed once, naming both.
- Secret-free: an API key's variable is named, its value is never read beyond "is it set".
- A backend with a documented fallback (image-to-video without CUDA runs as ``animatic``, docs/architecture.md §9)
  is a note, not a problem.
- A ``[vlm]`` or ``[image]`` model that OpenAI has shut down (``profiles.model_notice``, sent to
  OpenAI's own API) is a problem of its table, with the replacement to set, listed beside any other
  problem of that backend; one OpenAI will shut down is said in the table's detail.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING, Any

from codirector.errors import ConfigError, NotReady
from codirector.generators import registry

if TYPE_CHECKING:
    from codirector.generators.profiles import RunConfig


@dataclass(frozen=True)
class Check:
    """One backend of the config, as its check found it."""

    kind: str
    backend: str
    model: str | None
    ready: bool
    detail: str
    fix: str | None = None
    fallback: str | None = None  # the backend the run uses instead (then ``ready`` is the fallback's)
    capabilities: Any = None  # jobs.Capabilities of the configured model, where the backend declares them

    @property
    def label(self) -> str:
        return f"[{self.kind}] {self.backend or '(none)'}"

    @property
    def state(self) -> str:
        if not self.ready:
            return "not ready"
        return f"falls back to {self.fallback}" if self.fallback else "ready"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "backend": self.backend, "model": self.model, "ready": self.ready,
                "state": self.state, "detail": self.detail, "fix": self.fix, "fallback": self.fallback,
                "capabilities": self.capabilities.to_json() | {"summary": self.capabilities.summary()}
                if self.capabilities else None}


@dataclass(frozen=True)
class Problem:
    """Something that keeps one or more backends from running here, and how to fix it."""

    backends: tuple[str, ...]
    what: str
    fix: str

    def to_json(self) -> dict[str, Any]:
        return {"backends": list(self.backends), "problem": self.what, "fix": self.fix}


@dataclass
class Preflight:
    """Every backend a config names, checked; ``ok`` when the run can start."""

    profile: str
    source: str | None
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ready for c in self.checks)

    @property
    def problems(self) -> list[Problem]:
        """The problems, in kind order; identical ones (same text, same fix) merged."""
        merged: dict[tuple[str, str], list[str]] = {}
        for c in self.checks:
            if not c.ready:
                merged.setdefault((c.detail, c.fix or "see `codirector backends`"), []).append(c.label)
        return [Problem(tuple(labels), what, fix) for (what, fix), labels in merged.items()]

    @property
    def notes(self) -> list[str]:
        return [f"{c.label}: {c.detail}; the run uses '{c.fallback}' instead"
                for c in self.checks if c.ready and c.fallback]

    def command(self) -> str:
        """The ``backends --check`` command that shows this report again."""
        which = f" --config {self.source}" if self.source else f" --profile {self.profile}"
        return f"codirector backends --check{which}"

    def error(self, *, listed: bool = True) -> NotReady:
        """``NotReady`` naming every problem and its fix (``listed=False``: a short message for below a table)."""
        problems = self.problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        where = f"the config {self.source} (profile {self.profile!r})" if self.source else f"profile {self.profile!r}"
        lines = [f"{c.label}: {c.detail}" for c in self.checks if not c.ready]
        if not listed:
            return NotReady(f"{where} cannot run here: {count} (fixes above); nothing was written", problems=lines)
        body = []
        for i, p in enumerate(problems, start=1):
            body.append(f"  {i}. {', '.join(p.backends)}: {p.what}")
            body.append(f"     fix: {p.fix}")
        return NotReady(f"{where} cannot run here: {count}; nothing was written\n" + "\n".join(body),
                        hint=f"fix each problem above, then check again with `{self.command()}`", problems=lines)

    def to_json(self) -> dict[str, Any]:
        return {"profile": self.profile, "config": self.source, "ready": self.ok,
                "backends": [c.to_json() for c in self.checks], "problems": [p.to_json() for p in self.problems],
                "notes": self.notes}


def _shown_model(kind: str, options: dict[str, Any]) -> str | None:
    model = options.get("model")
    if kind == "embedder" and options.get("pretrained") is not None:
        return f"{model}/{options['pretrained']}"
    return None if model is None else str(model)


def check_backend(kind: str, options: dict[str, Any], today: date | None = None) -> Check:
    """One config table (``[vlm]``, ...) checked: its backend's readiness, or why it is not even known; and
    whether OpenAI has shut its model down (as of ``today``, default the UTC date)."""
    found = _backend_readiness(kind, options)
    from codirector.generators.profiles import model_notice

    notice = model_notice(kind, options, today)
    if notice is None:
        return found
    if not notice.gone:  # said beside a ready backend; a problem's text stays as it is (so equal ones merge)
        return replace(found, detail=f"{found.detail}; {notice.message}") if found.ready else found
    if found.ready:
        return replace(found, ready=False, detail=notice.message, fix=notice.fix, fallback=None)
    return replace(found, detail=f"{notice.message}; and {found.detail}", fix=f"{notice.fix}; and {found.fix}")


def _backend_readiness(kind: str, options: dict[str, Any]) -> Check:
    """The readiness of the backend a config table names (its own check, and its fallback's if it has one)."""
    options = dict(options)
    name = options.pop("backend", None)
    model = _shown_model(kind, options)
    if not name:
        return Check(kind, "", model, False, f"[{kind}] names no backend",
                     fix=f"set [{kind}] backend = \"...\" (see `codirector backends`)")
    try:
        found = registry.readiness(kind, name, options)
    except ConfigError as e:  # an unknown backend name
        return Check(kind, name, model, False, e.message, fix=e.hint or "see `codirector backends`")
    caps = registry.capabilities(kind, name, options)
    if found.ready or not found.fallback:
        return Check(kind, name, model, found.ready, found.detail, found.fix, capabilities=caps)
    instead = registry.readiness(kind, found.fallback, {})
    detail = found.detail if instead.ready else f"{found.detail}; and its fallback {found.fallback!r}: {instead.detail}"
    return Check(kind, name, model, instead.ready, detail, found.fix if not instead.ready else None, found.fallback)


def preflight(cfg: RunConfig, today: date | None = None) -> Preflight:
    """Check every backend ``cfg`` names (cheap: see the module docstring), as of ``today`` (default the UTC date),
    and that the run's frame size is one the image and video models can make (``fits_run_size``)."""
    checks = [fits_run_size(check_backend(kind, cfg.table(kind), today), cfg) for kind in registry.KINDS]
    return Preflight(cfg.profile, cfg.source, checks)


def fits_run_size(found: Check, cfg: RunConfig) -> Check:
    """``found``, made a problem when its backend declares aspect ratios and ``[run]`` width x height has none of them
    (a hosted model makes only the ratios it lists: the loop's frames would not match its output)."""
    if not found.ready or found.kind not in ("image", "video"):
        return found
    from codirector.generators.jobs import aspect_ratio

    table = cfg.backend(found.kind)
    caps = registry.capabilities(found.kind, table.backend, table.options)
    allowed = tuple(getattr(caps, "aspect_ratios", ()) or ())
    width, height = cfg.run.width, cfg.run.height
    if not allowed or "auto" in allowed or width <= 0 or height <= 0 or aspect_ratio(width, height, allowed):
        return found
    return replace(found, ready=False,
                   detail=f"the run's frames are {width}x{height}, an aspect ratio {found.model or found.backend!r} "
                   f"does not make (it makes {', '.join(allowed)})",
                   fix=f"set [run] width and height to one of those ratios (e.g. 16:9 is 512x288 or 832x480), or "
                   f"choose another [{found.kind}] model")


def require_ready(cfg: RunConfig, today: date | None = None) -> Preflight:
    """The pre-flight report when every backend can run here; else ``NotReady`` listing every problem."""
    report = preflight(cfg, today)
    if not report.ok:
        raise report.error()
    return report

"""Building a run's backends from its resolved config: the pre-flight first, then one backend per kind.

Here rather than in ``generators.profiles`` because it needs the pre-flight, which reads profiles:
``profiles`` <- ``preflight`` <- ``build``, one way.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from codirector.errors import ConfigError
from codirector.generators import registry
from codirector.generators.base import Backends
from codirector.generators.preflight import require_ready
from codirector.generators.profiles import RunConfig, model_notices


def build_backends(config: RunConfig, *, today: date | None = None) -> Backends:
    """Create the run's backends; a GPU-only video backend falls back to the animatic without CUDA.

    The pre-flight runs first: ``NotReady`` lists every backend that cannot run here, before any is built.
    A model OpenAI has shut down (as of ``today``, default the UTC date) is one of its problems; one it
    will shut down is a note.
    """
    require_ready(config, today)
    notes: list[str] = [f"{n.message}: {n.fix}" for n in model_notices(config, today) if not n.gone]
    made: dict[str, Any] = {}
    for kind in ("vlm", "image", "video", "embedder"):
        table = config.backend(kind)
        name, options = table.backend, table.options
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


__all__ = ["build_backends"]

"""codirector: coherent multi-shot video from a story, on an event-sourced, replayable log.

The Python API lives in ``codirector.engine.studio``; ``from codirector import Studio`` loads it
lazily so that importing the package (and starting the CLI) stays fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Studio", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Studio":
        from codirector.engine.studio import Studio

        return Studio
    raise AttributeError(f"module 'codirector' has no attribute {name!r}")

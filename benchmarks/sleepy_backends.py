"""Backends that simulate GPU latency, for ``bench_scale.py`` (loaded through ``CODIRECTOR_PLUGINS``).

Each wraps a preview backend and sleeps per call (``CODIRECTOR_SLEEP_VLM`` / ``_IMAGE`` / ``_VIDEO``
seconds, defaults 0.05 / 0.3 / 0.6), so a worker waits the way it would on a model server or a GPU
and the CPU is not the bottleneck. ``busy_seconds`` is the time spent inside the backend (the sleep
and the preview work), which lets the benchmark report the engine's own share of each job.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from codirector.generators.preview import AnimaticVideoGenerator, HashEmbedder, PreviewVLM, StoryboardImageGenerator
from codirector.generators.registry import BackendInfo


def _busy(backend: Any, latency: tuple[str, float] | None, call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)`` after sleeping ``CODIRECTOR_SLEEP_{KIND}`` seconds (``latency``: KIND and its default; None:
    no sleep); the whole time is added to ``backend.busy_seconds``."""
    t = time.perf_counter()
    if latency is not None:
        kind, default = latency
        time.sleep(float(os.environ.get(f"CODIRECTOR_SLEEP_{kind}", default)))
    result = call(*args)
    backend.busy_seconds += time.perf_counter() - t
    return result


class SleepyVLM(PreviewVLM):
    backend = "sleepy"
    busy_seconds = 0.0

    def complete(self, request: Any) -> Any:
        return _busy(self, ("VLM", 0.05), super().complete, request)


class SleepyImages(StoryboardImageGenerator):
    backend = "sleepy"
    busy_seconds = 0.0

    def generate(self, request: Any) -> Any:
        return _busy(self, ("IMAGE", 0.3), super().generate, request)


class SleepyVideo(AnimaticVideoGenerator):
    backend = "sleepy"
    busy_seconds = 0.0

    def generate(self, request: Any) -> Any:
        return _busy(self, ("VIDEO", 0.6), super().generate, request)


class SleepyEmbedder(HashEmbedder):
    """The preview hash embedder (no model; its time counts as the backend's)."""

    backend = "sleepy"
    busy_seconds = 0.0

    def embed_texts(self, texts: list[str]) -> Any:
        return _busy(self, None, super().embed_texts, texts)

    def embed_images(self, images: list[Any]) -> Any:
        return _busy(self, None, super().embed_images, images)


def register_backends(register: Any) -> None:
    me = __name__
    register(BackendInfo("vlm", "sleepy", f"{me}:SleepyVLM", "bench: preview VLM + latency", "bench"))
    register(BackendInfo("image", "sleepy", f"{me}:SleepyImages", "bench: storyboard + latency", "bench"))
    register(BackendInfo("video", "sleepy", f"{me}:SleepyVideo", "bench: animatic + latency", "bench"))
    register(BackendInfo("embedder", "sleepy", f"{me}:SleepyEmbedder", "bench: hash embedder", "bench"))

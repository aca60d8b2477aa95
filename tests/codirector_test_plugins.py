"""Backends for tests that run codirector in another process (loaded through CODIRECTOR_PLUGINS).

``counting`` backends wrap the preview ones (and a hash embedder) and append one line per live
call to the file named by CODIRECTOR_TEST_CALL_LOG: that is the count "at the backend".
CODIRECTOR_TEST_FIRST_CALL_DELAY (seconds) makes a process's first call take that long, so a race
test's winner still holds its branch when a rival started late by a loaded machine gets going.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

from codirector.generators.base import request_fields
from codirector.generators.preview import AnimaticVideoGenerator, HashEmbedder, PreviewVLM, StoryboardImageGenerator
from codirector.generators.registry import BackendInfo

_delayed = False


def _log(kind: str, request: Any) -> None:
    global _delayed
    if not _delayed:
        _delayed = True
        time.sleep(float(os.environ.get("CODIRECTOR_TEST_FIRST_CALL_DELAY") or 0))
    path = os.environ.get("CODIRECTOR_TEST_CALL_LOG")
    if not path:
        return
    if isinstance(request, dict):
        fields = request
    else:
        fields = request_fields(request, hints=True)  # these wrap the preview backends, which read hints
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    with open(path, "a") as f:
        f.write(f"{kind}\t{key}\n")
        f.flush()
        os.fsync(f.fileno())


class CountingVLM(PreviewVLM):
    backend = "counting"

    def complete(self, request: Any) -> Any:
        answer = super().complete(request)
        _log("vlm", request)
        return answer


class CountingImages(StoryboardImageGenerator):
    backend = "counting"

    def generate(self, request: Any) -> Any:
        result = super().generate(request)
        _log("image", request)
        return result


class CountingVideo(AnimaticVideoGenerator):
    backend = "counting"

    def generate(self, request: Any) -> Any:
        result = super().generate(request)
        _log("video", request)
        return result


class CountingEmbedder(HashEmbedder):
    backend = "counting"

    def embed_texts(self, texts: list[str]) -> Any:
        out = super().embed_texts(texts)
        _log("embed", {"texts": texts})
        return out

    def embed_images(self, images: list[Any]) -> Any:
        out = super().embed_images(images)
        _log("embed", {"images": [hashlib.sha256(im.tobytes()).hexdigest() for im in images]})
        return out


def register_backends(register: Any) -> None:
    me = __name__
    register(BackendInfo("vlm", "counting", f"{me}:CountingVLM", "test: preview VLM that logs calls", "tests"))
    register(BackendInfo("image", "counting", f"{me}:CountingImages", "test: storyboard that logs calls", "tests"))
    register(BackendInfo("video", "counting", f"{me}:CountingVideo", "test: animatic that logs calls", "tests"))
    register(BackendInfo("embedder", "counting", f"{me}:CountingEmbedder", "test: hash embedder, logs calls",
                         "tests"))

"""One contract every backend passes, whatever is behind it (like the event store's contract suite).

Each case is a registered backend built through the registry from config options, the way a run
builds it: the preview VLM, storyboard and animatic; the OpenAI VLM and Images backends against
the loopback server (real HTTP, the real ``openai`` client); diffusers on the tiny pipelines of
``conftest.py``; open_clip on the tiny config with ``pretrained = "none"``. The contract:
- the registry lists it, builds it with ``backend`` = its name and the configured model, and its
  cheap check says it is usable here;
- results have the declared types and sizes (PNG of the requested size, MP4 with the requested
  frames, unit float32 vectors, JSON that validates against the agent's schema);
- a deterministic backend gives the same output for the same request (seed included);
- a request it cannot serve raises ``BackendError`` with a hint;
- a call recorded through the CallRecorder holds the request summary and nothing of the API key
  (neither does any blob, nor any request body the server saw), and a VLM's recorded request
  holds the plan hints exactly when the backend reads them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openai_loopback import FAKE_KEY, OpenAIServer, Reply
from PIL import Image

from codirector.engine.agents.schemas import KeyframeAnalyzerOutput, strict_schema
from codirector.errors import BackendError
from codirector.events import canonical_json
from codirector.generators import registry
from codirector.generators.base import (
    VLM,
    Backends,
    Embedder,
    ImageGenerator,
    ImageInput,
    ImageRequest,
    VideoGenerator,
    VideoRequest,
    VLMRequest,
    reads_hints,
    request_fields,
)
from codirector.generators.preview import AnimaticVideoGenerator, PreviewVLM, StoryboardImageGenerator
from codirector.generators.video_io import read_frames

from support import HashEmbedder, png_bytes

PROTOCOLS: dict[str, type] = {"vlm": VLM, "image": ImageGenerator, "video": VideoGenerator, "embedder": Embedder}


@dataclass(frozen=True)
class Case:
    """A backend as a config names it: kind, registered name, and its options (from the test's resources)."""

    kind: str
    name: str
    options: Callable[[Any], dict[str, Any]] = field(default=lambda env: {})
    deterministic: bool = True

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.name}"


CASES = [
    Case("vlm", "preview"),
    Case("vlm", "openai", lambda env: {"model": "test-vlm", "base_url": env.server.base_url, "max_retries": 0,
                                       "timeout": 20}, deterministic=False),
    Case("image", "storyboard"),
    Case("image", "openai", lambda env: {"model": "gpt-image-1", "base_url": env.server.base_url, "max_retries": 0,
                                         "timeout": 20}, deterministic=False),
    Case("image", "diffusers", lambda env: {"model": str(env.tiny().sd), "steps": 2, "device": "cpu"}),
    Case("video", "animatic"),
    Case("video", "diffusers", lambda env: {"model": str(env.tiny().wan), "steps": 2, "device": "cpu",
                                            "allow_cpu": True}),
    Case("embedder", "open_clip", lambda env: {"model": env.clip(), "pretrained": "none", "device": "cpu"}),
]


class Env:
    """What the cases are built from; the expensive parts (tiny pipelines, the tiny CLIP) only when asked."""

    def __init__(self, server: OpenAIServer, request: pytest.FixtureRequest) -> None:
        self.server = server
        self._request = request
        self.built: dict[str, Any] = {}

    def tiny(self) -> Any:
        pytest.importorskip("diffusers")
        return self._request.getfixturevalue("tiny_pipelines")

    def clip(self) -> str:
        return str(self._request.getfixturevalue("tiny_clip"))


@pytest.fixture(scope="module")
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    server = OpenAIServer().start().answer_agents()
    yield Env(server, request)
    server.stop()


@pytest.fixture(params=CASES, ids=lambda c: c.id)
def case(request: pytest.FixtureRequest) -> Case:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def backend(case: Case, env: Env) -> Any:
    """The case's backend, built once per module through the registry (so weights load once)."""
    if case.id not in env.built:
        env.built[case.id] = registry.create(case.kind, case.name, case.options(env))
    return env.built[case.id]


# ---------------------------------------------------------------------------- requests and checks

REF = ImageInput("Ada", "digest-ada", png_bytes((220, 30, 30), size=32))


def vlm_request() -> VLMRequest:
    return VLMRequest(agent="keyframe_analyzer", system="You check keyframes against the prompt.",
                      user="ORIGINAL KEYFRAME PROMPT:\nAda on a pier\n\nCheck the keyframe and decide.",
                      images=(REF,), schema_name="KeyframeAnalyzerOutput",
                      json_schema=strict_schema(KeyframeAnalyzerOutput), hints={"round": 1, "uses": ["Ada"]})


def image_request(width: int = 48, height: int = 32) -> ImageRequest:
    return ImageRequest(prompt="Ada on a pier at dawn", purpose="keyframe", seed=7, width=width, height=height,
                        references=(REF,), style="watercolour")


def video_request(width: int = 32, height: int = 32) -> VideoRequest:
    keyframe = ImageInput("shot 1 keyframe", "digest-key", png_bytes((30, 90, 200), size=32, mark=9))
    return VideoRequest(keyframe=keyframe, prompt="the camera drifts along the pier", seed=11, num_frames=5,
                        fps=4.0, width=width, height=height)


def produce(kind: str, backend: Any) -> Any:
    """One call of the backend's interface with the kind's standard request; the output as comparable data."""
    if kind == "vlm":
        return backend.complete(vlm_request())
    if kind == "image":
        return backend.generate(image_request())
    if kind == "video":
        return backend.generate(video_request())
    texts = backend.embed_texts(["a red scarf", "a lighthouse at dusk"])
    images = backend.embed_images([Image.open(io.BytesIO(REF.data))])
    return texts, images


def check_shape(kind: str, out: Any) -> None:
    if kind == "vlm":
        assert isinstance(out.text, str) and isinstance(out.model, str) and out.model and out.refusal is None
        KeyframeAnalyzerOutput.model_validate_json(out.text)
    elif kind == "image":
        im = Image.open(io.BytesIO(out.png))
        assert im.format == "PNG" and im.size == (out.width, out.height) == (48, 32) and out.model
    elif kind == "video":
        frames = read_frames(out.mp4)
        assert (out.frames, out.fps, out.width, out.height) == (5, 4.0, 32, 32) and out.model
        assert len(frames) == 5 and all(f.shape == (32, 32, 3) and f.dtype == np.uint8 for f in frames)
    else:
        texts, images = out
        assert texts.dtype == images.dtype == np.float32 and texts.shape[0] == 2 and images.shape[0] == 1
        assert texts.shape[1] == images.shape[1] > 0
        np.testing.assert_allclose(np.linalg.norm(np.vstack([texts, images]), axis=1), 1.0, atol=1e-5)


def comparable(kind: str, out: Any) -> Any:
    if kind == "vlm":
        return out.text
    if kind in ("image", "video"):
        return out.png if kind == "image" else out.mp4
    return [a.tobytes() for a in out]


# ---------------------------------------------------------------------------- the contract


def test_the_registry_builds_it_as_configured(case: Case, backend: Any, env: Env) -> None:
    info = registry.info(case.kind, case.name)
    assert info in registry.backends() and info.summary and info.needs
    assert isinstance(backend, PROTOCOLS[case.kind]) and backend.backend == case.name
    configured = case.options(env).get("model")
    if case.kind == "embedder":
        assert backend.name.startswith(f"open_clip:{configured}:") and backend.meaningful is False
    elif configured is not None:
        assert backend.model == configured
    else:
        assert isinstance(backend.model, str) and backend.model
    usable, why = registry.usable(case.kind, case.name, case.options(env))
    assert usable and isinstance(why, str) and why


def test_results_have_the_declared_types_and_sizes(case: Case, backend: Any) -> None:
    first = produce(case.kind, backend)
    check_shape(case.kind, first)
    if case.deterministic:
        assert comparable(case.kind, produce(case.kind, backend)) == comparable(case.kind, first)


BAD: dict[str, Callable[[Any], Any]] = {
    "image": lambda b: b.generate(image_request(width=0)),
    "video": lambda b: b.generate(video_request(height=0)),
}


def test_a_request_it_cannot_serve_is_a_backend_error_with_a_hint(case: Case, backend: Any, env: Env,
                                                                  tmp_path: Path) -> None:
    if case.kind in BAD:
        fail: Callable[[], Any] = lambda: BAD[case.kind](backend)  # noqa: E731
    elif case.kind == "embedder":  # weights that are not there
        missing = registry.create("embedder", case.name, {**case.options(env), "pretrained": str(tmp_path / "x.pt")})
        fail = lambda: missing.embed_texts(["x"])  # noqa: E731
    elif case.name == "openai":  # the server fails
        env.server.enqueue("/v1/chat/completions", Reply(503, {"error": {"message": "overloaded"}}))
        fail = lambda: backend.complete(vlm_request())  # noqa: E731
    else:  # an agent the plan-driven backend has no answer for
        fail = lambda: backend.complete(VLMRequest(agent="screenwriter", system="", user=""))  # noqa: E731
    with pytest.raises(BackendError) as info:
        fail()
    assert info.value.message and info.value.hint


def test_a_recorded_call_holds_its_request_and_never_the_key(case: Case, backend: Any, env: Env, call_log: Any,
                                                            api_key: str) -> None:
    parts: dict[str, Any] = {"vlm": PreviewVLM(), "image": StoryboardImageGenerator(),
                             "video": AnimaticVideoGenerator(), "embedder": HashEmbedder()}
    parts[case.kind] = backend
    recorder = call_log.recorder(Backends(**parts))
    seen_before = len(env.server.requests())
    if case.kind == "vlm":
        _, ev = recorder.vlm(vlm_request(), shot=1)
        assert ("plan" in ev.payload["request"]) == reads_hints(backend)
        assert ev.payload["request"] == request_fields(vlm_request(), hints=reads_hints(backend))
    elif case.kind == "image":
        _, ev = recorder.image(image_request(), shot=1)
        assert ev.payload["request"] == request_fields(image_request())
    elif case.kind == "video":
        _, ev = recorder.video(video_request(), shot=1)
        assert ev.payload["request"] == request_fields(video_request())
    else:
        recorder.embed_texts(["a red scarf"], shot=1)
        [ev] = [e for e in call_log.events() if e.type == "ModelCalled"]
        assert ev.payload["request"] == {"texts": ["a red scarf"]}
    assert ev.payload["error"] is None and ev.payload["backend"] == case.name
    secret = FAKE_KEY.encode()
    assert FAKE_KEY not in canonical_json(ev.payload) and FAKE_KEY not in repr(backend)
    blobs = [ev.payload["response_blob"]] if ev.payload["response_blob"] else []
    blobs += ev.payload["response"].get("vector_blobs", []) if isinstance(ev.payload["response"], dict) else []
    assert all(secret not in call_log.blobs.get(d) for d in blobs)
    for seen in env.server.requests()[seen_before:]:  # what went over the wire: the key in its header only
        assert seen.headers["authorization"] == f"Bearer {FAKE_KEY}" and secret not in seen.body
    if case.name == "openai":
        assert len(env.server.requests()) > seen_before
    assert json.loads(canonical_json(ev.payload["request"])) == ev.payload["request"]  # plain JSON

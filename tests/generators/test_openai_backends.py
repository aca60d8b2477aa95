"""The OpenAI backends against a real loopback server that speaks the OpenAI wire format.

The real ``openai`` client makes real HTTP requests; the server records what it received, so the
assertions are about the wire (response_format, data URLs, image[] parts, retries counted at the
server) and about what the engine stores (ModelCalled events with ``error`` for failed calls).
"""

from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path

import pytest
from openai_loopback import FAKE_KEY, OpenAIServer, Reply, chat_reply, image_reply, png
from PIL import Image

from codirector.engine.agents.schemas import MemoryControllerOutput, strict_schema
from codirector.engine.recording.recorder import CallRecorder
from codirector.engine.recording.writer import RunWriter
from codirector.engine.studio import Studio
from codirector.errors import BackendError, ConfigError
from codirector.events import StoryCreated
from codirector.generators import registry
from codirector.generators.base import Backends, ImageInput, ImageRequest, VLMRequest
from codirector.generators.openai_images import OpenAIImageGenerator, check_images, nearest_size
from codirector.generators.openai_vlm import OpenAIVLM, check_vlm, says_json_schema_unsupported
from codirector.generators.preview import AnimaticVideoGenerator
from codirector.generators.profiles import OPENAI_IMAGE_MODEL

from support import HashEmbedder, fast_config, png_bytes, write_story

CHAT = "/v1/chat/completions"
GENERATIONS = "/v1/images/generations"
EDITS = "/v1/images/edits"
ANSWER = {"retrieved_existing": [{"name": "Ada"}], "new_entities": []}


def jpeg_bytes(colour: tuple[int, int, int] = (10, 200, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, format="JPEG")
    return buf.getvalue()


def request(*images: ImageInput, agent: str = "memory_controller") -> VLMRequest:
    return VLMRequest(agent=agent, system="You manage entity memory.", user="KEYFRAME PROMPT:\nAda on a pier",
                      images=images, schema_name="MemoryControllerOutput",
                      json_schema=strict_schema(MemoryControllerOutput))


def vlm(server: OpenAIServer, **options: object) -> OpenAIVLM:
    return OpenAIVLM(model="test-vlm", base_url=server.base_url, **options)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- VLM: the wire


def test_structured_output_with_images_as_data_urls(openai_server: OpenAIServer, api_key: str) -> None:
    openai_server.enqueue(CHAT, chat_reply(json.dumps(ANSWER), model="test-vlm-2026"))
    req = request(ImageInput("keyframe", "d1", png_bytes((200, 10, 10))), ImageInput("frame 0", "d2", jpeg_bytes()))
    answer = vlm(openai_server, detail="low").complete(req)

    assert json.loads(answer.text) == ANSWER and answer.refusal is None
    assert answer.model == "test-vlm-2026"
    assert answer.usage == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    [seen] = openai_server.requests(CHAT)
    body = seen.json
    assert body["model"] == "test-vlm" and body["temperature"] == 0.0
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "MemoryControllerOutput", "schema": req.json_schema, "strict": True}}
    assert body["response_format"]["json_schema"]["schema"]["additionalProperties"] is False
    system, user = body["messages"]
    assert system == {"role": "system", "content": "You manage entity memory."}
    text, first, second = user["content"]
    assert text == {"type": "text", "text": req.user}
    assert first["image_url"]["url"].startswith("data:image/png;base64,")
    assert second["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert base64.b64decode(second["image_url"]["url"].split(",", 1)[1]) == req.images[1].data
    assert first["image_url"]["detail"] == "low"
    assert seen.headers["authorization"] == f"Bearer {api_key}"  # the key goes to the server, and only there


@pytest.mark.parametrize("status,headers", [(429, {"retry-after-ms": "20"}), (503, {})])
def test_transient_errors_are_retried(openai_server: OpenAIServer, api_key: str, status: int,
                                      headers: dict[str, str]) -> None:
    openai_server.enqueue(CHAT, Reply(status, {"error": {"message": "busy"}}, headers=headers),
                          chat_reply(json.dumps(ANSWER)))
    answer = vlm(openai_server, max_retries=2).complete(request())
    assert json.loads(answer.text) == ANSWER
    assert len(openai_server.requests(CHAT)) == 2  # counted at the server


def test_rate_limit_after_retries_is_a_clear_error(openai_server: OpenAIServer, api_key: str) -> None:
    limited = Reply(429, {"error": {"message": "Rate limit reached for test-vlm"}}, headers={"retry-after-ms": "5"})
    openai_server.enqueue(CHAT, limited, limited, limited)
    with pytest.raises(BackendError) as info:
        vlm(openai_server, max_retries=1).complete(request())
    assert len(openai_server.requests(CHAT)) == 2
    assert "429" in info.value.message and "Rate limit reached" in info.value.message
    assert "max_retries" in (info.value.hint or "") and "resume" in (info.value.hint or "")


def test_json_schema_rejected_falls_back_to_json_object_and_remembers(openai_server: OpenAIServer,
                                                                      api_key: str) -> None:
    openai_server.enqueue(CHAT, Reply(400, {"error": {"message": "response_format type 'json_schema' is not "
                                                                 "supported by this server", "param": "response_format",
                                                      "type": "invalid_request_error"}}),
                          chat_reply(json.dumps(ANSWER)), chat_reply(json.dumps(ANSWER)))
    backend = vlm(openai_server)
    req = request()
    assert json.loads(backend.complete(req).text) == ANSWER
    assert json.loads(backend.complete(req).text) == ANSWER
    first, retried, later = (s.json for s in openai_server.requests(CHAT))
    assert first["response_format"]["type"] == "json_schema"
    for body in (retried, later):  # the retry and every later call use json_object with the schema in the prompt
        assert body["response_format"] == {"type": "json_object"}
        system = body["messages"][0]["content"]
        assert system.startswith("You manage entity memory.") and "JSON" in system
        assert json.dumps(req.json_schema, separators=(",", ":")) in system
    assert backend.structured == "json_object"


def test_a_bad_schema_is_not_mistaken_for_missing_support(openai_server: OpenAIServer, api_key: str) -> None:
    message = "Invalid schema for response_format 'MemoryControllerOutput': 'required' is missing 'name'"
    openai_server.enqueue(CHAT, Reply(400, {"error": {"message": message}}))
    with pytest.raises(BackendError) as info:
        vlm(openai_server).complete(request())
    assert len(openai_server.requests(CHAT)) == 1  # no silent retry in another mode
    assert "400" in info.value.message and message in info.value.message
    assert says_json_schema_unsupported("'response_format.type' must be 'json_object' or 'text'")
    assert not says_json_schema_unsupported(message)


def test_configured_json_object_mode(openai_server: OpenAIServer, api_key: str) -> None:
    openai_server.enqueue(CHAT, chat_reply(json.dumps(ANSWER)))
    vlm(openai_server, structured="json_object").complete(request())
    [seen] = openai_server.requests(CHAT)
    assert seen.json["response_format"] == {"type": "json_object"}
    assert '"retrieved_existing"' in seen.json["messages"][0]["content"]


def test_cut_off_answer_and_refusal(openai_server: OpenAIServer, api_key: str) -> None:
    openai_server.enqueue(CHAT, chat_reply('{"retrieved_exi', finish="length"),
                          chat_reply(None, refusal="I can't help with that request."))
    backend = vlm(openai_server)
    with pytest.raises(BackendError, match="cut off") as info:
        backend.complete(request())
    assert "max_tokens" in (info.value.hint or "")
    answer = backend.complete(request())
    assert answer.refusal == "I can't help with that request."


def test_unreachable_server_names_the_url(api_key: str) -> None:
    from support import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(BackendError) as info:
        OpenAIVLM(model="m", base_url=url, max_retries=0, timeout=5).complete(request())
    assert url in info.value.message and "running" in (info.value.hint or "")


def test_rejected_key_names_the_variable_never_the_key(openai_server: OpenAIServer, api_key: str) -> None:
    echo = {"error": {"message": f"Incorrect API key provided: {FAKE_KEY}.", "code": "invalid_api_key"}}
    openai_server.enqueue(CHAT, Reply(401, echo))
    with pytest.raises(BackendError) as info:
        vlm(openai_server).complete(request())
    assert "OPENAI_API_KEY" in info.value.message and "401" in info.value.message
    assert FAKE_KEY not in str(info.value) and FAKE_KEY not in repr(info.value)
    assert info.value.__cause__ is None  # the client's exception (which quotes the server) is not chained


def test_keys_come_from_the_environment(openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # OpenAI itself without a key: a clear error before any request
    with pytest.raises(BackendError) as info:
        OpenAIVLM(model="gpt-4.1").complete(request())
    assert "OPENAI_API_KEY" in info.value.message
    found = check_vlm(model="gpt-4.1")
    assert not found.ready
    assert found.detail == "OPENAI_API_KEY is not set, and https://api.openai.com/v1 needs an API key"
    assert (found.fix or "").startswith("export OPENAI_API_KEY=...")
    # a local server without a key gets a placeholder; api_key_env names another variable
    openai_server.enqueue(CHAT, chat_reply(json.dumps(ANSWER)), chat_reply(json.dumps(ANSWER)))
    backend = vlm(openai_server, api_key_env="LOCAL_VLM_KEY")
    backend.complete(request())
    monkeypatch.setenv("LOCAL_VLM_KEY", "local-key-1")
    backend.complete(request())  # read at call time
    assert [s.headers["authorization"] for s in openai_server.requests(CHAT)] == ["Bearer not-needed",
                                                                                 "Bearer local-key-1"]
    assert check_vlm(base_url=openai_server.base_url).ready and check_images(base_url=openai_server.base_url).ready
    assert FAKE_KEY not in repr(backend)
    with pytest.raises(ConfigError):
        OpenAIVLM(structured="xml")
    with pytest.raises(ConfigError, match="api_key_env"):
        OpenAIVLM(api_key_env="sk-not-a-variable-name")


def test_registry_builds_the_backends_from_config_options(openai_server: OpenAIServer) -> None:
    backend = registry.create("vlm", "openai", {"model": "qwen2.5vl", "base_url": openai_server.base_url,
                                                "timeout": 5, "detail": "high"})
    assert (backend.backend, backend.model, backend.detail) == ("openai", "qwen2.5vl", "high")
    assert registry.usable("image", "openai", {"base_url": openai_server.base_url})[0]


# ---------------------------------------------------------------------------- failures are recorded


def recorder_for(studio: Studio, vlm_backend: OpenAIVLM) -> CallRecorder:
    studio.store.create_story("s", title="t", events=[StoryCreated(title="t", seed=1).at()])
    writer = RunWriter(studio.store, "s", "main", head=1)
    backends = Backends(vlm=vlm_backend, image=OpenAIImageGenerator(base_url=vlm_backend.base_url),
                        video=AnimaticVideoGenerator(), embedder=HashEmbedder())
    return CallRecorder(writer, studio.blobs, backends)


@pytest.mark.parametrize("failure,reply,expected", [
    ("timeout", Reply(200, {}, delay=1.5), "timed out after 0.3s"),
    ("malformed", Reply(200, '{"id": "chatcmpl-1", "choices": [{"mess'), "not valid JSON"),
    ("refusal", chat_reply(None, refusal="I won't describe this scene."), "refused the memory_controller request: "
                                                                          "I won't describe this scene."),
])
def test_failures_are_clear_and_recorded(tmp_path: Path, openai_server: OpenAIServer, api_key: str, failure: str,
                                         reply: Reply, expected: str) -> None:
    openai_server.enqueue(CHAT, reply)
    studio = Studio(tmp_path / "home")
    studio.init()
    recorder = recorder_for(studio, vlm(openai_server, timeout=0.3, max_retries=0))
    with pytest.raises(BackendError) as info:
        recorder.vlm(request(), shot=1)
    assert expected in info.value.message
    [called] = studio.log("s", types=["ModelCalled"])
    assert called.payload["error"] is not None and expected in called.payload["error"]
    assert called.payload["kind"] == "vlm" and called.payload["model"] == "test-vlm"
    assert called.payload["response"] is None and called.payload["duration_ms"] > 0
    if failure == "timeout":
        assert called.payload["duration_ms"] >= 300 and "timeout" in (info.value.hint or "")


# ---------------------------------------------------------------------------- images


def test_generate_picks_the_nearest_size_and_fits_the_frame(openai_server: OpenAIServer, api_key: str) -> None:
    wide = Image.new("RGB", (96, 64), (255, 0, 0))  # red | green | blue thirds, 3:2 like 1536x1024
    wide.paste((0, 255, 0), (32, 0, 64, 64))
    wide.paste((0, 0, 255), (64, 0, 96, 64))
    buf = io.BytesIO()
    wide.save(buf, format="PNG")
    openai_server.enqueue(GENERATIONS, image_reply(buf.getvalue()))
    gen = OpenAIImageGenerator(model="gpt-image-1", base_url=openai_server.base_url, quality="low")
    result = gen.generate(ImageRequest(prompt="a harbour at dawn", purpose="keyframe", seed=5, width=32, height=32,
                                       style="watercolour"))
    [seen] = openai_server.requests(GENERATIONS)
    assert seen.json == {"model": "gpt-image-1", "prompt": "a harbour at dawn Visual style: watercolour.",
                         "size": "1024x1024", "n": 1, "quality": "low"}
    im = Image.open(io.BytesIO(result.png))
    assert (result.width, result.height) == im.size == (32, 32) and im.format == "PNG"
    px = im.convert("RGB").load()
    assert px[16, 16][1] > 200  # centre is the green third: cropped centred ...
    assert px[0, 0][0] > 200 and px[31, 31][2] > 200  # ... edges come from red and blue, no letterbox bars
    assert nearest_size(512, 288) == "1536x1024" and nearest_size(288, 512) == "1024x1536"


def test_edit_sends_every_reference_as_an_image_part(openai_server: OpenAIServer, api_key: str) -> None:
    openai_server.enqueue(EDITS, image_reply(png((40, 30))))
    refs = (ImageInput("Ada", "a", png_bytes((250, 0, 0))), ImageInput("Ben", "b", jpeg_bytes()),
            ImageInput("bg_pier", "c", png_bytes((0, 0, 250))))
    gen = OpenAIImageGenerator(base_url=openai_server.base_url, input_fidelity="high")
    result = gen.generate(ImageRequest(prompt="Ada and Ben on the pier", purpose="keyframe", seed=1, width=64,
                                       height=36, references=refs))
    [seen] = openai_server.requests(EDITS)
    parts = seen.fields("image[]")
    assert [p.data for p in parts] == [r.data for r in refs]
    assert [p.content_type for p in parts] == ["image/png", "image/jpeg", "image/png"]
    assert [p.filename for p in parts] == ["reference-1.png", "reference-2.jpg", "reference-3.png"]
    prompt = seen.text("prompt")
    assert prompt.startswith("Ada and Ben on the pier")
    assert "image 1 shows Ada; image 2 shows Ben; image 3 shows bg_pier" in prompt
    assert seen.text("model") == OPENAI_IMAGE_MODEL and seen.text("size") == "1536x1024"  # the default model
    assert seen.text("input_fidelity") == "high"
    assert Image.open(io.BytesIO(result.png)).size == (64, 36)


def test_more_than_16_references_is_refused_before_any_request(openai_server: OpenAIServer, api_key: str) -> None:
    refs = tuple(ImageInput(f"e{i}", str(i), png_bytes((i, i, i))) for i in range(17))
    with pytest.raises(BackendError, match="at most 16"):
        OpenAIImageGenerator(base_url=openai_server.base_url).generate(
            ImageRequest(prompt="crowd", purpose="keyframe", seed=1, width=32, height=32, references=refs))
    assert openai_server.requests() == []


def test_image_url_instead_of_base64_is_a_clear_error(openai_server: OpenAIServer, api_key: str) -> None:
    openai_server.enqueue(GENERATIONS, Reply(200, {"created": 0, "data": [{"url": "https://example.com/x.png"}]}))
    with pytest.raises(BackendError, match="b64_json") as info:
        OpenAIImageGenerator(base_url=openai_server.base_url, model="dall-e-3").generate(
            ImageRequest(prompt="x", purpose="reference", seed=1, width=32, height=32))
    assert f'[image] model = "{OPENAI_IMAGE_MODEL}"' in (info.value.hint or "")


# ---------------------------------------------------------------------------- the key never leaks


def test_the_api_key_is_found_nowhere_but_the_authorization_header(
    tmp_path: Path, openai_server: OpenAIServer, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    openai_server.answer_agents()
    home = tmp_path / "home"
    studio = Studio(home)
    story = write_story(tmp_path / "pier.yaml", shots=2)
    config = fast_config(tmp_path / "fast.toml")
    backends = Backends(vlm=vlm(openai_server), image=OpenAIImageGenerator(base_url=openai_server.base_url),
                        video=AnimaticVideoGenerator(), embedder=HashEmbedder())
    result = studio.run(story, config=config, backends=backends)
    assert result.completed
    errors: list[str] = []
    # a failure whose server message quotes the key: recorded, and scrubbed
    openai_server.enqueue(CHAT, Reply(401, {"error": {"message": f"Incorrect API key provided: {FAKE_KEY}"}}))
    recorder = CallRecorder(RunWriter(studio.store, "pier", "main", head=studio.store.head("pier")), studio.blobs,
                            backends)
    with pytest.raises(BackendError) as info:
        recorder.vlm(request(agent="video_analyzer"), shot=2)
    errors.append(str(info.value))
    studio.close()

    assert all(s.headers["authorization"] == f"Bearer {FAKE_KEY}" for s in openai_server.requests())
    assert len(openai_server.requests(EDITS)) >= 2  # keyframes were edited from the entity references
    failed = [e for e in Studio(home).log("pier", types=["ModelCalled"]) if e.payload["error"]]
    assert len(failed) == 1 and "OPENAI_API_KEY" in failed[0].payload["error"]
    secret = FAKE_KEY.encode()
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in files) and any("blobs" in p.parts for p in files)
    leaked = [str(p) for p in files if secret in p.read_bytes()]
    assert leaked == []  # the database (and its WAL), every blob, the vector index
    assert FAKE_KEY not in caplog.text and all(FAKE_KEY not in e for e in errors)

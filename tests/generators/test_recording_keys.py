"""Recording keys hold what the backend receives: plan hints key the preview VLM only.

A real model (the OpenAI backend, against the loopback server) is keyed by its system and user
text, image digests, schema, temperature and model; editing a preview-only hint changes none of
that, so it must not change the key (nor cause a new paid call). The plan-driven preview VLM
answers from the hints, so for it they are part of the key, and two calls that differ only in
hints never share an answer. Logs recorded before this rule (every VLM key held the hints) are
still answered: resume does not repeat their calls and replay finds them.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from openai_loopback import OpenAIServer, chat_reply

from codirector.engine.agents.schemas import KeyframeAnalyzerOutput, MemoryControllerOutput, strict_schema
from codirector.engine.recording.recorder import recorded_answers, request_key
from codirector.events import ModelCalled
from codirector.generators.base import Backends, ImageInput, VLMRequest, request_fields
from codirector.generators.openai_vlm import OpenAIVLM
from codirector.generators.preview import AnimaticVideoGenerator, PreviewVLM, StoryboardImageGenerator

from support import HashEmbedder, png_bytes

CHAT = "/v1/chat/completions"
HINTS = {"uses": ["Ada"], "known": [], "cast": {"Ada": {"description": "a keeper in a yellow coat"}}}
OTHER_HINTS = {"uses": ["Ada", "Ben"], "known": ["Ada"], "evolves": [],
               "cast": {"Ben": {"description": "a fisherman"}}}


def ask(**changes: Any) -> VLMRequest:
    """A memory-controller turn as the agents build it."""
    req = VLMRequest(agent="memory_controller", system="You manage entity memory.",
                     user="KNOWN ENTITIES (the closest matches in memory):\n(none)\n\nKEYFRAME PROMPT:\nAda on a pier",
                     images=(ImageInput("keyframe", "digest-red", png_bytes((200, 10, 10))),),
                     schema_name="MemoryControllerOutput", json_schema=strict_schema(MemoryControllerOutput),
                     temperature=0.0, hints=HINTS)
    return dataclasses.replace(req, **changes)


def backends(vlm: Any) -> Backends:
    return Backends(vlm=vlm, image=StoryboardImageGenerator(), video=AnimaticVideoGenerator(),
                    embedder=HashEmbedder())


def test_a_preview_only_hint_never_changes_a_real_backends_key(call_log: Any, openai_server: OpenAIServer,
                                                               api_key: str) -> None:
    openai_server.responders[CHAT] = lambda seen: chat_reply('{"retrieved_existing": [], "new_entities": []}')
    real = OpenAIVLM(model="test-vlm", base_url=openai_server.base_url)
    recorder = call_log.recorder(backends(real))
    _, first = recorder.vlm(ask(), shot=1)
    key = first.payload["request_key"]
    assert "plan" not in first.payload["request"]  # the recorded summary is what the model received

    _, edited = recorder.vlm(ask(hints=OTHER_HINTS), shot=1)
    assert edited.payload["request_key"] == key
    assert recorder.stats.reused == 1 and len(openai_server.requests(CHAT)) == 1  # no second (paid) call

    changes: dict[str, dict[str, Any]] = {
        "system text": {"system": "You manage entity memory. Be brief."},
        "user text": {"user": ask().user.replace("a pier", "the pier")},
        "image digest": {"images": (ImageInput("keyframe", "digest-blue", png_bytes((10, 10, 200))),)},
        "schema": {"json_schema": strict_schema(KeyframeAnalyzerOutput)},
        "schema name": {"schema_name": "MemoryControllerOutputV2"},
        "temperature": {"temperature": 0.7},
    }
    keys = {}
    for what, change in changes.items():
        _, ev = recorder.vlm(ask(**change), shot=1)
        keys[what] = ev.payload["request_key"]
    assert all(k != key for k in keys.values()), keys
    assert len(set(keys.values())) == len(changes)
    assert len(openai_server.requests(CHAT)) == 1 + len(changes)

    other_model = OpenAIVLM(model="test-vlm-large", base_url=openai_server.base_url)
    _, ev = call_log.recorder(backends(other_model), known=recorded_answers(call_log.events())).vlm(ask(), shot=1)
    assert ev.payload["model"] == "test-vlm-large" and ev.payload["request_key"] != key


def test_the_preview_vlm_is_keyed_by_its_hints_and_never_shares_an_answer(call_log: Any) -> None:
    recorder = call_log.recorder(backends(PreviewVLM()))
    text_a, a = recorder.vlm(ask(), shot=1)
    text_b, b = recorder.vlm(ask(hints=OTHER_HINTS), shot=1)
    assert a.payload["request_key"] != b.payload["request_key"] and recorder.stats.reused == 0
    assert json.loads(text_a)["new_entities"][0]["name"] == "Ada"
    assert json.loads(text_b)["retrieved_existing"] == [{"name": "Ada"}]  # its own answer, not Ada's first one
    assert a.payload["request"]["plan"] == HINTS  # the hints it answered from are recorded with the call
    _, again = recorder.vlm(ask(hints=dict(OTHER_HINTS)), shot=1)
    assert again.payload["request_key"] == b.payload["request_key"] and recorder.stats.reused == 1


def test_a_log_keyed_the_old_way_is_still_answered(call_log: Any, openai_server: OpenAIServer, api_key: str) -> None:
    """Before hints left real keys, an OpenAI call was keyed with them: resume and replay still find it."""
    old_fields = request_fields(ask(), hints=True)
    old_key = request_key("vlm", "openai", "test-vlm", old_fields)
    answer = {"retrieved_existing": [], "new_entities": []}
    recorded = call_log.recorder(None).writer.one(ModelCalled(
        kind="vlm", backend="openai", model="test-vlm", agent="memory_controller", request_key=old_key,
        request=old_fields, response={"text": json.dumps(answer), "model": "test-vlm"}).at(1))

    real = OpenAIVLM(model="test-vlm", base_url=openai_server.base_url)
    resumed = call_log.recorder(backends(real), known=recorded_answers(call_log.events()))
    text, ev = resumed.vlm(ask(), shot=1)
    assert json.loads(text) == answer and ev.id == recorded.id and resumed.stats.reused == 1
    assert openai_server.requests() == []  # nothing asked again

    replaying = call_log.recorder(None, recording=call_log.events())
    text, copied = replaying.vlm(ask(), shot=1)
    assert json.loads(text) == answer and replaying.stats.replayed == 1
    assert copied.payload["request_key"] == old_key  # a replay copies the recording as it was

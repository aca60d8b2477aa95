"""A loopback OpenAI-compatible server for tests: real HTTP on 127.0.0.1, scripted replies, every request kept.

It speaks the OpenAI wire format for ``POST /v1/chat/completions`` (JSON, including
``response_format`` json_schema), ``/v1/images/generations`` (JSON) and ``/v1/images/edits``
(multipart with ``image[]`` parts). A test queues replies per path (status, body, headers, a delay
before answering) or installs a responder; the real ``openai`` client talks to it unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAKE_KEY = "sk-test-SECRET-1234"


# ---------------------------------------------------------------------------- the loopback server


@dataclass
class Reply:
    """One scripted answer: a status, a body (dict -> JSON, str/bytes -> raw), a delay before it."""

    status: int = 200
    body: Any = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass
class Part:
    name: str
    filename: str | None
    content_type: str
    data: bytes


@dataclass
class Seen:
    """A request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any = None
    parts: list[Part] = field(default_factory=list)

    def fields(self, name: str) -> list[Part]:
        return [p for p in self.parts if p.name == name]

    def text(self, name: str) -> str:
        return self.fields(name)[0].data.decode()


Responder = Callable[[Seen], Reply]


class OpenAIServer:
    """An OpenAI-compatible server on 127.0.0.1: scripted replies per path, every request kept."""

    def __init__(self) -> None:
        self.queues: dict[str, deque[Reply | Responder]] = {}
        self.responders: dict[str, Responder] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                server._handle(self)

            def do_GET(self) -> None:  # noqa: N802
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def start(self) -> OpenAIServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- scripting ------------------------------------------------------------------------

    def enqueue(self, path: str, *replies: Reply | Responder) -> OpenAIServer:
        with self._lock:
            self.queues.setdefault(path, deque()).extend(replies)
        return self

    def requests(self, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if path is None or s.path == path]

    def answer_agents(self, cast: tuple[str, ...] = ("Ada", "Ben")) -> OpenAIServer:
        """Answer every chat request plausibly by its schema name, and every image request with a PNG."""
        self.responders["/v1/chat/completions"] = lambda seen: agent_reply(seen, cast)
        self.responders["/v1/images/generations"] = image_reply_for
        self.responders["/v1/images/edits"] = image_reply_for
        return self

    # -- serving --------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("content-length") or 0)
        body = h.rfile.read(length) if length else b""
        seen = Seen(h.command, h.path.split("?")[0], {k.lower(): v for k, v in h.headers.items()}, body)
        ctype = seen.headers.get("content-type", "")
        if ctype.startswith("application/json") and body:
            seen.json = json.loads(body)
        elif ctype.startswith("multipart/form-data"):
            seen.parts = parse_multipart(ctype, body)
        with self._lock:
            self.seen.append(seen)
            queue = self.queues.get(seen.path)
            scripted = queue.popleft() if queue else None
        if scripted is None:
            responder = self.responders.get(seen.path)
            reply = responder(seen) if responder else Reply(500, {"error": {"message": f"nothing scripted for "
                                                                                        f"{seen.path}"}})
        else:
            reply = scripted(seen) if callable(scripted) else scripted
        if reply.delay:
            time.sleep(reply.delay)
        payload = reply.body
        if isinstance(payload, dict | list):
            data = json.dumps(payload).encode()
        elif isinstance(payload, str):
            data = payload.encode()
        else:
            data = payload or b""
        try:
            h.send_response(reply.status)
            h.send_header("Content-Type", reply.content_type)
            h.send_header("Content-Length", str(len(data)))
            for k, v in reply.headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeouts)
            pass


def parse_multipart(content_type: str, body: bytes) -> list[Part]:
    message = BytesParser(policy=policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    parts = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        parts.append(Part(str(name), part.get_filename(), part.get_content_type(),
                          part.get_payload(decode=True) or b""))
    return parts


# ---------------------------------------------------------------------------- reply builders


def chat_reply(content: str | None, *, refusal: str | None = None, finish: str = "stop", model: str = "test-vlm",
               usage: dict[str, int] | None = None) -> Reply:
    return Reply(200, {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "finish_reason": finish,
                     "message": {"role": "assistant", "content": content, "refusal": refusal}}],
        "usage": usage or {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    })


def png(size: tuple[int, int] = (48, 32), colour: tuple[int, int, int] = (200, 60, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def image_reply(data: bytes) -> Reply:
    return Reply(200, {"created": 0, "data": [{"b64_json": base64.b64encode(data).decode()}],
                       "usage": {"input_tokens": 5, "output_tokens": 10, "total_tokens": 15}})


def image_reply_for(seen: Seen) -> Reply:
    """A small PNG whose colour follows the prompt (so different prompts give different images)."""
    prompt = seen.json["prompt"] if seen.json else seen.text("prompt")
    h = hashlib.sha256(prompt.encode()).digest()
    return image_reply(png((48, 32), (h[0], h[1], h[2])))


def _section(text: str, title: str) -> str:
    match = re.search(re.escape(title) + r"[^\n]*\n(.*?)(?:\n\n|$)", text, re.S)
    return match.group(1).strip() if match else ""


def agent_reply(seen: Seen, cast: tuple[str, ...]) -> Reply:
    """A plausible answer to each agent, chosen by the json_schema name the request carries."""
    body = seen.json
    name = body.get("response_format", {}).get("json_schema", {}).get("name", "")
    user = next(p["text"] for p in body["messages"][1]["content"] if p["type"] == "text")
    answer: dict[str, Any]
    if name == "MemoryControllerOutput":
        known = re.findall(r"^- (\S+) \(", user, re.M)
        prompt = _section(user, "KEYFRAME PROMPT:")
        mentioned = [c for c in cast if c in prompt]
        answer = {"retrieved_existing": [{"name": c} for c in mentioned if c in known],
                  "new_entities": [{"name": c, "description": f"{c}, as the story describes", "base_entity": None}
                                   for c in mentioned if c not in known]}
    elif name == "KeyframeAnalyzerOutput":
        answer = {"decision": "accept", "reasons": ["the main characters and the place match"],
                  "alignment_report": {"main_character_count": "ok", "main_character_appearance": "ok",
                                       "environment": "ok"}, "refined_keyframe_prompt": ""}
    elif name == "MotionRefinerOutput":
        answer = {"refined_video_motion_prompt": "From the keyframe: " + _section(user, "ORIGINAL MOTION PROMPT:")}
    elif name == "VideoAnalyzerOutput":
        answer = {"entity_updates": [],
                  "refined_next_shot": {"keyframe_prompt": _section(user, "NEXT SHOT'S PLANNED KEYFRAME PROMPT:")}}
    else:
        return Reply(400, {"error": {"message": f"test server: no answer for schema {name!r}"}})
    tokens = len(seen.body) // 4
    return chat_reply(json.dumps(answer), model=body["model"],
                      usage={"prompt_tokens": tokens, "completion_tokens": 30, "total_tokens": tokens + 30})

"""Loopback servers for hosted providers: real HTTP on 127.0.0.1 speaking each provider's job wire format.

``JobServer`` holds what every provider has: jobs that take a fixed time, the input images decoded
from the requests, the file each job "generates" (an MP4 or PNG made from its input image, so a
test can compare bytes), every request seen, and faults a test switches on:

- ``submit_statuses``: answers to give submits before accepting one (e.g. ``[(429, {"Retry-After": "1"})]``);
- ``moderate(job) -> reason | None``: the job fails with the provider's reason;
- ``expire_urls``: result URLs that answer 410 the first time they are fetched;
- ``forget(job_id)`` / ``forget_all()``: the provider no longer knows the job (its status says 404);
- ``job_seconds``: how long a job runs; ``max_in_flight``: the most jobs running at once ever seen.

``FalServer`` speaks fal's queue API (``generators.hosted.fal``'s docstring). A subclass per provider
adds its routes; the server never reads anything but the requests it is sent. ``LoopbackHTTP`` is the
plumbing under every loopback server here and in tests/comfyui_loopback.py (a threaded HTTP server on
127.0.0.1 answering GET and POST); ``provider_config`` writes a config whose clips come from one of them.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

FAL_TEST_KEY = "fal-test-SECRET-5678"
KLING = "fal-ai/kling-video/v2.1/standard/image-to-video"


@dataclass
class Job:
    id: str
    model: str
    body: dict[str, Any]
    image: bytes | None  # the first-frame image as the request carried it (decoded)
    references: list[bytes]
    submitted: float
    seconds: float
    kind: str = "video"
    failure: str | None = None
    output: bytes | None = None
    fetched: int = 0

    def done(self, now: float) -> bool:
        return now >= self.submitted + self.seconds

    def state(self, now: float) -> str:
        if self.done(now):
            return "COMPLETED"
        return "IN_PROGRESS" if now >= self.submitted + self.seconds / 3 else "IN_QUEUE"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any = None


def decode_data_uri(uri: str) -> bytes:
    match = re.match(r"^data:([^;,]+)?(;base64)?,(.*)$", uri, re.S)
    if not match:
        raise ValueError(f"not a data URI: {uri[:40]!r}")
    return base64.b64decode(match.group(3)) if match.group(2) else match.group(3).encode()


def clip_from_image(image: bytes, frames: int = 9, fps: float = 8.0) -> bytes:
    """A short MP4 that pans over ``image`` (what the fake model 'generates'), deterministic for its input."""
    from codirector.generators.video_io import encode_mp4

    im = Image.open(io.BytesIO(image)).convert("RGB")
    w, h = (im.width // 2) * 2, (im.height // 2) * 2
    base = np.asarray(im.resize((w, h)), dtype=np.uint8)
    out = [np.roll(base, shift=i * 2, axis=1) for i in range(frames)]
    return encode_mp4(out, fps)


def png_from_images(images: list[bytes], prompt: str) -> bytes:
    """A PNG mixing the reference images (or a colour from the prompt when there are none)."""
    if images:
        ims = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB").resize((64, 36)), dtype=np.float32)
               for b in images]
        arr = np.mean(ims, axis=0).astype(np.uint8)
    else:
        seed = sum(prompt.encode()) % 255
        arr = np.full((36, 64, 3), seed, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


class LoopbackHTTP:
    """A threaded HTTP server on 127.0.0.1 (``url``) whose GET and POST requests ``answer`` answers.

    ``answer(method, path, headers, body)`` gets the headers with lower-case names and gives back a status,
    a payload (bytes as they are, anything else as JSON) and the answer's headers (``content-type`` among
    them, JSON when it is not given).
    """

    def serve(self, port: int = 0) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, payload, answer_headers = server.answer(method, self.path, headers, body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", answer_headers.pop("content-type", "application/json"))
                for k, v in answer_headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # shutdown() waits for serve_forever to look at its flag: every 20 ms, not the default 0.5 s per server stopped
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    def shutdown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class JobServer(LoopbackHTTP):
    """The provider-independent part: jobs, files, faults, and what was seen."""

    key_header = "authorization"
    expected_auth = f"Key {FAL_TEST_KEY}"

    def __init__(self, job_seconds: float = 0.2) -> None:
        self.job_seconds = job_seconds
        self.jobs: dict[str, Job] = {}
        self.seen: list[Seen] = []
        self.submit_statuses: list[tuple[int, dict[str, str]]] = []
        self.moderate: Callable[[Job], str | None] = lambda job: None
        self.expire_urls: set[str] = set()
        self.forgotten: set[str] = set()
        self.max_in_flight = 0
        self.frames = 9
        self.lock = threading.Lock()
        self.serve()

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, dict[str, str]]:
        seen = Seen(method, path, headers, body)
        try:
            seen.json = json.loads(body) if body and "json" in headers.get("content-type", "") else None
        except ValueError:
            seen.json = None
        with self.lock:
            self.seen.append(seen)
        return self.route(seen)

    # -- bookkeeping a test reads ------------------------------------------------------

    def submits(self) -> list[Seen]:
        return [s for s in self.seen if self.is_submit(s)]

    def is_submit(self, seen: Seen) -> bool:
        raise NotImplementedError

    def route(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    def job_of(self, ticket_id: str) -> Job:
        """The job a ticket's ``job_id`` names (its id here; a provider whose ids say more reads them)."""
        return self.jobs[ticket_id]

    def forget(self, job_id: str) -> None:
        self.forgotten.add(job_id)

    def forget_all(self) -> None:
        self.forgotten.update(self.jobs)

    def close(self) -> None:
        self.shutdown()

    # -- shared steps ------------------------------------------------------------------

    def authorised(self, seen: Seen) -> bool:
        return seen.headers.get(self.key_header) == self.expected_auth

    def new_job(self, model: str, body: dict[str, Any], image: bytes | None, references: list[bytes],
                kind: str = "video") -> Job:
        now = time.monotonic()
        job = Job(uuid.uuid4().hex, model, body, image, references, now, self.job_seconds, kind=kind)
        job.failure = self.moderate(job)
        with self.lock:
            self.jobs[job.id] = job
            running = sum(1 for j in self.jobs.values() if not j.done(now))
            self.max_in_flight = max(self.max_in_flight, running)
        return job

    def output_of(self, job: Job) -> bytes:
        if job.output is None:
            if job.kind == "video":
                job.output = clip_from_image(job.image or png_from_images(job.references, ""), frames=self.frames)
            else:
                prompt = str(job.body.get("prompt", ""))
                job.output = png_from_images([*([job.image] if job.image else []), *job.references], prompt)
        return job.output

    def pending_submit_fault(self) -> tuple[int, dict[str, str]] | None:
        with self.lock:
            return self.submit_statuses.pop(0) if self.submit_statuses else None

    def file(self, job_id: str) -> tuple[int, Any, dict[str, str]]:
        job = self.jobs.get(job_id)
        if job is None or job_id in self.forgotten:
            return 404, {"detail": "Not Found"}, {}
        if job_id in self.expire_urls:
            self.expire_urls.discard(job_id)
            return 410, {"detail": "this link has expired"}, {}
        job.fetched += 1
        ctype = "video/mp4" if job.kind == "video" else "image/png"
        return 200, self.output_of(job), {"content-type": ctype}


class FalServer(JobServer):
    """fal's queue API: submit to the app id, status and result under owner/app/requests/ID."""

    def is_submit(self, seen: Seen) -> bool:
        return seen.method == "POST" and "/requests/" not in seen.path

    def route(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        path = seen.path.split("?", 1)[0]
        if path.startswith("/files/"):
            return self.file(path[len("/files/"):].split(".", 1)[0])
        if not self.authorised(seen):
            return 401, {"detail": "Invalid API key"}, {}
        if seen.method == "POST" and "/requests/" not in path:
            return self.submit(path.strip("/"), seen)
        match = re.match(r"^/([^/]+/[^/]+)/requests/([0-9a-f]+)(/status)?$", path)
        if match is None or seen.method != "GET":
            return 404, {"detail": f"no route {seen.method} {path}"}, {}
        job_id, is_status = match.group(2), bool(match.group(3))
        job = self.jobs.get(job_id)
        if job is None or job_id in self.forgotten:
            return 404, {"detail": f"Request {job_id} not found"}, {}
        now = time.monotonic()
        if is_status:
            state = job.state(now)
            status: dict[str, Any] = {"status": state, "request_id": job.id}
            if state == "IN_QUEUE":
                status["queue_position"] = 0
            if state == "COMPLETED" and job.failure:
                status["error"] = job.failure
                status["error_type"] = "content_policy_violation"
            return (200 if state == "COMPLETED" else 202), status, {}
        if not job.done(now):
            return 400, {"detail": "Request is still in progress"}, {}
        if job.failure:
            return 422, {"detail": [{"loc": ["body", "prompt"], "msg": job.failure,
                                     "type": "content_policy_violation"}]}, {}
        # results live on another origin, as fal's CDN is: "localhost" is this server under another name
        name = f"http://localhost:{self.port}/files/{job.id}.{'mp4' if job.kind == 'video' else 'png'}"
        if job.kind == "video":
            return 200, {"video": {"url": name, "content_type": "video/mp4"}, "seed": job.body.get("seed")}, {}
        return 200, {"images": [{"url": name, "content_type": "image/png"}], "seed": job.body.get("seed")}, {}

    def submit(self, app: str, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        fault = self.pending_submit_fault()
        if fault is not None:
            status, headers = fault
            return status, {"detail": "Too many requests" if status == 429 else "Server error"}, dict(headers)
        body = seen.json or {}
        image = None
        for key in ("image_url", "start_image_url"):
            if isinstance(body.get(key), str):
                image = decode_data_uri(body[key])
        refs = []
        for key in ("image_urls", "reference_image_urls"):
            for uri in body.get(key) or []:
                refs.append(decode_data_uri(uri))
        kind = "image" if any(s in app for s in ("image-edit", "kontext", "nano-banana", "gemini")) else "video"
        if kind == "video" and image is None and refs:
            image = refs[0]
        job = self.new_job(app, body, image, refs, kind=kind)
        owner_app = "/".join(app.split("/")[:2])
        base = f"{self.url}/{owner_app}/requests/{job.id}"
        return 200, {"request_id": job.id, "status_url": f"{base}/status", "response_url": base,
                     "cancel_url": f"{base}/cancel", "status": "IN_QUEUE", "queue_position": 0}, {}


def provider_config(path: Path, video: dict[str, object], image: dict[str, object] | None = None, extra: str = "",
                    **run: object) -> Path:
    """A config whose clips come from the ``[video]`` table ``video`` (a loopback server's backend, model and
    URL, polled every 20 ms) and whose agents and embedder (and keyframes, unless ``image`` is given) are the
    counting preview backends (tests/codirector_test_plugins.py); ``extra`` follows ``[video]``'s keys, and
    ``[run]`` is tiny frames with any overrides."""
    from support import FAST_RUN

    def keys(table: dict[str, object]) -> list[str]:
        return [f"{k} = {json.dumps(v)}" for k, v in table.items()]

    lines = ['profile = "preview"', "[vlm]", 'backend = "counting"', "[image]",
             *keys(image or {"backend": "counting"}), "[embedder]", 'backend = "counting"',
             "[video]", *keys({**video, "poll_seconds": 0.02}), extra, "[run]", *keys({**FAST_RUN, **run})]
    path.write_text("\n".join(lines) + "\n")
    return path


def fal_config(path: Path, server: JobServer, model: str = KLING, extra: str = "", **run: object) -> Path:
    """A config whose clips come from ``server`` through fal (``provider_config``)."""
    return provider_config(path, {"backend": "fal", "model": model, "base_url": server.url}, extra=extra, **run)


# ---------------------------------------------------------------------------- /v1/videos gateways

OPENAI_TEST_KEY = "sk-gateway-test-SECRET-1234"


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """The fields and files of a ``multipart/form-data`` body."""
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if part.get_filename():
            files[str(name)] = payload
        else:
            fields[str(name)] = payload.decode()
    return fields, files


class OpenAIVideosServer(JobServer):
    """The ``/v1/videos`` shape (``generators.hosted.openai_videos``' docstring) under ``/v1``.

    ``report_cost``: a USD figure sent as ``x-litellm-response-cost`` with a completed video's status.
    """

    key_header = "authorization"
    expected_auth = f"Bearer {OPENAI_TEST_KEY}"

    def __init__(self, job_seconds: float = 0.2) -> None:
        super().__init__(job_seconds)
        self.report_cost: float | None = None

    def is_submit(self, seen: Seen) -> bool:
        return seen.method == "POST" and seen.path.split("?", 1)[0].rstrip("/") == "/v1/videos"

    def route(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        if not self.authorised(seen):
            return 401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}, {}
        path = seen.path.split("?", 1)[0].rstrip("/")
        if self.is_submit(seen):
            return self.submit(seen)
        match = re.match(r"^/v1/videos/([0-9a-f]+)(/content)?$", path)
        if match is None or seen.method != "GET":
            return 404, {"error": {"message": f"no route {seen.method} {path}"}}, {}
        job_id = match.group(1)
        job = self.jobs.get(job_id)
        if job is None or job_id in self.forgotten:
            return 404, {"error": {"message": f"Video {job_id} not found", "code": "not_found"}}, {}
        if match.group(2):
            if not job.done(time.monotonic()) or job.failure:
                return 404, {"error": {"message": "video content is not available", "code": "not_found"}}, {}
            return self.file(job_id)
        return 200, *self.video_object(job)

    def video_object(self, job: Job) -> tuple[dict[str, Any], dict[str, str]]:
        now = time.monotonic()
        state = {"IN_QUEUE": "queued", "IN_PROGRESS": "in_progress", "COMPLETED": "completed"}[job.state(now)]
        headers: dict[str, str] = {}
        error = None
        if state == "completed" and job.failure:
            state, error = "failed", {"code": "moderation_blocked", "message": job.failure}
        elif state == "completed" and self.report_cost is not None:
            headers["x-litellm-response-cost"] = str(self.report_cost)
        return {"id": job.id, "object": "video", "model": job.model, "status": state, "error": error,
                "progress": 100 if state in ("completed", "failed") else 10, "created_at": 0,
                "seconds": job.body.get("seconds"), "size": job.body.get("size"), "prompt": job.body.get("prompt")}, \
            headers

    def submit(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        fault = self.pending_submit_fault()
        if fault is not None:
            status, headers = fault
            return status, {"error": {"message": "Rate limit reached" if status == 429 else "Server error"}}, \
                dict(headers)
        ctype = seen.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            fields, files = parse_multipart(ctype, seen.body)
            body: dict[str, Any] = dict(fields)
            image = files.get("input_reference")
        else:
            body = dict(seen.json or {})
            ref = body.pop("input_reference", None) or {}
            image = decode_data_uri(ref["image_url"]) if isinstance(ref, dict) and ref.get("image_url") else None
        if not body.get("model") or not body.get("prompt"):
            return 400, {"error": {"message": "model and prompt are required", "code": "invalid_request"}}, {}
        job = self.new_job(str(body["model"]), body, image, [])
        return 200, self.video_object(job)[0], {}


# ---------------------------------------------------------------------------- Google (Gemini API)

GEMINI_TEST_KEY = "AIza-test-SECRET-9012"


class GoogleServer(JobServer):
    """The Gemini API under ``/v1beta``: Veo's ``predictLongRunning`` operations, their files, and the image
    models' ``generateContent`` (``generators.hosted.google``' docstring)."""

    key_header = "x-goog-api-key"
    expected_auth = GEMINI_TEST_KEY

    def __init__(self, job_seconds: float = 0.2) -> None:
        super().__init__(job_seconds)
        self.images: list[Job] = []  # generateContent calls (answered at once)

    def is_submit(self, seen: Seen) -> bool:
        return seen.method == "POST" and seen.path.split("?", 1)[0].endswith(":predictLongRunning")

    def job_of(self, ticket_id: str) -> Job:
        """An operation's name, ``models/MODEL/operations/ID``, names the job ID of that model."""
        match = re.match(r"^models/([^/]+)/operations/([0-9a-f]+)$", ticket_id)
        assert match is not None, f"not an operation name: {ticket_id!r}"
        job = self.jobs[match.group(2)]
        assert job.model == match.group(1), (ticket_id, job.model)
        return job

    def route(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        if not self.authorised(seen):
            return 403, {"error": {"code": 403, "message": "API key not valid.", "status": "PERMISSION_DENIED"}}, {}
        path = seen.path.split("?", 1)[0]
        match = re.match(r"^/v1beta/models/([^/:]+):(predictLongRunning|generateContent)$", path)
        if match is not None and seen.method == "POST":
            fault = self.pending_submit_fault()
            if fault is not None:
                status, headers = fault
                return status, {"error": {"code": status, "message": "Resource has been exhausted" if status == 429
                                          else "Internal error", "status": "RESOURCE_EXHAUSTED" if status == 429
                                          else "INTERNAL"}}, dict(headers)
            if match.group(2) == "predictLongRunning":
                return self.start_video(match.group(1), seen.json or {})
            return self.image(match.group(1), seen.json or {})
        match = re.match(r"^/v1beta/files/([0-9a-f]+):download$", path)
        if match is not None and seen.method == "GET":
            return self.file(match.group(1))
        match = re.match(r"^/v1beta/models/([^/]+)/operations/([0-9a-f]+)$", path)
        if match is None or seen.method != "GET":
            return 404, {"error": {"code": 404, "message": f"no route {seen.method} {path}", "status": "NOT_FOUND"}}, {}
        return self.operation(match.group(1), match.group(2))

    def start_video(self, model: str, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        instance = (body.get("instances") or [{}])[0]
        if not instance.get("prompt"):
            return 400, {"error": {"code": 400, "message": "prompt is required", "status": "INVALID_ARGUMENT"}}, {}
        image = base64.b64decode(instance["image"]["bytesBase64Encoded"]) if instance.get("image") else None
        refs = [base64.b64decode(r["image"]["bytesBase64Encoded"]) for r in instance.get("referenceImages") or []]
        job = self.new_job(model, body, image, refs)
        return 200, {"name": f"models/{model}/operations/{job.id}"}, {}

    def operation(self, model: str, job_id: str) -> tuple[int, Any, dict[str, str]]:
        job = self.jobs.get(job_id)
        name = f"models/{model}/operations/{job_id}"
        if job is None or job_id in self.forgotten:
            return 404, {"error": {"code": 404, "message": f"Operation {name} not found", "status": "NOT_FOUND"}}, {}
        if not job.done(time.monotonic()):
            return 200, {"name": name}, {}
        answer: dict[str, Any] = {"@type": "type.googleapis.com/google.ai.generativelanguage.v1beta."
                                  "PredictLongRunningResponse"}
        if job.failure:
            answer["generateVideoResponse"] = {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [job.failure]}
        else:
            uri = f"{self.url}/v1beta/files/{job.id}:download?alt=media"
            answer["generateVideoResponse"] = {"generatedSamples": [{"video": {"uri": uri}}]}
        return 200, {"name": name, "done": True, "response": answer}, {}

    def image(self, model: str, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        parts = ((body.get("contents") or [{}])[0]).get("parts") or []
        prompt = " ".join(str(p["text"]) for p in parts if "text" in p)
        refs = [base64.b64decode(p["inline_data"]["data"]) for p in parts if "inline_data" in p]
        job = self.new_job(model, {**body, "prompt": prompt}, None, refs, kind="image")
        job.submitted -= job.seconds  # answered at once
        self.images.append(job)
        if job.failure:
            return 200, {"candidates": [{"finishReason": "IMAGE_SAFETY", "finishMessage": job.failure}],
                         "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12}}, {}
        data = base64.b64encode(self.output_of(job)).decode()
        return 200, {"candidates": [{"content": {"role": "model", "parts": [
            {"inlineData": {"mimeType": "image/png", "data": data}}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 1290, "totalTokenCount": 1302}}, {}

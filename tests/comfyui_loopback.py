"""A loopback server that speaks ComfyUI's HTTP API, and "runs" workflows by making files from their inputs.

Routes (as comfyanonymous/ComfyUI's ``server.py`` and ``execution.py`` answer them): ``POST /upload/image``
(multipart ``image``; a file of the same name and bytes is kept, not written again), ``POST /prompt``
(``{prompt, client_id}`` -> ``{prompt_id, number, node_errors}``, 400 with ``error`` and ``node_errors``),
``GET /history/{id}`` (``{}`` until done), ``GET /queue``, ``GET /view``, ``GET /object_info``,
``GET /system_stats``.

Prompts run one at a time in queue order, each ``job_seconds`` long. Running one: the images its
``LoadImage`` nodes name (as uploaded) become its output: a ``SaveVideo`` / ``VHS_VideoCombine`` node
writes an MP4 panning over the first image (``length`` frames where the workflow sets one), a
``SaveImage`` node a PNG mixing them at the workflow's ``width`` x ``height``. Faults a test switches on:
``node_errors(graph) -> dict | None`` (a refused prompt), ``execution_error(prompt) -> (node, message) | None``,
``restart()`` (queue and history forgotten, as a restarted ComfyUI's are), ``stop()`` (the server is down),
``classes`` (the node classes it has).
"""

from __future__ import annotations

import email.parser
import io
import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from PIL import Image

from hosted_loopback import LoopbackHTTP, clip_from_image
from support import FAST_RUN

CORE_CLASSES = frozenset({
    "LoadImage", "CLIPTextEncode", "KSampler", "KSamplerAdvanced", "VAEDecode", "VAEEncode", "VAELoader",
    "UNETLoader", "CLIPLoader", "DualCLIPLoader", "CLIPVisionLoader", "CLIPVisionEncode", "WanImageToVideo",
    "ModelSamplingSD3", "ModelSamplingAuraFlow", "CreateVideo", "SaveVideo", "SaveImage", "PreviewImage",
    "EmptySD3LatentImage", "EmptyLatentImage", "TextEncodeQwenImageEditPlus", "FluxKontextImageScale",
    "ReferenceLatent", "FluxGuidance", "ImageStitch", "LoraLoaderModelOnly", "CFGNorm", "ConditioningZeroOut",
})
VIDEO_NODES = ("SaveVideo", "VHS_VideoCombine")
IMAGE_NODES = ("SaveImage", "PreviewImage")


@dataclass
class Prompt:
    id: str
    number: int
    graph: dict[str, Any]
    client_id: str
    queued: float
    start: float = 0.0
    end: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    body: bytes = field(repr=False)


class ComfyServer(LoopbackHTTP):
    """One ComfyUI-shaped server on 127.0.0.1 (``url``); ``seen`` holds every request it answered."""

    def __init__(self, job_seconds: float = 0.2, *, classes: frozenset[str] = CORE_CLASSES,
                 gpu: str = "NVIDIA GeForce RTX 4090", port: int = 0) -> None:
        self.job_seconds = job_seconds
        self.classes = set(classes)
        self.gpu = gpu
        self.uploads: dict[str, bytes] = {}
        self.upload_writes = 0
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.queue: list[Prompt] = []
        self.history: dict[str, dict[str, Any]] = {}
        self.prompts: dict[str, Prompt] = {}  # every prompt ever queued here (survives a restart, for tests)
        self.seen: list[Seen] = []
        self.node_errors: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda graph: None
        self.execution_error: Callable[[Prompt], tuple[str, str] | None] = lambda prompt: None
        self.lock = threading.RLock()
        self._number = 0
        self._counter = 0
        self.serve(port)
        self.up = True

    # -- life -------------------------------------------------------------------------

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            self.seen.append(Seen(method, path, body))
            status, payload, ctype = self.route(method, path, body, headers.get("content-type", ""))
        return status, payload, {"content-type": ctype}

    def stop(self) -> None:
        """The server goes down: nothing listens on its port any more (its queue is gone with it)."""
        if self.up:
            self.shutdown()
            self.up = False
            with self.lock:
                self.queue.clear()

    def restart(self) -> None:
        """A restarted ComfyUI: same port and output folder, an empty queue and an empty history."""
        with self.lock:
            self.queue.clear()
            self.history.clear()

    def close(self) -> None:
        self.stop()

    # -- what a test reads -----------------------------------------------------------------

    def posts(self, path: str = "/prompt") -> list[Seen]:
        return [s for s in self.seen if s.method == "POST" and s.path.split("?")[0] == path]

    def loaded_images(self, prompt_id: str) -> dict[str, bytes]:
        """node id -> the uploaded bytes each LoadImage node of a queued prompt named."""
        graph = self.prompts[prompt_id].graph
        return {nid: self.uploads[str(n["inputs"]["image"])] for nid, n in graph.items()
                if n["class_type"] == "LoadImage" and str(n["inputs"]["image"]) in self.uploads}

    def output_of(self, prompt_id: str) -> bytes:
        entry = self.history[prompt_id]
        for node in entry["outputs"].values():
            for items in node.values():
                if isinstance(items, list) and items and isinstance(items[0], dict):
                    f = items[0]
                    return self.files[(f["type"], f["subfolder"], f["filename"])]
        raise KeyError(prompt_id)

    # -- the queue ----------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Finish every prompt whose time is up (one at a time, in queue order)."""
        with self.lock:
            while self.queue and self.queue[0].end <= now:
                self.finish(self.queue.pop(0))

    def _schedule(self) -> None:
        end = 0.0
        for p in self.queue:
            start = max(p.queued, end)
            p.start, p.end = start, start + self.job_seconds
            end = p.end

    def finish(self, prompt: Prompt) -> None:
        failure = self.execution_error(prompt)
        messages: list[Any] = [["execution_start", {"prompt_id": prompt.id, "timestamp": int(time.time() * 1000)}]]
        outputs: dict[str, Any] = {}
        if failure is not None:
            node_id, message = failure
            messages.append(["execution_error", {
                "prompt_id": prompt.id, "node_id": node_id, "node_type": prompt.graph[node_id]["class_type"],
                "executed": [], "exception_message": message, "exception_type": "torch.OutOfMemoryError",
                "traceback": ["  File \"execution.py\", line 1, in execute\n"], "current_inputs": {},
                "current_outputs": {}}])
            status = {"status_str": "error", "completed": False, "messages": messages}
        else:
            outputs = self.run(prompt)
            messages.append(["execution_success", {"prompt_id": prompt.id}])
            status = {"status_str": "success", "completed": True, "messages": messages}
        self.history[prompt.id] = {"prompt": [prompt.number, prompt.id, prompt.graph, {"client_id": prompt.client_id},
                                              list(outputs)], "outputs": outputs, "status": status, "meta": {}}

    def run(self, prompt: Prompt) -> dict[str, Any]:
        graph = prompt.graph
        images = [self.uploads[str(n["inputs"]["image"])] for n in graph.values()
                  if n["class_type"] == "LoadImage" and str(n["inputs"].get("image")) in self.uploads]
        ints = {k: v for n in graph.values() for k, v in n["inputs"].items() if isinstance(v, int | float)}
        outputs: dict[str, Any] = {}
        for nid, node in graph.items():
            cls = node["class_type"]
            if cls in VIDEO_NODES and images:
                data = clip_from_image(images[0], frames=int(ints.get("length", 9)), fps=float(ints.get("fps", 8.0)))
                item = self._save(node, data, ".mp4", "video/ComfyUI")
                outputs[nid] = {"gifs": [item]} if cls == "VHS_VideoCombine" else {"images": [item], "animated": [True]}
            elif cls in IMAGE_NODES:
                w, h = int(ints.get("width", 64)), int(ints.get("height", 48))
                text = " ".join(str(n["inputs"].get("text") or n["inputs"].get("prompt") or "") for n in graph.values())
                outputs[nid] = {"images": [self._save(node, mix(images, text, w, h), ".png", "ComfyUI")]}
        return outputs

    def _save(self, node: dict[str, Any], data: bytes, suffix: str, default_prefix: str) -> dict[str, str]:
        self._counter += 1
        prefix = str(node["inputs"].get("filename_prefix") or default_prefix)
        sub, _, name = prefix.rpartition("/")
        kind = "temp" if node["class_type"] == "PreviewImage" else "output"
        filename = f"{name}_{self._counter:05d}_{suffix}"
        self.files[(kind, sub, filename)] = data
        return {"filename": filename, "subfolder": sub, "type": kind}

    # -- routes -----------------------------------------------------------------------------

    def route(self, method: str, raw_path: str, body: bytes, ctype: str) -> tuple[int, Any, str]:
        parts = urlsplit(raw_path)
        path, query = parts.path.removeprefix("/api"), parse_qs(parts.query)
        self.advance(time.monotonic())
        js = "application/json"
        if method == "POST" and path == "/upload/image":
            return self.upload(body, ctype)
        if method == "POST" and path == "/prompt":
            return self.queue_prompt(body)
        if method == "GET" and path.startswith("/history/"):
            pid = path[len("/history/"):]
            return 200, ({pid: self.history[pid]} if pid in self.history else {}), js
        if method == "GET" and path == "/queue":
            running = self.queue[:1]

            def row(p: Prompt) -> list[Any]:
                return [p.number, p.id, p.graph, {"client_id": p.client_id}, []]
            return 200, {"queue_running": [row(p) for p in running],
                         "queue_pending": [row(p) for p in self.queue[1:]]}, js
        if method == "GET" and path == "/view":
            key = (query.get("type", ["output"])[0], query.get("subfolder", [""])[0], query.get("filename", [""])[0])
            if key not in self.files:
                return 404, b"", "text/plain"
            return 200, self.files[key], "video/mp4" if key[2].endswith(".mp4") else "image/png"
        if method == "GET" and path == "/object_info":
            return 200, {c: {"name": c, "display_name": c, "input": {"required": {}}, "output": [],
                             "output_node": c in (*VIDEO_NODES, *IMAGE_NODES), "category": "test"}
                         for c in sorted(self.classes)}, js
        if method == "GET" and path == "/system_stats":
            return 200, {"system": {"os": "posix", "comfyui_version": "0.3.66", "python_version": "3.12"},
                         "devices": [{"name": f"cuda:0 {self.gpu} : cudaMallocAsync", "type": "cuda", "index": 0,
                                      "vram_total": 24 * 2**30, "vram_free": 20 * 2**30,
                                      "torch_vram_total": 0, "torch_vram_free": 0}]}, js
        return 404, {"error": f"no route {method} {path}"}, js

    def upload(self, body: bytes, ctype: str) -> tuple[int, Any, str]:
        message = email.parser.BytesParser().parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
        fields: dict[str, Any] = {}
        parts: list[Any] = list(message.get_payload()) if message.is_multipart() else []
        for part in parts:
            name = str(part.get_param("name", header="content-disposition"))
            fields[name] = (part.get_filename(), part.get_payload(decode=True))
        if "image" not in fields or not fields["image"][0]:
            return 400, b"", "text/plain"
        filename, data = fields["image"]
        stored = filename
        i = 1
        while stored in self.uploads and self.uploads[stored] != data:  # ComfyUI keeps same-name same-hash files
            base, dot, ext = filename.rpartition(".")
            stored = f"{base} ({i}).{ext}"
            i += 1
        if stored not in self.uploads:
            self.uploads[stored] = data
            self.upload_writes += 1
        return 200, {"name": stored, "subfolder": "", "type": "input"}, "application/json"

    def queue_prompt(self, body: bytes) -> tuple[int, Any, str]:
        request = json.loads(body)
        graph = request.get("prompt")
        js = "application/json"
        if not isinstance(graph, dict):
            return 400, {"error": {"type": "no_prompt", "message": "No prompt provided", "details": "",
                                   "extra_info": {}}, "node_errors": {}}, js
        for nid, node in graph.items():
            if node.get("class_type") not in self.classes:
                return 400, {"error": {"type": "invalid_prompt",
                                       "message": f"Cannot execute because node {node.get('class_type')} does not "
                                                  "exist.", "details": f"Node ID '#{nid}'", "extra_info": {}},
                             "node_errors": {}}, js
        errors = self.node_errors(graph)
        if errors:
            return 400, {"error": {"type": "prompt_outputs_failed_validation",
                                   "message": "Prompt outputs failed validation", "details": "", "extra_info": {}},
                         "node_errors": errors}, js
        self._number += 1
        prompt = Prompt(str(uuid.uuid4()), self._number, graph, str(request.get("client_id", "")), time.monotonic())
        self.queue.append(prompt)
        self.prompts[prompt.id] = prompt
        self._schedule()
        return 200, {"prompt_id": prompt.id, "number": prompt.number, "node_errors": {}}, js


def mix(images: list[bytes], text: str, width: int, height: int) -> bytes:
    """A PNG of ``width`` x ``height`` mixing ``images`` (a colour from ``text`` when there are none)."""
    if images:
        arrays = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB").resize((width, height)), dtype=np.float32)
                  for b in images]
        arr = np.mean(arrays, axis=0).astype(np.uint8)
    else:
        arr = np.full((height, width, 3), sum(text.encode()) % 255, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def value_not_in_list(node: str, cls: str, field_name: str, value: str, allowed: list[str]) -> dict[str, Any]:
    """A ``node_errors`` entry as ComfyUI's validation writes it for a combo value it does not have."""
    return {node: {"errors": [{"type": "value_not_in_list", "message": "Value not in list",
                               "details": f"{field_name}: '{value}' not in {allowed}",
                               "extra_info": {"input_name": field_name, "input_config": None,
                                              "received_value": value}}],
                   "dependent_outputs": ["9"], "class_type": cls}}


# ---------------------------------------------------------------------------- configs for the tests

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "comfyui"

VIDEO_BIND = {"prompt": "6.inputs.text", "negative": "7.inputs.text", "image": "52.inputs.image",
              "seed": "57.inputs.noise_seed", "width": "50.inputs.width", "height": "50.inputs.height",
              "frames": "50.inputs.length", "fps": "60.inputs.fps"}
IMAGE_BIND = {"prompt": "111.inputs.prompt", "image": "78.inputs.image",
              "references": ["106.inputs.image", "108.inputs.image"], "seed": "3.inputs.seed",
              "width": "112.inputs.width", "height": "112.inputs.height"}


def toml_value(v: Any) -> str:
    return json.dumps(v)


def comfy_config(folder: Path, servers: list[ComfyServer] | list[str], *, images: bool = False,
                 video_bind: dict[str, Any] | None = None, extra: str = "", **run: object) -> Path:
    """A config whose [video] (and with ``images``, [image]) runs the example workflows on ``servers``."""
    flows = folder / "workflows"
    flows.mkdir(exist_ok=True)
    for name in ("wan22_i2v_api.json", "qwen_image_edit_2509_api.json"):
        shutil.copy(EXAMPLES / name, flows / name)
    urls = [s if isinstance(s, str) else s.url for s in servers]
    base = toml_value(urls[0] if len(urls) == 1 else urls)
    timing = "poll_seconds = 0.02\nlost_after = 0.3\nconnect_timeout = 1.0\n"
    lines = ['profile = "preview"', "[vlm]", 'backend = "counting"', "[embedder]", 'backend = "counting"']
    if images:
        lines += ["[image]", 'backend = "comfyui"', f"base_url = {base}",
                  'workflow = "workflows/qwen_image_edit_2509_api.json"', 'output = "60"', timing, "[image.bind]",
                  *(f"{k} = {toml_value(v)}" for k, v in IMAGE_BIND.items())]
    else:
        lines += ["[image]", 'backend = "counting"']
    lines += ["[video]", 'backend = "comfyui"', f"base_url = {base}", 'workflow = "workflows/wan22_i2v_api.json"',
              'output = "61"', 'negative = "blurry"', timing, extra, "[video.bind]",
              *(f"{k} = {toml_value(v)}" for k, v in (video_bind or VIDEO_BIND).items())]
    lines += ["[run]", *(f"{k} = {json.dumps(v)}" for k, v in {**FAST_RUN, **run}.items())]
    path = folder / "comfy.toml"
    path.write_text("\n".join(lines) + "\n")
    return path

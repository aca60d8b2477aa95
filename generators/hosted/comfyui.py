"""ComfyUI servers as image and video backends: the user's own workflow, bound to our request's fields.

A user exports a workflow in ComfyUI's API format (``{node_id: {"class_type", "inputs"}}``) and binds our
request's fields to node inputs (``[video.bind] prompt = "6.inputs.text"``). A call is a provider job
(``generators.jobs``): submit = upload the input images and queue the workflow; the ``prompt_id`` is the
ticket; collect = watch its history, then fetch its output files.

Wire format (read from comfyanonymous/ComfyUI ``server.py`` and ``execution.py``; no live server here, the
tests run against ``tests/comfyui_loopback.py``, which speaks the same routes):
- ``POST /upload/image`` (multipart: ``image`` file; ``overwrite`` unset) -> ``{"name", "subfolder", "type"}``.
  ComfyUI compares an existing file of that name by hash and keeps it: we name each image by its digest,
  so a repeat upload writes nothing.
- ``POST /prompt`` ``{"prompt": workflow, "client_id"}`` -> 200 ``{"prompt_id", "number", "node_errors"}``,
  or 400 ``{"error": {"type", "message", "details"}, "node_errors": {node_id: {"class_type", "errors":
  [{"type", "message", "details", "extra_info": {"input_name"}}]}}}``.
- ``GET /history/{prompt_id}`` -> ``{}`` while queued or running (and once forgotten), else ``{prompt_id:
  {"outputs": {node_id: {"images"|"gifs"|...: [{"filename", "subfolder", "type"}]}}, "status": {"status_str":
  "success"|"error", "completed", "messages": [[event, data], ...]}}}``; an ``execution_error`` message
  carries ``node_id``, ``node_type``, ``exception_type``, ``exception_message``.
- ``GET /queue`` -> ``{"queue_running": [[number, prompt_id, ...]], "queue_pending": [...]}``: a prompt in
  neither and not in the history is one the server lost (it restarted: its queue and history live in memory).
- ``GET /view?filename=&subfolder=&type=`` -> the file's bytes; ``GET /object_info`` -> the node classes it
  has; ``GET /system_stats`` -> ``{"devices": [{"name", "vram_total", "vram_free"}]}``.

Invariants:
- Keyed by what the server receives: the model string is ``comfyui:<workflow file>@<digest>``, the digest of
  the workflow's JSON, its bindings and fixed values, so an edited workflow is a different call; the
  request's own fields (prompt, image digests, seed, size, frames) are the rest of the key. Which server
  ran a job is not in the key (the ticket and the answer say it), so replay needs no server.
- A pool (``base_url`` a list): each job is queued on the answering server with the shortest queue; a
  server that does not answer is out until it answers again (asked again after ``recheck_seconds``). A job
  whose server lost it (restarted, or unreachable for ``lost_after`` seconds: ComfyUI keeps its queue in
  memory) raises ``ProviderJobUnknown``: the recorder logs ``ProviderJobLost`` and queues it again, on
  another server when there is one. A prompt is sent to one server once: a ``/prompt`` that was sent but
  got no answer is not sent elsewhere (it may be queued), the call fails and ``resume`` decides.
- Nothing here imports ``httpx2`` until a backend talks to a server.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codirector.errors import BackendError, ConfigError, ProviderJobFailed, ProviderJobUnknown
from codirector.generators.base import ImageInput, ImageRequest, ImageResult, VideoRequest, VideoResult
from codirector.generators.hosted.http import poll_delays
from codirector.generators.jobs import Capabilities, JobTicket
from codirector.generators.registry import Readiness

log = logging.getLogger("codirector.comfyui")

DEFAULT_URL = "http://127.0.0.1:8188"
FIELDS = {
    "video": ("prompt", "image", "seed", "negative", "width", "height", "frames", "fps", "references"),
    "image": ("prompt", "image", "seed", "negative", "width", "height", "references"),
}
REQUIRED = {"video": ("prompt", "image"), "image": ("prompt",)}
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


# ---------------------------------------------------------------------------- the workflow and its bindings


@dataclass(frozen=True)
class Binding:
    """One ``node.inputs.field`` a request's value is written to."""

    node: str
    input: str

    @property
    def text(self) -> str:
        return f"{self.node}.inputs.{self.input}"


def parse_binding(name: str, text: Any, kind: str) -> Binding:
    parts = str(text).split(".")
    if not isinstance(text, str) or len(parts) != 3 or parts[1] != "inputs" or not parts[0] or not parts[2]:
        raise ConfigError(f"[{kind}.bind] {name} = {text!r} is not a node input",
                          hint=f"write it as NODE_ID.inputs.FIELD, e.g. {name} = \"6.inputs.text\" (the node id as in "
                          "the API-format workflow)")
    return Binding(parts[0], parts[2])


@dataclass(frozen=True)
class Workflow:
    """An API-format workflow file, its bindings, and the digest that names it in the recording key."""

    path: Path
    graph: dict[str, Any] = field(repr=False)
    bind: dict[str, Binding]
    references: tuple[Binding, ...]
    negative: str
    output: str | None
    digest: str

    @property
    def model(self) -> str:
        return f"comfyui:{self.path.name}@{self.digest[:12]}"

    def classes(self) -> set[str]:
        return {str(node.get("class_type")) for node in self.graph.values()}

    def class_of(self, node: str) -> str:
        return str(self.graph.get(node, {}).get("class_type", "?"))


def load_workflow(kind: str, workflow: Any, bind: Any, negative: str = "", output: Any = None) -> Workflow:
    """The ``[kind]`` table's workflow, checked: an API-format file, every binding naming a node input it has."""
    if not workflow:
        raise ConfigError(f"[{kind}] backend \"comfyui\" needs a workflow: a file exported with 'Export (API)'",
                          hint=f"e.g. [{kind}] workflow = \"workflows/wan22_i2v_api.json\" (relative to the config)")
    path = Path(str(workflow)).expanduser()
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"[{kind}] workflow {str(path)!r} cannot be read: {e.strerror or e}",
                          hint="a relative path is relative to the config file") from e
    try:
        graph = json.loads(raw)
    except ValueError as e:
        raise ConfigError(f"[{kind}] workflow {path} is not JSON: {e}") from e
    if isinstance(graph, dict) and "nodes" in graph and "links" in graph:
        raise ConfigError(f"[{kind}] workflow {path} is in ComfyUI's UI format, not its API format",
                          hint="in ComfyUI use Workflow > Export (API) and point workflow at that file")
    if not isinstance(graph, dict) or not graph or not all(
            isinstance(n, dict) and "class_type" in n and isinstance(n.get("inputs"), dict) for n in graph.values()):
        raise ConfigError(f"[{kind}] workflow {path} is not an API-format workflow",
                          hint="expected {node_id: {\"class_type\": ..., \"inputs\": {...}}}: Workflow > Export (API)")
    if not isinstance(bind, dict):
        raise ConfigError(f"[{kind}] backend \"comfyui\" needs a [{kind}.bind] table",
                          hint=f"e.g. [{kind}.bind] prompt = \"6.inputs.text\" (see README, 'ComfyUI')")
    allowed = FIELDS[kind]
    for name in bind:
        if name not in allowed:
            from codirector.errors import did_you_mean

            raise ConfigError(f"[{kind}.bind] has an unknown field {name!r}",
                              hint=did_you_mean(name, allowed, "field") + f"; fields: {', '.join(allowed)}")
    missing = [n for n in REQUIRED[kind] if n not in bind]
    if missing:
        raise ConfigError(f"[{kind}.bind] binds no {missing[0]!r}",
                          hint=f"bind it to the node input that takes it, e.g. {missing[0]} = \"NODE.inputs.FIELD\"")
    bound: dict[str, Binding] = {}
    refs: list[Binding] = []
    for name, text in bind.items():
        if name == "references":
            items = text if isinstance(text, list) else [text]
            refs = [parse_binding(f"references[{i}]", t, kind) for i, t in enumerate(items)]
        else:
            bound[name] = parse_binding(name, text, kind)
    for name, b in [*bound.items(), *((f"references[{i}]", r) for i, r in enumerate(refs))]:
        node = graph.get(b.node)
        if node is None:
            raise ConfigError(f"[{kind}.bind] {name} = {b.text!r} names node {b.node}, which {path.name} lacks",
                              hint=f"its nodes: {_node_list(graph)}")
        if b.input not in node["inputs"]:
            raise ConfigError(f"[{kind}.bind] {name} = {b.text!r}: node {b.node} ({node['class_type']}) has no input "
                              f"{b.input!r}", hint=f"its inputs: {', '.join(sorted(node['inputs'])) or '(none)'}")
    if output is not None and str(output) not in graph:
        raise ConfigError(f"[{kind}] output = {output!r} names a node {path.name} lacks",
                          hint=f"its nodes: {_node_list(graph)}")
    spec = {"graph": graph, "bind": {k: v.text for k, v in bound.items()}, "references": [r.text for r in refs],
            "negative": negative, "output": None if output is None else str(output)}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return Workflow(path, graph, bound, tuple(refs), str(negative), None if output is None else str(output), digest)


def _node_list(graph: dict[str, Any]) -> str:
    return ", ".join(f"{k} ({v.get('class_type')})" for k, v in list(graph.items())[:40])


def server_urls(base_url: Any) -> list[str]:
    """``base_url`` as a list of servers (one URL, or a list of them)."""
    items = base_url if isinstance(base_url, list) else [base_url or DEFAULT_URL]
    urls = [str(u).rstrip("/") for u in items if str(u).strip()]
    if not urls:
        raise ConfigError("base_url names no ComfyUI server", hint=f"e.g. base_url = \"{DEFAULT_URL}\"")
    return list(dict.fromkeys(urls))


# ---------------------------------------------------------------------------- servers and the pool


class Unreachable(Exception):
    """A server did not answer (nothing reached it, or no answer came)."""

    def __init__(self, url: str, why: str, *, sent: bool) -> None:
        super().__init__(f"{url}: {why}")
        self.url = url
        self.why = why
        self.sent = sent  # the request may have reached the server


class Server:
    """One ComfyUI server's HTTP."""

    def __init__(self, url: str, *, connect_timeout: float = 3.0, read_timeout: float = 120.0) -> None:
        import httpx2

        self.url = url
        self._client = httpx2.Client(timeout=httpx2.Timeout(read_timeout, connect=connect_timeout))

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx2

        try:
            return self._client.request(method, f"{self.url}{path}", **kwargs)
        except httpx2.ConnectError as e:
            raise Unreachable(self.url, f"could not connect ({e})", sent=False) from e
        except httpx2.TransportError as e:
            raise Unreachable(self.url, f"{type(e).__name__}: {e}", sent=True) from e

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if not 200 <= response.status_code < 300:
            raise BackendError(f"ComfyUI {self.url}: {method} {path} answered HTTP {response.status_code}: "
                               f"{response.text[:300]}", hint="check that base_url points at a ComfyUI server")
        try:
            return response.json()
        except ValueError as e:
            raise BackendError(f"ComfyUI {self.url}: {method} {path} answered with a body that is not JSON: "
                               f"{response.text[:200]!r}", hint="check that base_url points at a ComfyUI server") from e

    def queue_length(self) -> int:
        q = self.json("GET", "/queue")
        return len(q.get("queue_running") or []) + len(q.get("queue_pending") or [])

    def queued_ids(self) -> set[str]:
        q = self.json("GET", "/queue")
        return {str(item[1]) for item in [*(q.get("queue_running") or []), *(q.get("queue_pending") or [])]
                if isinstance(item, list) and len(item) > 1}

    def close(self) -> None:
        self._client.close()


class Pool:
    """The servers a backend may queue on: the shortest queue wins; one that does not answer is out for a while."""

    def __init__(self, urls: list[str], *, recheck_seconds: float = 30.0, connect_timeout: float = 3.0) -> None:
        self.urls = urls
        self.recheck_seconds = recheck_seconds
        self.connect_timeout = connect_timeout
        self._servers: dict[str, Server] = {}
        self._out: dict[str, float] = {}  # url -> when it may be asked again
        self._lock = threading.Lock()

    def server(self, url: str) -> Server:
        with self._lock:
            found = self._servers.get(url)
            if found is None:
                found = self._servers[url] = Server(url, connect_timeout=self.connect_timeout)
            return found

    def mark_out(self, url: str, why: str) -> None:
        with self._lock:
            if url not in self._out:
                log.warning("ComfyUI server %s is out of the pool: %s", url, why)
            self._out[url] = time.monotonic() + self.recheck_seconds

    def mark_in(self, url: str) -> None:
        with self._lock:
            if self._out.pop(url, None) is not None:
                log.info("ComfyUI server %s answers again and is back in the pool", url)

    def candidates(self, avoid: set[str] | None = None) -> list[tuple[int, str]]:
        """(queue length, url) of each server that answers now, shortest queue first; ``avoid`` last."""
        now = time.monotonic()
        found: list[tuple[int, int, str]] = []
        failures: list[str] = []
        for url in self.urls:
            with self._lock:
                if self._out.get(url, 0.0) > now:
                    failures.append(f"{url}: out of the pool (did not answer)")
                    continue
            try:
                length = self.server(url).queue_length()
            except (Unreachable, BackendError) as e:
                self.mark_out(url, e.why if isinstance(e, Unreachable) else e.message)
                failures.append(str(e))
                continue
            self.mark_in(url)
            found.append((1 if avoid and url in avoid else 0, length, url))
        if not found:
            raise BackendError("no ComfyUI server answers: " + "; ".join(failures),
                               hint="start ComfyUI (python main.py --listen) or fix base_url; `codirector resume` "
                               "continues without repeating recorded calls")
        found.sort(key=lambda t: (t[0], t[1], self.urls.index(t[2])))
        return [(length, url) for _, length, url in found]

    def close(self) -> None:
        for s in self._servers.values():
            s.close()


# ---------------------------------------------------------------------------- errors in ComfyUI's words


def node_errors_text(body: Any, wf: Workflow) -> str:
    """``node_errors`` (and the top-level ``error``) of a refused ``/prompt``, one line per problem."""
    lines: list[str] = []
    errors = body.get("node_errors") if isinstance(body, dict) else None
    if isinstance(errors, dict):
        for node_id, info in errors.items():
            cls = info.get("class_type") if isinstance(info, dict) else None
            for err in (info.get("errors") if isinstance(info, dict) else None) or []:
                field_name = (err.get("extra_info") or {}).get("input_name") if isinstance(err, dict) else None
                message = err.get("message", "") if isinstance(err, dict) else str(err)
                details = err.get("details", "") if isinstance(err, dict) else ""
                where = f"node {node_id} ({cls or wf.class_of(str(node_id))})"
                if field_name:
                    where += f" input {field_name!r}"
                lines.append(f"{where}: {message}" + (f": {details}" if details else ""))
    top = body.get("error") if isinstance(body, dict) else None
    if isinstance(top, dict) and (not lines or top.get("type") not in ("prompt_outputs_failed_validation",)):
        lines.append(f"{top.get('message', '')}" + (f": {top['details']}" if top.get("details") else ""))
    elif isinstance(top, str):
        lines.append(top)
    return "; ".join(x for x in lines if x) or str(body)[:500]


def execution_error_text(status: dict[str, Any]) -> str | None:
    """The failing node and its exception from a history entry's status messages, or None if none failed."""
    for message in status.get("messages") or []:
        if not isinstance(message, list | tuple) or len(message) != 2:
            continue
        event, data = message
        if event == "execution_error" and isinstance(data, dict):
            return (f"node {data.get('node_id')} ({data.get('node_type')}) raised {data.get('exception_type')}: "
                    f"{data.get('exception_message', '').strip()}")
        if event == "execution_interrupted" and isinstance(data, dict):
            return f"interrupted at node {data.get('node_id')} ({data.get('node_type')}) (cancelled on the server)"
    if status.get("status_str") == "error":
        return "ComfyUI reports the prompt failed (no execution_error message came with it)"
    return None


# ---------------------------------------------------------------------------- the backends


def _png_canvas(width: int, height: int) -> ImageInput:
    """A plain grey canvas of the request's size, for a bound image slot the request has no image for (a
    LoadImage node must name some file; an edit workflow given a blank canvas draws from the prompt)."""
    from PIL import Image

    from codirector.generators.imaging import png

    data = png(Image.new("RGB", (max(1, width), max(1, height)), (128, 128, 128)))
    return ImageInput("canvas", hashlib.sha256(data).hexdigest(), data)


class _ComfyJobs:
    """Queue a bound workflow on a ComfyUI pool and collect its output (shared by image and video)."""

    backend = "comfyui"
    kind = "video"
    suffixes: tuple[str, ...] = VIDEO_SUFFIXES

    def __init__(self, base_url: Any = None, workflow: Any = None, bind: Any = None, negative: str = "",
                 output: Any = None, poll_seconds: float = 1.0, timeout: float = 3600.0, lost_after: float = 30.0,
                 recheck_seconds: float = 30.0, connect_timeout: float = 3.0) -> None:
        self.workflow = load_workflow(self.kind, workflow, bind, negative, output)
        self.urls = server_urls(base_url)
        self.model = self.workflow.model
        self.poll_seconds = float(poll_seconds)
        self.timeout = float(timeout)
        self.lost_after = float(lost_after)
        self.pool = Pool(self.urls, recheck_seconds=float(recheck_seconds), connect_timeout=float(connect_timeout))
        self.client_id = uuid.uuid4().hex
        self.capabilities = Capabilities(first_frame=self.kind == "video", references=len(self.workflow.references),
                                         priced_by="call")
        self._avoid: set[str] = set()  # servers that just lost a job: the next submit prefers another

    # -- what the workflow receives --------------------------------------------------

    def images_for(self, request: Any) -> dict[str, ImageInput]:
        raise NotImplementedError

    def values_for(self, request: Any) -> dict[str, Any]:
        raise NotImplementedError

    def prompt_for(self, request: Any, uploaded: dict[str, str]) -> dict[str, Any]:
        """The workflow with every bound input set (``uploaded``: slot -> the name the server stored it under)."""
        graph = copy.deepcopy(self.workflow.graph)
        values = {**self.values_for(request), **uploaded}
        for name, b in self.workflow.bind.items():
            if name in values and values[name] is not None:
                graph[b.node]["inputs"][b.input] = values[name]
        for i, b in enumerate(self.workflow.references):
            slot = f"references[{i}]"
            if slot in values:
                graph[b.node]["inputs"][b.input] = values[slot]
        return graph

    # -- the job protocol ------------------------------------------------------------

    def submit(self, request: Any) -> JobTicket:
        images = self.images_for(request)
        avoid, self._avoid = self._avoid, set()
        failures: list[str] = []
        for _, url in self.pool.candidates(avoid):
            server = self.pool.server(url)
            try:
                uploaded = {slot: self._upload(server, im) for slot, im in images.items()}
            except Unreachable as e:  # an upload is safe to repeat anywhere: try the next server
                self.pool.mark_out(url, e.why)
                failures.append(str(e))
                continue
            body = {"prompt": self.prompt_for(request, uploaded), "client_id": self.client_id}
            try:
                response = server.request("POST", "/prompt", json=body)
            except Unreachable as e:
                if e.sent:  # it may be queued there: never queue it a second time
                    raise BackendError(f"ComfyUI {url}: the prompt was sent but no answer came ({e.why})",
                                       hint="it may be queued there; check its queue, then `codirector resume`") \
                        from e
                self.pool.mark_out(url, e.why)
                failures.append(str(e))
                continue
            return self._queued(server, response)
        raise BackendError("no ComfyUI server took the prompt: " + "; ".join(failures),
                           hint="start ComfyUI or fix base_url; `codirector resume` continues")

    def _upload(self, server: Server, image: ImageInput) -> str:
        name = f"codirector-{image.digest[:40]}.png"
        response = server.request("POST", "/upload/image", files={"image": (name, image.data, "image/png")},
                                  data={"type": "input"})
        if not 200 <= response.status_code < 300:
            raise BackendError(f"ComfyUI {server.url}: uploading {image.label} answered HTTP {response.status_code}: "
                               f"{response.text[:300]}", hint="check the server's input folder and its log")
        data = response.json()
        stored = str(data.get("name") or name)
        sub = str(data.get("subfolder") or "")
        return f"{sub}/{stored}" if sub else stored

    def _queued(self, server: Server, response: Any) -> JobTicket:
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:300]}
        if response.status_code == 400 or (isinstance(body, dict) and body.get("node_errors") and
                                           "prompt_id" not in body):
            reason = node_errors_text(body, self.workflow)
            raise ProviderJobFailed(
                f"ComfyUI {server.url} refused the {self.kind} workflow {self.workflow.path.name}: {reason}",
                hint="fix the workflow (or its bindings) in ComfyUI, export it again, then `codirector resume`",
                reason=reason)
        if not 200 <= response.status_code < 300 or not isinstance(body, dict) or "prompt_id" not in body:
            raise BackendError(f"ComfyUI {server.url}: POST /prompt answered HTTP {response.status_code}: "
                               f"{str(body)[:300]}", hint="check that base_url points at a ComfyUI server")
        prompt_id = str(body["prompt_id"])
        return JobTicket(provider="comfyui", job_id=prompt_id, server=server.url,
                         poll={"history": f"/history/{prompt_id}"})

    def collect(self, ticket: JobTicket, request: Any) -> Any:
        entry = self._finished(ticket)
        data, item = self._output(ticket, entry)
        return self.result(data, request, ticket, item)

    def _finished(self, ticket: JobTicket) -> dict[str, Any]:
        """The prompt's history entry once it is done; ``ProviderJobUnknown`` when its server lost it."""
        url = str(ticket.server or self.urls[0])
        server = self.pool.server(url)
        deadline = time.monotonic() + self.timeout
        unanswered_since: float | None = None
        delays = poll_delays(self.poll_seconds, most=max(self.poll_seconds, 5.0))
        while True:
            try:
                entry = self._history(server, ticket.job_id)
                if entry is None and ticket.job_id not in server.queued_ids():
                    entry = self._history(server, ticket.job_id)  # it may have finished between the two asks
                    if entry is None:
                        self._avoid = {url}
                        raise ProviderJobUnknown(
                            f"ComfyUI {url} no longer knows prompt {ticket.job_id}: neither its queue nor its "
                            "history holds it (the server restarted)", job_id=ticket.job_id)
                unanswered_since = None
                self.pool.mark_in(url)
            except Unreachable as e:
                now = time.monotonic()
                unanswered_since = unanswered_since or now
                if now - unanswered_since >= self.lost_after:
                    self.pool.mark_out(url, e.why)
                    self._avoid = {url}
                    raise ProviderJobUnknown(
                        f"ComfyUI {url} stopped answering while prompt {ticket.job_id} was queued there "
                        f"({e.why}; {self.lost_after:g} s): ComfyUI keeps its queue in memory", job_id=ticket.job_id
                    ) from e
                entry = None
            if entry is not None:
                status = entry.get("status") or {}
                failure = execution_error_text(status) if isinstance(status, dict) else None
                if failure is not None:
                    raise ProviderJobFailed(
                        f"ComfyUI {url}: the {self.kind} workflow {self.workflow.path.name} failed: {failure}",
                        hint="ComfyUI's message is quoted; fix the workflow or the server (its console shows the "
                        "traceback), then `codirector resume`", reason=failure, job_id=ticket.job_id)
                if not isinstance(status, dict) or status.get("completed", True):
                    return entry
            if time.monotonic() > deadline:
                raise BackendError(f"ComfyUI prompt {ticket.job_id} on {url} has not finished after {self.timeout:g} s",
                                   hint="it keeps running there and is recorded: `codirector resume` collects it "
                                   "(raise the backend's timeout to wait longer)")
            time.sleep(next(delays))

    @staticmethod
    def _history(server: Server, prompt_id: str) -> dict[str, Any] | None:
        found = server.json("GET", f"/history/{prompt_id}")
        entry = found.get(prompt_id) if isinstance(found, dict) else None
        return entry if isinstance(entry, dict) else None

    def _output(self, ticket: JobTicket, entry: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
        """The bytes of the workflow's output file (the ``output`` node's, else the first of the right kind)."""
        outputs = entry.get("outputs") or {}
        nodes = [self.workflow.output] if self.workflow.output else list(outputs)
        files: list[dict[str, Any]] = []
        for node in nodes:
            for items in (outputs.get(node) or {}).values():
                if isinstance(items, list):
                    files.extend(dict(f, node=node) for f in items if isinstance(f, dict) and f.get("filename"))
        wanted = [f for f in files if str(f["filename"]).lower().endswith(self.suffixes)]
        wanted.sort(key=lambda f: f.get("type") != "output")  # saved files before previews
        if not wanted:
            which = (f"output node {self.workflow.output} ({self.workflow.class_of(self.workflow.output)})"
                     if self.workflow.output else "no output node")
            made = ", ".join(f"{f['node']}: {f['filename']}" for f in files) or "nothing"
            reason = f"{which} produced no {self.kind} file ({'/'.join(self.suffixes)}); the outputs were: {made}"
            raise ProviderJobFailed(f"ComfyUI {ticket.server}: prompt {ticket.job_id} finished, but {reason}",
                                    hint=f"save the {self.kind} with a Save node (Save Video / Video Combine as mp4, "
                                    "Save Image), or set output to that node's id", reason=reason,
                                    job_id=ticket.job_id)
        item = wanted[0]
        server = self.pool.server(str(ticket.server or self.urls[0]))
        params = {"filename": item["filename"], "subfolder": item.get("subfolder", ""),
                  "type": item.get("type", "output")}
        try:
            response = server.request("GET", "/view", params=params)
        except Unreachable as e:
            raise BackendError(f"ComfyUI {server.url}: fetching {item['filename']} failed: {e.why}",
                               hint="the job is recorded: `codirector resume` fetches it again") from e
        if response.status_code == 404:
            raise ProviderJobUnknown(f"ComfyUI {server.url} no longer has {item['filename']} of prompt "
                                     f"{ticket.job_id}", job_id=ticket.job_id)
        if not 200 <= response.status_code < 300:
            raise BackendError(f"ComfyUI {server.url}: GET /view {item['filename']} answered HTTP "
                               f"{response.status_code}: {response.text[:200]}")
        return bytes(response.content), item

    def result(self, data: bytes, request: Any, ticket: JobTicket, item: dict[str, Any]) -> Any:
        raise NotImplementedError

    def generate(self, request: Any) -> Any:
        """Submit and collect in one call (for callers outside the recorder)."""
        return self.collect(self.submit(request), request)


class ComfyVideoGenerator(_ComfyJobs):
    """Image-to-video through a ComfyUI workflow (Wan 2.2 I2V and the like): the keyframe into ``image``."""

    kind = "video"
    suffixes = VIDEO_SUFFIXES

    def images_for(self, request: VideoRequest) -> dict[str, ImageInput]:
        images = {"image": request.keyframe}
        refs = list(request.references)
        for i in range(len(self.workflow.references)):  # a slot without a view gets the grey canvas
            images[f"references[{i}]"] = refs[i] if i < len(refs) else _png_canvas(request.width, request.height)
        return images

    def values_for(self, request: VideoRequest) -> dict[str, Any]:
        return {"prompt": request.prompt, "seed": request.seed, "negative": self.workflow.negative,
                "width": request.width, "height": request.height, "frames": request.num_frames, "fps": request.fps}

    def usage_bound(self, request: VideoRequest) -> dict[str, Any]:
        return {"video_seconds": request.num_frames / request.fps}

    def result(self, data: bytes, request: VideoRequest, ticket: JobTicket, item: dict[str, Any]) -> VideoResult:
        from codirector.generators.video_io import probe_mp4

        try:
            frames, fps, width, height = probe_mp4(data)
        except BackendError as e:
            raise BackendError(f"ComfyUI's {item['filename']} (node {item['node']}) cannot be read as a video: "
                               f"{e.message}", hint="save it as mp4 (Save Video format mp4, Video Combine "
                               "video/h264-mp4)") from e
        return VideoResult(mp4=data, frames=frames, fps=fps, width=width, height=height, model=self.model,
                           usage={"video_seconds": round(frames / fps, 3) if fps else 0.0, "frames": frames})


class ComfyImageGenerator(_ComfyJobs):
    """Keyframes through a ComfyUI workflow (Qwen-Image-Edit-2509, FLUX Kontext): memory's views into the slots."""

    kind = "image"
    suffixes = IMAGE_SUFFIXES

    def images_for(self, request: ImageRequest) -> dict[str, ImageInput]:
        refs = list(request.references)
        images: dict[str, ImageInput] = {}
        if "image" in self.workflow.bind:
            images["image"] = refs.pop(0) if refs else _png_canvas(request.width, request.height)
        for i in range(len(self.workflow.references)):  # a slot without a view gets the grey canvas
            images[f"references[{i}]"] = refs.pop(0) if refs else _png_canvas(request.width, request.height)
        return images

    def values_for(self, request: ImageRequest) -> dict[str, Any]:
        return {"prompt": request.styled_prompt(), "seed": request.seed, "negative": self.workflow.negative,
                "width": request.width, "height": request.height}

    def usage_bound(self, request: ImageRequest) -> dict[str, Any]:
        return {"images": 1}

    def result(self, data: bytes, request: ImageRequest, ticket: JobTicket, item: dict[str, Any]) -> ImageResult:
        from PIL import Image

        from codirector.generators.imaging import cover, png

        try:
            im = Image.open(io.BytesIO(data))
            im.load()
        except Exception as e:
            raise BackendError(f"ComfyUI's {item['filename']} (node {item['node']}) cannot be read as an image: {e}") \
                from e
        if im.format != "PNG" or im.size != (request.width, request.height) or im.mode != "RGB":
            data = png(cover(im.convert("RGB"), request.width, request.height))  # the run's frames share one size
        return ImageResult(png=data, width=request.width, height=request.height, model=self.model,
                           usage={"images": 1})


# ---------------------------------------------------------------------------- pre-flight


@dataclass(frozen=True)
class ServerState:
    """What ``backends --check`` says of one server."""

    url: str
    up: bool
    detail: str
    missing: tuple[str, ...] = ()
    queue: int | None = None


def server_state(url: str, classes: set[str], *, connect_timeout: float = 3.0) -> ServerState:
    """Ask one server for its GPU, its free VRAM, its queue and whether it has every node class in ``classes``."""
    server = Server(url, connect_timeout=connect_timeout, read_timeout=30.0)
    try:
        stats = server.json("GET", "/system_stats")
        known = server.json("GET", "/object_info")
        queue = server.queue_length()
    except (Unreachable, BackendError) as e:
        return ServerState(url, False, f"DOWN ({getattr(e, 'why', None) or e})")
    finally:
        server.close()
    devices = stats.get("devices") or [] if isinstance(stats, dict) else []
    gpus = []
    for d in devices:
        free, total = d.get("vram_free"), d.get("vram_total")
        vram = f", {free / 2**30:.1f} of {total / 2**30:.1f} GiB VRAM free" if free is not None and total else ""
        gpus.append(f"{d.get('name', '?')}{vram}")
    missing = tuple(sorted(c for c in classes if c not in (known if isinstance(known, dict) else {})))
    nodes = f"lacks node classes {', '.join(missing)}" if missing else "has every node the workflow needs"
    detail = f"up, {'; '.join(gpus) or 'no device listed'}, queue {queue}, {nodes}"
    return ServerState(url, True, detail, missing, queue)


def check(kind: str = "video", base_url: Any = None, workflow: Any = None, bind: Any = None, negative: str = "",
          output: Any = None, connect_timeout: float = 3.0, **_: Any) -> Readiness:
    """The workflow and its bindings (no server needed), then each server: up, its GPU, the node classes it has."""
    try:
        wf = load_workflow(kind, workflow, bind, negative, output)
        urls = server_urls(base_url)
    except ConfigError as e:
        return Readiness(False, e.message, fix=e.hint)
    states = [server_state(u, wf.classes(), connect_timeout=float(connect_timeout)) for u in urls]
    lines = "; ".join(f"{s.url}: {s.detail}" for s in states)
    head = f"{wf.model} on {len(urls)} server{'s' * (len(urls) != 1)}"
    lacking = [s for s in states if s.up and s.missing]
    if lacking:
        what = "; ".join(f"{s.url} lacks node classes {', '.join(s.missing)}" for s in lacking)
        return Readiness(False, f"{wf.path.name} uses {what}",
                         fix="install the custom nodes on that server (ComfyUI-Manager: Install Missing Custom "
                         "Nodes) and restart it, or remove it from base_url")
    if not any(s.up for s in states):
        return Readiness(False, f"no ComfyUI server answers: {lines}",
                         fix="start ComfyUI (python main.py --listen --port 8188) or fix base_url")
    return Readiness(True, f"{head}: {lines}")


def check_image(**options: Any) -> Readiness:
    return check(kind="image", **options)


def reference_limit(options: dict[str, Any]) -> int:
    """How many memory views a clip's workflow takes besides its keyframe: its ``references`` bindings (pure)."""
    refs = (options.get("bind") or {}).get("references") if isinstance(options.get("bind"), dict) else None
    if refs is None:
        return 0
    return len(refs) if isinstance(refs, list) else 1

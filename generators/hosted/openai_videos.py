"""The ``/v1/videos`` wire shape (OpenAI's Videos API, as gateways serve it) as provider jobs.

OpenAI shut its own Sora video API down on 2026-09-24; the same wire shape lives on in gateways
(LiteLLM's proxy, several hosted aggregators) that put other video models behind it. So this backend
needs a ``base_url`` that is such a gateway, and refuses OpenAI's own host before anything runs.
``model`` is whatever the gateway serves.

Wire format (OpenAI's Videos API reference as the ``openai`` SDK 3.63 encodes it: ``types/video*.py``
and ``resources/videos.py``; LiteLLM's "/videos" and "OpenAI Video Generation" pages, docs.litellm.ai,
last updated 2026-10-07; checked 2026-12-07 — no gateway was reachable from here, a loopback server
speaking this format is what the tests run against):
- create: ``POST {base_url}/videos`` as ``multipart/form-data`` (what the SDK sends): ``model``,
  ``prompt``, ``seconds`` (a string: "4", "8", "12" for Sora), ``size`` ("1280x720"), and
  ``input_reference`` as a file part (the first frame). The newer JSON form takes
  ``input_reference: {"image_url": "data:..."}`` (``encoding = "json"``). Answer: a video object.
- retrieve: ``GET {base_url}/videos/{id}`` -> ``{"id", "status": "queued" | "in_progress" |
  "completed" | "failed", "progress", "seconds", "size", "error": {"code", "message"} | null}``;
  404 when the gateway no longer knows the id.
- download: ``GET {base_url}/videos/{id}/content`` -> the MP4 (``expires_at`` on the object says
  when it goes; an expired download is retried once, then the job counts as lost).
- auth: ``Authorization: Bearer <key>`` from ``OPENAI_API_KEY`` (or ``api_key_env``).
- cost a gateway reports: LiteLLM's ``x-litellm-response-cost`` header (docs.litellm.ai/docs/proxy/
  response_headers) or a ``usage.cost`` in the video object (OpenRouter's video usage); recorded in the
  call's usage as ``reported_usd`` (the cost report still prices ``video_seconds`` with the table).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from codirector.errors import BackendError, ConfigError, ProviderJobFailed, ProviderJobUnknown
from codirector.generators.base import VideoRequest, VideoResult
from codirector.generators.hosted.http import ProviderHTTP, api_key, poll_delays, without_query
from codirector.generators.jobs import Capabilities, JobTicket, clip_seconds
from codirector.generators.openai_client import bad_base_url, data_url, image_mime, is_openai_host, safe_url
from codirector.generators.registry import Readiness

PROVIDER = "openai-videos"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_SECONDS = (4.0, 8.0, 12.0)  # what OpenAI's reference allowed; a gateway's model may take others
ENCODINGS = ("multipart", "json")
SORA_SHUTDOWN = "2026-09-24"


@dataclass(frozen=True)
class VideosOptions:
    """A ``[video]`` table for ``openai-videos``, validated (errors name the key)."""

    model: str
    base_url: str
    api_key_env: str
    durations: tuple[float, ...]
    duration: float | None
    sizes: tuple[str, ...]
    send_size: bool
    encoding: str
    poll_seconds: float
    timeout: float
    max_in_flight: int

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(first_frame=True, durations=self.durations, aspect_ratios=(), priced_by="second",
                            max_in_flight=self.max_in_flight)


def options(model: str | None, base_url: str | None, api_key_env: str, durations: Any, duration: Any, sizes: Any,
            send_size: bool, encoding: str, poll_seconds: float, timeout: float, max_in_flight: int | None
            ) -> VideosOptions:
    """The table validated; ``ConfigError`` naming the key and what is valid."""
    if not model:
        raise ConfigError("[video] backend \"openai-videos\" needs a model: whatever video model your gateway serves",
                          hint="e.g. [video] model = \"veo-3.1\" (the name the gateway's /v1/models lists)")
    url = (base_url or os.environ.get("OPENAI_BASE_URL") or "").rstrip("/")
    if not url:
        raise ConfigError("[video] backend \"openai-videos\" needs a base_url: the /v1 address of a gateway that "
                          "serves /videos",
                          hint="e.g. [video] base_url = \"http://localhost:4000/v1\" (a LiteLLM proxy)")
    why = bad_base_url(url)
    if why is not None:
        raise ConfigError(f"[video] base_url {url!r} is not a URL: {why}",
                          hint="set it to the gateway's API address, e.g. http://localhost:4000/v1")
    if is_openai_host(url):
        raise ConfigError(f"[video] base_url {safe_url(url)} is OpenAI's own API, whose video models (Sora) OpenAI "
                          f"shut down on {SORA_SHUTDOWN}; every /videos request there fails",
                          hint="point [video] base_url at a gateway that serves the /v1/videos shape (a LiteLLM "
                          "proxy, an aggregator) and set model to one it serves; or use backend \"google\" or \"fal\"")
    try:
        allowed = tuple(sorted(float(d) for d in (DEFAULT_SECONDS if durations is None else durations)))
        fixed = None if duration is None else float(duration)
    except (TypeError, ValueError):
        raise ConfigError(f"[video] durations must be a list of seconds and duration a number, got "
                          f"{durations!r} and {duration!r}", hint="e.g. durations = [4, 8, 12]") from None
    if fixed is not None and allowed and fixed not in allowed:
        shown = ", ".join(f"{d:g}" for d in allowed)
        raise ConfigError(f"[video] duration = {fixed:g} is not one of the seconds {model!r} takes ({shown})",
                          hint=f"set [video] duration to one of {shown}, leave it out (the shot's length picks), "
                          "or set durations to what your gateway's model takes")
    size_list = tuple(str(s) for s in (sizes or ()))
    bad = [s for s in size_list if _parse_size(s) is None]
    if bad:
        raise ConfigError(f"[video] sizes: {bad[0]!r} is not WIDTHxHEIGHT", hint="e.g. sizes = [\"1280x720\", "
                          "\"720x1280\"]")
    if encoding not in ENCODINGS:
        raise ConfigError(f"[video] encoding = {encoding!r} is not one of {', '.join(ENCODINGS)}",
                          hint="multipart sends the first frame as a file (OpenAI's SDK does); json as a data: URL")
    return VideosOptions(model=model, base_url=url, api_key_env=api_key_env, durations=allowed, duration=fixed,
                         sizes=size_list, send_size=bool(send_size), encoding=encoding,
                         poll_seconds=float(poll_seconds), timeout=float(timeout),
                         max_in_flight=int(max_in_flight or 2))


def _parse_size(size: str) -> tuple[int, int] | None:
    w, sep, h = size.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit():
        return None
    return int(w), int(h)


def reason_of(body: Any) -> str:
    """The provider's words from an OpenAI-shaped error (``{"error": {"message", "code"}}``) or a video object."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            message = str(err.get("message") or err.get("detail") or "").strip()
            code = err.get("code") or err.get("type")
            if message or code:
                return message + (f" [{code}]" if code else "")
        elif err:
            return str(err)
    return str(body)[:500]


def reported_cost(response: Any, body: Any) -> float | None:
    """A cost the gateway reported for this call (USD), or None."""
    header = response.headers.get("x-litellm-response-cost")
    if header:
        try:
            return float(header)
        except ValueError:
            pass
    usage = body.get("usage") if isinstance(body, dict) else None
    if isinstance(usage, dict) and isinstance(usage.get("cost"), int | float):
        return float(usage["cost"])
    return None


class OpenAIVideosGenerator:
    """Image-to-video through a gateway's ``/v1/videos``: the accepted keyframe as ``input_reference``."""

    backend = PROVIDER

    def __init__(self, model: str | None = None, base_url: str | None = None, api_key_env: str = DEFAULT_KEY_ENV,
                 durations: list[float] | None = None, duration: float | None = None, sizes: list[str] | None = None,
                 send_size: bool = True, encoding: str = "multipart", poll_seconds: float = 5.0,
                 timeout: float = 1800.0, max_in_flight: int | None = None) -> None:
        self.opts = options(model, base_url, api_key_env, durations, duration, sizes, send_size, encoding,
                            poll_seconds, timeout, max_in_flight)
        self.model = self.opts.model
        self.capabilities = self.opts.capabilities
        self._http: ProviderHTTP | None = None

    @property
    def http(self) -> ProviderHTTP:
        if self._http is None:
            key = api_key(self.opts.api_key_env, PROVIDER)
            self._http = ProviderHTTP(PROVIDER, self.opts.base_url, auth_header=("Authorization", f"Bearer {key}"),
                                      secret=key, max_in_flight=self.opts.max_in_flight)
        return self._http

    def job_slot(self) -> Any:
        return self.http.job_slot()

    # -- the request ---------------------------------------------------------------------

    def seconds(self, request: VideoRequest) -> float:
        """The clip length asked for: the configured duration, else the shot's, as the model allows."""
        return clip_seconds(request.num_frames, request.fps, self.opts.duration, self.capabilities.durations)

    def usage_bound(self, request: VideoRequest) -> dict[str, Any]:
        return {"video_seconds": self.seconds(request)}

    def size(self, request: VideoRequest) -> str | None:
        """``WIDTHxHEIGHT`` of the run (the keyframe has it too); ``ConfigError`` when ``sizes`` rules it out."""
        size = f"{request.width}x{request.height}"
        if self.opts.sizes and size not in self.opts.sizes:
            raise ConfigError(f"the run's frames are {size}, which {self.model!r} does not make "
                              f"(sizes = {', '.join(self.opts.sizes)})",
                              hint="set [run] width and height to one of those sizes (the keyframe must match the "
                              "clip's size), or widen [video] sizes")
        return size if self.opts.send_size else None

    def fields_for(self, request: VideoRequest) -> dict[str, str]:
        """The create request's fields besides the image (all strings, as the multipart form carries them)."""
        fields = {"model": self.model, "prompt": request.prompt, "seconds": f"{self.seconds(request):g}"}
        size = self.size(request)
        if size is not None:
            fields["size"] = size
        return fields

    # -- the job -------------------------------------------------------------------------

    def submit(self, request: VideoRequest) -> JobTicket:
        fields = self.fields_for(request)
        if self.opts.encoding == "json":
            body: dict[str, Any] = {**fields, "input_reference": {"image_url": data_url(request.keyframe.data)}}
            response = self.http.request("POST", "/videos", json=body)
        else:
            mime, ext = image_mime(request.keyframe.data)
            files = {"input_reference": (f"keyframe.{ext}", request.keyframe.data, mime)}
            response = self.http.request("POST", "/videos", data=fields, files=files)
        self.http.refuse_rejected(response, f"{PROVIDER} refused the video job for {self.model!r}", reason_of,
                                  "the provider's reason is quoted; change the prompt, the keyframe or the model, "
                                  "then `codirector resume`")
        data = self.http.json_or_error(response, f"creating a video with {self.model!r}")
        video_id = data.get("id") if isinstance(data, dict) else None
        if not video_id:
            raise BackendError(f"{PROVIDER}: the answer to POST /videos has no id: {str(data)[:200]!r}",
                               hint="check base_url: it must be a gateway that serves the /v1/videos shape")
        base = f"{self.opts.base_url}/videos/{video_id}"
        return JobTicket(provider=PROVIDER, job_id=str(video_id), server=self.opts.base_url,
                         poll={"status_url": base, "content_url": f"{base}/content"})

    def _finished(self, ticket: JobTicket) -> tuple[dict[str, Any], float | None]:
        """Poll until the video is completed (its object, and a cost the gateway reported); raises as it ended."""
        deadline = time.monotonic() + self.opts.timeout
        delays = poll_delays(self.opts.poll_seconds)
        while True:
            response = self.http.request("GET", ticket.poll["status_url"])
            if response.status_code == 404:
                raise ProviderJobUnknown(f"{PROVIDER} no longer knows video {ticket.job_id} of {self.model!r}",
                                         job_id=ticket.job_id)
            video = self.http.json_or_error(response, f"the status of video {ticket.job_id}")
            state = str(video.get("status", "")) if isinstance(video, dict) else ""
            if state == "completed":
                return video, reported_cost(response, video)
            if state == "failed":
                reason = reason_of({"error": video.get("error") or "failed without a reason"})
                raise ProviderJobFailed(
                    f"{PROVIDER}'s video job {ticket.job_id} for {self.model!r} failed: {reason}",
                    hint="the provider's reason is quoted; fix the cause (the prompt, the keyframe, the model), then "
                    "`codirector resume` submits it again", reason=reason, job_id=ticket.job_id)
            if state not in ("queued", "in_progress"):
                raise BackendError(f"{PROVIDER} reported status {state!r} for video {ticket.job_id}",
                                   hint="expected queued, in_progress, completed or failed; check base_url")
            if time.monotonic() > deadline:
                raise BackendError(
                    f"{PROVIDER} video {ticket.job_id} of {self.model!r} is still {state} after "
                    f"{self.opts.timeout:g} s", hint="it keeps running at the gateway and is recorded: `codirector "
                    "resume` collects it without paying again (raise the backend's timeout to wait longer)")
            time.sleep(next(delays))

    def collect(self, ticket: JobTicket, request: VideoRequest) -> VideoResult:
        from codirector.generators.video_io import probe_mp4

        video, cost = self._finished(ticket)
        mp4 = None
        for _ in range(2):  # an expired link is asked for once more, then the job counts as lost
            mp4 = self.http.download(ticket.poll["content_url"], "video")
            if mp4 is not None:
                break
            video, cost = self._finished(ticket)
        if mp4 is None:
            raise ProviderJobUnknown(f"{PROVIDER}'s video {ticket.job_id} expired before it was downloaded "
                                     f"({without_query(ticket.poll['content_url'])})", job_id=ticket.job_id)
        frames, fps, width, height = probe_mp4(mp4)
        usage: dict[str, Any] = {"video_seconds": self.seconds(request), "frames": frames}
        if cost is not None:
            usage["reported_usd"] = cost
        return VideoResult(mp4=mp4, frames=frames, fps=fps, width=width, height=height, model=self.model, usage=usage)

    def generate(self, request: VideoRequest) -> VideoResult:
        """Submit and collect in one call (for callers outside the recorder)."""
        with self.job_slot():
            return self.collect(self.submit(request), request)



def check(model: str | None = None, base_url: str | None = None, api_key_env: str = DEFAULT_KEY_ENV,
          durations: list[float] | None = None, duration: float | None = None, sizes: list[str] | None = None,
          send_size: bool = True, encoding: str = "multipart", **_: Any) -> Readiness:
    """Cheap: a gateway (not OpenAI's host), a model, the key's variable set, a duration the model takes."""
    try:
        opts = options(model, base_url, api_key_env, durations, duration, sizes, send_size, encoding, 1.0, 1.0, None)
    except ConfigError as e:
        return Readiness(False, e.message, fix=e.hint)
    if not os.environ.get(api_key_env, "").strip():
        return Readiness(False, f"{api_key_env} is not set",
                         fix=f"export {api_key_env}=... (the key your gateway at {safe_url(opts.base_url)} takes)")
    return Readiness(True, f"{opts.model} at {safe_url(opts.base_url)}/videos: {opts.capabilities.summary()}")


def video_capabilities(table: dict[str, Any]) -> Capabilities | None:
    """What a ``openai-videos`` [video] table's requests may carry (pure; None when the table is not valid)."""
    try:
        return options(table.get("model"), table.get("base_url"), str(table.get("api_key_env", DEFAULT_KEY_ENV)),
                       table.get("durations"), table.get("duration"), table.get("sizes"),
                       bool(table.get("send_size", True)), str(table.get("encoding", "multipart")), 1.0, 1.0,
                       table.get("max_in_flight")).capabilities
    except ConfigError:
        return None

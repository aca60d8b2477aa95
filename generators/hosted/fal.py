"""fal's queue API: image-to-video and multi-reference image models as provider jobs.

Wire format (fal's "Queue API" reference and its model pages, checked 2026-12-07; the live service
was not reachable from here, a loopback server speaking this format is what the tests run against):
- submit: ``POST {base_url}/{app id}`` with the model's input as JSON and ``Authorization: Key <FAL_KEY>``;
  the answer holds ``request_id``, ``status_url``, ``response_url`` (fal says not to build these).
- poll: ``GET status_url`` -> ``{"status": "IN_QUEUE" | "IN_PROGRESS" | "COMPLETED", ...}`` (202 while
  running, 200 when done); an ``error`` field on a completed status means the job failed; 404: the
  queue does not know the request (any more).
- result: ``GET response_url`` -> the model's output (``{"video": {"url": ...}}``, ``{"images": [...]}``),
  or an error body: model errors as ``{"detail": [{"loc", "msg", "type"}]}`` (422 for
  ``content_policy_violation``), request errors as ``{"detail": "...", "error_type": "..."}``.
- images go to fal as ``data:`` URIs, which fal documents for file inputs: no public URL of ours.

What a model's input looks like differs per family: ``generators.hosted.fal_presets`` maps our
request onto the main image-to-video and edit families; any other app is configured with a
``[video.arguments]`` / ``[image.arguments]`` table (``image_field``, ``references_field``,
``duration_field``, ``fixed`` fields).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Any

from codirector.errors import BackendError, ConfigError, ProviderJobFailed, ProviderJobUnknown
from codirector.generators.base import ImageRequest, ImageResult, VideoRequest, VideoResult
from codirector.generators.hosted.fal_presets import Preset, preset_for
from codirector.generators.hosted.http import ProviderHTTP, answer_body, api_key, poll_delays, without_query
from codirector.generators.jobs import Capabilities, JobTicket, aspect_ratio, clip_seconds
from codirector.generators.openai_client import data_url
from codirector.generators.registry import Readiness

FAL_URL = "https://queue.fal.run"
DEFAULT_KEY_ENV = "FAL_KEY"


def reason_of(body: Any) -> str:
    """The provider's own words from a fal error body (model errors, request errors, a status error)."""
    if isinstance(body, dict):
        detail = body.get("detail", body.get("error"))
        if isinstance(detail, list):
            parts = []
            for item in detail:
                if isinstance(item, dict):
                    where = ".".join(str(x) for x in item.get("loc", []) if x != "body")
                    kind = item.get("type")
                    text = str(item.get("msg", ""))
                    parts.append(f"{text}" + (f" [{kind}]" if kind else "") + (f" (field {where})" if where else ""))
                else:
                    parts.append(str(item))
            return "; ".join(parts)
        if detail is not None:
            kind = body.get("error_type")
            return f"{detail}" + (f" [{kind}]" if kind else "")
    return str(body)[:500]


@dataclass(frozen=True)
class FalOptions:
    """A ``[video]`` / ``[image]`` table for fal, validated (errors name the key)."""

    model: str
    base_url: str
    api_key_env: str
    preset: Preset
    duration: float | None
    poll_seconds: float
    timeout: float
    max_in_flight: int


def _options(kind: str, model: str | None, base_url: str | None, api_key_env: str, arguments: dict[str, Any] | None,
             duration: float | None, poll_seconds: float, timeout: float, max_in_flight: int | None) -> FalOptions:
    if not model:
        raise ConfigError(f"[{kind}] backend \"fal\" needs a model: a fal app id",
                          hint=f"e.g. [{kind}] model = \"fal-ai/kling-video/v2.1/standard/image-to-video\"")
    preset = preset_for(kind, model, arguments)
    if duration is not None and preset.capabilities.durations and float(duration) not in preset.capabilities.durations:
        allowed = ", ".join(f"{d:g}" for d in preset.capabilities.durations)
        raise ConfigError(f"[{kind}] duration = {duration:g} is not one {model!r} makes ({allowed} seconds)",
                          hint=f"set [{kind}] duration to one of {allowed}, or leave it out (the shot's length picks)")
    return FalOptions(model=model, base_url=(base_url or FAL_URL).rstrip("/"), api_key_env=api_key_env,
                      preset=preset, duration=None if duration is None else float(duration),
                      poll_seconds=float(poll_seconds), timeout=float(timeout),
                      max_in_flight=int(max_in_flight or preset.capabilities.max_in_flight or 4))


class _FalJobs:
    """Submit and collect on fal's queue (shared by the video and image backends)."""

    backend = "fal"
    kind = "video"

    def __init__(self, opts: FalOptions) -> None:
        self.opts = opts
        self.model = opts.model
        self.capabilities: Capabilities = opts.preset.capabilities
        self._http: ProviderHTTP | None = None

    @property
    def http(self) -> ProviderHTTP:
        if self._http is None:
            key = api_key(self.opts.api_key_env, "fal")
            self._http = ProviderHTTP("fal", self.opts.base_url, auth_header=("Authorization", f"Key {key}"),
                                      secret=key, max_in_flight=self.opts.max_in_flight)
        return self._http

    def job_slot(self) -> Any:
        return self.http.job_slot()

    def _submit(self, body: dict[str, Any]) -> JobTicket:
        response = self.http.request("POST", f"/{self.model}", json=body)
        self.http.refuse_rejected(response, f"fal refused the {self.kind} job for {self.model!r}", reason_of,
                                  "the provider's reason is quoted; change the prompt, the input or the model, then "
                                  "`codirector resume`")
        data = self.http.json_or_error(response, f"submitting to {self.model!r}")
        try:
            request_id = str(data["request_id"])
        except (KeyError, TypeError):
            raise BackendError(f"fal's answer to a submit has no request_id: {str(data)[:200]!r}",
                               hint="check base_url: it must be fal's queue API (https://queue.fal.run)") from None
        base = f"{self.opts.base_url}/{self.model}/requests/{request_id}"
        poll = {"status_url": without_query(str(data.get("status_url") or f"{base}/status")),
                "response_url": without_query(str(data.get("response_url") or base))}
        return JobTicket(provider="fal", job_id=request_id, poll=poll, server=self.opts.base_url)

    def _result(self, ticket: JobTicket) -> dict[str, Any]:
        """Wait for the job, then its output (``ProviderJobFailed`` / ``ProviderJobUnknown`` as it ended)."""
        deadline = time.monotonic() + self.opts.timeout
        delays = poll_delays(self.opts.poll_seconds)
        while True:
            response = self.http.request("GET", ticket.poll["status_url"])
            if response.status_code == 404:
                raise ProviderJobUnknown(f"fal no longer knows request {ticket.job_id} of {self.model!r}",
                                         job_id=ticket.job_id)
            if response.status_code not in (200, 202):
                raise self.http.error(response, f"the status of request {ticket.job_id}")
            status = answer_body(response)
            state = str(status.get("status", "")) if isinstance(status, dict) else ""
            if state == "COMPLETED":
                if isinstance(status, dict) and status.get("error"):
                    self._failed(ticket, reason_of(status))
                break
            if state not in ("IN_QUEUE", "IN_PROGRESS"):
                raise BackendError(f"fal reported status {state!r} for request {ticket.job_id}",
                                   hint="expected IN_QUEUE, IN_PROGRESS or COMPLETED; check base_url")
            if time.monotonic() > deadline:
                raise BackendError(
                    f"fal request {ticket.job_id} of {self.model!r} is still {state} after {self.opts.timeout:g} s",
                    hint="it keeps running at fal and is recorded: `codirector resume` collects it without paying "
                    "again (raise the backend's timeout to wait longer)")
            time.sleep(next(delays))
        response = self.http.request("GET", ticket.poll["response_url"])
        if response.status_code == 404:
            raise ProviderJobUnknown(f"fal has no result for request {ticket.job_id} any more", job_id=ticket.job_id)
        if not 200 <= response.status_code < 300:
            self._failed(ticket, reason_of(answer_body(response)) or f"HTTP {response.status_code}")
        output = self.http.json_or_error(response, f"the result of request {ticket.job_id}")
        if not isinstance(output, dict):
            raise BackendError(f"fal's result for request {ticket.job_id} is not an object: {str(output)[:200]!r}")
        return output

    def _failed(self, ticket: JobTicket, reason: str) -> None:
        raise ProviderJobFailed(
            f"fal's {self.kind} job {ticket.job_id} for {self.model!r} failed: {reason}",
            hint="the provider's reason is quoted; fix the cause (the prompt, the input image, the model), then "
            "`codirector resume` submits it again", reason=reason, job_id=ticket.job_id)

    def _output_file(self, ticket: JobTicket) -> bytes:
        """The job's output file (the first at the preset's ``output_field``), once the job is done."""
        field = self.opts.preset.output_field
        url = _output_url(self._result(ticket), field)
        if url is None:
            raise BackendError(f"fal's result for request {ticket.job_id} has no {field}.url",
                               hint=f"set [{self.kind}.arguments] output_field to the field that holds the {self.kind}")
        return self._fetch(ticket, url, self.kind)

    def _fetch(self, ticket: JobTicket, url: str, what: str) -> bytes:
        """Download an output at once; an expired URL is asked for again, then the job counts as lost."""
        for _ in range(2):
            data = self.http.download(url, what)
            if data is not None:
                return data
            fresh = self._result(ticket)  # a new result may carry a freshly signed URL
            url = _output_url(fresh, self.opts.preset.output_field) or url
        raise ProviderJobUnknown(f"fal's {what} for request {ticket.job_id} expired before it was downloaded",
                                 job_id=ticket.job_id)



def _output_url(output: dict[str, Any], field: str) -> str | None:
    item = output.get(field)
    if isinstance(item, list):
        item = item[0] if item else None
    if isinstance(item, dict) and item.get("url"):
        return str(item["url"])
    if isinstance(item, str):
        return item
    return None


class FalVideoGenerator(_FalJobs):
    """Image-to-video on fal: the accepted keyframe as the first frame, memory's views as references."""

    kind = "video"

    def __init__(self, model: str | None = None, base_url: str | None = None, api_key_env: str = DEFAULT_KEY_ENV,
                 arguments: dict[str, Any] | None = None, duration: float | None = None,
                 poll_seconds: float = 2.0, timeout: float = 1800.0, max_in_flight: int | None = None) -> None:
        super().__init__(_options("video", model, base_url, api_key_env, arguments, duration, poll_seconds, timeout,
                                  max_in_flight))

    def seconds(self, request: VideoRequest) -> float:
        """The clip length asked of the model: the configured duration, else the shot's, as the model allows."""
        return clip_seconds(request.num_frames, request.fps, self.opts.duration, self.capabilities.durations)

    def usage_bound(self, request: VideoRequest) -> dict[str, Any]:
        return {"video_seconds": self.seconds(request)}

    def input_for(self, request: VideoRequest) -> dict[str, Any]:
        """The model's input for ``request`` (what fal receives)."""
        p = self.opts.preset
        body: dict[str, Any] = {p.prompt_field: request.prompt}
        if p.image_field:
            body[p.image_field] = data_url(request.keyframe.data)
        if p.duration_field:
            body[p.duration_field] = p.format_duration(self.seconds(request), request.fps)
        if p.aspect_field and self.capabilities.aspect_ratios:
            ratio = aspect_ratio(request.width, request.height, self.capabilities.aspect_ratios)
            if ratio is not None:
                body[p.aspect_field] = ratio
        if p.seed_field:
            body[p.seed_field] = request.seed
        refs = list(request.references[: self.capabilities.references])
        if not p.image_field:
            refs.insert(0, request.keyframe)  # a reference-to-video model: the keyframe leads the list
        if p.references_field and refs:
            body[p.references_field] = [data_url(r.data) for r in refs]
        body.update(p.fixed)
        return body

    def submit(self, request: VideoRequest) -> JobTicket:
        return self._submit(self.input_for(request))

    def collect(self, ticket: JobTicket, request: VideoRequest) -> VideoResult:
        from codirector.generators.video_io import probe_mp4

        mp4 = self._output_file(ticket)
        frames, fps, width, height = probe_mp4(mp4)
        # fal bills the duration asked for (Kling's 5 s, Wan's frame count), whatever the file holds
        usage: dict[str, Any] = {"video_seconds": self.seconds(request), "frames": frames}
        return VideoResult(mp4=mp4, frames=frames, fps=fps, width=width, height=height, model=self.model, usage=usage)

    def generate(self, request: VideoRequest) -> VideoResult:
        """Submit and collect in one call (for callers outside the recorder)."""
        with self.job_slot():
            return self.collect(self.submit(request), request)


class FalImageGenerator(_FalJobs):
    """Multi-reference image editing on fal (Qwen-Image-Edit, FLUX Kontext, Gemini image on fal)."""

    kind = "image"

    def __init__(self, model: str | None = None, base_url: str | None = None, api_key_env: str = DEFAULT_KEY_ENV,
                 arguments: dict[str, Any] | None = None, poll_seconds: float = 1.0, timeout: float = 600.0,
                 max_in_flight: int | None = None) -> None:
        super().__init__(_options("image", model, base_url, api_key_env, arguments, None, poll_seconds, timeout,
                                  max_in_flight))

    def usage_bound(self, request: ImageRequest) -> dict[str, Any]:
        return {"images": 1}

    def input_for(self, request: ImageRequest) -> dict[str, Any]:
        p = self.opts.preset
        body: dict[str, Any] = {p.prompt_field: request.styled_prompt()}
        refs = request.references[: max(1, self.capabilities.references)] if self.capabilities.references else ()
        if p.references_field and refs:
            body[p.references_field] = [data_url(r.data) for r in refs]
        elif p.image_field and refs:
            body[p.image_field] = data_url(refs[0].data)
        if p.size_field:
            body[p.size_field] = {"width": request.width, "height": request.height}
        if p.aspect_field and self.capabilities.aspect_ratios:
            ratio = aspect_ratio(request.width, request.height, self.capabilities.aspect_ratios)
            if ratio is not None:
                body[p.aspect_field] = ratio
        if p.seed_field:
            body[p.seed_field] = request.seed
        body.update(p.fixed)
        return body

    def submit(self, request: ImageRequest) -> JobTicket:
        return self._submit(self.input_for(request))

    def collect(self, ticket: JobTicket, request: ImageRequest) -> ImageResult:
        from PIL import Image

        from codirector.generators.imaging import cover, png

        data = self._output_file(ticket)
        try:
            im = Image.open(io.BytesIO(data)).convert("RGB")
        except Exception as e:
            raise BackendError(f"fal's image for request {ticket.job_id} cannot be read: {e}") from e
        if im.size != (request.width, request.height):
            im = cover(im, request.width, request.height)  # the loop's frames all have the run's size
        return ImageResult(png=png(im), width=request.width, height=request.height, model=self.model,
                           usage={"images": 1})

    def generate(self, request: ImageRequest) -> ImageResult:
        with self.job_slot():
            return self.collect(self.submit(request), request)


def check(model: str | None = None, base_url: str | None = None, api_key_env: str = DEFAULT_KEY_ENV,
          arguments: dict[str, Any] | None = None, duration: float | None = None, kind: str = "video",
          **_: Any) -> Readiness:
    """Cheap: the key's variable is set, the model has a preset or an arguments table, the duration is one it makes."""
    import os

    try:
        opts = _options(kind, model, base_url, api_key_env, arguments, duration, 1.0, 1.0, None)
    except ConfigError as e:
        return Readiness(False, e.message, fix=e.hint)
    if not os.environ.get(api_key_env, "").strip():
        return Readiness(False, f"{api_key_env} is not set", fix=f"export {api_key_env}=... (your fal key)")
    return Readiness(True, f"fal app {opts.model} ({opts.preset.name}): {opts.preset.capabilities.summary()}")


def check_image(**options: Any) -> Readiness:
    return check(kind="image", **options)

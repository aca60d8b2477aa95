"""Google's Gemini API: Veo image-to-video as provider jobs, Gemini image models ("Nano Banana") as plain calls.

Veo (a long-running operation; Gemini API "Generate videos with Veo 3.1", ai.google.dev/gemini-api/docs/video,
and the Vertex AI Veo API reference, cloud.google.com/vertex-ai/generative-ai/docs/model-reference/
veo-video-generation, for the instance fields; checked 2026-12-07 — Google was not reachable from here, a
loopback server speaking this format is what the tests run against):
- submit: ``POST {base_url}/models/{model}:predictLongRunning`` with ``x-goog-api-key`` and
  ``{"instances": [{"prompt", "image": {"bytesBase64Encoded", "mimeType"}, "referenceImages": [{"image":
  {...}, "referenceType": "asset"}]}], "parameters": {"aspectRatio", "durationSeconds", "resolution"}}``;
  the answer is an operation ``{"name": "models/<model>/operations/<id>"}``.
- poll: ``GET {base_url}/{operation name}`` -> ``{"name", "done": true|absent, "error": {"code", "message",
  "status"} | "response": {"generateVideoResponse": {"generatedSamples": [{"video": {"uri"}}],
  "raiMediaFilteredCount", "raiMediaFilteredReasons"}}}``; 404 when Google no longer knows it.
- download: ``GET uri`` with the key (the URI is on the API's own host; files live for two days).
- Veo 3.1 takes up to three reference images (``asset``), and then only 8-second clips; the first frame
  with references is sent as both. Durations 4, 6, 8; aspect ratios 16:9, 9:16.

Which Veo models answer: Google shut the Veo 3.1 *preview* models (``veo-3.1-generate-preview``,
``-fast-``, ``-lite-``) down on the Gemini API on 2026-10-22 (reported by gateways quoting Google's
deprecations page; the page itself could not be read here), and Veo 2 and 3.0 on 2026-06-30 (Gemini API
changelog, 2026-06-15). The GA ids (``veo-3.1-generate-001``, ``-fast-``, ``-lite-``) are what Google's
pricing and model pages list today; ``shut_down()`` (generators/data/lifecycle.toml, with each date's
source) refuses the retired ids on Google's own host before anything runs. Any host speaking this format (a
LiteLLM ``/gemini/v1beta`` pass-through) works by base_url.

Gemini image models (``generateContent``, ai.google.dev/gemini-api/docs/image-generation, checked
2026-12-07): ``POST {base_url}/models/{model}:generateContent`` with ``{"contents": [{"parts": [{"text"},
{"inline_data": {"mime_type", "data"}}...]}], "generationConfig": {"responseModalities": ["IMAGE"],
"imageConfig": {"aspectRatio"}}}``; the answer holds the image as ``candidates[0].content.parts[].inlineData``
at once. A synchronous call with no job id to come back to: a ticket would hold nothing a resume could
collect, so this one is a plain ``generate`` backend (recorded as every call is). A refusal comes as
``promptFeedback.blockReason`` or a ``finishReason`` such as ``IMAGE_SAFETY`` with no image.
"""

from __future__ import annotations

import base64
import functools
import io
import os
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

from codirector.errors import BackendError, ConfigError, ProviderJobFailed, ProviderJobUnknown
from codirector.generators import datafiles
from codirector.generators.base import ImageRequest, ImageResult, VideoRequest, VideoResult
from codirector.generators.hosted.http import ProviderHTTP, api_key, poll_delays
from codirector.generators.jobs import Capabilities, JobTicket, aspect_ratio, clip_seconds
from codirector.generators.openai_client import bad_base_url, image_mime, safe_url
from codirector.generators.registry import Readiness

PROVIDER = "google"
GEMINI_URL = "https://generativelanguage.googleapis.com/v1beta"
DEFAULT_KEY_ENV = "GEMINI_API_KEY"
VEO_MODEL = "veo-3.1-generate-001"
IMAGE_MODEL = "gemini-3.1-flash-image"  # "Nano Banana 2", GA on 2026-05-28 (Gemini API changelog)
VEO_DURATIONS = (4.0, 6.0, 8.0)
VEO_ASPECTS = ("16:9", "9:16")
REFERENCE_SECONDS = 8.0  # Veo 3.1 with reference images makes 8-second clips only
# Gemini image models' aspect ratios (image-generation guide): the run's size is matched to one of them.
IMAGE_ASPECTS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")

# Reference images per Veo model family (Veo 3.1 and 3.1 Fast: three "asset" images; Lite and older: none).
VEO_REFERENCES: tuple[tuple[str, int], ...] = (("veo-3.1-lite", 0), ("veo-3.1-fast", 3), ("veo-3.1", 3))
# Gemini image models: how many reference images a request carries (Gemini 3 image models take up to 14
# inputs; three views per keyframe is what the loop sends at most anyway).
IMAGE_REFERENCES = 3

@functools.cache
def shut_down() -> dict[str, tuple[date, str]]:
    """Models retired on Google's own API: (shut down on, what to use instead), from the package data
    generators/data/lifecycle.toml ([google."MODEL"], each with the day its source was read), read once."""
    return datafiles.lifecycle("google")


def is_google_host(url: str) -> bool:
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    return host == "googleapis.com" or host.endswith(".googleapis.com")


def veo_references(model: str) -> int:
    """How many reference images ``model`` takes besides its first frame."""
    name = model.removeprefix("models/")
    return next((n for prefix, n in VEO_REFERENCES if name.startswith(prefix)), 0)


def _base_url(kind: str, base_url: str | None) -> str:
    url = (base_url or GEMINI_URL).rstrip("/")
    why = bad_base_url(url)
    if why is not None:
        raise ConfigError(f"[{kind}] base_url {url!r} is not a URL: {why}",
                          hint=f"leave it out for Google's own API ({GEMINI_URL}) or point it at a gateway's "
                          "Gemini pass-through")
    return url


def _refuse_retired(kind: str, model: str, base_url: str, today: date | None) -> None:
    found = shut_down().get(model.removeprefix("models/"))
    if found is None or not is_google_host(base_url):
        return
    day, replacement = found
    if (today or date.today()) >= day:
        raise ConfigError(f"Google shut [{kind}] model {model!r} down on {day.isoformat()}; every request to it "
                          "on the Gemini API fails",
                          hint=f"set [{kind}] model = \"{replacement}\" (or point base_url at a gateway that still "
                          "serves it)")


def reason_of(body: Any) -> str:
    """Google's own words from an error body (``{"error": {"code", "message", "status"}}``)."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and (err.get("message") or err.get("status")):
            status = err.get("status")
            return str(err.get("message", "")).strip() + (f" [{status}]" if status else "")
    return str(body)[:500]



def inline_image(data: bytes) -> dict[str, str]:
    """An image as Veo's instances take it."""
    mime, _ = image_mime(data)
    return {"bytesBase64Encoded": base64.b64encode(data).decode("ascii"), "mimeType": mime}


class _GoogleHTTP:
    kind = "video"

    def __init__(self, model: str, base_url: str, api_key_env: str, max_in_flight: int) -> None:
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.max_in_flight = max_in_flight
        self._http: ProviderHTTP | None = None

    @property
    def http(self) -> ProviderHTTP:
        if self._http is None:
            key = api_key(self.api_key_env, PROVIDER)
            self._http = ProviderHTTP(PROVIDER, self.base_url, auth_header=("x-goog-api-key", key), secret=key,
                                      max_in_flight=self.max_in_flight)
        return self._http

    def job_slot(self) -> Any:
        return self.http.job_slot()


# ---------------------------------------------------------------------------- Veo


@dataclass(frozen=True)
class VeoOptions:
    model: str
    base_url: str
    api_key_env: str
    durations: tuple[float, ...]
    duration: float | None
    aspect_ratios: tuple[str, ...]
    resolution: str | None
    references: int
    negative_prompt: str | None
    person_generation: str | None
    poll_seconds: float
    timeout: float
    max_in_flight: int

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(first_frame=True, references=self.references, durations=self.durations,
                            aspect_ratios=self.aspect_ratios, priced_by="second", max_in_flight=self.max_in_flight)


def veo_options(model: str | None, base_url: str | None, api_key_env: str, duration: Any, durations: Any,
                aspect_ratios: Any, resolution: str | None, max_references: Any, negative_prompt: str | None,
                person_generation: str | None, poll_seconds: float, timeout: float, max_in_flight: int | None,
                today: date | None = None) -> VeoOptions:
    name = model or VEO_MODEL
    url = _base_url("video", base_url)
    _refuse_retired("video", name, url, today)
    try:
        allowed = tuple(sorted(float(d) for d in (VEO_DURATIONS if durations is None else durations)))
        fixed = None if duration is None else float(duration)
        refs = veo_references(name) if max_references is None else int(max_references)
    except (TypeError, ValueError):
        raise ConfigError("[video] durations must be seconds, duration a number and max_references a whole number",
                          hint="e.g. durations = [4, 6, 8]") from None
    if fixed is not None and allowed and fixed not in allowed:
        shown = ", ".join(f"{d:g}" for d in allowed)
        raise ConfigError(f"[video] duration = {fixed:g} is not one {name!r} makes ({shown} seconds)",
                          hint=f"set [video] duration to one of {shown}, or leave it out (the shot's length picks)")
    aspects = tuple(str(a) for a in (VEO_ASPECTS if aspect_ratios is None else aspect_ratios))
    return VeoOptions(model=name, base_url=url, api_key_env=api_key_env, durations=allowed, duration=fixed,
                      aspect_ratios=aspects, resolution=resolution, references=max(0, refs),
                      negative_prompt=negative_prompt, person_generation=person_generation,
                      poll_seconds=float(poll_seconds), timeout=float(timeout), max_in_flight=int(max_in_flight or 2))


class GoogleVideoGenerator(_GoogleHTTP):
    """Veo image-to-video on the Gemini API: the accepted keyframe as ``image``, memory's views as references."""

    backend = PROVIDER
    kind = "video"

    def __init__(self, model: str | None = None, base_url: str | None = None, api_key_env: str = DEFAULT_KEY_ENV,
                 duration: float | None = None, durations: list[float] | None = None,
                 aspect_ratios: list[str] | None = None, resolution: str | None = "720p",
                 max_references: int | None = None, negative_prompt: str | None = None,
                 person_generation: str | None = None, poll_seconds: float = 10.0, timeout: float = 1800.0,
                 max_in_flight: int | None = None) -> None:
        self.opts = veo_options(model, base_url, api_key_env, duration, durations, aspect_ratios, resolution,
                                max_references, negative_prompt, person_generation, poll_seconds, timeout,
                                max_in_flight)
        super().__init__(self.opts.model, self.opts.base_url, api_key_env, self.opts.max_in_flight)
        self.capabilities = self.opts.capabilities

    def seconds(self, request: VideoRequest) -> float:
        if request.references[: self.capabilities.references]:
            return REFERENCE_SECONDS
        return clip_seconds(request.num_frames, request.fps, self.opts.duration, self.capabilities.durations)

    def usage_bound(self, request: VideoRequest) -> dict[str, Any]:
        return {"video_seconds": self.seconds(request)}

    def body_for(self, request: VideoRequest) -> dict[str, Any]:
        """The ``predictLongRunning`` body for ``request`` (what Google receives)."""
        instance: dict[str, Any] = {"prompt": request.prompt, "image": inline_image(request.keyframe.data)}
        refs = list(request.references[: self.capabilities.references])
        if refs:
            instance["referenceImages"] = [{"image": inline_image(r.data), "referenceType": "asset"} for r in refs]
        parameters: dict[str, Any] = {"durationSeconds": self.seconds(request)}
        if self.capabilities.aspect_ratios:
            ratio = aspect_ratio(request.width, request.height, self.capabilities.aspect_ratios)
            if ratio is None:
                raise ConfigError(
                    f"the run's frames are {request.width}x{request.height}, an aspect ratio {self.model!r} does not "
                    f"make ({', '.join(self.capabilities.aspect_ratios)})",
                    hint="set [run] width and height to a 16:9 or 9:16 size (e.g. 1280x720 or 512x288)")
            parameters["aspectRatio"] = ratio
        if self.opts.resolution:
            parameters["resolution"] = self.opts.resolution
        if self.opts.negative_prompt:
            parameters["negativePrompt"] = self.opts.negative_prompt
        if self.opts.person_generation:
            parameters["personGeneration"] = self.opts.person_generation
        return {"instances": [instance], "parameters": parameters}

    def submit(self, request: VideoRequest) -> JobTicket:
        response = self.http.request("POST", f"/models/{self.model}:predictLongRunning", json=self.body_for(request))
        self.http.refuse_rejected(response, f"Google refused the Veo job for {self.model!r}", reason_of,
                                  "Google's reason is quoted; change the prompt, the keyframe or the model, then "
                                  "`codirector resume`")
        data = self.http.json_or_error(response, f"starting {self.model!r}")
        name = data.get("name") if isinstance(data, dict) else None
        if not name:
            raise BackendError(f"Google's answer to predictLongRunning has no operation name: {str(data)[:200]!r}",
                               hint=f"check base_url: it must be the Gemini API ({GEMINI_URL}) or a pass-through")
        return JobTicket(provider=PROVIDER, job_id=str(name), server=self.base_url,
                         poll={"operation_url": f"{self.base_url}/{str(name).lstrip('/')}"})

    def _done(self, ticket: JobTicket) -> str:
        """Poll the operation until it is done; the video's URI (raises as the job ended otherwise)."""
        deadline = time.monotonic() + self.opts.timeout
        delays = poll_delays(self.opts.poll_seconds)
        while True:
            response = self.http.request("GET", ticket.poll["operation_url"])
            if response.status_code == 404:
                raise ProviderJobUnknown(f"Google no longer knows operation {ticket.job_id}", job_id=ticket.job_id)
            op = self.http.json_or_error(response, f"operation {ticket.job_id}")
            if isinstance(op, dict) and op.get("done"):
                if op.get("error"):
                    self._failed(ticket, reason_of({"error": op["error"]}))
                answer = (op.get("response") or {}).get("generateVideoResponse") or {}
                samples = answer.get("generatedSamples") or []
                uri = ((samples[0] or {}).get("video") or {}).get("uri") if samples else None
                if not uri:
                    reasons = [str(r) for r in answer.get("raiMediaFilteredReasons") or []]
                    self._failed(ticket, "; ".join(reasons) or "the operation finished without a video")
                return str(uri)
            if time.monotonic() > deadline:
                raise BackendError(
                    f"Google operation {ticket.job_id} is still running after {self.opts.timeout:g} s",
                    hint="it keeps running at Google and is recorded: `codirector resume` collects it without paying "
                    "again (raise the backend's timeout to wait longer)")
            time.sleep(next(delays))

    def _failed(self, ticket: JobTicket, reason: str) -> None:
        raise ProviderJobFailed(
            f"Google's Veo job {ticket.job_id} for {self.model!r} failed: {reason}",
            hint="Google's reason is quoted; fix the cause (the prompt, the keyframe, the references), then "
            "`codirector resume` submits it again", reason=reason, job_id=ticket.job_id)

    def collect(self, ticket: JobTicket, request: VideoRequest) -> VideoResult:
        from codirector.generators.video_io import probe_mp4

        mp4 = None
        for _ in range(2):  # an expired file is asked for once more, then the job counts as lost
            mp4 = self.http.download(self._done(ticket), "video")
            if mp4 is not None:
                break
        if mp4 is None:
            raise ProviderJobUnknown(f"Google's video of operation {ticket.job_id} expired before it was downloaded",
                                     job_id=ticket.job_id)
        frames, fps, width, height = probe_mp4(mp4)
        usage = {"video_seconds": self.seconds(request), "frames": frames}
        return VideoResult(mp4=mp4, frames=frames, fps=fps, width=width, height=height, model=self.model, usage=usage)

    def generate(self, request: VideoRequest) -> VideoResult:
        with self.job_slot():
            return self.collect(self.submit(request), request)


# ---------------------------------------------------------------------------- Gemini image models


class GoogleImageGenerator(_GoogleHTTP):
    """Keyframes and reference views from a Gemini image model, with memory's views as inline images."""

    backend = PROVIDER
    kind = "image"

    def __init__(self, model: str | None = None, base_url: str | None = None, api_key_env: str = DEFAULT_KEY_ENV,
                 max_references: int | None = None, image_size: str | None = None,
                 max_in_flight: int | None = None) -> None:
        name = model or IMAGE_MODEL
        url = _base_url("image", base_url)
        _refuse_retired("image", name, url, None)
        super().__init__(name, url, api_key_env, int(max_in_flight or 4))
        self.references = IMAGE_REFERENCES if max_references is None else max(0, int(max_references))
        self.image_size = image_size
        self.capabilities = Capabilities(first_frame=False, references=self.references, aspect_ratios=IMAGE_ASPECTS,
                                         priced_by="image", max_in_flight=self.max_in_flight)

    def usage_bound(self, request: ImageRequest) -> dict[str, Any]:
        return {"images": 1}

    def body_for(self, request: ImageRequest) -> dict[str, Any]:
        parts: list[dict[str, Any]] = [{"text": request.styled_prompt()}]
        for ref in request.references[: self.references]:
            mime, _ = image_mime(ref.data)
            parts.append({"inline_data": {"mime_type": mime, "data": base64.b64encode(ref.data).decode("ascii")}})
        image_config: dict[str, Any] = {}
        ratio = aspect_ratio(request.width, request.height, IMAGE_ASPECTS)
        if ratio is not None:
            image_config["aspectRatio"] = ratio
        if self.image_size:
            image_config["imageSize"] = self.image_size
        config: dict[str, Any] = {"responseModalities": ["IMAGE"]}
        if image_config:
            config["imageConfig"] = image_config
        return {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}

    def generate(self, request: ImageRequest) -> ImageResult:
        from PIL import Image

        from codirector.generators.imaging import cover, png

        with self.job_slot():
            response = self.http.request("POST", f"/models/{self.model}:generateContent", json=self.body_for(request))
        self.http.refuse_rejected(response, f"Google refused the image request for {self.model!r}", reason_of,
                                  "Google's reason is quoted; change the prompt or the references, then "
                                  "`codirector resume`")
        answer = self.http.json_or_error(response, f"generating an image with {self.model!r}")
        data = _image_part(answer)
        if data is None:
            reason = _refusal(answer)
            raise ProviderJobFailed(f"Google's {self.model!r} returned no image: {reason}",
                                    hint="Google's reason is quoted; change the prompt or the references, then "
                                    "`codirector resume`", reason=reason)
        try:
            im = Image.open(io.BytesIO(data)).convert("RGB")
        except Exception as e:
            raise BackendError(f"Google's image from {self.model!r} cannot be read: {e}") from e
        if im.size != (request.width, request.height):
            im = cover(im, request.width, request.height)  # the loop's frames all have the run's size
        usage: dict[str, Any] = {"images": 1}
        meta = answer.get("usageMetadata") if isinstance(answer, dict) else None
        if isinstance(meta, dict):
            for ours, theirs in (("input_tokens", "promptTokenCount"), ("output_tokens", "candidatesTokenCount")):
                if isinstance(meta.get(theirs), int):
                    usage[ours] = meta[theirs]
        return ImageResult(png=png(im), width=request.width, height=request.height, model=self.model, usage=usage)


def _image_part(answer: Any) -> bytes | None:
    for candidate in (answer.get("candidates") or []) if isinstance(answer, dict) else []:
        for part in ((candidate or {}).get("content") or {}).get("parts") or []:
            inline = part.get("inlineData") or part.get("inline_data") if isinstance(part, dict) else None
            if isinstance(inline, dict) and inline.get("data"):
                return base64.b64decode(inline["data"])
    return None


def _refusal(answer: Any) -> str:
    if not isinstance(answer, dict):
        return str(answer)[:300]
    feedback = answer.get("promptFeedback") or {}
    if feedback.get("blockReason"):
        return f"the prompt was blocked [{feedback['blockReason']}]" + (
            f": {feedback['blockReasonMessage']}" if feedback.get("blockReasonMessage") else "")
    for candidate in answer.get("candidates") or []:
        reason = (candidate or {}).get("finishReason")
        message = (candidate or {}).get("finishMessage")
        texts = [p.get("text") for p in ((candidate or {}).get("content") or {}).get("parts") or []
                 if isinstance(p, dict) and p.get("text")]
        if reason or message or texts:
            return " ".join(str(x) for x in (message, *texts) if x) + (f" [{reason}]" if reason else "")
    return "no candidates in the answer"


# ---------------------------------------------------------------------------- checks and limits


def check(model: str | None = None, base_url: str | None = None, api_key_env: str = DEFAULT_KEY_ENV,
          duration: float | None = None, durations: list[float] | None = None, aspect_ratios: list[str] | None = None,
          max_references: int | None = None, **_: Any) -> Readiness:
    """Cheap: a Veo model Google still serves, the key's variable set, a duration the model makes."""
    try:
        opts = veo_options(model, base_url, api_key_env, duration, durations, aspect_ratios, None, max_references,
                           None, None, 1.0, 1.0, None)
    except ConfigError as e:
        return Readiness(False, e.message, fix=e.hint)
    return _key_ready(api_key_env, f"Veo {opts.model} at {safe_url(opts.base_url)}: {opts.capabilities.summary()}")


def check_image(model: str | None = None, base_url: str | None = None, api_key_env: str = DEFAULT_KEY_ENV,
                **_: Any) -> Readiness:
    try:
        name = model or IMAGE_MODEL
        url = _base_url("image", base_url)
        _refuse_retired("image", name, url, None)
    except ConfigError as e:
        return Readiness(False, e.message, fix=e.hint)
    return _key_ready(api_key_env, f"{name} at {safe_url(url)} (generateContent, up to {IMAGE_REFERENCES} "
                      "reference images)")


def _key_ready(api_key_env: str, detail: str) -> Readiness:
    if not os.environ.get(api_key_env, "").strip():
        return Readiness(False, f"{api_key_env} is not set",
                         fix=f"export {api_key_env}=... (a Gemini API key from Google AI Studio)")
    return Readiness(True, detail)


def video_reference_limit(options: dict[str, Any]) -> int:
    """How many memory views a ``google`` [video] table sends besides the first frame (pure, cheap)."""
    if options.get("max_references") is not None:
        try:
            return max(0, int(options["max_references"]))
        except (TypeError, ValueError):
            return 0
    model = options.get("model")
    return veo_references(model if isinstance(model, str) else VEO_MODEL)


def image_reference_limit(options: dict[str, Any]) -> int:
    value = options.get("max_references")
    try:
        return IMAGE_REFERENCES if value is None else max(0, int(value))
    except (TypeError, ValueError):
        return 0


def video_capabilities(table: dict[str, Any]) -> Capabilities | None:
    """What a ``google`` [video] table's requests may carry (pure; None when the table is not valid)."""
    try:
        return veo_options(table.get("model"), table.get("base_url"), DEFAULT_KEY_ENV, table.get("duration"),
                           table.get("durations"), table.get("aspect_ratios"), None, table.get("max_references"),
                           None, None, 1.0, 1.0, table.get("max_in_flight")).capabilities
    except ConfigError:
        return None


def image_capabilities(table: dict[str, Any]) -> Capabilities | None:
    return Capabilities(first_frame=False, references=image_reference_limit(table), aspect_ratios=IMAGE_ASPECTS,
                        priced_by="image", max_in_flight=int(table.get("max_in_flight") or 4))

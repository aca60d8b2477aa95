"""The job protocol of hosted model calls: submit, then collect; the ticket in between goes to the log.

A hosted generation (fal's queue, a ``/v1/videos`` gateway, Google's long-running operations, a
ComfyUI ``prompt_id``) is not one request but three steps: submit -> poll -> download. A backend
that works this way implements ``SubmitsJobs``:

- ``submit(request) -> JobTicket``: sends the job and returns as soon as the provider has accepted it.
  The ticket says where the job lives (provider, job id, the URLs or paths to poll and fetch it,
  the server it went to) and holds no secret: no key, no header, no signed URL.
- ``collect(ticket, request) -> result``: polls with backoff until the job is done, downloads the
  result at once (provider URLs expire) and returns it as the backend's ordinary result. It raises
  ``ProviderJobUnknown`` when the provider no longer knows the job (expired, restarted, purged) and
  ``ProviderJobFailed`` with the provider's own reason when the job failed (moderation, bad input).

The call recorder (``engine.recording.recorder``) writes the ticket to the log as
``ProviderJobSubmitted`` between the two steps, keyed by the call's recording key. Whoever finds that
event later (``resume``, a retried Ray job, a second machine) collects the same job instead of
submitting again; only a lost job is submitted anew, and the log says so. So a job is never paid for
twice, whatever dies when.

Each backend also declares ``Capabilities``: what a request may carry (first frame, reference
images and how many, durations, aspect ratios, what it is priced by). ``backends`` shows them; the
loop asks ``reference_limit`` (a pure function of the recorded config) how many memory views to
send with a clip, so a replay without backends builds the same request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard, runtime_checkable

from codirector.generators.base import ImageRequest, ImageResult, VideoRequest, VideoResult


@dataclass(frozen=True)
class JobTicket:
    """Where a submitted job lives: enough for any machine to poll and fetch it later, and nothing secret."""

    provider: str
    job_id: str
    poll: dict[str, str] = field(default_factory=dict)  # e.g. status_url, response_url: plain, unsigned
    server: str | None = None  # the base URL it was submitted to (one of a pool's servers)

    def to_json(self) -> dict[str, Any]:
        return {"provider": self.provider, "job_id": self.job_id, "poll": dict(self.poll), "server": self.server}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobTicket:
        return cls(provider=str(data["provider"]), job_id=str(data["job_id"]),
                   poll={str(k): str(v) for k, v in (data.get("poll") or {}).items()}, server=data.get("server"))


@runtime_checkable
class SubmitsJobs(Protocol):
    """A backend whose calls are provider jobs (see the module docstring)."""

    backend: str
    model: str

    def submit(self, request: Any) -> JobTicket: ...

    def collect(self, ticket: JobTicket, request: Any) -> Any: ...


class VideoJobs(SubmitsJobs, Protocol):
    def submit(self, request: VideoRequest) -> JobTicket: ...

    def collect(self, ticket: JobTicket, request: VideoRequest) -> VideoResult: ...


class ImageJobs(SubmitsJobs, Protocol):
    def submit(self, request: ImageRequest) -> JobTicket: ...

    def collect(self, ticket: JobTicket, request: ImageRequest) -> ImageResult: ...


def submits_jobs(backend: object) -> TypeGuard[SubmitsJobs]:
    """Whether ``backend`` is called through the job protocol (submit, then collect)."""
    return callable(getattr(backend, "submit", None)) and callable(getattr(backend, "collect", None))


@dataclass(frozen=True)
class Capabilities:
    """What a backend's requests may carry, shown by ``codirector backends`` and checked by the pre-flight."""

    first_frame: bool = True
    last_frame: bool = False
    references: int = 0  # how many reference images besides the first frame (0: none)
    durations: tuple[float, ...] = ()  # seconds the model can make (empty: any)
    aspect_ratios: tuple[str, ...] = ()  # e.g. "16:9" (empty: any size)
    priced_by: str = "call"  # "second" of video, "image", "token" or "call"
    max_in_flight: int | None = None  # the provider's default cap on jobs at once

    def to_json(self) -> dict[str, Any]:
        return {"first_frame": self.first_frame, "last_frame": self.last_frame, "references": self.references,
                "durations": list(self.durations), "aspect_ratios": list(self.aspect_ratios),
                "priced_by": self.priced_by, "max_in_flight": self.max_in_flight}

    def summary(self) -> str:
        parts = ["first frame" if self.first_frame else "text only"]
        if self.last_frame:
            parts.append("last frame")
        if self.references:
            parts.append(f"up to {self.references} reference image{'s' * (self.references != 1)}")
        if self.durations:
            parts.append("durations " + "/".join(f"{d:g}" for d in self.durations) + " s")
        if self.aspect_ratios:
            parts.append("aspect " + ", ".join(self.aspect_ratios))
        parts.append(f"priced per {self.priced_by}")
        return "; ".join(parts)


def aspect_ratio(width: int, height: int, allowed: tuple[str, ...]) -> str | None:
    """The allowed ratio ``width``x``height`` has (within 2 %), or None when none fits."""
    for ratio in allowed:
        w, _, h = ratio.partition(":")
        try:
            want = float(w) / float(h)
        except (ValueError, ZeroDivisionError):
            continue
        if abs(width / height - want) <= 0.02 * want:
            return ratio
    return None


def pick_duration(seconds: float, allowed: tuple[float, ...]) -> float:
    """The shortest allowed duration that holds ``seconds`` (the longest when none does)."""
    if not allowed:
        return seconds
    longer = [d for d in sorted(allowed) if d >= seconds - 1e-9]
    return longer[0] if longer else max(allowed)


def clip_seconds(num_frames: int, fps: float, configured: float | None, allowed: tuple[float, ...]) -> float:
    """The clip length to ask a hosted video model for (what it bills): the configured ``duration``, else the
    shot's own length (``num_frames / fps``) as the model allows (``pick_duration``)."""
    if configured is not None:
        return configured
    return pick_duration(num_frames / fps, allowed)

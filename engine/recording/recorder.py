"""The call recorder: every model call goes through here (DESIGN invariant 5).

Key = sha256 of the canonical request (kind, backend, model and every output-affecting field:
prompts, image digests, seeds, sizes), holding only what that backend receives: a VLM call's
plan hints (``VLMRequest.hints``) are in the key of hint-reading backends (the preview VLM) and
never in a real model's. Logs written before that rule keyed every VLM call with its hints; such
a key is still accepted for the same request (``also``), so an old run resumes without repeating
a paid call and replays as recorded. Order of lookup for a request (under any of its keys):
1. already answered on this branch (a recorded ``ModelCalled`` visible here) -> reuse, no event;
2. the log being re-executed holds this very call next (resume) -> match it, no call;
3. replay: the original run's recording holds it -> copy it; otherwise ``ReplayDivergence``;
4. otherwise call the backend, store large outputs as blobs, append ``ModelCalled`` BEFORE the
   answer is used. A failed call is recorded with its error and raises ``BackendError``.
So a crash never repeats a call whose answer was recorded, and replay never calls a backend.

Provider jobs (``generators.jobs``: a backend with ``submit``/``collect``) add one step between the
submit and the answer: the job's ticket is appended as ``ProviderJobSubmitted`` right after the
provider accepted it, before any polling. Step 2 matches such events too: a call whose job is in
the log and not yet answered is *collected* (polled and downloaded), never submitted again. Only a
job the provider no longer knows is submitted anew, after ``ProviderJobLost`` says so. Ctrl-C while
a job runs leaves it running at the provider, and ``resume`` collects it. Replay copies a call's
job events from the recording with its answer, so a replayed log equals the original.

Spending (``engine.recording.budget``): before step 4 the budget checks the call's worst case
(``usage_bound`` of the backend, from the request) against what its branches spent; a call that
could cross ``--budget`` is not made: ``BudgetReached`` is appended and ``BudgetExceeded`` raised.
Every answer is metered: live calls add to ``CallStats.spent_usd``, answers served by the
recording (steps 1-3) to ``saved_usd`` (what they would have cost); unpriced models are named.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import io
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codirector.engine.recording.budget import Budget
from codirector.engine.recording.writer import RunWriter
from codirector.errors import BackendError, CodirectorError, ProviderJobFailed, ProviderJobUnknown, ReplayDivergence
from codirector.events import (
    JOB_EVENTS,
    ModelCalled,
    ProviderJobLost,
    ProviderJobSubmitted,
    RecordedEvent,
    canonical_json,
    event_class,
)
from codirector.events.calls import CallKind
from codirector.generators.base import (
    Backends,
    ImageInput,
    ImageRequest,
    ImageResult,
    VideoRequest,
    VideoResult,
    VLMRequest,
    reads_hints,
    request_fields,
)
from codirector.generators.jobs import JobTicket, SubmitsJobs, submits_jobs
from codirector.store.blobs import BlobStore
from codirector.store.vector_index import normalised, vector_from_bytes, vector_to_bytes

log = logging.getLogger("codirector.recorder")
RESUBMITS = 3  # how often a call whose job the provider lost is submitted again before the run stops


def request_key(kind: str, backend: str, model: str, request: dict[str, Any]) -> str:
    """The recording key of a request."""
    text = canonical_json({"kind": kind, "backend": backend, "model": model, "request": request})
    return hashlib.sha256(text.encode()).hexdigest()


def recorded_answers(events: Iterable[RecordedEvent]) -> dict[str, RecordedEvent]:
    """The answered calls among ``events`` by request key (failed calls left out; the first answer wins)."""
    answers: dict[str, RecordedEvent] = {}
    for ev in events:
        if ev.type == "ModelCalled" and ev.payload.get("error") is None:
            answers.setdefault(ev.payload["request_key"], ev)
    return answers


def request_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Readable differences between two recorded requests (changed fields, unified diff for text)."""
    lines: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        where = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            lines.extend(request_diff(a, b, where + "."))
        elif isinstance(a, str) and isinstance(b, str) and ("\n" in a or "\n" in b or len(a) + len(b) > 160):
            diff = difflib.unified_diff(a.splitlines(), b.splitlines(), "recorded", "now", lineterm="", n=1)
            lines.append(f"{where}:")
            lines.extend("    " + d for d in list(diff)[2:40])
        else:
            lines.append(f"{where}: {_short(a)} -> {_short(b)}")
    return lines


def _short(value: Any) -> str:
    text = canonical_json(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _bound(backend: object, request: Any) -> Callable[[], dict[str, Any] | None] | None:
    """The backend's worst case for ``request`` (``usage_bound``), when it offers one."""
    usage_bound = getattr(backend, "usage_bound", None)
    return None if usage_bound is None else lambda: usage_bound(request)


@dataclass(frozen=True)
class Embeddings:
    """Recorded embeddings: unit vectors, their blobs, and whether the model behind them is trained."""

    vectors: np.ndarray
    blobs: list[str]
    meaningful: bool
    model: str


@dataclass
class CallStats:
    live: int = 0
    reused: int = 0
    matched: int = 0
    replayed: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    spent_usd: float = 0.0  # live calls, priced
    saved_usd: float = 0.0  # answers served by the recording: what they would have cost
    unpriced: set[str] = field(default_factory=set)  # models whose calls have no known cost

    def cost_json(self) -> dict[str, Any]:
        return {"spent_usd": round(self.spent_usd, 9), "saved_usd": round(self.saved_usd, 9),
                "unpriced": sorted(self.unpriced)}


class CallRecorder:
    """Runs model calls through the recording for one branch run."""

    def __init__(
        self, writer: RunWriter, blobs: BlobStore, backends: Backends | None, *,
        known: dict[str, RecordedEvent] | None = None,
        recording: list[RecordedEvent] | None = None,
        on_call: Callable[[str, str], Any] | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.writer = writer
        self.blobs = blobs
        self.backends = backends
        self.known: dict[str, RecordedEvent] = dict(known or {})
        self.replay = recording is not None
        self._recording = recorded_answers(recording or [])
        self._recording_order = [e for e in recording or []
                                 if e.type == "ModelCalled" and e.payload.get("error") is None]
        self._recorded_jobs: dict[str, list[RecordedEvent]] = {}
        for ev in recording or []:
            if ev.type in JOB_EVENTS:
                self._recorded_jobs.setdefault(ev.payload["request_key"], []).append(ev)
        self.stats = CallStats()
        self.on_call = on_call  # progress hook: (kind, agent or purpose)
        self.budget = budget or Budget()
        if self.budget.capped and not self.replay:
            if backends is not None:
                self.budget.require_prices([(str(b.backend), str(b.model)) for b in
                                            (backends.vlm, backends.image, backends.video)]
                                           + [(str(backends.embedder.backend), str(backends.embedder.name))])
            self.budget.count(writer.story_id, writer.branch, writer.store.read(writer.story_id, writer.branch))
        writer.listeners.append(self._remember)

    def _remember(self, ev: RecordedEvent) -> None:
        for key, answer in recorded_answers([ev]).items():
            self.known.setdefault(key, answer)

    # -- the one path -------------------------------------------------------------------

    def call(
        self, kind: CallKind, backend: str, model: str, request: dict[str, Any], *, shot: int | None, agent: str | None,
        invoke: Callable[[], tuple[Any, bytes | None, dict[str, Any] | None]],
        also: Sequence[dict[str, Any]] = (),
        bound: Callable[[], dict[str, Any] | None] | None = None,
        job: tuple[SubmitsJobs, Any, Callable[[Any], tuple[Any, bytes | None, dict[str, Any] | None]]] | None = None,
    ) -> RecordedEvent:
        """The recorded answer to ``request``, calling the backend only if nothing recorded answers it.

        ``also``: older forms of the same request whose recorded answers are equally valid (looked
        up too, never written); a new call is recorded under ``request``'s key. ``bound``: the
        most usage the call can bill (checked against the budget before a live call). ``job``: for a
        backend that submits jobs, (backend, its request, result -> (response, blob bytes, usage));
        then ``invoke`` is not used.
        """
        key = request_key(kind, backend, model, request)
        keys = [key, *(request_key(kind, backend, model, a) for a in also)]
        for k in keys:
            if k in self.known:
                self.stats.reused += 1
                return self._served(self.known[k])
        pending = self.writer.peek()
        ticket: JobTicket | None = None  # a job of this call the log holds as submitted and not yet answered
        while (pending is not None and pending.type in ("ModelCalled", *JOB_EVENTS)
               and pending.payload["request_key"] in keys):
            matched = self.writer.one(event_class(pending.type).model_validate(pending.payload).at(shot))
            if matched.type == "ProviderJobSubmitted":
                ticket = JobTicket.from_json(matched.payload["ticket"])
            elif matched.type == "ProviderJobLost":
                ticket = None
            elif matched.payload.get("error") is None:
                self.stats.matched += 1
                return self._served(matched)
            else:
                ticket = None  # the failed attempt (its job with it) is matched; try the call again below
            pending = self.writer.peek()
        if self.replay:
            return self._served(self._from_recording(kind, backend, model, [request, *also], keys, shot))
        if ticket is None:  # a job already submitted is paid for whatever happens now: collect it
            self._within_budget(kind, backend, model, agent, key, shot, bound)
        if job is not None:
            invoke = self._job_invoke(kind, backend, model, key, shot, job, ticket)
        try:
            return self._live(kind, backend, model, agent, request, key, shot, invoke)
        finally:
            self.budget.release()  # the call's hold, unless its answer settled it: a failed call bills nothing

    def _job_invoke(
        self, kind: CallKind, backend: str, model: str, key: str, shot: int | None,
        job: tuple[SubmitsJobs, Any, Callable[[Any], tuple[Any, bytes | None, dict[str, Any] | None]]],
        ticket: JobTicket | None,
    ) -> Callable[[], tuple[Any, bytes | None, dict[str, Any] | None]]:
        """The live step of a provider job: submit (the ticket to the log at once) unless the log holds one, then
        collect; a job the provider lost is recorded as lost and submitted again (at most ``RESUBMITS`` times)."""
        jobs, job_request, to_answer = job

        def submitted() -> JobTicket:
            fresh = jobs.submit(job_request)
            self.writer.one(ProviderJobSubmitted(kind=kind, backend=backend, model=model, request_key=key,
                                                 ticket=fresh.to_json()).at(shot))
            return fresh

        def invoke() -> tuple[Any, bytes | None, dict[str, Any] | None]:
            current = ticket
            slot = getattr(jobs, "job_slot", None)
            with slot() if slot is not None else _no_slot():
                try:
                    current = current or submitted()
                    for attempt in range(RESUBMITS + 1):
                        try:
                            result = jobs.collect(current, job_request)
                            break
                        except ProviderJobUnknown as e:
                            self.writer.one(ProviderJobLost(request_key=key, job_id=current.job_id,
                                                            server=current.server, reason=e.message[:500]).at(shot))
                            if attempt == RESUBMITS:
                                raise
                            current = submitted()
                        except ProviderJobFailed:
                            raise  # the job is over: recorded as a failed call, and resume submits it again
                        except Exception as e:  # the job may still run (a timeout, the provider unreachable):
                            raise _JobStillOpen(e, current) from e  # keep its ticket live for resume
                except KeyboardInterrupt:
                    if current is not None:
                        log.warning("the %s job %s (%s) is still running at the provider and is recorded; "
                                    "`codirector resume` collects it without submitting it again",
                                    current.provider, current.job_id, kind)
                    raise
            response, blob, usage = to_answer(result)
            if isinstance(response, dict):
                response = {**response, "job": {"provider": current.provider, "job_id": current.job_id,
                                                "server": current.server}}
            return response, blob, usage

        return invoke

    def _served(self, answer: RecordedEvent) -> RecordedEvent:
        """An answer the recording gave: no call, and what it would have cost is saved."""
        p = answer.payload
        cost = self.budget.prices.cost(str(p["backend"]), str(p["model"]), p.get("usage"))
        if cost is None:
            self.stats.unpriced.add(str(p["model"]))
        else:
            self.stats.saved_usd += cost
        return answer

    def _within_budget(
        self, kind: CallKind, backend: str, model: str, agent: str | None, key: str, shot: int | None,
        bound: Callable[[], dict[str, Any] | None] | None,
    ) -> None:
        """Stop before a live call whose worst case would take spending past the budget (``BudgetReached``)."""
        if not self.budget.capped or self.writer.catching_up:  # catching up, a live call is a RunStateError anyway
            return
        worst = self.budget.over(backend, model, bound() if bound is not None else None)
        if worst is None:
            return
        mark = self.budget.reached(worst, kind=kind, backend=backend, model=model, agent=agent, request_key=key)
        self.writer.one(mark.at(shot))
        raise self.budget.exceeded(mark, shot=shot, story_id=self.writer.story_id, branch=self.writer.branch)

    def _from_recording(
        self, kind: CallKind, backend: str, model: str, forms: list[dict[str, Any]], keys: list[str], shot: int | None
    ) -> RecordedEvent:
        recorded = next((self._recording[k] for k in keys if k in self._recording), None)
        if recorded is None:
            raise self._divergence(kind, backend, model, forms, shot)
        self.stats.replayed += 1
        jobs = [e for e in self._recorded_jobs.get(recorded.payload["request_key"], [])
                if e.position < recorded.position]
        for ev in jobs:  # the job's ticket (and any loss) came before its answer in the original too
            self.writer.one(event_class(ev.type).model_validate(ev.payload).at(shot))
        return self.writer.one(ModelCalled.model_validate(recorded.payload).at(shot))

    def _divergence(
        self, kind: CallKind, backend: str, model: str, forms: list[dict[str, Any]], shot: int | None
    ) -> ReplayDivergence:
        """The error for a request the recording lacks, with a diff against the closest recorded one."""
        request = forms[0]
        agent = request.get("agent")
        candidates = [e for e in self._recording_order
                      if e.payload["kind"] == kind and e.shot == shot and e.payload.get("agent") == agent]
        candidates = candidates or [e for e in self._recording_order if e.payload["kind"] == kind]
        nearest = min(candidates, key=lambda e: len(request_diff(e.payload["request"], request)), default=None)
        diff: list[str] = []
        if nearest is not None:
            old = (nearest.payload["backend"], nearest.payload["model"])
            if old != (backend, model):
                diff.append(f"backend/model: {old[0]}/{old[1]} -> {backend}/{model}")
            recorded = nearest.payload["request"]  # compared with the form shaped like it (with or without hints)
            request = next((f for f in forms if set(f) == set(recorded)), request)
            diff.extend(request_diff(recorded, request))
        what = agent or request.get("purpose") or kind
        return ReplayDivergence(
            f"replay needs a {kind} call ({what}, shot {shot}) that the recording does not hold",
            hint="the code or settings changed this request since the run was recorded",
            kind=kind, shot=shot, agent=agent, diff=diff,
        )

    def _live(
        self, kind: CallKind, backend: str, model: str, agent: str | None, request: dict[str, Any], key: str,
        shot: int | None, invoke: Callable[[], tuple[Any, bytes | None, dict[str, Any] | None]],
    ) -> RecordedEvent:
        if self.on_call is not None:
            self.on_call(kind, agent or str(request.get("purpose", kind)))
        started = time.perf_counter()
        try:
            response, blob_bytes, usage = invoke()
        except _JobStillOpen as e:  # not a failed call: the job is recorded as submitted, resume collects it
            error = e.error if isinstance(e.error, CodirectorError) else BackendError(
                f"the {kind} backend {backend!r} failed while collecting its job: {type(e.error).__name__}: {e.error}")
            error.hint = (f"{error.hint}; " if error.hint else "") + (
                f"{e.ticket.provider} job {e.ticket.job_id} is recorded as submitted: `codirector resume` collects it "
                "without submitting it again")
            if error is e.error:
                raise error  # noqa: B904 - its own cause stays
            raise error from e.error
        except CodirectorError as e:
            self._record_failure(kind, backend, model, agent, request, key, shot, started, e.message)
            raise
        except Exception as e:  # a backend bug or an unexpected library error: record, then explain
            self._record_failure(kind, backend, model, agent, request, key, shot, started, f"{type(e).__name__}: {e}")
            raise BackendError(f"the {kind} backend {backend!r} failed: {type(e).__name__}: {e}",
                               hint="the failure is recorded; fix the backend and `codirector resume`") from e
        blob = self.blobs.put(blob_bytes) if blob_bytes is not None else None  # the blob lands first
        self.stats.live += 1
        self.stats.by_kind[kind] = self.stats.by_kind.get(kind, 0) + 1
        cost = self.budget.charge(backend, model, usage)
        if cost is None:
            self.stats.unpriced.add(model)
        else:
            self.stats.spent_usd += cost
        event = ModelCalled(
            kind=kind, backend=backend, model=model, agent=agent, request_key=key, request=request,
            response=response, response_blob=blob, duration_ms=round((time.perf_counter() - started) * 1000, 3),
            usage=usage,
        )
        return self.writer.one(event.at(shot))

    def _record_failure(
        self, kind: CallKind, backend: str, model: str, agent: str | None, request: dict[str, Any], key: str,
        shot: int | None, started: float, message: str,
    ) -> None:
        event = ModelCalled(kind=kind, backend=backend, model=model, agent=agent, request_key=key, request=request,
                            duration_ms=round((time.perf_counter() - started) * 1000, 3), error=message[:2000])
        self.writer.one(event.at(shot))

    # -- typed helpers, one per backend kind ----------------------------------------------

    def vlm(self, request: VLMRequest, *, shot: int | None) -> tuple[str, RecordedEvent]:
        """The VLM's raw text for ``request`` (recorded).

        Keyed with the hints for a hint-reading backend; otherwise by what the model receives, with
        the hinted form (how logs before this rule keyed it) looked up too. A replay has no backend
        to ask, so it looks up both forms: a hint-reading backend's calls were only ever recorded
        hinted, and the backend's name in the key keeps the two kinds of backend apart.
        """
        backends = self._backends()
        vlm = backends.vlm if backends is not None else None

        def invoke() -> tuple[Any, bytes | None, dict[str, Any] | None]:
            assert vlm is not None
            answer = vlm.complete(request)
            if answer.refusal:
                raise BackendError(f"the model refused the {request.agent} request: {answer.refusal}",
                                   hint="rephrase the story text or use another model")
            return {"text": answer.text, "model": answer.model}, None, answer.usage

        hinted = request_fields(request, hints=True)
        if not self.replay and vlm is not None and reads_hints(vlm):
            fields, also = hinted, []
        else:
            fields, also = request_fields(request), [hinted]
        ev = self.call("vlm", *self._names("vlm"), fields, shot=shot, agent=request.agent, invoke=invoke, also=also,
                       bound=_bound(vlm, request))
        return str(ev.payload["response"]["text"]), ev

    def image(self, request: ImageRequest, *, shot: int | None) -> tuple[str, RecordedEvent]:
        """Generate (or recall) an image; returns its blob digest."""
        backends = self._backends()

        def answer(result: ImageResult) -> tuple[Any, bytes | None, dict[str, Any] | None]:
            return {"width": result.width, "height": result.height, "model": result.model}, result.png, result.usage

        def invoke() -> tuple[Any, bytes | None, dict[str, Any] | None]:
            assert backends is not None
            return answer(backends.image.generate(request))

        image = backends.image if backends is not None else None
        ev = self.call("image", *self._names("image"), request_fields(request), shot=shot, agent=None, invoke=invoke,
                       bound=_bound(image, request), job=(image, request, answer) if submits_jobs(image) else None)
        return str(ev.payload["response_blob"]), ev

    def video(self, request: VideoRequest, *, shot: int | None) -> tuple[str, RecordedEvent]:
        """Generate (or recall) a clip; returns its blob digest."""
        backends = self._backends()

        def answer(result: VideoResult) -> tuple[Any, bytes | None, dict[str, Any] | None]:
            meta = {"frames": result.frames, "fps": result.fps, "width": result.width, "height": result.height,
                    "model": result.model}
            return meta, result.mp4, result.usage

        def invoke() -> tuple[Any, bytes | None, dict[str, Any] | None]:
            assert backends is not None
            return answer(backends.video.generate(request))

        video = backends.video if backends is not None else None
        ev = self.call("video", *self._names("video"), request_fields(request), shot=shot, agent=None, invoke=invoke,
                       bound=_bound(video, request), job=(video, request, answer) if submits_jobs(video) else None)
        return str(ev.payload["response_blob"]), ev

    def embed_texts(self, texts: list[str], *, shot: int | None) -> Embeddings:
        return self._embed({"texts": texts}, shot, lambda e: e.embed_texts(texts))

    def embed_images(self, images: list[ImageInput], *, shot: int | None) -> Embeddings:
        from PIL import Image

        def run(e: Any) -> np.ndarray:
            vectors: np.ndarray = e.embed_images([Image.open(io.BytesIO(im.data)) for im in images])
            return vectors

        return self._embed({"images": [{"blob": im.digest} for im in images]}, shot, run)

    def _embed(self, request: dict[str, Any], shot: int | None, run: Callable[[Any], np.ndarray]) -> Embeddings:
        backends = self._backends()

        def invoke() -> tuple[Any, bytes | None, dict[str, Any] | None]:
            assert backends is not None
            vectors = normalised(run(backends.embedder))
            digests = [self.blobs.put(vector_to_bytes(v)) for v in vectors]  # blobs before the event
            return {"vector_blobs": digests, "dim": int(vectors.shape[1]),
                    "meaningful": bool(backends.embedder.meaningful)}, None, {"inputs": len(digests)}

        ev = self.call("embed", *self._names("embedder"), request, shot=shot, agent=None, invoke=invoke)
        response = ev.payload["response"]
        digests = list(response["vector_blobs"])
        vectors = np.stack([vector_from_bytes(self.blobs.get(d)) for d in digests])
        return Embeddings(vectors, digests, bool(response["meaningful"]), str(ev.payload["model"]))

    def _backends(self) -> Backends | None:
        return self.backends

    def _names(self, kind: str) -> tuple[str, str]:
        """(backend, model) for ``kind``: from the recording in replay, else from the live backend."""
        if self.replay:
            recorded_kind = "embed" if kind == "embedder" else kind
            for ev in self._recording_order:
                if ev.payload["kind"] == recorded_kind:
                    return str(ev.payload["backend"]), str(ev.payload["model"])
            raise ReplayDivergence(f"replay needs a {kind} call, and the recording holds none", kind=recorded_kind)
        if self.backends is None:
            raise BackendError(f"no {kind} backend in this run")
        b = getattr(self.backends, kind)
        model = b.name if kind == "embedder" else b.model
        return str(b.backend), str(model)


@contextlib.contextmanager
def _no_slot() -> Iterator[None]:
    yield


class _JobStillOpen(Exception):
    """Collecting a job stopped for a reason that does not end the job (it may still run at the provider)."""

    def __init__(self, error: BaseException, ticket: JobTicket) -> None:
        super().__init__(str(error))
        self.error = error
        self.ticket = ticket

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

Spending (``engine.recording.budget``): before step 4 the budget checks the call's worst case
(``usage_bound`` of the backend, from the request) against what its branches spent; a call that
could cross ``--budget`` is not made: ``BudgetReached`` is appended and ``BudgetExceeded`` raised.
Every answer is metered: live calls add to ``CallStats.spent_usd``, answers served by the
recording (steps 1-3) to ``saved_usd`` (what they would have cost); unpriced models are named.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codirector.engine.recording.budget import Budget
from codirector.engine.recording.writer import RunWriter
from codirector.errors import BackendError, CodirectorError, ReplayDivergence
from codirector.events import ModelCalled, RecordedEvent, canonical_json
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
from codirector.store.blobs import BlobStore
from codirector.store.vector_index import normalised, vector_from_bytes, vector_to_bytes


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
        self, kind: str, backend: str, model: str, request: dict[str, Any], *, shot: int | None, agent: str | None,
        invoke: Callable[[], tuple[Any, bytes | None, dict[str, Any] | None]],
        also: Sequence[dict[str, Any]] = (),
        bound: Callable[[], dict[str, Any] | None] | None = None,
    ) -> RecordedEvent:
        """The recorded answer to ``request``, calling the backend only if nothing recorded answers it.

        ``also``: older forms of the same request whose recorded answers are equally valid (looked
        up too, never written); a new call is recorded under ``request``'s key. ``bound``: the
        most usage the call can bill (checked against the budget before a live call).
        """
        key = request_key(kind, backend, model, request)
        keys = [key, *(request_key(kind, backend, model, a) for a in also)]
        for k in keys:
            if k in self.known:
                self.stats.reused += 1
                return self._served(self.known[k])
        pending = self.writer.peek()
        while pending is not None and pending.type == "ModelCalled" and pending.payload["request_key"] in keys:
            matched = self.writer.one(ModelCalled.model_validate(pending.payload).at(shot))
            if matched.payload.get("error") is None:
                self.stats.matched += 1
                return self._served(matched)
            pending = self.writer.peek()  # the failed attempt is matched; try the call again below
        if self.replay:
            return self._served(self._from_recording(kind, backend, model, [request, *also], keys, shot))
        self._within_budget(kind, backend, model, agent, key, shot, bound)
        try:
            return self._live(kind, backend, model, agent, request, key, shot, invoke)
        finally:
            self.budget.release()  # the call's hold, unless its answer settled it: a failed call bills nothing

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
        self, kind: str, backend: str, model: str, agent: str | None, key: str, shot: int | None,
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
        self, kind: str, backend: str, model: str, forms: list[dict[str, Any]], keys: list[str], shot: int | None
    ) -> RecordedEvent:
        recorded = next((self._recording[k] for k in keys if k in self._recording), None)
        if recorded is None:
            raise self._divergence(kind, backend, model, forms, shot)
        self.stats.replayed += 1
        return self.writer.one(ModelCalled.model_validate(recorded.payload).at(shot))

    def _divergence(
        self, kind: str, backend: str, model: str, forms: list[dict[str, Any]], shot: int | None
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
        self, kind: str, backend: str, model: str, agent: str | None, request: dict[str, Any], key: str,
        shot: int | None, invoke: Callable[[], tuple[Any, bytes | None, dict[str, Any] | None]],
    ) -> RecordedEvent:
        if self.on_call is not None:
            self.on_call(kind, agent or str(request.get("purpose", kind)))
        started = time.perf_counter()
        try:
            response, blob_bytes, usage = invoke()
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
        self, kind: str, backend: str, model: str, agent: str | None, request: dict[str, Any], key: str,
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

        def invoke() -> tuple[Any, bytes | None, dict[str, Any] | None]:
            assert backends is not None
            result: ImageResult = backends.image.generate(request)
            return {"width": result.width, "height": result.height, "model": result.model}, result.png, result.usage

        ev = self.call("image", *self._names("image"), request_fields(request), shot=shot, agent=None, invoke=invoke,
                       bound=_bound(backends.image if backends is not None else None, request))
        return str(ev.payload["response_blob"]), ev

    def video(self, request: VideoRequest, *, shot: int | None) -> tuple[str, RecordedEvent]:
        """Generate (or recall) a clip; returns its blob digest."""
        backends = self._backends()

        def invoke() -> tuple[Any, bytes | None, dict[str, Any] | None]:
            assert backends is not None
            result: VideoResult = backends.video.generate(request)
            meta = {"frames": result.frames, "fps": result.fps, "width": result.width, "height": result.height,
                    "model": result.model}
            return meta, result.mp4, result.usage

        ev = self.call("video", *self._names("video"), request_fields(request), shot=shot, agent=None, invoke=invoke,
                       bound=_bound(backends.video if backends is not None else None, request))
        return str(ev.payload["response_blob"]), ev

    def embed_texts(self, texts: list[str], *, shot: int | None) -> Embeddings:
        return self._embed({"texts": texts}, shot, lambda e: e.embed_texts(texts))

    def embed_images(self, images: list[ImageInput], *, shot: int | None) -> Embeddings:
        from PIL import Image

        def run(e: Any) -> np.ndarray:
            return e.embed_images([Image.open(io.BytesIO(im.data)) for im in images])

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

"""Shared test helpers: a local PostgreSQL server, tiny open_clip models, scripted backends, and small
builders (story files, configs, a logged sample story).

Nothing here mocks codirector's own code; these are the real edges (a real database server,
a real open_clip model at toy size) made small enough for CPU tests. Real `codirector` processes
(forked, killed, raced) are in ``processes.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from glob import glob
from pathlib import Path
from typing import Any

from codirector.generators.preview import HashEmbedder as PreviewHashEmbedder

TINY_CLIP = "codirector-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def register_tiny_clip() -> str:
    """Register a 3.6M-parameter open_clip config (random weights; nothing downloaded)."""
    import open_clip

    if TINY_CLIP not in open_clip.list_models():
        d = Path(tempfile.mkdtemp(prefix="codirector-clipcfg-"))
        (d / f"{TINY_CLIP}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
        open_clip.add_model_config(d)
    return TINY_CLIP


def pg_bindir() -> Path | None:
    found = sorted(glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    exe = shutil.which("initdb")
    return Path(exe).parent if exe else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1, started with the Debian binaries."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.base = Path(tempfile.mkdtemp(prefix="codirector-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # postgres refuses to run as root
            shutil.chown(self.base, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> PostgresServer:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "codirector", "--auth=trust",
                  "-E", "UTF8", "--no-sync")
        opts = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.base / "log"),
                  "-w", "start")
        return self

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://codirector@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            time.sleep(0.1)
            shutil.rmtree(self.base, ignore_errors=True)


def png_bytes(color: tuple[int, int, int], size: int = 64, mark: int = 0) -> bytes:
    """A small PNG of one colour, with a stripe so different marks give different images."""
    import io

    from PIL import Image, ImageDraw

    im = Image.new("RGB", (size, size), color)
    ImageDraw.Draw(im).rectangle([mark % size, 0, mark % size + 7, size], fill=(255 - color[0], 40, 90))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def build_lineage_story(studio, embedder, story_id: str = "lighthouse"):  # type: ignore[no-untyped-def]
    """A small logged story: Mia -> Mia_red_scarf -> Mia_red_scarf_back, with views and embeddings.

    Shot 1 registers Mia (cast) and Tom; shot 2's video gives Mia_red_scarf (frame 12);
    shot 3's video gives Mia_red_scarf_back (frame 30). Returns the recorded events.
    """
    import io

    from PIL import Image

    from codirector.engine.loop.vectors import store_embedding
    from codirector.events import (
        EntityRegistered,
        KeyframeSelected,
        MemoryRetrieved,
        Reference,
        StoryCreated,
        ViewAdded,
        ViewSource,
    )

    blobs = studio.blobs

    def entity(name, desc, base, origin, kind="character"):  # type: ignore[no-untyped-def]
        vec = embedder.embed_texts([desc])[0]
        ref = store_embedding(blobs, story_id, name, vec, embedder.name)
        return EntityRegistered(name=name, kind=kind, description=desc, base_entity=base, origin=origin,
                                text_embedding=ref)

    def view(name, color, kind, shot, frame):  # type: ignore[no-untyped-def]
        data = png_bytes(color, mark=frame)
        blob = blobs.put(data)
        vec = embedder.embed_images([Image.open(io.BytesIO(data))])[0]
        ref = store_embedding(blobs, story_id, name, vec, embedder.name)
        source = ViewSource(kind=kind, shot=shot, round=1 if kind == "reference" else None,
                            frame_index=frame if kind == "video_frame" else None)
        return ViewAdded(entity=name, blob=blob, source=source, embedding=ref), blob

    store = studio.store
    title = "The Lighthouse Keeper"
    store.create_story(story_id, title=title, events=[StoryCreated(title=title, seed=7).at()])
    mia_view, mia_blob = view("Mia", (200, 180, 160), "reference", 1, 0)
    tom_view, _ = view("Tom", (60, 60, 200), "reference", 1, 0)
    kf1 = blobs.put(png_bytes((10, 10, 10), mark=1))
    drafts = [
        entity("Mia", "a young woman with short black hair and a grey coat", None, "cast").at(1),
        mia_view.at(1),
        entity("Tom", "an old lighthouse keeper with a white beard", None, "cast").at(1),
        tom_view.at(1),
        MemoryRetrieved(round=1, query="Mia and Tom at the door", retrieved_existing=["Mia", "Tom"],
                        references=[Reference(entity="Mia", blob=mia_blob, view_position=3, score=0.5)]).at(1),
        KeyframeSelected(round=1, blob=kf1, how="accepted", why="accepted in round 1").at(1),
    ]
    scarf_view, scarf_blob = view("Mia_red_scarf", (220, 20, 30), "video_frame", 2, 12)
    drafts += [
        entity("Mia_red_scarf", "a young woman with short black hair and a grey coat, now wearing a red scarf",
               "Mia", "video_analyzer").at(2),
        scarf_view.at(2),
        KeyframeSelected(round=1, blob=kf1, how="accepted", why="accepted in round 1").at(3),
    ]
    back_view, _ = view("Mia_red_scarf_back", (180, 30, 40), "video_frame", 3, 30)
    drafts += [
        MemoryRetrieved(round=1, query="Mia in her red scarf", retrieved_existing=["Mia_red_scarf"],
                        references=[Reference(entity="Mia_red_scarf", blob=scarf_blob, view_position=9,
                                              score=0.7)]).at(4),
        entity("Mia_red_scarf_back", "the same as Mia_red_scarf, seen from the back", "Mia_red_scarf",
               "video_analyzer").at(3),
        back_view.at(3),
    ]
    store.append(story_id, "main", drafts, expected_position=1)
    studio.index(story_id)  # bring the vector projection up to date
    return store.read(story_id)


# ---------------------------------------------------------------------------- scripted backends


class ScriptedVLM:
    """A VLM at the backend interface: answers queued per agent, else the plan-driven preview answer.

    ``calls`` lists every request it answered (agent, request), so tests can count real calls.
    """

    backend = "scripted"
    model = "scripted-vlm"
    reads_hints = True  # falls back to the plan-driven preview answers, so its keys must follow the hints

    def __init__(self) -> None:
        from codirector.generators.preview import PreviewVLM

        self._fallback = PreviewVLM()
        self.queues: dict[str, list[object]] = {}
        self.calls: list[tuple[str, object]] = []

    def enqueue(self, agent: str, *answers: object) -> ScriptedVLM:
        self.queues.setdefault(agent, []).extend(answers)
        return self

    def complete(self, request):  # type: ignore[no-untyped-def]
        import json as _json

        from codirector.generators.base import VLMAnswer

        self.calls.append((request.agent, request))
        queue = self.queues.get(request.agent)
        if queue:
            answer = queue.pop(0)
            if callable(answer):
                answer = answer(request)
            text = answer if isinstance(answer, str) else _json.dumps(answer)
            return VLMAnswer(text=text, model=self.model)
        return self._fallback.complete(request)


class HashEmbedder(PreviewHashEmbedder):
    """The preview hash embedder, trusted by default (``meaningful``), counting its calls; ``controlled``
    pins chosen texts to chosen vectors."""

    def __init__(self, dim: int = 16, meaningful: bool = True, controlled: dict[str, list[float]] | None = None):
        super().__init__(dim, meaningful=meaningful)
        self.controlled = controlled or {}
        self.calls = 0

    def embed_texts(self, texts):  # type: ignore[no-untyped-def]
        import numpy as np

        self.calls += 1
        out = []
        for t in texts:
            if t in self.controlled:
                v = np.asarray(self.controlled[t], dtype="float32")
                out.append(v / np.linalg.norm(v))
            else:
                out.append(self.vector(t.encode()))
        return np.stack(out)

    def embed_images(self, images):  # type: ignore[no-untyped-def]
        self.calls += 1
        return super().embed_images(images)


def scripted_backends(vlm=None, embedder=None):  # type: ignore[no-untyped-def]
    """Preview image/video generators with a scripted VLM and a hash embedder."""
    from codirector.generators.base import Backends
    from codirector.generators.preview import AnimaticVideoGenerator, StoryboardImageGenerator

    return Backends(vlm=vlm or ScriptedVLM(), image=StoryboardImageGenerator(), video=AnimaticVideoGenerator(),
                    embedder=embedder or HashEmbedder())


def write_story(path, shots: int = 3, **extra):  # type: ignore[no-untyped-def]
    """A small two-character story file with a costume change at shot 2 (tests' default)."""
    import yaml

    cast = [
        {"name": "Ada", "kind": "character", "description": "a tall woman with grey hair and a blue raincoat"},
        {"name": "Ben", "kind": "character", "description": "a small boy with red hair and a yellow jumper"},
    ]
    plan = [
        {"keyframe": "Ada and Ben on a pier at dawn", "motion": "they walk to the end of the pier",
         "uses": ["Ada", "Ben"], "group": "A"},
        {"keyframe": "Ada in a green hat beside Ben", "motion": "Ada adjusts her hat and laughs",
         "uses": ["Ada_hat", "Ben"], "group": "B",
         "evolves": [{"name": "Ada_hat", "base_entity": "Ada",
                      "description": "a tall woman with grey hair and a blue raincoat, now in a green hat"}]},
        {"keyframe": "Ben alone fishing off the pier", "motion": "Ben casts a line into the water",
         "uses": ["Ben"], "group": "B"},
        {"keyframe": "Ada in her green hat waving from a boat", "motion": "the boat drifts away",
         "uses": ["Ada_hat"], "group": "B"},
    ]
    data = {"title": "The Pier", "seed": 3, "cast": cast, "shots": [plan[i % len(plan)] for i in range(shots)]}
    data.update(extra)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


FAST_RUN = {"width": 64, "height": 48, "num_frames": 5, "fps": 4.0}


def fast_config(path, **run):  # type: ignore[no-untyped-def]
    """A config file: the preview profile with tiny frames (and any [run] overrides)."""
    table = {**FAST_RUN, **run}
    lines = ['profile = "preview"', "[run]"] + [f"{k} = {v!r}".replace("'", '"').replace("True", "true")
                                               .replace("False", "false") for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def shape(events):  # type: ignore[no-untyped-def]
    """Event types, with model calls spelled out (kind and agent), for exact sequence assertions."""
    out = []
    for e in events:
        if e.type == "ModelCalled":
            p = e.payload
            out.append(f"call:{p['kind']}" + (f":{p['agent']}" if p.get("agent") else ""))
        else:
            out.append(e.type)
    return out


class Counting:
    """Wraps a Backends set and counts every call that reaches a backend, by kind."""

    def __init__(self, backends):  # type: ignore[no-untyped-def]
        from collections import Counter

        self.counts: Counter[str] = Counter()
        inner = backends
        outer = self

        class Wrap:
            def __init__(self, kind, obj):  # type: ignore[no-untyped-def]
                self._kind, self._obj = kind, obj
                self.backend = obj.backend
                self.model = getattr(obj, "model", "")
                self.name = getattr(obj, "name", "")
                self.meaningful = getattr(obj, "meaningful", True)

            def complete(self, request):  # type: ignore[no-untyped-def]
                outer.counts[self._kind] += 1
                return self._obj.complete(request)

            def generate(self, request):  # type: ignore[no-untyped-def]
                outer.counts[self._kind] += 1
                return self._obj.generate(request)

            def embed_texts(self, texts):  # type: ignore[no-untyped-def]
                outer.counts[self._kind] += 1
                return self._obj.embed_texts(texts)

            def embed_images(self, images):  # type: ignore[no-untyped-def]
                outer.counts[self._kind] += 1
                return self._obj.embed_images(images)

        from codirector.generators.base import Backends

        self.backends = Backends(vlm=Wrap("vlm", inner.vlm), image=Wrap("image", inner.image),
                                 video=Wrap("video", inner.video), embedder=Wrap("embed", inner.embedder))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def chromium() -> str | None:
    """The headless browser for page tests (Debian's `chromium`), if installed."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def headless(url: str, *, screenshot: Path | None = None, size: tuple[int, int] = (1300, 2400)) -> str:
    """Load ``url`` in headless Chromium; returns the rendered DOM (and saves a screenshot if asked)."""
    exe = chromium()
    assert exe is not None
    profile = tempfile.mkdtemp(prefix="codirector-chromium-")
    flags = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}"]
    try:
        if screenshot is not None:
            subprocess.run([*flags, f"--screenshot={screenshot}", url], check=True, capture_output=True, timeout=120)
        dom = subprocess.run([*flags, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120)
        return dom.stdout
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def tiny_preview_config(folder: Path, **run) -> Path:  # type: ignore[no-untyped-def]
    """A config for real CLI runs that stay fast: preview backends, tiny frames, a tiny open_clip model."""
    cfg_json = folder / f"{TINY_CLIP}.json"
    cfg_json.write_text(json.dumps(TINY_CLIP_CONFIG))
    table = {**FAST_RUN, **run}
    lines = ['profile = "preview"', "[embedder]", 'backend = "open_clip"', f'model = "{TINY_CLIP}"',
             'pretrained = "none"', f'model_config = "{cfg_json}"', "[run]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    path = folder / "tiny.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------- the counting backends' runs


def counting_config(path: Path) -> Path:
    """The preview profile with every backend counting its calls (tests/codirector_test_plugins.py), tiny frames."""
    run = "\n".join(f"{k} = {json.dumps(v)}" for k, v in FAST_RUN.items())
    path.write_text('profile = "preview"\n[vlm]\nbackend = "counting"\n[image]\nbackend = "counting"\n'
                    f'[video]\nbackend = "counting"\n[embedder]\nbackend = "counting"\n[run]\n{run}\n')
    return path

def normalised(events: list[Any]) -> list[tuple[str, int | None, str]]:
    """Types and payloads; ids, timestamps and call durations (measurements) left out."""
    out = []
    for e in events:
        payload = dict(e.payload)
        payload.pop("duration_ms", None)
        out.append((e.type, e.shot, json.dumps(payload, sort_keys=True)))
    return out


def backend_keys(studio: Any, story_id: str) -> set[str]:
    """The call-log keys (as the counting backends write them) of every call the story's log recorded, on all its
    branches: what a backend must never be asked again."""
    import hashlib
    import io

    from PIL import Image

    keys = set()
    for b in studio.store.story(story_id).branches:
        for e in studio.log(story_id, b.name, types=["ModelCalled"]):
            if e.branch != b.name:
                continue
            req = e.payload["request"]
            if e.payload["kind"] == "embed" and "images" in req:
                req = {"images": [hashlib.sha256(Image.open(io.BytesIO(studio.blobs.get(i["blob"]))).tobytes())
                                  .hexdigest() for i in req["images"]]}
            keys.add(f"{e.payload['kind']}\t{hashlib.sha256(json.dumps(req, sort_keys=True).encode()).hexdigest()}")
    return keys

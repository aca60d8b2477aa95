"""Shared test helpers: a local PostgreSQL server, tiny open_clip models, small builders, and real
`codirector` processes started (and SIGKILLed) cheaply.

Nothing here mocks codirector's own code; these are the real edges (a real database server,
a real open_clip model at toy size, real OS processes) made small enough for CPU tests.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import Any

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


class HashEmbedder:
    """Deterministic unit vectors from content hashes; ``controlled`` pins chosen texts to vectors."""

    backend = "hash"

    def __init__(self, dim: int = 16, meaningful: bool = True, controlled: dict[str, list[float]] | None = None):
        self.dim = dim
        self.meaningful = meaningful
        self.name = f"hash-{dim}"
        self.controlled = controlled or {}
        self.calls = 0

    def _vec(self, data: bytes):  # type: ignore[no-untyped-def]
        import hashlib

        import numpy as np

        seed = int.from_bytes(hashlib.sha256(data).digest()[:8], "big")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype("float32")
        return v / np.linalg.norm(v)

    def embed_texts(self, texts):  # type: ignore[no-untyped-def]
        import numpy as np

        self.calls += 1
        out = []
        for t in texts:
            if t in self.controlled:
                v = np.asarray(self.controlled[t], dtype="float32")
                out.append(v / np.linalg.norm(v))
            else:
                out.append(self._vec(t.encode()))
        return np.stack(out)

    def embed_images(self, images):  # type: ignore[no-untyped-def]
        import numpy as np

        self.calls += 1
        return np.stack([self._vec(im.tobytes()) for im in images])


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


# ---------------------------------------------------------------------------- real codirector processes

TESTS = Path(__file__).resolve().parent


def counting_config(path: Path) -> Path:
    """The preview profile with every backend counting its calls (tests/codirector_test_plugins.py), tiny frames."""
    run = "\n".join(f"{k} = {json.dumps(v)}" for k, v in FAST_RUN.items())
    path.write_text('profile = "preview"\n[vlm]\nbackend = "counting"\n[image]\nbackend = "counting"\n'
                    f'[video]\nbackend = "counting"\n[embedder]\nbackend = "counting"\n[run]\n{run}\n')
    return path


def cli_env(home: Path, calls: Path | None = None, ttl: float = 1) -> dict[str, str]:
    """The environment of a `codirector` process with its own home and the counting backends, logging their calls
    to ``calls`` (default: ``home/calls.log``), with a short branch-lease TTL."""
    e = dict(os.environ)
    e.update(CODIRECTOR_HOME=str(home), CODIRECTOR_PLUGINS="codirector_test_plugins",
             CODIRECTOR_TEST_CALL_LOG=str(calls or home / "calls.log"), CODIRECTOR_LEASE_TTL=f"{ttl:g}",
             PYTHONPATH=os.pathsep.join([str(TESTS), e.get("PYTHONPATH", "")]))
    return e


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


def count_events(db: Path, type: str | None = None) -> int:
    """Events (of one type) in a SQLite store, read-only; 0 while the store or its tables do not exist yet."""
    query = "SELECT count(*) FROM events" + ("" if type is None else " WHERE type = ?")
    args = () if type is None else (type,)
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute(query, args).fetchone()[0])
    except sqlite3.Error:
        return 0


def kill_when(proc: Any, ready: Callable[[], bool], *, delay: float = 0.0, poll: float = 0.005) -> bool:
    """SIGKILL ``proc`` ``delay`` seconds after ``ready()`` first holds. True if the kill ended it; False if it
    exited on its own first (before ``ready()`` or during the delay): then there was no crash."""
    while not ready():
        if proc.poll() is not None:
            return False
        time.sleep(poll)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return bool(proc.returncode == -signal.SIGKILL)


def kill_after_shot(proc: Any, db: Path, shot: int) -> bool:
    """SIGKILL ``proc`` as soon as the SQLite store ``db`` holds ``shot`` completed shots (see ``kill_when``)."""
    return kill_when(proc, lambda: count_events(db, "ShotCompleted") >= shot)


# What every `codirector` command imports (as `codirector.cli` loads it: the commands, the engine, the store, the
# preview and counting backends); the fork server imports it once, and each command's process starts from there.
PRELOAD = (
    "codirector.cli", "codirector.commands.runs", "codirector.commands.director", "codirector.commands.queries",
    "codirector.engine.studio", "codirector.engine.loop.runs", "codirector.engine.director.direction",
    "codirector.engine.director.rounds", "codirector.engine.evaluation.evaluate", "codirector.engine.scale.local",
    "codirector.events.upcasting", "codirector.generators.preview", "codirector.generators.preview_director",
    "codirector.generators.profiles", "codirector.generators.preflight", "codirector.store.verify",
    "codirector.store.vector_index", "codirector.store.vector_search", "codirector.store.leases",
    "codirector_test_plugins", "alembic.command", "alembic.config", "alembic.runtime.migration", "alembic.script",
    "sqlalchemy.dialects.sqlite", "sqlalchemy.dialects.postgresql.psycopg", "psycopg", "yaml", "numpy",
    "numpy.random", "PIL.Image", "PIL.ImageOps", "PIL.BmpImagePlugin", "PIL.GifImagePlugin", "PIL.JpegImagePlugin",
    "PIL.PngImagePlugin", "PIL.PpmImagePlugin", "av", "faiss",
)

# The fork server: import PRELOAD, then for each request line (JSON: argv, env, cwd, out, err, hold) fork a child
# that takes that environment, folder and standard streams (files or FIFOs), draws fresh random seeds, waits
# for the test's signal if asked (``hold``: touch READY, wait for GO), and runs the CLI's entry point with ARGV
# (what `codirector ARGV` runs; its SystemExit ends the process with the command's exit code). The server answers
# "pid PID", and "exit PID CODE" (negative CODE: the signal) once that child has ended; it reaps a child only
# when the test says so ({"reap": PID}), so a pid the test may still signal is never reused meanwhile.
_FORK_SERVER = """
import gc, importlib, json, os, random, select, signal, sys, time
for name in sys.argv[1:]:
    importlib.import_module(name)
import codirector.cli
gc.freeze()  # the collector leaves what is imported alone: a child does not copy the whole heap when it collects

def say(line):
    os.write(1, line.encode() + b"\\n")

def child(req):
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.close(wake_r)
    os.close(wake_w)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    for fd, path in ((1, req["out"]), (2, req["err"])):
        os.dup2(os.open(path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    os.environ.clear()
    os.environ.update(req["env"])
    os.chdir(req["cwd"])
    random.seed()
    import numpy
    numpy.random.seed()
    if req["hold"]:
        ready, go = req["hold"]
        open(ready, "w").close()
        while not os.path.exists(go):
            time.sleep(0.002)
    sys.argv = ["codirector", *req["argv"]]
    codirector.cli.main()
    sys.exit(0)

wake_r, wake_w = os.pipe()
os.set_blocking(wake_r, False)
os.set_blocking(wake_w, False)
signal.set_wakeup_fd(wake_w)
signal.signal(signal.SIGCHLD, lambda *_: None)
running, buf = set(), b""
while True:
    ready = select.select([0, wake_r], [], [])[0]
    if wake_r in ready:
        while True:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                break
    for pid in sorted(running):
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None:
            running.discard(pid)
            say("exit %d %d" % (pid, -info.si_status if info.si_code != os.CLD_EXITED else info.si_status))
    if 0 in ready:
        chunk = os.read(0, 65536)
        if not chunk:
            break
        buf += chunk
        while b"\\n" in buf:
            line, buf = buf.split(b"\\n", 1)
            req = json.loads(line)
            if "reap" in req:
                os.waitpid(req["reap"], 0)
                continue
            pid = os.fork()
            if pid == 0:
                child(req)
            running.add(pid)
            say("pid %d" % pid)
"""


@dataclass
class Done:
    """An ended command: exit code and what it wrote (like ``subprocess.CompletedProcess``)."""

    returncode: int
    stdout: str
    stderr: str


class Forked:
    """One `codirector` process forked by a ``ForkServer``: poll, wait, SIGKILL, like ``subprocess.Popen``.

    With ``pipes``, ``stdout`` and ``stderr`` are text streams to read while it runs (FIFOs)."""

    def __init__(self, server: ForkServer, pid: int, out: Path | None, err: Path | None, pipes: bool) -> None:
        self.server, self.pid, self._out, self._err = server, pid, out, err
        self.returncode: int | None = None
        self.stdout: Any = None
        self.stderr: Any = None
        if pipes:  # the child opens its ends for writing as it starts: these opens wait for that
            assert out is not None and err is not None
            self.stdout, self.stderr = out.open(), err.open()

    def poll(self) -> int | None:
        if self.returncode is None:
            self._ended(self.server.exit_code(self.pid, timeout=0))
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._ended(self.server.exit_code(self.pid, timeout=timeout))
            if self.returncode is None:
                raise subprocess.TimeoutExpired(f"codirector (pid {self.pid})", timeout or 0)
        return self.returncode  # type: ignore[return-value]

    def _ended(self, code: int | None) -> None:
        if code is not None:
            self.returncode = code
            self.server.reap(self.pid)

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:  # not reaped yet: the pid is still this process's
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """With ``pipes``: read both streams to their end (each in its own thread), then wait; (stdout, stderr)."""
        texts = ["", ""]

        def drain(i: int, stream: Any) -> None:
            texts[i] = stream.read()

        readers = [threading.Thread(target=drain, args=(i, s)) for i, s in enumerate((self.stdout, self.stderr))]
        for t in readers:
            t.start()
        for t in readers:
            t.join(timeout)
        self.wait(timeout)
        return texts[0], texts[1]

    def output(self) -> tuple[str, str]:
        """Its stdout and stderr, when kept in files (empty where they went to /dev/null)."""
        return tuple(p.read_text() if p is not None and p.is_file() else "" for p in (self._out, self._err))  # type: ignore[return-value]


class ForkServer:
    """Starts real `codirector` processes without paying the interpreter's start-up and imports each time.

    One server process imports what a command imports (``PRELOAD``, ~2 s of CPU), then forks a child per
    command that runs the `codirector` entry point with the given arguments, environment and folder. Each child
    is a separate OS process with its own pid: it can be SIGKILLed at any moment, several can run at once, and
    its database, leases and files are its own. Use for tests that start many commands (kill-and-resume trials,
    races).
    """

    def __init__(self, preload: tuple[str, ...] = PRELOAD) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
                   CODIRECTOR_PLUGINS="codirector_test_plugins")
        self.folder = Path(tempfile.mkdtemp(prefix="codirector-fork-"))
        self.proc = subprocess.Popen([sys.executable, "-c", _FORK_SERVER, *preload], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)
        self._buf = b""
        self._count = 0
        self._pids: list[int] = []  # answered, not yet taken by ``start``
        self._exits: dict[int, int] = {}
        self._live: dict[int, Forked] = {}
        self._lock = threading.RLock()  # tests wait for their processes from several threads

    def _read(self, timeout: float | None) -> bool:
        """Take in the server's next line (a new pid or an exit); False if none came within ``timeout``."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], left)[0]:
                return False
            chunk = os.read(fd, 4096)
            assert chunk, f"the fork server ended (exit {self.proc.wait()})"
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        kind, *numbers = line.decode().split()
        if kind == "pid":
            self._pids.append(int(numbers[0]))
        else:
            self._exits[int(numbers[0])] = int(numbers[1])
        return True

    def exit_code(self, pid: int, timeout: float | None) -> int | None:
        """The exit code of a child (negative: the signal), or None if it has not ended within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while pid not in self._exits:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not self._read(left) and (deadline is None or time.monotonic() >= deadline):
                    return None
            return self._exits[pid]

    def _send(self, request: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        with self._lock:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()

    def reap(self, pid: int) -> None:
        with self._lock:
            self._exits.pop(pid, None)
            self._live.pop(pid, None)
            self._send({"reap": pid})

    def start(self, argv: list[str], env: dict[str, str], *, capture: bool = False, pipes: bool = False,
              cwd: Path | None = None, hold: tuple[Path, Path] | None = None) -> Forked:
        """Start ``codirector ARGV``. Its stdout and stderr: kept in files with ``capture`` (``Forked.output``),
        readable while it runs with ``pipes`` (``Forked.stdout``/``stderr``), else /dev/null. ``hold``: (READY,
        GO) files; the process touches READY once started, and runs the command once GO exists."""
        self._count += 1
        out = err = None
        if capture or pipes:
            out, err = self.folder / f"{self._count}.out", self.folder / f"{self._count}.err"
            if pipes:
                os.mkfifo(out)
                os.mkfifo(err)
        with self._lock:
            self._send({"argv": argv, "env": env, "cwd": str(cwd or os.getcwd()), "out": out and str(out),
                        "err": err and str(err), "hold": hold and [str(hold[0]), str(hold[1])]})
            while not self._pids:
                assert self._read(300), "the fork server did not fork"
            pid = self._pids.pop(0)
        proc = Forked(self, pid, out, err, pipes)
        self._live[pid] = proc
        return proc

    def run(self, argv: list[str], env: dict[str, str], *, timeout: float = 600, cwd: Path | None = None) -> Done:
        """Run ``codirector ARGV`` to its end; its exit code, stdout and stderr."""
        proc = self.start(argv, env, capture=True, cwd=cwd)
        code = proc.wait(timeout)
        return Done(code, *proc.output())

    def close(self) -> None:
        for proc in list(self._live.values()):
            proc.kill()
            proc.wait(60)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(60)
        shutil.rmtree(self.folder, ignore_errors=True)

"""Loop benchmark: the engine's own time per shot, with 200 entities in memory.

Run:  python benchmarks/bench_loop.py                 (20 shots, 200 cast entities; about a minute)
      python benchmarks/bench_loop.py --shots 40 --entities 500 --json out.json

Backends are instant stand-ins at the backend interfaces (the plan-driven VLM, a fixed PNG, a fixed
512x288 17-frame MP4, hash vectors of 512 dimensions); each is timed, and "engine time" is the
wall time of the shots minus the time spent inside backends. Everything else counts: hashing and
appending every event (durable SQLite commits), blob writes, the memory fold, the FAISS shortlist,
agent prompts and validation, decoding the clip and cutting its frames for the video analyzer.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from codirector.engine.studio import Studio
from codirector.generators.base import Backends, ImageResult, VideoResult
from codirector.generators.preview import HashEmbedder, PreviewVLM, StoryboardImageGenerator
from codirector.generators.video_io import encode_mp4


class Timed:
    """Wraps a backend and adds the time spent inside it to a shared counter."""

    def __init__(self, inner: Any, clock: dict[str, float]) -> None:
        self.inner = inner
        self.clock = clock
        self.backend = inner.backend
        self.model = getattr(inner, "model", "")
        self.name = getattr(inner, "name", "")
        self.meaningful = getattr(inner, "meaningful", True)

    def _timed(self, fn: Any, *args: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.clock["backend"] += time.perf_counter() - t

    def complete(self, request: Any) -> Any:
        return self._timed(self.inner.complete, request)

    def generate(self, request: Any) -> Any:
        return self._timed(self.inner.generate, request)

    def embed_texts(self, texts: list[str]) -> Any:
        return self._timed(self.inner.embed_texts, texts)

    def embed_images(self, images: list[Any]) -> Any:
        return self._timed(self.inner.embed_images, images)


class FixedImage:
    backend, model = "fixed", "fixed-png"

    def __init__(self) -> None:
        im = StoryboardImageGenerator().generate(
            __import__("codirector.generators.base", fromlist=["ImageRequest"]).ImageRequest(
                prompt="a fixed panel", purpose="keyframe", seed=0, width=512, height=288))
        self.png = im.png

    def generate(self, request: Any) -> ImageResult:
        # the request's seed goes into one pixel, so rounds and shots still get distinct blobs
        im = Image.open(io.BytesIO(self.png)).convert("RGB")
        im.putpixel((0, 0), (request.seed % 256, (request.seed >> 8) % 256, 0))
        buf = io.BytesIO()
        im.save(buf, format="PNG", compress_level=1)
        return ImageResult(buf.getvalue(), request.width, request.height, self.model)


class FixedVideo:
    backend, model = "fixed", "fixed-mp4"

    def __init__(self, width: int, height: int, frames: int, fps: float) -> None:
        rng = np.random.default_rng(0)
        base = Image.fromarray((rng.random((height // 8, width // 8, 3)) * 255).astype("uint8")).resize((width, height))
        self.mp4 = encode_mp4([np.asarray(base.rotate(i)) for i in range(frames)], fps)
        self.frames, self.fps, self.width, self.height = frames, fps, width, height

    def generate(self, request: Any) -> VideoResult:
        return VideoResult(self.mp4, self.frames, self.fps, self.width, self.height, self.model)


def write_story(folder: Path, entities: int, shots: int) -> Path:
    cast = []
    for i in range(entities):
        ref = folder / f"e{i}.png"
        Image.new("RGB", (64, 64), ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)).save(ref)
        cast.append({"name": f"entity_{i}", "kind": "character" if i % 3 else "prop",
                     "description": f"entity number {i}, with a distinctive {['red', 'blue', 'green'][i % 3]} look",
                     "reference": ref.name})
    plan = []
    for t in range(shots):
        used = [f"entity_{(t * 7 + j) % entities}" for j in range(3)]
        shot: dict[str, Any] = {"keyframe": f"shot {t + 1}: {' and '.join(used)} meet at the harbour",
                                "motion": "they talk and walk along the quay", "uses": used}
        if t % 5 == 2:
            base = used[0]
            shot["evolves"] = [{"name": f"{base}_coat_{t}", "base_entity": base,
                                "description": f"{base} now wearing a long coat"}]
            shot["uses"] = [*used, f"{base}_coat_{t}"]
        plan.append(shot)
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump({"title": "bench", "seed": 1, "cast": cast, "shots": plan}))
    (folder / "bench.toml").write_text("[run]\nwidth = 512\nheight = 288\nnum_frames = 17\nfps = 8.0\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=200)
    parser.add_argument("--shots", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        story = write_story(folder, args.entities, args.shots)
        clock = {"backend": 0.0}
        backends = Backends(vlm=Timed(PreviewVLM(), clock), image=Timed(FixedImage(), clock),
                            video=Timed(FixedVideo(512, 288, 17, 8.0), clock),
                            embedder=Timed(HashEmbedder(512, meaningful=True), clock))
        studio = Studio(folder / "home")
        studio.init()
        per_shot: list[float] = []
        starts: dict[int, tuple[float, float]] = {}

        class Progress:
            def shot(self, shot: int, total: int, prompt: str) -> None:
                starts[shot] = (time.perf_counter(), clock["backend"])

            def step(self, what: str) -> None:
                pass

            def done(self, shot: int) -> None:
                t0, b0 = starts[shot]
                per_shot.append((time.perf_counter() - t0) - (clock["backend"] - b0))

        t = time.perf_counter()
        studio.run(story, config=folder / "bench.toml", backends=backends, progress=Progress())
        total = time.perf_counter() - t
        memory = len(studio.memory("bench"))
        events = len(studio.log("bench"))
    ms = [x * 1000 for x in per_shot]
    result = {"entities_in_memory": memory, "shots": len(ms), "events": events,
              "engine_ms_per_shot": {"mean": statistics.mean(ms), "p50": statistics.median(ms),
                                     "p95": float(np.percentile(ms, 95)), "max": max(ms)},
              "run_seconds_total": total, "backend_seconds_total": clock["backend"]}
    print(f"\n## codirector loop benchmark: engine time per shot, {memory} entities in memory\n")
    print("| measure | value | target |")
    print("|---|---|---|")
    e = result["engine_ms_per_shot"]
    print(f"| engine time per shot (wall minus backend time), {len(ms)} shots | mean {e['mean']:.1f} ms, "
          f"p50 {e['p50']:.1f} ms, p95 {e['p95']:.1f} ms | <= 50 ms |")
    print(f"| whole run incl. registering {args.entities} cast entities | {total:.1f} s "
          f"(backends {clock['backend']:.1f} s), {events} events | |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

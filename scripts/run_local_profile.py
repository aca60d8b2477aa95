"""Run the ``local`` profile on real weights and report where each shot's seconds go.

    python scripts/run_local_profile.py [STORY] [--config F] [--home DIR] [--story-id ID] [--json]

Before anything runs, it checks what the ``local`` profile (plus ``--config``) needs: CUDA, the
diffusers weights of [image] and [video] on disk, the embedder's weights, and a server listening
at the [vlm] base_url. If something is missing it says what, and where it looked, and exits 2
without starting a run.

After the run, the split is computed from the log, not from timers around the code: each
``ModelCalled`` event holds its call's ``duration_ms``; a shot's wall time is the time between
its ``ShotStarted`` and ``ShotCompleted`` events. Per shot:
- keyframes: image calls (reference views and keyframe rounds);
- analysis: VLM calls (memory controller, keyframe analyzer, motion refiner, video analyzer);
- video: video calls;
- engine: the rest of the shot's wall time (embeddings, the log, memory, the vector index);
  embeddings are shown as part of it. The engine's share is engine / wall.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_STORY = Path(__file__).resolve().parents[1] / "examples" / "stories" / "lighthouse.yaml"
STAGES = ("keyframes", "analysis", "video", "engine")
_KIND_STAGE = {"image": "keyframes", "vlm": "analysis", "video": "video"}


# ---------------------------------------------------------------------------- the report (pure)


def _when(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def stage_report(events: Sequence[Any]) -> dict[str, Any]:
    """Seconds per shot by stage, their means, and the engine's share, from a branch's events."""
    started: dict[int, float] = {}
    finished: dict[int, float] = {}
    model: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for e in events:
        if e.type == "ShotStarted" and e.shot is not None:
            started.setdefault(e.shot, _when(e.recorded_at))
        elif e.type == "ShotCompleted" and e.shot is not None:
            finished[e.shot] = _when(e.recorded_at)
        elif e.type == "ModelCalled" and e.shot is not None:
            kind = e.payload["kind"]
            model[e.shot][_KIND_STAGE.get(kind, "embeddings")] += float(e.payload["duration_ms"]) / 1000.0
    shots = []
    for shot in sorted(s for s in started if s in finished):
        wall = finished[shot] - started[shot]
        spent = model[shot]
        row = {"shot": shot, "wall": round(wall, 3)}
        for stage in ("keyframes", "analysis", "video"):
            row[stage] = round(spent[stage], 3)
        row["engine"] = round(max(0.0, wall - row["keyframes"] - row["analysis"] - row["video"]), 3)
        row["embeddings"] = round(spent["embeddings"], 3)
        row["engine_share"] = round(row["engine"] / wall, 4) if wall > 0 else 0.0
        shots.append(row)
    n = len(shots)
    mean = {k: round(sum(r[k] for r in shots) / n, 3) if n else 0.0
            for k in ("wall", *STAGES, "embeddings")}
    share = round(mean["engine"] / mean["wall"], 4) if mean["wall"] > 0 else 0.0
    return {"shots": shots, "mean_seconds_per_shot": mean, "engine_share": share}


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{'shot':>4}  {'keyframes':>9}  {'analysis':>8}  {'video':>8}  {'engine':>8}  {'wall':>8}  engine share"]
    for r in report["shots"]:
        lines.append(f"{r['shot']:>4}  {r['keyframes']:>9.2f}  {r['analysis']:>8.2f}  {r['video']:>8.2f}  "
                     f"{r['engine']:>8.2f}  {r['wall']:>8.2f}  {r['engine_share']:>11.1%}")
    m = report["mean_seconds_per_shot"]
    lines.append(f"{'mean':>4}  {m['keyframes']:>9.2f}  {m['analysis']:>8.2f}  {m['video']:>8.2f}  "
                 f"{m['engine']:>8.2f}  {m['wall']:>8.2f}  {report['engine_share']:>11.1%}")
    lines.append(f"seconds per shot: keyframes {m['keyframes']:.2f}, analysis {m['analysis']:.2f}, video "
                 f"{m['video']:.2f}, engine {m['engine']:.2f} (of which embeddings {m['embeddings']:.2f}); "
                 f"the engine's share is {report['engine_share']:.1%}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- preflight


def _listening(url: str, timeout: float = 2.0) -> bool:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "localhost", port), timeout=timeout):
            return True
    except OSError:
        return False


def missing_pieces(config: Any) -> list[str]:
    """What the configured backends need and this machine lacks (empty: ready to run)."""
    from codirector.generators import registry
    from codirector.generators.diffusers_common import locate
    from codirector.generators.openai_client import resolve_base_url, safe_url

    missing: list[str] = []
    try:
        import torch

        if not torch.cuda.is_available():
            missing.append("CUDA: torch.cuda.is_available() is False (this script measures real weights on a GPU)")
    except ImportError:
        missing.append("torch is not installed")
    for kind in ("image", "video"):
        table = config.backend(kind)
        if table.backend != "diffusers":
            continue
        weights = locate(str(table.model or ""))
        if weights.root is None:
            missing.append(f"[{kind}] weights for {table.model!r}: not on disk (looked in "
                           f"{', '.join(weights.looked)}); `hf download {table.model}` or set [{kind}] model "
                           "to a local folder")
    emb = config.backend("embedder")
    ok, why = registry.usable("embedder", emb.backend, {**emb.options, "offline": True})  # measured: no download
    if not ok:
        missing.append(f"[embedder] {emb.model}/{emb.options.get('pretrained')}: {why}")
    vlm = config.backend("vlm")
    if vlm.backend == "openai":
        ok, why = registry.usable("vlm", vlm.backend, vlm.options)
        url = resolve_base_url(vlm.base_url if isinstance(vlm.base_url, str) else None)
        if not ok:
            missing.append(f"[vlm] {why}")
        elif not _listening(url):
            missing.append(f"[vlm] nothing listens at {safe_url(url)} (start the server, e.g. `ollama serve` and "
                           f"`ollama pull {vlm.model}`)")
    return missing


# ---------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("story", nargs="?", default=str(DEFAULT_STORY), help="story file (default: lighthouse)")
    parser.add_argument("--config", help="TOML overriding the local profile (models, base_url, [run] sizes)")
    parser.add_argument("--home", default=None, help="codirector home (default: CODIRECTOR_HOME or ./.codirector)")
    parser.add_argument("--story-id", default=None, help="id of the new story (default: from the file name + time)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)

    from codirector.engine.studio import Studio
    from codirector.errors import CodirectorError
    from codirector.generators.profiles import resolve

    try:
        config = resolve("local", args.config)
        missing = missing_pieces(config)
    except CodirectorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if missing:
        print("cannot run the local profile here; missing:", file=sys.stderr)
        for item in missing:
            print(f"  - {item}", file=sys.stderr)
        return 2

    story_id = args.story_id or f"{Path(args.story).stem}-local-{time.strftime('%Y%m%d-%H%M%S')}"
    studio = Studio(args.home)
    started = time.perf_counter()
    try:
        result = studio.run(args.story, profile="local", config=args.config, story_id=story_id)
    except CodirectorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - started
    report = stage_report(studio.log(story_id, result.branch))
    report.update({"story": story_id, "run_seconds": round(wall, 3), "notes": result.notes})
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for note in result.notes:
            print(f"note: {note}")
        print(f"{story_id}: {len(report['shots'])} shots in {wall:.1f} s")
        print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

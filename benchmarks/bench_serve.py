"""Studio benchmark: how long every page of a 100-shot story takes to render, and what the timeline weighs.

Run:  python benchmarks/bench_serve.py                 (a few minutes on 2 cores: most of it is the runs)
      python benchmarks/bench_serve.py --shots 40 --repeat 5 --json out.json
      python benchmarks/bench_serve.py --home H           (a home it built before: --keep H; nothing is run)

It runs the lighthouse story's shots repeated to ``--shots`` shots with the offline preview profile
(as ``bench_replay.py`` does), forks a branch 10 shots before the end and runs it, directs a brief
for 4 rounds, then serves the home with ``codirector serve``'s app on 127.0.0.1 and times each page
over real HTTP (server-side render + transfer on loopback; the browser's own layout time is not in
it): p50, p95 (nearest rank) and max of ``--repeat`` fetches after one warm-up fetch. Page weight
of the timeline: its HTML, the thumbnails it would load if every lazy image came into view, and,
for comparison, what full-size keyframes and eagerly loaded clips would have cost.
Target: every page under 1 s on this machine.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from codirector.engine.studio import Studio
from codirector.serve.app import create_app
from codirector.serve.server import StudioServer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_replay import long_story  # noqa: E402  (the same long story as the replay benchmark)

ROOT = Path(__file__).resolve().parents[1]
BRIEF = ROOT / "examples" / "briefs" / "dewline_serum.yaml"


def fetch(url: str) -> tuple[float, bytes]:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as r:
        body = r.read()
    return time.perf_counter() - t, body


def measure(base: str, path: str, repeat: int) -> dict[str, Any]:
    fetch(base + path)  # warm: thumbnails, snapshot caches, templates
    times, body = [], b""
    for _ in range(repeat):
        seconds, body = fetch(base + path)
        times.append(seconds)
    p95 = sorted(times)[math.ceil(0.95 * len(times)) - 1]  # nearest rank
    return {"page": path, "p50_ms": statistics.median(times) * 1000, "p95_ms": p95 * 1000,
            "max_ms": max(times) * 1000, "html_kib": len(body) / 1024}


def timeline_weight(base: str, studio: Studio, story: str) -> dict[str, Any]:
    _, body = fetch(f"{base}/timeline?story={story}&branch=main")
    html = body.decode()
    thumbs = re.findall(r'src="(/thumb/[0-9a-f]{64}\?w=\d+)"', html)
    lazy = len(re.findall(r'<img [^>]*loading="lazy"', html))
    thumb_bytes = sum(len(fetch(base + t)[1]) for t in thumbs)
    shots = re.findall(r'data-shot="(\d+)"', html)
    audit = studio.audit(story)
    full_images = sum(len(studio.blobs.get(r.blob)) for s in audit.shots if str(s.shot) in shots for r in s.rounds)
    clips = sum(len(studio.blobs.get(s.video.blob)) for s in audit.shots if str(s.shot) in shots and s.video)
    videos = re.findall(r"<video [^>]*>", html)
    return {"shots_on_page": len(shots), "html_kib": len(body) / 1024, "images": len(thumbs), "lazy_images": lazy,
            "thumbnail_kib": thumb_bytes / 1024, "full_size_images_kib": full_images / 1024,
            "clips_kib": clips / 1024, "clips_preload_none": sum('preload="none"' in v for v in videos),
            "clips": len(videos)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=20, help="timed fetches of each page (p95 is nearest-rank)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--home", type=Path, help="measure a home this benchmark built before (with --keep)")
    parser.add_argument("--keep", type=Path, help="build the home here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sid, built = "long", 0.0
        if args.home is not None:
            studio = Studio(args.home)
            n = len(studio.log(sid, types=["ShotPlanned"]))
        else:
            studio = Studio(args.keep or Path(tmp) / "home")
            studio.init()
            n = args.shots
            t = time.perf_counter()
            studio.run(long_story(Path(tmp) / "long.yaml", n), profile="preview", story_id=sid)
            fork = max(1, n - 9)
            studio.branch(sid, from_shot=fork, name="alt",
                          overrides={f"shots.{fork}.keyframe": "Mia alone in a storm"})
            studio.run_branch(sid, "alt")
            studio.direct(BRIEF, iterations=4, profile="preview", story_id="brief")
            built = time.perf_counter() - t
        events = studio.store.branch(sid, "main").head_position
        mid = n // 2
        pages = ["/", f"/timeline?story={sid}&branch=main", f"/timeline?story={sid}&branch=main&page={-(-n // 20)}",
                 f"/timeline?story={sid}&branch=alt", f"/shot?story={sid}&branch=main&shot={mid}",
                 f"/memory?story={sid}&branch=main", f"/memory?story={sid}&branch=main&shot={mid}",
                 f"/memory?story={sid}&branch=main&position={events // 3}",
                 f"/entity?story={sid}&branch=main&name=Mia_red_scarf", f"/compare?story={sid}&a=main&b=alt"]
        if "brief" in studio.workspace.story_ids():
            pages.append("/director?story=brief")
        with StudioServer.start(create_app(studio)) as server:
            rows = [measure(server.url, p, args.repeat) for p in pages]
            weight = timeline_weight(server.url, studio, sid)
        studio.close()
    print(f"\n## codirector studio benchmark ({n}-shot story, {events} events on main; built in {built:.0f} s)\n")
    print("| page | p50 | p95 | max | HTML |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| `{r['page']}` | {r['p50_ms']:.0f} ms | {r['p95_ms']:.0f} ms | {r['max_ms']:.0f} ms "
              f"| {r['html_kib']:.0f} KiB |")
    worst = max(r["max_ms"] for r in rows)
    print(f"\nslowest page: {worst:.0f} ms (target: every page under 1,000 ms)")
    w = weight
    print(f"\ntimeline page 1: {w['shots_on_page']} shots, {w['html_kib']:.0f} KiB of HTML, {w['images']} thumbnails "
          f"({w['lazy_images']} lazy) totalling {w['thumbnail_kib']:.0f} KiB if all come into view; "
          f"{w['clips_preload_none']} of {w['clips']} clips load nothing until played. Full-size keyframes would be "
          f"{w['full_size_images_kib']:.0f} KiB and the clips {w['clips_kib']:.0f} KiB.")
    if args.json:
        args.json.write_text(json.dumps({"pages": rows, "timeline_weight": weight, "shots": n, "events": events},
                                        indent=2))


if __name__ == "__main__":
    main()

"""Scale benchmark (docs/architecture.md §10): a batch of 16 stories at 1, 2 and 4 Ray workers on one machine.

Run:  pip install "codirector[ray]"; python benchmarks/bench_scale.py          (about 2 minutes)
      python benchmarks/bench_scale.py --stories 16 --workers 1,2,4 --shots 3 --json out.json

Backends simulate GPU latency (``sleepy_backends.py``: VLM 0.05 s, image 0.3 s, video 0.6 s per
call, preview outputs underneath), so the CPU is not the bottleneck and the workers' speed-up is
the engine's to lose. One local Ray serves every measurement (started once); each measurement
is a fresh home (SQLite + a blob folder) and a fresh pool of worker actors, timed from the first
job submitted to the last row back (actor start-up excluded, reported apart).
Reported per worker count: wall seconds, stories/minute, speed-up over 1 worker, and the engine's
own share of wall time per shot (job time minus time inside the backends, per shot).
Target: at 4 workers, >= 3.2x the 1-worker throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
CAST = [{"name": "Ada", "kind": "character", "description": "a tall woman with grey hair and a blue raincoat"},
        {"name": "Ben", "kind": "character", "description": "a small boy with red hair and a yellow jumper"}]
PLAN = [
    {"keyframe": "Ada and Ben on a pier at dawn", "motion": "they walk to the end of the pier", "uses": ["Ada", "Ben"]},
    {"keyframe": "Ada in a green hat beside Ben", "motion": "Ada adjusts her hat and laughs",
     "uses": ["Ada_hat", "Ben"],
     "evolves": [{"name": "Ada_hat", "base_entity": "Ada", "description": "Ada, now in a green hat"}]},
    {"keyframe": "Ben alone fishing off the pier", "motion": "Ben casts a line into the water", "uses": ["Ben"]},
    {"keyframe": "Ada in her green hat waving from a boat", "motion": "the boat drifts away", "uses": ["Ada_hat"]},
]


def write_stories(folder: Path, n: int, shots: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        data = {"title": f"Pier {i}", "seed": 100 + i, "cast": CAST,
                "shots": [PLAN[s % len(PLAN)] for s in range(shots)]}
        path = folder / f"pier{i:02d}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        out.append(path)
    return out


def config(folder: Path) -> Path:
    path = folder / "sleepy.toml"
    path.write_text('profile = "preview"\n[vlm]\nbackend = "sleepy"\n[image]\nbackend = "sleepy"\n'
                    '[video]\nbackend = "sleepy"\n[embedder]\nbackend = "sleepy"\n'
                    '[run]\nwidth = 64\nheight = 48\nnum_frames = 5\nfps = 4.0\n')
    return path


def measure(root: Path, stories: Path, cfg: Path, workers: int) -> dict[str, Any]:
    from codirector.engine.scale import open_pool
    from codirector.engine.scale.batch import collect, run_batch
    from codirector.engine.studio import Studio

    studio = Studio(home=root / f"home-{workers}")
    studio.init()
    t = time.perf_counter()
    pool = open_pool(studio.spec, workers=workers)
    if hasattr(pool, "pids"):
        pool.pids()  # the actors are up (their start-up is not the batch's)
    startup = time.perf_counter() - t
    items = collect([stories])
    t = time.perf_counter()
    result = run_batch(studio.workspace, items, pool, config=cfg)
    wall = time.perf_counter() - t
    pool.close()
    assert all(r.status == "completed" for r in result.rows), [r.to_json() for r in result.rows if not r.ok]
    shots = sum(len(yaml.safe_load(p.path.read_text())["shots"]) for p in items)
    engine = [r.engine_seconds for r in result.rows if r.engine_seconds is not None]
    per_shot = [e / len(yaml.safe_load(i.path.read_text())["shots"]) for e, i in zip(engine, items, strict=False)]
    job_time = sum(r.seconds for r in result.rows)
    studio.close()
    return {"workers": workers, "wall_s": round(wall, 2), "actor_startup_s": round(startup, 2),
            "stories": len(items), "shots": shots, "stories_per_min": round(60 * len(items) / wall, 2),
            "engine_s_per_shot": round(statistics.mean(per_shot), 4) if per_shot else None,
            "engine_share_of_job_time": round(sum(engine) / job_time, 4) if engine and job_time else None,
            "calls": sum(r.calls_made for r in result.rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stories", type=int, default=16)
    ap.add_argument("--shots", type=int, default=3)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    root = Path(tempfile.mkdtemp(prefix="codirector-bench-scale-"))
    os.environ["CODIRECTOR_PLUGINS"] = "sleepy_backends"
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    sys.path.insert(0, str(HERE))
    import ray

    os.environ.setdefault("RAY_TMPDIR", str(root / "ray"))
    t = time.perf_counter()
    ray.init(num_cpus=max(counts), include_dashboard=False, log_to_driver=False)
    print(f"local Ray started in {time.perf_counter() - t:.1f} s ({os.cpu_count()} CPU cores here)", flush=True)
    stories = write_stories(root / "stories", args.stories, args.shots)
    cfg = config(root)
    rows = []
    for w in counts:
        row = measure(root, stories[0].parent, cfg, w)
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = rows[0]["stories_per_min"]
    print(f"\n{'workers':>7} {'wall s':>8} {'stories/min':>12} {'speed-up':>9} {'engine s/shot':>14} "
          f"{'engine share':>13}")
    for r in rows:
        r["speedup"] = round(r["stories_per_min"] / base, 2)
        print(f"{r['workers']:>7} {r['wall_s']:>8} {r['stories_per_min']:>12} {r['speedup']:>8}x "
              f"{r['engine_s_per_shot']:>14} {r['engine_share_of_job_time']:>13}")
    target = next((r for r in rows if r["workers"] == 4), None)
    if target is not None:
        print(f"\ntarget: >= 3.2x at 4 workers: {'met' if target['speedup'] >= 3.2 else 'NOT met'} "
              f"({target['speedup']}x)")
    ray.shutdown()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

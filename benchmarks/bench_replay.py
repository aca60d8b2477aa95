"""Replay benchmark: replaying a recorded run against its recording, next to the original run.

Run:  python benchmarks/bench_replay.py                 (the 8-shot story, then a 100-shot story)
      python benchmarks/bench_replay.py --long 40 --json out.json

Both runs use the offline ``preview`` profile exactly as `codirector run` does (with its untrained
ViT-B-32 embedder when the weights are not on disk); the original run and its replay are timed in
the same process. Replay calls no model: it re-executes the engine (memory fold, retrieval, frame
sampling, validation, appends to a scratch branch) and compares every event.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from codirector.engine.studio import Studio

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "stories"


def long_story(path: Path, shots: int) -> Path:
    """The lighthouse story's 8 shots repeated (prompts numbered) up to ``shots`` shots."""
    base = yaml.safe_load((EXAMPLES / "lighthouse.yaml").read_text())
    plan = []
    declared: set[str] = {c["name"] for c in base["cast"]}
    for i in range(shots):
        shot = dict(base["shots"][i % len(base["shots"])])
        shot["keyframe"] = f"{shot['keyframe']} (scene {i + 1})"
        evolves = [e for e in shot.get("evolves", []) if e["name"] not in declared]
        declared.update(e["name"] for e in evolves)
        if evolves:
            shot["evolves"] = evolves
        else:
            shot.pop("evolves", None)
        plan.append(shot)
    base["shots"] = plan
    base["title"] = f"The Lighthouse Keeper, {shots} shots"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


def measure(studio: Studio, story: Path, story_id: str) -> dict[str, Any]:
    t = time.perf_counter()
    result = studio.run(story, profile="preview", story_id=story_id)
    original = time.perf_counter() - t
    t = time.perf_counter()
    report = studio.replay(story_id)
    replayed = time.perf_counter() - t
    assert report.identical, report.divergence
    return {"story": story_id, "shots": len(studio.log(story_id, types=["ShotCompleted"])),
            "events": result.head, "original_s": original, "replay_s": replayed,
            "replay_model_calls": report.model_calls, "speedup": original / replayed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long", type=int, default=100, help="shots in the long story")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        studio = Studio(Path(tmp) / "home")
        studio.init()
        rows = [measure(studio, EXAMPLES / "lighthouse.yaml", "lighthouse"),
                measure(studio, long_story(Path(tmp) / "long.yaml", args.long), f"lighthouse-{args.long}")]
    print("\n## codirector replay benchmark (preview profile, same process)\n")
    print("| story | shots | events | original run | replay | replay / original | model calls in replay | target |")
    print("|---|---|---|---|---|---|---|---|")
    for r, target in zip(rows, ["replay <= 3 s", ""], strict=True):
        print(f"| {r['story']} | {r['shots']} | {r['events']} | {r['original_s']:.2f} s | {r['replay_s']:.2f} s | "
              f"{r['replay_s'] / r['original_s']:.2f} | {r['replay_model_calls']} | {target} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

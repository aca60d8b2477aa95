"""Hosted-provider benchmark: many stories at once in one process against a provider whose jobs take a fixed time.

Run:  python benchmarks/bench_hosted.py                  (16 stories x 4 shots, 3 s jobs; about 6 minutes)
      python benchmarks/bench_hosted.py --stories 8 --job-seconds 1 --json out.json

Clips come from a fal-shaped loopback server (tests/hosted_loopback.py) whose every job takes
``--job-seconds``; agents, keyframes and the embedder are the counting preview backends (no model).
The same batch runs at ``--concurrency`` 1, 4 and 16 (``codirector batch --concurrency N``), each in a
fresh home, with the provider's cap (``max_in_flight``) set to ``--cap``, and once more at 16 with a cap
of 4. Reported, per level: the wall
time, its ratio to the longest single story (the longest job of the run at concurrency 1, measured in
the same process), and the most jobs the server ever saw in flight at once (never above the cap).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stories", type=int, default=16)
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--job-seconds", type=float, default=3.0)
    parser.add_argument("--levels", default="1,4,16,16@4",
                        help="concurrency levels; N@CAP runs N with the provider's cap at CAP instead of --cap")
    parser.add_argument("--cap", type=int, default=16, help="the provider's max_in_flight")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    from codirector.engine.studio import Studio

    from hosted_loopback import FAL_TEST_KEY, FalServer, fal_config
    from support import write_story

    work = Path(tempfile.mkdtemp(prefix="bench-hosted-"))
    os.environ.update(FAL_KEY=FAL_TEST_KEY, CODIRECTOR_PLUGINS="codirector_test_plugins",
                      CODIRECTOR_TEST_CALL_LOG=str(work / "calls.log"))
    folder = work / "stories"
    folder.mkdir()
    for i in range(args.stories):
        write_story(folder / f"s{i:02d}.yaml", shots=args.shots, title=f"Story {i}", seed=100 + i)

    levels = [(int(x.split("@")[0]), int(x.split("@")[1]) if "@" in x else args.cap) for x in args.levels.split(",")]
    rows: list[dict[str, Any]] = []
    longest = None
    for run, (level, cap) in enumerate(levels):
        server = FalServer(job_seconds=args.job_seconds)
        try:
            config = fal_config(work / f"fal{run}.toml", server, extra=f"max_in_flight = {cap}", width=64, height=48)
            studio = Studio(work / f"home{run}")
            started = time.perf_counter()
            result = studio.batch([folder], config=config, concurrency=level)
            wall = time.perf_counter() - started
            assert result.ok, [r.error for r in result.rows if not r.ok]
            if level == 1:
                longest = max(r.seconds for r in result.rows)
            rows.append({"concurrency": level, "wall_s": round(wall, 2), "jobs_submitted": len(server.submits()),
                         "max_in_flight_seen": server.max_in_flight, "cap": cap})
            print(f"concurrency {level:>2}: {wall:7.1f} s, {len(server.submits())} jobs, at most "
                  f"{server.max_in_flight} in flight (cap {cap})", flush=True)
        finally:
            server.close()
    for row in rows:
        row["longest_single_story_s"] = None if longest is None else round(longest, 2)
        row["ratio_to_longest_story"] = None if longest is None else round(row["wall_s"] / longest, 2)
    report = {"measured": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": platform.platform(),
              "cpus": os.cpu_count(), "stories": args.stories, "shots": args.shots, "job_seconds": args.job_seconds,
              "rows": rows}
    print()
    print(f"{args.stories} stories x {args.shots} shots, {args.job_seconds:g} s per clip job; "
          f"longest single story {longest:.1f} s" if longest else "")
    print("| concurrency | wall time | vs the longest story | most jobs in flight (cap) |")
    print("|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['concurrency']} | {row['wall_s']:.1f} s | {row['ratio_to_longest_story']}x | "
              f"{row['max_in_flight_seen']} ({row['cap']}) |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

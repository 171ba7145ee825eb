"""Benchmark: the data contracts (``jobcare.contracts.validate_world``) alone on one world, N runs in one
process, with the peak resident memory.

    python benchmarks/contracts.py --world /data/world-national-7 --runs 1
    python benchmarks/contracts.py --world .jobcare/world-demo-7 --runs 5

Prints one JSON line: each run's seconds, the median and the peak RSS (GB). The README's national-scale
section gives the figures (issue 16: the contracts' growth from the demo to the national world).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

# benchmarks/features.py would shadow the `features` package when run as `python benchmarks/...py`
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    from jobcare.contracts import validate_world
    from jobcare.stages import StageRecorder

    secs = []
    with StageRecorder(interval=0.05) as rec:
        for _ in range(a.runs):
            t0 = time.perf_counter()
            validate_world(a.world)
            secs.append(time.perf_counter() - t0)
    print(
        json.dumps(
            {
                "world": str(a.world),
                "runs": [round(s, 3) for s in secs],
                "median": round(statistics.median(secs), 3),
                "peak_rss_gb": round(rec.peak_rss_mib / 1024, 2),
            }
        )
    )


if __name__ == "__main__":
    main()

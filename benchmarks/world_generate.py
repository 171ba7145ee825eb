"""Benchmark: world generation time and peak memory per scale.

Each scale runs in a fresh child process (so peak RSS is that scale's alone) and the results go to
``benchmarks/results/world_generate.json``. Target: national scale in < 30 min and < 12 GB peak on 2 cores.

    python benchmarks/world_generate.py --scales demo national
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from jobcare.config import WorldConfig
from jobcare.world.generate import generate_world
t0 = time.perf_counter()
m = generate_world(WorldConfig(scale=sys.argv[1], seed=int(sys.argv[2])), sys.argv[3], show_progress=False)
print(json.dumps({"seconds": time.perf_counter() - t0,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rows": {k: v["rows"] for k, v in m["tables"].items()}}))
"""
TARGETS = {"national": {"seconds": 1800, "peak_rss_mib": 12 * 1024}}


def run(scale: str, seed: int) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"world-{scale}-") as out:
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
        p = subprocess.run(
            [sys.executable, "-c", CHILD, scale, str(seed), out],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if p.returncode != 0:
            raise SystemExit(f"{scale}: generation failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
        res = json.loads(p.stdout.strip().splitlines()[-1])
        res["disk_mib"] = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file()) / 2**20
    rows = res.pop("rows")
    res["seekers"], res["postings"] = rows["seekers"], rows["postings"]
    res["events"], res["impressions"] = rows["events"], rows["impressions"]
    if scale in TARGETS:
        res["meets_target"] = all(res[k] < v for k, v in TARGETS[scale].items())
        res["target"] = TARGETS[scale]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", nargs="+", default=["demo", "national"])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "world_generate.json")
    a = ap.parse_args()
    results = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d"),
        "scales": {},
    }
    for scale in a.scales:
        r = run(scale, a.seed)
        results["scales"][scale] = r
        print(
            f"{scale:9s} {r['seconds']:8.1f} s  peak {r['peak_rss_mib']:8.0f} MiB  "
            f"disk {r['disk_mib']:7.0f} MiB  {r['events']:>11,} events  {r['impressions']:>11,} impressions",
            flush=True,
        )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

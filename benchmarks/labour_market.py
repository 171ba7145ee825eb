"""Benchmark: labour-market information (:class:`serving.labour_market.LabourMarket`) on a world.

Measures, on one process (2 shared cores):
- ``read_s``: reading the world's tables from Parquet (what a refresh reads anyway);
- ``build_s``: building the precomputed arrays and the small-cell masks from those tables (best of
  ``--repeat`` builds);
- per query kind, p50/p99/max latency in ms over ``--queries`` calls, each returning the validated
  pydantic answer: ``occupation`` (random occupation, no region: every region and the nation),
  ``occupation_region`` (random occupation and region, random ``years``) and ``certificates`` (1-3
  random certificates, half of them with a region).
The clock is the service's default (:func:`features.store.serving_clock` of the world's span end).
Prints a summary and writes ``benchmarks/results/labour_market.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

# benchmarks/features.py would shadow the features package when this runs as a script
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
ROOT = Path(__file__).resolve().parents[1]


def _latency(fn, calls: list) -> dict:
    times = []
    for args in calls:
        t0 = time.perf_counter()
        fn(*args)
        times.append((time.perf_counter() - t0) * 1e3)
    t = np.array(times)
    return {
        "n": len(t),
        "p50_ms": round(float(np.percentile(t, 50)), 3),
        "p99_ms": round(float(np.percentile(t, 99)), 3),
        "max_ms": round(float(t.max()), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", default=str(ROOT / ".jobcare" / "world-demo-7"))
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "labour_market.json"))
    a = ap.parse_args()

    from features.store import serving_clock
    from jobcare.world.io import read_manifest, read_tables
    from serving.labour_market import LabourMarket

    manifest = read_manifest(a.world)
    as_of = serving_clock(manifest["span"]["end"])
    names = [
        "occupations",
        "occupation_groups",
        "regions",
        "majors",
        "certificates",
        "postings",
        "posting_certificates",
        "courses",
        "seekers",
        "events",
    ]
    t0 = time.perf_counter()
    tables = read_tables(a.world, names)
    read_s = time.perf_counter() - t0
    builds = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        lm = LabourMarket(tables, as_of)
        builds.append(time.perf_counter() - t0)

    rng = np.random.default_rng(a.seed)
    occ, reg, cert = lm.occ_ids_, lm.region_ids_, lm.cert_ids_
    n = a.queries
    q_occ = [(int(o),) for o in rng.choice(occ, n)]
    q_reg = [
        (int(o), int(r), int(y))
        for o, r, y in zip(rng.choice(occ, n), rng.choice(reg, n), rng.integers(1, 3, n))
    ]
    q_cert = [
        (
            [int(c) for c in rng.choice(cert, rng.integers(1, 4), replace=False)],
            int(r) if rng.random() < 0.5 else None,
        )
        for r in rng.choice(reg, n)
    ]
    for args in q_occ[:10]:  # warm-up (pydantic's first validation, numpy paths)
        lm.occupation(*args)
    result = {
        "world": str(Path(a.world).name),
        "as_of": as_of.isoformat(),
        "sizes": {
            "seekers": len(tables["seekers"]),
            "postings": len(tables["postings"]),
            "events": len(tables["events"]),
            "occupations": len(occ),
            "regions": len(reg),
            "years": lm.years_,
        },
        "read_s": round(read_s, 3),
        "build_s": round(min(builds), 3),
        "build_s_all": [round(b, 3) for b in builds],
        "occupation": _latency(lm.occupation, q_occ),
        "occupation_region": _latency(lm.occupation, q_reg),
        "certificates": _latency(lm.certificates, q_cert),
        "shown_share": {
            "applicants_cells": round(float((~lm.applicants_mask_).mean()), 4),
            "hires_cells": round(float((~lm.hires_mask_).mean()), 4),
            "new_seekers_cells": round(float((~lm.new_seekers_mask_).mean()), 4),
        },
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "targets": {"build_s": 30, "query_p99_ms": 5},
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"read {result['read_s']} s, build {result['build_s']} s (target <= 30 s)")
    for kind in ("occupation", "occupation_region", "certificates"):
        r = result[kind]
        print(f"{kind:>18}: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms over {r['n']}")
    print("shown share of people cells:", result["shown_share"])
    print("wrote", a.out)


if __name__ == "__main__":
    main()

"""Benchmark: the feature tables of a world, one table at a time (``feature_tables/<table>`` stages).

    python benchmarks/feature_tables.py --world W [--reference-competency] [--out FILE]

Builds and writes every feature table of ``features.tables.TABLES`` into a temporary folder, as
``jobcare features apply`` does, with each table's seconds and the peak memory (``jobcare.stages``).
``--reference-competency`` also times the row-by-row ``seeker_competency`` build it replaced
(``tests/reference_competency.py``), alone on the same tables. Writes
``benchmarks/results/feature_tables.json`` (``--out``; a run appends to that file's list).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/features.py would shadow the `features` package when run as `python benchmarks/...`
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
ROOT = HERE.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=Path, required=True)
    ap.add_argument("--reference-competency", action="store_true", help="also time the row-by-row build")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "feature_tables.json")
    a = ap.parse_args()

    from features.tables import WORLD_TABLES, build_feature_tables
    from jobcare.stages import StageRecorder
    from jobcare.world.io import read_tables

    with tempfile.TemporaryDirectory() as tmp, StageRecorder() as rec:
        t0 = time.perf_counter()
        rows = build_feature_tables(a.world, Path(tmp))
        total = time.perf_counter() - t0
    res = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "world": str(a.world),
        "rows": rows,
        "seconds": round(total, 2),
        "peak_rss_mib": round(rec.peak_rss_mib),
        "tables": {k.split("/", 1)[1]: round(v["seconds"], 2) for k, v in rec.stages.items()},
    }
    if a.reference_competency:
        sys.path.insert(0, str(ROOT))
        from tests.reference_competency import reference_seeker_competency

        t = read_tables(a.world, WORLD_TABLES)
        t0 = time.perf_counter()
        reference_seeker_competency(t, len(t["occupation_groups"]))
        res["reference_competency_seconds"] = round(time.perf_counter() - t0, 2)
    print(json.dumps(res, indent=2))
    runs = json.loads(a.out.read_text()) if a.out.exists() else []
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps([*runs, res], indent=2) + "\n")


if __name__ == "__main__":
    main()

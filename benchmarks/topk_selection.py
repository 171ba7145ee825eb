"""Benchmark: choosing a request's top k among the allowed items of a catalogue, as the request path does
for the two-tower and rule sources (``training.candidates.base.top_k_allowed``), against the selection it
replaced: every score of the catalogue with the disallowed items set to -inf, then one ``np.partition``.

At the national catalogue only about 5% of the 200,000 postings are open at a moment, and ``np.partition``
slows down badly on an array that is mostly one repeated value (-inf): in a py-spy profile of the national
retrain's posting ranker rows, that selection took 68% of the time. Same answers (tested in
``tests/unit/test_request_path.py``); this measures the time. Writes
``benchmarks/results/topk_selection.json``.

    python benchmarks/topk_selection.py [--repeats 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

from training.candidates.base import _best, top_k_allowed  # noqa: E402


def masked_partition(scores: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """The replaced selection (same result when more than k items are allowed)."""
    return _best(np.where(mask, scores, -np.inf), k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "topk_selection.json")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for n in (5_000, 200_000):
        scores = rng.standard_normal(n).astype(np.float32)
        for share in (0.05, 0.3, 1.0):
            mask = rng.random(n) < share
            assert masked_partition(scores, mask, a.k).tolist() == top_k_allowed(scores, mask, a.k).tolist()
            row = {"catalogue": n, "allowed_share": share, "k": a.k}
            for name, fn in (
                ("masked_partition_ms", masked_partition),
                ("gather_then_select_ms", top_k_allowed),
            ):
                t0 = time.perf_counter()
                for _ in range(a.repeats):
                    fn(scores, mask, a.k)
                row[name] = round((time.perf_counter() - t0) / a.repeats * 1e3, 3)
            rows.append(row)
            print(row, flush=True)
    res = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__},
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()

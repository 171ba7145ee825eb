"""Benchmark: the parts of the retrain changed for the ninth national run, against an earlier revision.

    python benchmarks/national_parts.py --world W [--against 9ee5abb] [--als] [--out FILE]

Times, one after the other in this process, the current code and the code of ``--against`` (its
``features/tables.py`` and ``training/interactions.py``, read with ``git show``) on the same world's tables:
``seeker_activity``, ``posting_popularity`` and ``world_interactions`` per item type (events before the
last 90 days, the test window's cutoff), and checks that both give equal frames
(``pandas.testing.assert_frame_equal``). ``--als`` also fits ALS alone on one thread on the posting
interactions (the default ``ALSParams``, which ``configs/demo.yaml`` keeps), with the matrix's shape.
``unique``: ``np.unique`` (numpy 2.4 hashes) against ``jobcare.ids.unique_sorted`` (a sort) on the
world's own arrays: the posting interactions' users (stage one's user ids) and the packed (seeker, day)
keys of ``seeker_activity``. Appends to
``benchmarks/results/national_parts.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/features.py would shadow the `features` package when run as `python benchmarks/...`
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
ROOT = HERE.parent


def module_at(rev: str, path: str, name: str, tmp: str):
    """The module ``path`` as it was at ``rev``."""
    src = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    file = Path(tmp) / f"{name}.py"
    file.write_text(src.stdout)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(fn, *args) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args)
    return round(time.perf_counter() - t, 2), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=Path, required=True)
    ap.add_argument(
        "--against", default="9ee5abb", help="the revision to compare with (the eighth run's code)"
    )
    ap.add_argument("--als", action="store_true", help="also fit ALS alone on one thread (postings)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "national_parts.json")
    a = ap.parse_args()

    import pandas as pd

    from features import tables as ft
    from jobcare.config import ALSParams, EventWeights
    from jobcare.world.io import read_manifest, read_tables
    from training import interactions as wi

    t = read_tables(a.world, ["events", "seekers", "postings"])
    end = pd.Timestamp(read_manifest(a.world)["span"]["end"])
    cutoff = end - pd.Timedelta(days=90)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    res = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "world": str(a.world),
        "events": len(t["events"]),
        "code": head.stdout.strip(),
        "against": a.against,
        "seconds": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        old_ft = module_at(a.against, "features/tables.py", "tables_before", tmp)
        old_wi = module_at(a.against, "training/interactions.py", "interactions_before", tmp)
        cases = {
            "seeker_activity": lambda m: m.seeker_activity(t["events"], t["seekers"], end),
            "posting_popularity": lambda m: m.posting_popularity(t["postings"], t["events"]),
            **{
                f"world_interactions/{it}": (
                    lambda m, it=it: m.world_interactions(t["events"], it, cutoff, EventWeights())
                )
                for it in ("posting", "course", "certificate")
            },
        }
        for name, call in cases.items():
            now, before = (ft, old_ft) if "/" not in name else (wi, old_wi)
            s_now, got = timed(call, now)
            s_before, want = timed(call, before)
            pd.testing.assert_frame_equal(got, want)  # raises if a value, dtype or the order differs
            res["seconds"][name] = {"now": s_now, "before": s_before, "rows": len(got), "equal": True}
            print(name, res["seconds"][name], flush=True)
            del got, want
    import numpy as np

    from jobcare.ids import unique_sorted

    inter = wi.world_interactions(t["events"], "posting", cutoff, EventWeights())
    ev = t["events"][t["events"]["event_type"].isin(["view", "apply", "hire", "enrol"])]
    day = np.floor(ft._days(ev["ts"])).astype("int64")
    arrays = {"posting users": inter["user"].to_numpy(), "seeker days": ft._pack(ev["seeker_id"], day)}
    res["unique"] = {}
    for name, arr in arrays.items():
        s_hash, want = timed(np.unique, arr)
        s_sort, got = timed(unique_sorted, arr)
        assert np.array_equal(got, want)
        res["unique"][name] = {
            "np.unique": s_hash,
            "unique_sorted": s_sort,
            "values": len(arr),
            "distinct": len(got),
        }
        print("unique", name, res["unique"][name], flush=True)
    if a.als:
        from training.candidates.als import ALSRecommender

        als = ALSRecommender(**ALSParams().model_dump(), num_threads=1)  # BLAS on one thread in fit
        s, _ = timed(als.fit, inter)
        users, items = als.user_items_.shape
        res["als_posting_one_thread"] = {
            "seconds": s,
            "users": users,
            "items": items,
            "nonzeros": int(als.user_items_.nnz),
            **ALSParams().model_dump(),
        }
        print("als", res["als_posting_one_thread"], flush=True)
    runs = json.loads(a.out.read_text()) if a.out.exists() else []
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps([*runs, res], indent=2) + "\n")


if __name__ == "__main__":
    main()

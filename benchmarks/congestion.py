"""Benchmark: congestion-aware re-ranking (``serving.congestion``) in closed loop on the demo world.

Two measurements, as in the README's "Congestion-aware ranking":

- **Seeker-side NDCG@10, offline and unbiased**: the world's explore slates (postings, with an apply), each
  reordered by the champion's score and by that score discounted with each posting's congestion at the
  request's moment (:func:`serving.congestion.expected_congestion` over
  :meth:`training.offers.OfferIndex.load`), paired bootstrap over requests, in two windows before
  ``--from``: the weight to roll out is **chosen** on the ``--ndcg-days`` that end ``--report-days`` before
  ``--from`` (the largest of ``--weights`` whose point loss is at most 3%), and its NDCG cost is
  **reported** on the last ``--report-days``, which the choice never saw (``--report-days 0``: chosen and
  reported on one window, as the first version did). Use a champion trained with ``train.until`` at or
  before ``--from - report-days`` for both windows to be out of its training data.
- **Full rollout in closed loop** (``evaluation.online_ab.run_online_ab`` with both arms the same policy,
  so the whole market runs it and no arm interferes with another): applies, hires, applicants per opening
  (mean, Gini, share of open postings with none) over every continued apply, per seed, for the champion
  and the champion with the stage at each rolled-out weight.

    python benchmarks/congestion.py [--from 2025-10-02] [--days 60] [--ndcg-days 30] [--report-days 30]
        [--seeds 1 2 3 4] [--weights ...] [--config configs/serving.yaml]

Writes ``benchmarks/results/congestion.json``. Needs `make demo` (world and registry).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# benchmarks/features.py would shadow the `features` package when run as `python benchmarks/...py`
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

CHAMP = "models:/jobcare-postings@champion"


def market(out: Path, tables: dict, cut: pd.Timestamp, end: pd.Timestamp) -> dict:
    """Over every continued apply: applies, hires and the postings side of the online report
    (:func:`evaluation.online_ab.postings_side`) with every seeker in one group (both arms run one policy)."""
    from evaluation.online_ab import postings_side

    ev = pd.read_parquet(out / "events.parquet")
    first = int(pd.read_parquet(out / "sessions.parquet", columns=["session_id"])["session_id"].min())
    post = ev[(ev["session_id"] >= first) & (ev["item_type"] == "posting")]
    everyone = pd.Series("all", index=tables["seekers"]["seeker_id"].to_numpy())
    side = postings_side({"events": ev}, tables["postings"], everyone, cut, end, first)["all"]
    return {
        "applies": int((post["event_type"] == "apply").sum()),
        "hires": int((post["event_type"] == "hire").sum()),
        **{k: round(v, 3) for k, v in side.items() if k != "n_postings"},
    }


def offline_ndcg(cfg, tables: dict, start: pd.Timestamp, end: pd.Timestamp, weights) -> dict:
    """The champion's explore-slate NDCG@10 in [start, end) and each weight's paired difference."""
    from features import store as fstore
    from serving.congestion import discount, expected_congestion
    from training import tracking
    from training.bundle import load_bundle
    from training.offers import OfferIndex
    from training.request_path import context
    from training.stage_two import explore_rows, ndcg_by_request

    tracking.start(cfg.tracking)
    b = load_bundle(CHAMP)
    repo = cfg.features.repo
    ctx = context(repo, len(tables["competency_units"]))
    store = fstore.open_store(repo)
    data = explore_rows("posting", tables, store, repo, ctx, cfg.candidates, start, end, 5000, 0, False, None)
    ex = data.rows[(data.rows["shown"] == 1).to_numpy()]
    has_pos = ex.groupby("request_id")["label"].max() > 0
    base = b.ranker.predict(ex[b.features])
    req = data.requests.set_index("request_id")
    offers = OfferIndex(tables, "posting")
    cong = np.zeros(len(ex))
    for rid, idx in ex.groupby("request_id").indices.items():
        ids, applied, left = offers.load(pd.Timestamp(req.at[rid, "event_timestamp"]))
        c = pd.Series(expected_congestion(applied, left), index=ids)
        cong[idx] = c.reindex(ex["item_id"].to_numpy()[idx], fill_value=0.0).to_numpy()

    def keep(nd):
        return nd[has_pos.reindex(nd.index).to_numpy()]

    nd0 = keep(ndcg_by_request(ex, base))
    out = {
        "window": [str(start), str(end)],
        "model": f"{CHAMP} (run {b.meta.get('run_id')}, trained until {b.meta.get('trained_until')})",
        "requests_with_apply": int(has_pos.sum()),
        "champion_ndcg_at_10": round(float(nd0.mean()), 4),
    }
    for w in weights:
        nd = keep(ndcg_by_request(ex, discount(base, cong, w)))
        d = (nd - nd0).to_numpy()
        boot = np.random.default_rng(1).choice(d, (2000, d.size)).mean(1)
        out[f"w{w:g}"] = {
            "ndcg_at_10": round(float(nd.mean()), 4),
            "diff": round(float(d.mean()), 4),
            "diff_ci95": [round(float(np.quantile(boot, q)), 4) for q in (0.025, 0.975)],
            "relative": round(float(d.mean() / nd0.mean()), 4),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=Path, default=Path(".jobcare/world-demo-7"))
    ap.add_argument("--config", type=Path, default=Path("configs/serving.yaml"))
    ap.add_argument("--from", dest="from_", default="2025-10-02")
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--ndcg-days", type=int, default=30, help="the window the weight is chosen on")
    ap.add_argument("--report-days", type=int, default=30, help="the last days before --from: reported")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--weights", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.5])
    ap.add_argument("--work", type=Path, default=Path("/tmp/jobcare-congestion"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "congestion.json")
    a = ap.parse_args()
    from evaluation.online_ab import run_online_ab
    from jobcare.config import ExploreConfig, ProjectConfig, load_config
    from jobcare.world.io import read_tables

    cfg = load_config(a.config, ProjectConfig)
    cfg.serving.explore = ExploreConfig(epsilon=0.1, pool=30, salt="congestion-measure")
    tables = read_tables(a.world)
    cut = pd.Timestamp(a.from_, tz="UTC")
    end = cut + pd.Timedelta(days=a.days)
    res = {"from": a.from_, "days": a.days, "seeds": a.seeds, "explore": {"epsilon": 0.1, "pool": 30}}
    report_start = cut - pd.Timedelta(days=a.report_days)
    choose_start = report_start - pd.Timedelta(days=a.ndcg_days)
    res["offline_ndcg"] = nd = offline_ndcg(cfg, tables, choose_start, report_start, a.weights)
    ok = [w for w in a.weights if nd[f"w{w:g}"]["relative"] >= -0.03]
    chosen = max(ok) if ok else None
    res["chosen_weight"] = chosen
    if a.report_days > 0:  # the chosen weight's cost on slates the choice never saw
        res["offline_ndcg_report"] = offline_ndcg(cfg, tables, report_start, cut, a.weights)
    print(json.dumps({k: res[k] for k in res if k.startswith(("offline", "chosen"))}), flush=True)
    res["rollout"] = {}
    for seed in a.seeds:
        for w in (None, chosen) if chosen is not None else (None,):
            u = CHAMP if w is None else f"{CHAMP}?congestion={w}"
            out = a.work / f"roll_{seed}_{w}"
            t0 = time.perf_counter()
            r = run_online_ab(a.world, cfg, a.from_, a.days, f"A={u},B={u}", 0.5, seed, out, n_boot=200)
            m = market(out, tables, cut, end)
            m["seekers"] = sum(r["n_seekers"].values())
            m["seconds"] = round(time.perf_counter() - t0, 1)
            res["rollout"][f"seed{seed}_w{w}"] = m
            print(seed, w, json.dumps(m), flush=True)
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

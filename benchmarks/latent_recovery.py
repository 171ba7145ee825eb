"""Research benchmark: how much of the world's latent taste can collaborative filtering learn from the logs?

The world's utility has a latent part, <seeker taste, item factor> / sqrt(d) + item bias (30% of the
within-seeker variance in the demo world), that no observed column carries: only collaborative signal
can recover it, and issue 13's course target (0.90 of the oracle, while the observable-only oracle
reaches 0.864) needs it. This script measures it directly with the answer key (``truth/``; a research
script, never part of the model path):

- For each item type, on the validation window's explore slates (``train.test_days`` / ``eval_days`` of
  the config: the same windows as ``jobcare train``), the Pearson correlation between an ALS score and
  the true latent part over the slate's items the model knows, averaged over slates of warm seekers; and
  NDCG@10 of ranking the slate by the ALS score, by the true latent part alone (what perfect
  collaborative filtering could add) and at random.
- ALS variants, all fitted on the events before the validation window with the service's event weights
  and decay (``training.interactions.world_interactions``) through the service's own
  ``ALSRecommender``: per item type over item ids (what the bundles use); per item type over the item's
  "parent" (postings -> employer, courses -> provider: the world draws an item's factor as 0.8 x its
  parent's plus noise, and parents live longer than postings or course runs); and one joint model over
  all three types' parents (a seeker's taste is shared across item types in the world, so their many
  posting events could inform their course tastes).
- An upper bound for any collaborative model of the impressions: a logistic matrix factorisation over
  every impression before the window (shown -> viewed, with a bias per position) over seekers and item
  parents, given the world's TRUE observable part of each impression as an offset, so that its factors
  need only explain what the observable part does not (``--impression-mf``; PyTorch, about 10 s per
  item type). Unlike ALS it also learns from what a seeker was shown and skipped. A second fit holds the
  key factors at the world's TRUE values (each parent's items' mean factor), so that only the seekers'
  tastes are learnt: what the seekers' own histories allow even with perfect knowledge of the items
  (with how well each seeker's taste is recovered, by the length of its history). And no model at all:
  the TRUE tastes against those TRUE key factors, the ceiling of any model of parents.
- An appeal estimate a service could compute from its logs (:func:`item_appeal`: the smoothed view rate
  on explore slates) as of the window's start against the world's true per-item bias: the correlation
  over the items with a value, and how many of the items shown in the window have one.
- How active the seekers are (sessions and applies per seeker and per month registered), beside the
  world's sizes and `world.overrides`.

Run: ``python benchmarks/latent_recovery.py --world .jobcare/world-demo-7 --config configs/demo.yaml``.
Writes ``benchmarks/results/latent_recovery.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

# benchmarks/features.py would shadow the `features` package when run as `python benchmarks/...py`
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from evaluation.metrics import ndcg_at_k  # noqa: E402
from evaluation.reference import NoTruthError, world_oracle  # noqa: E402
from jobcare.config import ProjectConfig, load_config  # noqa: E402
from jobcare.world.io import read_manifest, read_tables  # noqa: E402
from training.candidates.als import ALSRecommender  # noqa: E402
from training.interactions import world_interactions  # noqa: E402
from training.ranking_data import session_labels  # noqa: E402
from training.windows import Windows  # noqa: E402

ITEM_TYPES = ("posting", "course", "certificate")


# postings inherit their employer's factor, course runs their provider's; certificates have no parent
PARENT = {
    "posting": ("postings", "posting_id", "employer_id"),
    "course": ("courses", "course_id", "provider_id"),
}


def parents(t: dict) -> dict[str, pd.Series]:
    """item id -> the parent key (:data:`PARENT`) as a string unique across item types, for the joint
    ALS: employer e12, provider p3; a certificate is its own key (c7)."""
    prefix = {"posting": "e", "course": "p"}
    out = {it: prefix[it] + t[tab].set_index(idc)[col].astype(str) for it, (tab, idc, col) in PARENT.items()}
    certs = t["certificates"].set_index("certificate_id").index.to_series()
    return {**out, "certificate": "c" + certs.astype(str)}


def keyed(inter: pd.DataFrame, item_type: str, mode: str, par: dict) -> pd.DataFrame:
    """Interactions with the item column as the model's key for ``mode`` (item / parent)."""
    if mode == "item":
        return inter
    return inter.assign(item=par[item_type].reindex(inter["item"].to_numpy()).to_numpy())


def slates(t: dict, item_type: str, start, end) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(seeker, items, labels) of the explore sessions in [start, end) with an outcome inside it."""
    s = t["sessions"]
    s = s[(s["item_type"] == item_type) & (s["policy"] == "explore") & (s["ts"] >= start) & (s["ts"] < end)]
    lab = session_labels(t, item_type, s["session_id"], until=end)
    lab = lab.set_index(["session_id", "item_id"])["label"]
    imp = t["impressions"]
    imp = imp[imp["session_id"].isin(s["session_id"])].sort_values(["session_id", "position"])
    out = []
    for sid, g in imp.groupby("session_id", sort=True):
        items = g["item_id"].to_numpy(np.int64)
        rel = np.array([lab.get((sid, int(i)), 0) for i in items])
        if rel.max() > 0:
            out.append((int(g["seeker_id"].iloc[0]), items, rel))
    return out


def parent_keys(par: dict, item_type: str, items: np.ndarray) -> np.ndarray:
    return par[item_type].reindex(items).to_numpy()


def evaluate(model, keys_of, slates_, latent_of, seed: int) -> dict:
    """Correlation with the true latent part and NDCG@10 (ALS, true latent, random) over the slates."""
    rng = np.random.default_rng(seed)
    corr, nd_als, nd_lat, nd_rand, warm = [], [], [], [], 0
    for seeker, items, rel in slates_:
        lat = latent_of(seeker, items)
        sc = model.score(seeker, keys_of(items))
        known = np.isfinite(sc)
        nd_lat.append(ndcg_at_k(rel[np.argsort(-lat, kind="stable")], 10))
        nd_rand.append(ndcg_at_k(rel[rng.permutation(len(rel))], 10))
        # unknown seeker or item: ranked last (what a candidate generator can do with it)
        nd_als.append(ndcg_at_k(rel[np.argsort(-np.where(known, sc, -np.inf), kind="stable")], 10))
        if known.sum() >= 3:
            warm += 1
            a, b = sc[known], lat[known]
            if a.std() > 0 and b.std() > 0:
                corr.append(float(np.corrcoef(a, b)[0, 1]))
    return {
        "slates": len(slates_),
        "warm_slates": warm,
        "corr_with_latent_mean": round(float(np.mean(corr)), 4) if corr else None,
        "corr_ci95_halfwidth": round(float(1.96 * np.std(corr) / np.sqrt(len(corr))), 4) if corr else None,
        "ndcg_at_10_als": round(float(np.mean(nd_als)), 4),
        "ndcg_at_10_true_latent": round(float(np.mean(nd_lat)), 4),
        "ndcg_at_10_random": round(float(np.mean(nd_rand)), 4),
    }


class ImpressionMF:
    """Logistic MF on impressions: logit P(view) = w * true observable part + <a_seeker, b_key> + c_key +
    position bias + b0, fitted by Adam with an L2 penalty; ``score`` is the learnt latent part
    <a, b> + c (NaN for a seeker or key without training impressions)."""

    def __init__(self, dim: int = 8, l2: float = 0.01, epochs: int = 30, seed: int = 0):
        self.dim, self.l2, self.epochs, self.seed = dim, l2, epochs, seed

    def fit(
        self, seekers: np.ndarray, keys: np.ndarray, positions: np.ndarray, offset, y, fixed_b=None
    ) -> ImpressionMF:
        """``fixed_b``: (n_keys, dim) key factors to hold fixed (only the seekers' tastes, the key biases,
        the position biases and the offset's weight are then learnt)."""
        import torch

        torch.manual_seed(self.seed)
        ns, nk = int(seekers.max()) + 1, int(keys.max()) + 1
        if fixed_b is not None:
            nk = max(nk, len(fixed_b))
        self.a = torch.nn.Embedding(ns, self.dim)
        self.b = torch.nn.Embedding(nk, self.dim)
        self.c = torch.nn.Embedding(nk, 1)
        pos = torch.nn.Embedding(int(positions.max()) + 1, 1)
        for e in (self.a, self.b):
            torch.nn.init.normal_(e.weight, 0, 0.1)
        if fixed_b is not None:
            self.b.weight.data[: len(fixed_b)] = torch.as_tensor(np.asarray(fixed_b, np.float32))
            self.b.weight.requires_grad_(False)
        for e in (self.c, pos):
            torch.nn.init.zeros_(e.weight)
        w, b0 = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.zeros(1))
        mods = (self.a, self.c, pos) if fixed_b is not None else (self.a, self.b, self.c, pos)
        opt = torch.optim.Adam([p for m in mods for p in m.parameters()] + [w, b0], lr=0.02)
        s_, k_, p_ = (torch.as_tensor(np.asarray(x, np.int64)) for x in (seekers, keys, positions))
        o_, y_ = (torch.as_tensor(np.asarray(x, np.float32)) for x in (offset, y))
        for _ in range(self.epochs):
            for j in torch.randperm(len(y_)).split(8192):
                a, b = self.a(s_[j]), self.b(k_[j])
                logit = w * o_[j] + (a * b).sum(1) + self.c(k_[j]).squeeze(1) + pos(p_[j]).squeeze(1) + b0
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y_[j])
                loss = loss + self.l2 * ((a**2).sum(1).mean() + (b**2).sum(1).mean())
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.seen_s, self.seen_k = np.unique(seekers), np.unique(keys)
        self.impressions_of = np.bincount(np.asarray(seekers, np.int64), minlength=ns)
        return self

    def score(self, seeker, keys) -> np.ndarray:
        import torch

        keys = np.asarray(keys, np.int64)
        out = np.full(len(keys), np.nan)
        ok = np.isin(keys, self.seen_k)
        if not np.isin(seeker, self.seen_s):
            return out
        with torch.no_grad():
            k = torch.as_tensor(keys[ok])
            a = self.a(torch.as_tensor([int(seeker)]))
            out[ok] = ((self.b(k) * a).sum(1) + self.c(k).squeeze(1)).numpy()
        return out


HISTORY_BINS = (0, 20, 50, 100, 200, 400, np.inf)  # a seeker's training impressions


def taste_recovery(model: ImpressionMF, true_tastes: np.ndarray, n_keys: int) -> list[dict]:
    """For a model whose key factors were held at their true values: per seeker, the correlation between
    the learnt taste's and the true taste's scores over the keys, averaged per bin of the seeker's
    training impressions (:data:`HISTORY_BINS`): how much history a taste needs."""
    b = model.b.weight.detach().numpy()[:n_keys]
    a = model.a.weight.detach().numpy()
    seekers = model.seen_s
    learnt, true = a[seekers] @ b.T, true_tastes[seekers] @ b.T
    lc, tc = learnt - learnt.mean(1, keepdims=True), true - true.mean(1, keepdims=True)
    corr = (lc * tc).sum(1) / np.sqrt((lc**2).sum(1) * (tc**2).sum(1))
    n = model.impressions_of[seekers]
    out = []
    for lo, hi in zip(HISTORY_BINS[:-1], HISTORY_BINS[1:], strict=True):
        m = (n > lo) & (n <= hi)
        if m.any():
            out.append(
                {
                    "impressions": f"{lo + 1}-{hi:.0f}" if np.isfinite(hi) else f"over {lo}",
                    "seekers": int(m.sum()),
                    "corr_mean": round(float(np.nanmean(corr[m])), 4),
                }
            )
    return out


def key_function(t: dict, item_type: str):
    """item ids -> the impression models' keys: the item's parent (postings: employer, courses: provider;
    certificates: the item itself)."""
    if item_type not in PARENT:
        return lambda items: np.asarray(items, np.int64)
    table, idc, col = PARENT[item_type]
    parent = t[table].set_index(idc)[col]
    return lambda items: parent.reindex(items).to_numpy(np.int64)


def true_key_factors(true_items: pd.DataFrame, key_of) -> np.ndarray:
    """(n_keys, dim): each key's factor as the mean of its items' true factors (``true_items``:
    ``truth/latent_items.parquet``'s rows of one item type; about 0.8 x the parent's, the world's
    construction); zeros for a key without items."""
    rows = true_items.sort_values("item_id")
    z = rows[[c for c in rows.columns if c.startswith("z")]]
    means = z.groupby(key_of(rows["item_id"].to_numpy())).mean()
    out = np.zeros((int(means.index.max()) + 1, z.shape[1]))
    out[means.index.to_numpy()] = means.to_numpy()
    return out


def impression_mf(
    truth: pd.DataFrame, t: dict, item_type: str, until, dim: int, fixed_b: np.ndarray | None = None
) -> ImpressionMF:
    """:class:`ImpressionMF` (``dim`` dimensions) on the impressions of ``item_type`` before ``until``,
    keyed by :func:`key_function`, with the true observable part (``truth``: ``truth/impressions.parquet``'s
    session, position and observable columns) as the offset. ``fixed_b``: the keys' factors held fixed
    (:func:`true_key_factors`), so that only the seekers' tastes are learnt."""
    imp = t["impressions"]
    imp = imp[(imp["item_type"] == item_type) & (imp["ts"] < until)]
    imp = imp.merge(truth, on=["session_id", "position"])
    ev = t["events"]
    viewed = ev[(ev["item_type"] == item_type) & (ev["event_type"] == "view")]
    viewed = pd.MultiIndex.from_frame(viewed[["session_id", "item_id"]])
    y = pd.MultiIndex.from_frame(imp[["session_id", "item_id"]]).isin(viewed)
    return ImpressionMF(dim=dim).fit(
        imp["seeker_id"].to_numpy(),
        key_function(t, item_type)(imp["item_id"].to_numpy()),
        imp["position"].to_numpy(),
        imp["observable"].to_numpy(),
        y,
        fixed_b=fixed_b,
    )


class KnownTaste:
    """Not a model: every seeker's TRUE taste against the keys' true factors, the best that any model of
    keys could do (the items' own factors and biases are not the keys')."""

    def __init__(self, tastes: np.ndarray, key_factors: np.ndarray):
        self.tastes, self.key_factors = tastes, key_factors

    def score(self, seeker, keys) -> np.ndarray:
        return self.key_factors[np.asarray(keys, np.int64)] @ self.tastes[int(seeker)]


APPEAL_PRIOR = 20.0  # explore impressions' worth of the item type's average view rate an item starts from


def item_appeal(world: Path, item_type: str, prior: float = APPEAL_PRIOR) -> pd.DataFrame:
    """An item's appeal as a service could compute it from its logs (no ``truth/``): how often it is viewed
    when shown on the logging policy's uniformly random (explore) slates, where neither whom the policy
    chose to show it to nor the position confounds the rate. One row per (item, day D) on which it was
    shown on or viewed from such a slate, valid from 00:00 UTC of D+1: ``explore_shown``,
    ``explore_views`` (so far) and ``appeal`` = log(((views + prior x base) / (shown + prior)) / base),
    base the item type's explore view rate so far. DuckDB over the Parquet files."""
    key = {"posting": "posting_id", "course": "course_id", "certificate": "certificate_id"}[item_type]
    con = duckdb.connect()
    df = con.execute(
        f"""
        WITH s AS (SELECT session_id FROM read_parquet('{world / "sessions.parquet"}')
                   WHERE policy = 'explore' AND item_type = '{item_type}'),
        shown AS (SELECT i.session_id, i.item_id, floor(epoch(i.ts) / 86400)::BIGINT AS day
                  FROM read_parquet('{world / "impressions.parquet"}') i JOIN s USING (session_id)),
        viewed AS (SELECT e.item_id, floor(epoch(min(e.ts)) / 86400)::BIGINT AS day
                   FROM read_parquet('{world / "events.parquet"}') e
                   JOIN (SELECT DISTINCT session_id, item_id FROM shown) sh USING (session_id, item_id)
                   WHERE e.event_type = 'view' AND e.item_type = '{item_type}'
                   GROUP BY e.session_id, e.item_id),
        daily AS (SELECT item_id, day, sum(n)::BIGINT AS n, sum(k)::BIGINT AS k FROM (
                    SELECT item_id, day, 1 AS n, 0 AS k FROM shown
                    UNION ALL SELECT item_id, day, 0 AS n, 1 AS k FROM viewed) GROUP BY 1, 2),
        cum AS (SELECT item_id, day,
                  sum(n) OVER (PARTITION BY item_id ORDER BY day)::BIGINT AS explore_shown,
                  sum(k) OVER (PARTITION BY item_id ORDER BY day)::BIGINT AS explore_views FROM daily),
        tot AS (SELECT day, sum(sum(n)) OVER (ORDER BY day) AS tn, sum(sum(k)) OVER (ORDER BY day) AS tk
                FROM daily GROUP BY day)
        SELECT cum.item_id::BIGINT AS {key}, cum.day + 1 AS sday, explore_shown, explore_views,
               ln(((explore_views + {prior} * tk / tn) / (explore_shown + {prior})) / (tk / tn)) AS appeal
        FROM cum JOIN tot USING (day) ORDER BY 1, 2"""
    ).df()
    con.close()
    return df.assign(valid_from=pd.to_datetime(df["sday"] * 86400, unit="s", utc=True)).drop(columns="sday")


def appeal_vs_bias(world: Path, t: dict, oracle, item_type: str, start, end) -> dict:
    """:func:`item_appeal` as of ``start`` against the world's true per-item bias: the correlation over
    the items with a value, and how many of the items shown in [start, end) have one."""
    a = item_appeal(world, item_type)
    key = a.columns[0]
    a = a[a["valid_from"] <= start].sort_values([key, "valid_from"]).drop_duplicates(key, keep="last")
    bias = oracle.arrays.item_bias[item_type][a[key].to_numpy()]
    imp = t["impressions"]
    in_window = (imp["item_type"] == item_type) & (imp["ts"] >= start) & (imp["ts"] < end)
    shown = imp.loc[in_window, "item_id"].unique()
    return {
        "items_with_appeal": len(a),
        "corr_with_true_item_bias": round(float(np.corrcoef(a["appeal"], bias)[0, 1]), 4),
        "items_shown_in_window": int(len(shown)),
        "of_which_with_appeal": int(np.isin(shown, a[key]).sum()),
    }


def activity(t: dict) -> dict:
    """Sessions and applies per seeker and per month registered (registration to exit, or to the last
    session of the logs), over every seeker of the world's tables ``t``: how active its seekers are."""
    seekers = t["seekers"]
    exited = seekers["seeker_id"].map(t["seeker_exits"].set_index("seeker_id")["exited_at"])
    left = exited.fillna(t["sessions"]["ts"].max())
    months = (left - seekers["registered_at"]).dt.total_seconds().sum() / 86400 / 30.4
    ev = t["events"]
    applies = ev.loc[ev["event_type"] == "apply", "seeker_id"].value_counts()
    applies = applies.reindex(seekers["seeker_id"], fill_value=0)
    n, sessions = len(seekers), len(t["sessions"])
    figures = {
        "seekers": n,
        "months_registered": months / n,
        "sessions_per_seeker": sessions / n,
        "sessions_per_seeker_month": sessions / months,
        "applies_per_seeker_month": applies.sum() / months,
        "median_applies_per_seeker": applies.median(),
    }
    return {k: round(float(v), 3) for k, v in figures.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--world", default=".jobcare/world-demo-7")
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--out", default="benchmarks/results/latent_recovery.json")
    ap.add_argument("--impression-mf", action="store_true", help="also the impression-level upper bound")
    args = ap.parse_args()
    cfg = load_config(args.config, ProjectConfig)
    world = Path(args.world)
    try:  # before any work: this research script has nothing to measure without the answer key
        oracle = world_oracle(world, hint="this research script compares what models learn with it")
    except NoTruthError as e:
        sys.exit(f"NoTruthError: {e}")
    t = read_tables(world)
    win = Windows.of(read_manifest(world)["span"], cfg.train)
    par = parents(t)
    ap_ = cfg.candidates.als
    weights = cfg.candidates.event_weights

    def latent_of(item_type):
        def f(seeker, items):
            s = np.full(len(items), seeker)
            return oracle.arrays.raw_parts(
                oracle.params, item_type, s, items, oracle.state_at(win.valid_start)
            )[1]

        return f

    def als():
        return ALSRecommender(ap_.factors, ap_.regularization, ap_.alpha, ap_.iterations, random_state=0)

    inter = {it: world_interactions(t["events"], it, win.valid_start, weights) for it in ITEM_TYPES}
    truth = (  # read once for the three item types
        pd.read_parquet(
            world / "truth" / "impressions.parquet", columns=["session_id", "position", "observable"]
        )
        if args.impression_mf
        else None
    )
    latent_items = pd.read_parquet(world / "truth" / "latent_items.parquet") if args.impression_mf else None
    dim = oracle.params.latent_dim  # the impression model has as many dimensions as the world's tastes
    true_tastes = oracle.arrays.seek_z
    ev_slates = {it: slates(t, it, win.valid_start, win.test_start) for it in ITEM_TYPES}
    results: dict = {"variants": {}}
    t0 = time.perf_counter()
    joint = als().fit(
        pd.concat([keyed(inter[it], it, "parent", par) for it in ITEM_TYPES], ignore_index=True)
    )
    for it in ITEM_TYPES:
        row = {}
        for mode in ("item", "parent"):
            if mode == "parent" and it == "certificate":
                continue  # certificates have no parent: the per-item model is the same
            model = als().fit(keyed(inter[it], it, mode, par))
            keys = (
                (lambda items: items)
                if mode == "item"
                else (lambda items, it=it: par[it].reindex(items).to_numpy())
            )
            row[f"als_{mode}"] = evaluate(model, keys, ev_slates[it], latent_of(it), 0)
        row["als_joint_parents"] = evaluate(
            joint, lambda items, it=it: parent_keys(par, it, items), ev_slates[it], latent_of(it), 0
        )
        if args.impression_mf:
            key_of = key_function(t, it)
            model = impression_mf(truth, t, it, win.valid_start, dim)
            row["impression_mf_true_observable_offset"] = evaluate(
                model, key_of, ev_slates[it], latent_of(it), 0
            )
            fixed_b = true_key_factors(latent_items[latent_items["item_type"] == it], key_of)
            model = impression_mf(truth, t, it, win.valid_start, dim, fixed_b)
            row["impression_mf_true_observable_offset_true_parent_factors"] = {
                **evaluate(model, key_of, ev_slates[it], latent_of(it), 0),
                "taste_recovery_by_history": taste_recovery(model, true_tastes, len(fixed_b)),
            }
            row["known_taste_x_true_parent_factors"] = evaluate(
                KnownTaste(true_tastes, fixed_b), key_of, ev_slates[it], latent_of(it), 0
            )
        row["appeal_feature"] = appeal_vs_bias(world, t, oracle, it, win.valid_start, win.test_start)
        results["variants"][it] = row
        print(it, json.dumps(row, indent=1), flush=True)
    manifest = read_manifest(world)
    results.update(
        world=str(world),
        sizes=manifest["sizes"],
        overrides=manifest["config"].get("overrides", {}),
        activity=activity(t),
        windows=win.as_dict(),
        als=ap_.model_dump(),
        seconds=round(time.perf_counter() - t0, 1),
        machine={"cpus": os.cpu_count(), "python": platform.python_version()},
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

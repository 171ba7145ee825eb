"""The generic path: both stages on any implicit-feedback dataset (no world, no Feast).

Input tables (Parquet or CSV): interactions ``user, item [, timestamp] [, weight]``; optional side
tables ``users`` (key ``user``) and ``items`` (key ``item``) with any numeric or categorical columns.
Repeated (user, item) rows are one pair with the summed weight.

Fit (:func:`fit`):
1. Validation split of the training pairs (:mod:`training.generic_tune`): per user a random
   ``validation_share`` (or the latest, ``holdout: latest``) is held out; stage one is fitted on the rest
   and every choice is scored on the held-out pairs with full-catalogue ranking, seen items removed.
2. Stage one is tuned within ``budget_seconds``: popularity's weighting, an Optuna study for the item-kNN
   and one (with pruning) for ALS, then the union's per-source quotas (:mod:`training.generic_tune`).
3. A LambdaRank ranker learns from every evaluated user's union candidates labelled by all the user's
   held-out pairs; a cross-fitted check decides whether it is used: unless its NDCG@10 beats the best
   single source's by a paired-bootstrap margin, the model ranks by that source alone
   (:mod:`training.generic_ranker`). The served ranker is refitted on all those users' lists.
4. The sources are refitted on all pairs with the chosen settings and saved.

``generic.json`` keeps the given and the chosen config, what the search bought per source, the
validation metrics of every source, the union and the ranker, the ranker decision with its reason, the
side-table vocabularies and timings. :class:`GenericModel` loads the folder and recommends for blocks of
users at once (dense score blocks by matrix products, the union, the features and the ranker over the
whole block); users unknown to the fit get popularity candidates (ranked with their side features when
the ranker is used).
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from jobcare.config import GenericConfig
from jobcare.errors import JobcareError
from training.generic_ranker import PairFeatures, RankerRows, SideFeatures, crossfit, fit_ranker, rank_by
from training.generic_sources import SOURCES, StageOne, pairs, ranks_in, recall_of_sets, top_rows
from training.generic_tune import QUOTA_SHARE, make_validation, source_lists, tune_quotas, tune_stage_one
from training.interactions import check_interactions
from training.ranker import LambdaRankRanker, protected_in

log = logging.getLogger(__name__)
META = "generic.json"


class GenericInputError(JobcareError):
    """A generic-path input file or table breaks its contract."""


def read_table(path: str | Path, name: str) -> pd.DataFrame:
    """A Parquet or CSV file as a frame; named error for a missing file or another format."""
    p = Path(path)
    if not p.is_file():
        raise GenericInputError(f"{name}: file not found: {p}")
    if p.suffix.lower() == ".parquet":
        return pd.read_parquet(p)
    if p.suffix.lower() == ".csv":
        return pd.read_csv(p)
    raise GenericInputError(f"{name}: {p.name} is neither .parquet nor .csv (rule: file format)")


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix.lower() == ".csv":
        df.to_csv(p, index=False)
    elif p.suffix.lower() == ".parquet":
        df.to_parquet(p, index=False)
    else:
        raise GenericInputError(f"output: {p.name} is neither .parquet nor .csv (rule: file format)")
    return p


def check_side(df: pd.DataFrame | None, key: str, name: str) -> pd.DataFrame | None:
    """Validate a side table: key column present, non-null and unique; other columns numeric or text."""
    if df is None:
        return None
    if key not in df.columns:
        raise GenericInputError(f"{name}: missing key column {key!r} (rule: key column)")
    bad = df[key].isna().to_numpy()
    if bad.any():
        raise GenericInputError(
            f"{name}.{key}: {int(bad.sum())} null key(s), e.g. rows {np.flatnonzero(bad)[:5].tolist()}"
        )
    dup = df[key].duplicated(keep=False).to_numpy()
    if dup.any():
        raise GenericInputError(
            f"{name}.{key}: {int(dup.sum())} rows share a key, e.g. rows {np.flatnonzero(dup)[:5].tolist()} "
            "(rule: one row per key)"
        )
    return df.set_index(key)


def _check_timestamps(df: pd.DataFrame) -> pd.DataFrame:
    if "timestamp" not in df.columns:
        return df
    ts = pd.to_datetime(df["timestamp"], errors="coerce", utc=True, format="mixed")
    if pd.api.types.is_numeric_dtype(df["timestamp"].dtype):
        ts = pd.Series(df["timestamp"].to_numpy(float), index=df.index)  # epoch numbers order as they are
    bad = ts.isna().to_numpy()
    if bad.any():
        raise GenericInputError(
            f"interactions.timestamp: {int(bad.sum())} value(s) not a time, e.g. rows "
            f"{np.flatnonzero(bad)[:5].tolist()}"
        )
    return df.assign(timestamp=ts)


def _unprotected(table: pd.DataFrame | None, protected) -> pd.DataFrame | None:
    if table is None:
        return None
    return table.drop(columns=protected_in(table.columns, tuple(protected)))


def _load_inputs(interactions, users, items, cfg: GenericConfig):
    df = _check_timestamps(check_interactions(interactions))
    if cfg.holdout == "latest" and "timestamp" not in df.columns:
        raise GenericInputError(
            "interactions: generic.holdout is 'latest' but there is no timestamp column (rule: latest "
            "needs timestamps)"
        )
    return df, check_side(users, "user", "users"), check_side(items, "item", "items")


@contextmanager
def _progress(show: bool):
    """A rich progress display (nothing shown unless ``show``) and a function that sets a phase's line."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), disable=not show
    ) as p:
        tasks: dict[str, int] = {}

        def say(phase: str, text: str, done: bool = False) -> None:
            if phase not in tasks:
                tasks[phase] = p.add_task(text, total=1)
            p.update(tasks[phase], description=text, completed=int(done))

        yield say


def _metric_means(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: round(float(v.mean()), 4) for k, v in per_user.items()}


def fit(
    interactions: pd.DataFrame,
    users: pd.DataFrame | None,
    items: pd.DataFrame | None,
    cfg: GenericConfig,
    out: str | Path,
    budget_seconds: float | None = None,
    show_progress: bool = False,
) -> dict:
    """Fit both stages (see the module docstring); save the model folder ``out``; return its metadata.

    Args:
        budget_seconds: wall-clock budget of the stage-one search (default ``cfg.budget_seconds``).
        show_progress: show a rich progress display while fitting.
    """
    t_start = time.perf_counter()
    df, ut, it = _load_inputs(interactions, users, items, cfg)
    budget = cfg.budget_seconds if budget_seconds is None else float(budget_seconds)
    p = pairs(df)
    val = make_validation(p, cfg)
    ut, it = _unprotected(ut, cfg.protected), _unprotected(it, cfg.protected)
    us, its = SideFeatures(ut, "user__"), SideFeatures(it, "item__")
    n = cfg.n_candidates
    timings = {}
    with _progress(show_progress) as say:

        def on_trial(source: str, study, trial) -> None:
            done = [t.value for t in study.trials if t.value is not None]
            best = f", best NDCG@10 {max(done):.4f}" if done else ""
            say(source, f"{source}: {len(study.trials)} trials{best}")

        t0 = time.perf_counter()
        chosen, tuning = tune_stage_one(val, cfg, budget, on_trial)
        say("popularity", f"popularity: {tuning['popularity']['chosen']} weights", True)
        for s in ("knn", "als"):
            r = tuning[s]
            say(
                s,
                f"{s}: {r['trials']} trials ({r['pruned']} pruned), best NDCG@10 {r['best_ndcg_at_10']:.4f}",
                True,
            )
        stage = StageOne(chosen).fit(val.fit)
        pop = stage.scorers_["popularity"]
        per_user = {s: val.evaluate(stage.scorers_[s], None if s == "popularity" else pop) for s in SOURCES}
        lists = source_lists(stage, val, n)
        table = {s: _metric_means(per_user[s]) for s in SOURCES}
        for s in SOURCES:
            table[s][f"recall_at_{n}"] = round(
                float(recall_of_sets(lists[s], val.truth, val.n_relevant).mean()), 4
            )
        order = sorted(SOURCES, key=lambda s: -per_user[s]["ndcg_at_10"].mean())  # stable: ties as SOURCES
        best = order[0]
        say("quotas", "union quotas")
        left = max(budget - (time.perf_counter() - t0), QUOTA_SHARE * budget)
        quotas, tuning["quotas"] = tune_quotas(lists, val, cfg, order, left)
        quotas = {s: quotas[s] for s in order if s in quotas}
        chosen = chosen.model_copy(update={"quotas": quotas})
        table["union"] = {f"recall_at_{n}": round(tuning["quotas"]["union_recall"], 4)}
        say("quotas", f"union quotas {quotas}: recall@{n} {table['union'][f'recall_at_{n}']:.4f}", True)
        timings["tuning_seconds"] = round(time.perf_counter() - t0, 2)

        t0 = time.perf_counter()
        say("ranker", "ranker: cross-fitted check")
        feats = PairFeatures(stage, us, its, quotas)
        rows = RankerRows(feats, val)
        ranker, check = None, None
        if rows.trainable.sum() >= cfg.ranker_folds:
            check = crossfit(rows, val, chosen, best, per_user[best]["ndcg_at_10"])
            ranker = fit_ranker(rows, np.flatnonzero(rows.trainable), chosen)
            table["ranker"] = _metric_means(check.pop("per_user")) | {
                f"recall_at_{n}": table["union"][f"recall_at_{n}"]
            }
        else:
            check = {
                "used": False,
                "reason": f"fewer than {cfg.ranker_folds} validation users have a held-out item among their "
                f"candidates: the model ranks by {best} alone",
            }
        say("ranker", f"ranker: {'used' if check['used'] else 'not used'}", True)
        timings["ranker_seconds"] = round(time.perf_counter() - t0, 2)

        t0 = time.perf_counter()
        say("refit", "refit on all pairs")
        final = StageOne(chosen).fit(p)
        say("refit", "refit on all pairs", True)
        timings["refit_seconds"] = round(time.perf_counter() - t0, 2)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    final.save(out)
    if ranker is not None:
        ranker.save(out / "ranker")
    p.to_parquet(out / "interactions.parquet", index=False)
    for name, t in (("users", ut), ("items", it)):
        if t is not None:
            t.reset_index().to_parquet(out / f"{name}.parquet", index=False)
    timings["fit_seconds"] = round(time.perf_counter() - t_start, 2)
    meta = {
        "interactions": int(len(df)),
        "pairs": int(len(p)),
        "users": int(p["user"].nunique()),
        "items": int(p["item"].nunique()),
        "validation": {
            "holdout": cfg.holdout,
            "share": cfg.validation_share,
            "held_out_pairs": int(len(val.held)),
            "evaluated_users": int(val.rows.size),
            "metrics": table,
        },
        "best_source": best,
        "ranks_by": "ranker" if check["used"] else best,
        "ranker": check,
        "tuning": tuning | {"budget_seconds": budget},
        "features": feats.names,
        "timings": timings,
        "config": json.loads(cfg.model_dump_json()),
        "chosen": json.loads(chosen.model_dump_json()),
        "vocab": {"users": us.vocab, "items": its.vocab},
    }
    (out / META).write_text(json.dumps(meta, indent=2, default=float))
    log.debug("generic fit: %s", check["reason"])
    return meta


def validation_table(meta: dict):
    """The validation metrics of a fit as a rich table (sources, union, ranker)."""
    from rich.table import Table

    metrics = meta["validation"]["metrics"]
    cols = sorted(
        {c for row in metrics.values() for c in row},
        key=lambda c: (c.startswith("recall"), int(c[c.rindex("_") + 1 :])),
    )
    t = Table(
        title=f"validation ({meta['validation']['evaluated_users']:,} users, full catalogue, seen removed)"
    )
    t.add_column("")
    for c in cols:
        t.add_column(c.replace("_at_", "@"), justify="right")
    for name, row in metrics.items():
        mark = " *" if name == meta["ranks_by"] else ""
        t.add_row(name + mark, *[f"{row[c]:.4f}" if c in row else "-" for c in cols])
    return t


class GenericModel:
    """A fitted generic model folder, ready to recommend."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if not (path / META).is_file():
            raise GenericInputError(f"model: {path} holds no {META}; fit one with `jobcare generic fit`")
        self.path = path
        self.meta = json.loads((path / META).read_text())
        self.cfg = GenericConfig(**self.meta["chosen"])
        df = pd.read_parquet(path / "interactions.parquet")
        self.stage = StageOne.load(path, self.cfg, df)
        side = {
            n: pd.read_parquet(path / f"{n}.parquet") if (path / f"{n}.parquet").is_file() else None
            for n in ("users", "items")
        }
        vocab = self.meta["vocab"]
        self.users = SideFeatures(check_side(side["users"], "user", "users"), "user__", vocab["users"])
        self.items = SideFeatures(check_side(side["items"], "item", "items"), "item__", vocab["items"])
        self.features = PairFeatures(self.stage, self.users, self.items, self.cfg.quotas)
        self.ranker = LambdaRankRanker.load(path / "ranker") if (path / "ranker").is_dir() else None
        self.ranks_by = self.meta["ranks_by"]

    def recommend(self, users, k: int, exclude_seen: bool = True, by: str | None = None) -> pd.DataFrame:
        """Top ``k`` per user: columns user, item, rank, score, als_rank (the item's rank in ALS's top
        ``n_candidates``, NaN outside it). ``by``: ``ranker`` or a source (als, knn, popularity); default
        what the fit chose (``ranks_by``). The ranker re-ranks the union, so it returns at most
        ``n_candidates`` items. Users unknown to the fit get popularity candidates."""
        by = by or self.ranks_by
        if by == "ranker" and self.ranker is None:
            raise GenericInputError("recommend: this model has no ranker (rule: by one of the sources)")
        if by not in ("ranker", *SOURCES):
            raise GenericInputError(f"recommend: by={by!r} is not ranker, {', '.join(SOURCES)}")
        keys = pd.unique(np.asarray(users))
        st, n = self.stage, self.cfg.n_candidates
        parts = []
        step = self.features.block_users()
        for lo in range(0, keys.size, step):
            kb = keys[lo : lo + step]
            rows = st.users_.index(kb)
            if by == "ranker":
                cand, X, lists = self.features.block(rows, kb, exclude_seen)
                top, score = rank_by(self.ranker, cand, X, self.cfg.num_threads)
                top, score = top[:, :k], score[:, :k]
                als = lists["als"]
            else:
                top, score = st.ranked(by, rows, k, exclude_seen)
                als = top_rows(st.block("als", rows, exclude_seen), n)
            als_rank = ranks_in(als[:, :n], top, st.n_items).astype(float)
            als_rank[als_rank > n] = np.nan
            r, c = np.nonzero(top >= 0)
            parts.append(
                pd.DataFrame(
                    {
                        "user": kb[r],
                        "item": st.items_.keys[top[r, c]],
                        "rank": c + 1,
                        "score": score[r, c],
                        "als_rank": als_rank[r, c],
                    }
                )
            )
        cols = ["user", "item", "rank", "score", "als_rank"]
        return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)

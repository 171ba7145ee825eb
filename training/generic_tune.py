"""Choosing stage one of the generic path on a validation split of the training pairs.

Validation split (:func:`make_validation`): every user with at least two pairs holds out
``validation_share`` of them (rounded, at least 1, at most ``max_holdout_per_user``): drawn at random
with the seed, or the latest by ``timestamp`` when ``holdout: latest``. Stage one is fitted on the rest;
up to ``max_users`` users with held-out pairs are scored, each over the full catalogue of the fit part
with the items they have seen removed, by NDCG@10 (the objective of every choice) and recall@50.

Search (:func:`tune_stage_one`), within ``budget_seconds`` of wall clock:
1. Popularity: users per item (``binary``) or summed weight (``raw``), the better on validation. Its
   ranking also stands in for any source that cannot score a user.
2. Item-kNN: an Optuna study (TPE sampler) over the measure (BM25 or cosine), neighbours (5 to 1,000,
   log scale), BM25's k1 (0.3-3) and b (0-1) and the weight transform; ``knn_budget_share`` of the budget.
3. ALS: an Optuna study (TPE sampler, median pruner) over factors (16, 32, 64, 128), regularisation
   (1e-3 to 100, log), alpha (0.3 to 50, log), iterations (3 to 30) and the weight transform, with the rest
   of the budget but 5% (kept for the quotas). A trial fits implicit's ALS on the fit part and reports
   validation NDCG@10 after every 5th iteration; the pruner stops a trial below the median of earlier
   trials at the same iteration (after 5 complete trials).
Each study's trial 0 is the configured setting, so a chosen setting is never worse on validation than
the default; the search stops at ``max_trials`` trials per source. Weight transforms tried are
:func:`training.generic_sources.transform_choices` of the data. The report of each source holds what
the budget bought: trials complete and pruned, seconds, the default's and the best value.
4. Union quotas (:func:`tune_quotas`, after the chosen sources are refitted on the fit part): a grid over
   the sources' shares of ``n_candidates`` in steps of ``quota_step``, the sources ordered by validation
   NDCG@10, scored by the union's recall of the held-out pairs; the equal split is tried first, and the
   grid gets what is left of the budget (at least its 5%).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from itertools import product

import numpy as np
import optuna
import pandas as pd
import scipy.sparse as sp

from jobcare.config import GenericConfig
from jobcare.errors import JobcareError
from training.candidates.als import one_blas_thread
from training.candidates.item_knn import ItemKNNRecommender
from training.candidates.popularity import PopularityRecommender
from training.generic_sources import (
    SOURCES,
    FactorScorer,
    KNNScorer,
    PopScorer,
    StageOne,
    block_size,
    rank_metrics,
    ranked_lists,
    recall_of_sets,
    top_rows,
    transform,
    transform_choices,
    union_rows,
)
from training.interactions import IdMap, confidence_matrix

log = logging.getLogger(__name__)
PRUNE_EVERY = 5
QUOTA_SHARE = 0.05  # of the budget, kept for the quota grid


class ValidationSplitError(JobcareError):
    """The training pairs cannot give a validation split."""


class StageOneSearchError(JobcareError):
    """No setting of a source could be fitted."""


@dataclass
class Validation:
    """The fit part, the held-out pairs, and the evaluated users' truth on the fit part's index."""

    fit: pd.DataFrame
    held: pd.DataFrame
    users: IdMap
    items: IdMap
    seen: sp.csr_matrix
    rows: np.ndarray  # index rows of the evaluated users
    truth: sp.csr_matrix  # (len(rows), n_items) held-out pairs inside the index
    n_relevant: np.ndarray  # held-out pairs per evaluated user, also those outside the index

    @property
    def user_keys(self) -> np.ndarray:
        return self.users.keys[self.rows]

    def evaluate(self, score, fallback, k: int = 50) -> dict[str, np.ndarray]:
        """Per evaluated user NDCG@10 and recall@50 of ``score``'s ranking (see ``ranked_lists``)."""
        parts = []
        step = block_size(len(self.items))
        for lo in range(0, self.rows.size, step):
            rows = self.rows[lo : lo + step]
            top, _ = ranked_lists(score, fallback, self.seen, rows, k)
            parts.append(rank_metrics(top, self.truth[lo : lo + step], self.n_relevant[lo : lo + step]))
        return {m: np.concatenate([p[m] for p in parts]) for m in parts[0]}


def make_validation(df: pd.DataFrame, cfg: GenericConfig) -> Validation:
    """Split the pairs ``df`` (see the module docstring)."""
    rng = np.random.default_rng(cfg.seed)
    order = df.assign(_r=rng.random(len(df)))
    keys = ["user", "timestamp", "_r"] if cfg.holdout == "latest" else ["user", "_r"]
    order = order.sort_values(keys, kind="stable")
    n = order.groupby("user")["item"].transform("size").to_numpy()
    n_held = np.where(
        n >= 2, np.clip(np.floor(cfg.validation_share * n + 0.5), 1, cfg.max_holdout_per_user), 0
    )
    from_end = order.groupby("user").cumcount(ascending=False).to_numpy()
    held_idx = order.index[from_end < n_held]
    if held_idx.empty:
        raise ValidationSplitError(
            "interactions: no user has two or more distinct items, so nothing can be held out for "
            "validation (rule: >= 2 items for some users)"
        )
    held, fit = df.loc[held_idx], df.drop(index=held_idx)
    users, items = IdMap.fit(fit["user"]), IdMap.fit(fit["item"])
    eval_users = np.sort(users.index(held["user"].unique()))
    if eval_users.size > cfg.max_users:
        eval_users = np.sort(rng.choice(eval_users, cfg.max_users, replace=False))
    pos = pd.Index(users.keys[eval_users]).get_indexer(held["user"].to_numpy())  # -1: not evaluated
    col = items.index(held["item"].to_numpy())  # -1: not in the fit part
    n_rel = np.bincount(pos[pos >= 0], minlength=eval_users.size)
    inside = (pos >= 0) & (col >= 0)
    truth = sp.csr_matrix(
        (np.ones(int(inside.sum()), np.float32), (pos[inside], col[inside])),
        shape=(eval_users.size, len(items)),
    )
    seen = confidence_matrix(fit.assign(weight=1.0), users, items)
    return Validation(fit, held, users, items, seen, eval_users, truth, n_rel)


def _study(seed: int, pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner or optuna.pruners.NopPruner(),
    )


def _report(study: optuna.Study, seconds: float, default: dict) -> dict:
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return {
        "trials": len(study.trials),
        "complete": len(done),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        "seconds": round(seconds, 2),
        "default": default,
        "default_ndcg_at_10": done[0].value if done and done[0].number == 0 else None,
        "best_ndcg_at_10": study.best_value if done else None,
        "best_trial": study.best_trial.number if done else None,
    }


def _run(study: optuna.Study, objective, seconds: float, cfg: GenericConfig, on_trial) -> float:
    """Optimise for about ``seconds`` (trial 0, the configured setting, always runs); return the seconds
    spent. A fit that ends with NaN factors fails its trial only."""
    from implicit.recommender_base import ModelFitError

    t0 = time.perf_counter()
    study.optimize(objective, n_trials=1, callbacks=[on_trial], catch=(ModelFitError,))
    left = seconds - (time.perf_counter() - t0)
    if left > 0 and cfg.max_trials > 1:
        study.optimize(
            objective, n_trials=cfg.max_trials - 1, timeout=left, callbacks=[on_trial], catch=(ModelFitError,)
        )
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise StageOneSearchError(
            f"no trial of {study.trials[0].params} completed (rule: a fit must converge)"
        )
    return time.perf_counter() - t0


def tune_popularity(val: Validation, cfg: GenericConfig) -> tuple[str, dict]:
    values = {}
    choices = [c for c in ("binary", "raw") if c in transform_choices(val.fit["weight"].to_numpy())]
    for how in choices:
        pop = PopularityRecommender(random_state=cfg.seed).fit(transform(val.fit, how))
        values[how] = float(val.evaluate(PopScorer(pop, val.items), None)["ndcg_at_10"].mean())
    best = max(values, key=values.get)
    return best, {"ndcg_at_10": values, "chosen": best}


def _trial0_weights(configured: str, choices: list[str]) -> str:
    return configured if configured in choices else choices[0]


def tune_knn(val: Validation, cfg: GenericConfig, pop: PopScorer, seconds: float, on_trial) -> dict:
    choices = transform_choices(val.fit["weight"].to_numpy())
    max_k = max(5, min(1000, len(val.items)))

    def objective(trial: optuna.Trial) -> float:
        measure = trial.suggest_categorical("measure", ["bm25", "cosine"])
        params = {"measure": measure, "neighbours": trial.suggest_int("neighbours", 5, max_k, log=True)}
        if measure == "bm25":
            params |= {"k1": trial.suggest_float("k1", 0.3, 3.0), "b": trial.suggest_float("b", 0.0, 1.0)}
        how = trial.suggest_categorical("weights", choices)
        knn = ItemKNNRecommender(**params, num_threads=cfg.num_threads).fit(transform(val.fit, how))
        return float(val.evaluate(KNNScorer(knn, val.users, val.items), pop)["ndcg_at_10"].mean())

    default = cfg.knn.model_dump() | {"neighbours": min(cfg.knn.neighbours, max_k)}
    if default["measure"] == "cosine":
        del default["k1"], default["b"]
    default["weights"] = _trial0_weights(cfg.knn_weights, choices)
    study = _study(cfg.seed)
    study.enqueue_trial(default)
    spent = _run(study, objective, seconds, cfg, on_trial)
    out = _report(study, spent, default)
    best = dict(study.best_params)
    out["chosen"] = {"weights": best.pop("weights"), **(cfg.knn.model_dump() | best)}
    return out


def tune_als(val: Validation, cfg: GenericConfig, pop: PopScorer, seconds: float, on_trial) -> dict:
    from implicit.cpu.als import AlternatingLeastSquares

    choices = transform_choices(val.fit["weight"].to_numpy())
    mats: dict[str, sp.csr_matrix] = {}

    def scorer(model, m: sp.csr_matrix) -> FactorScorer:
        u_ok, i_ok = np.diff(m.indptr) > 0, np.bincount(m.indices, minlength=m.shape[1]) > 0
        return FactorScorer(
            model.user_factors,
            model.item_factors,
            np.where(u_ok, np.arange(m.shape[0]), -1),
            np.where(i_ok, np.arange(m.shape[1]), -1),
        )

    def value(model, m) -> float:
        return float(val.evaluate(scorer(model, m), pop)["ndcg_at_10"].mean())

    def objective(trial: optuna.Trial) -> float:
        p = {
            "factors": trial.suggest_categorical("factors", [16, 32, 64, 128]),
            "regularization": trial.suggest_float("regularization", 1e-3, 100.0, log=True),
            "alpha": trial.suggest_float("alpha", 0.3, 50.0, log=True),
            "iterations": trial.suggest_int("iterations", 3, 30),
        }
        how = trial.suggest_categorical("weights", choices)
        if how not in mats:
            mats[how] = confidence_matrix(transform(val.fit, how), val.users, val.items)
        m = mats[how]
        model = AlternatingLeastSquares(**p, random_state=cfg.seed, num_threads=cfg.num_threads)

        def callback(iteration: int, elapsed: float, loss) -> None:
            step = iteration + 1
            if step % PRUNE_EVERY == 0 and step < p["iterations"]:
                trial.report(value(model, m), step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at iteration {step}")

        with one_blas_thread():
            model.fit(m, show_progress=False, callback=callback)
        return value(model, m)

    default = cfg.als.model_dump() | {"weights": _trial0_weights(cfg.als_weights, choices)}
    study = _study(cfg.seed, optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=PRUNE_EVERY))
    study.enqueue_trial(default)
    spent = _run(study, objective, seconds, cfg, on_trial)
    out = _report(study, spent, default)
    best = dict(study.best_params)
    out["chosen"] = {"weights": best.pop("weights"), **best}
    return out


def quota_grid(n: int, step: float, order: list[str]) -> list[dict[str, int]]:
    """Quotas over ``order`` adding up to ``n``: the equal split first, then every grid point."""
    g = max(1, round(1 / step))
    equal = [n // len(order) + (i < n % len(order)) for i in range(len(order))]
    out = [dict(zip(order, equal))]
    for shares in product(range(g + 1), repeat=len(order) - 1):
        if sum(shares) <= g:
            q = [n * s // g for s in shares]
            q.append(n - sum(q))
            if dict(zip(order, q)) not in out:
                out.append(dict(zip(order, q)))
    return out


def source_lists(stage: StageOne, val: Validation, n: int) -> dict[str, np.ndarray]:
    """Each source's top ``n`` of the evaluated users, seen items removed (-1 where it cannot score)."""
    step = block_size(stage.n_items)
    return {
        s: np.concatenate(
            [top_rows(stage.block(s, val.rows[lo : lo + step]), n) for lo in range(0, val.rows.size, step)]
        )
        for s in SOURCES
    }


def tune_quotas(lists: dict[str, np.ndarray], val: Validation, cfg: GenericConfig, order, seconds: float):
    """(quotas, report): the grid point with the best mean union recall (ties: the earlier point)."""
    n, t0 = cfg.n_candidates, time.perf_counter()
    grid = [cfg.quotas] if cfg.quotas is not None else quota_grid(n, cfg.quota_step, order)
    best, best_value, tried = grid[0], -1.0, 0
    for q in grid:
        if tried and time.perf_counter() - t0 > seconds:
            break
        union = union_rows(lists, {s: q[s] for s in order if s in q}, n, len(val.items))
        v = float(recall_of_sets(union, val.truth, val.n_relevant).mean())
        tried += 1
        if v > best_value:
            best, best_value = q, v
    return best, {
        "grid_points": len(grid),
        "tried": tried,
        "seconds": round(time.perf_counter() - t0, 2),
        "order": list(order),
        "chosen": best,
        "union_recall": best_value,
    }


def tuned_config(cfg: GenericConfig, pop: str, knn: dict, als: dict) -> GenericConfig:
    """``cfg`` with the chosen source settings."""
    k, a = dict(knn), dict(als)
    return cfg.model_copy(
        update={
            "popularity_weights": pop,
            "knn_weights": k.pop("weights"),
            "knn": cfg.knn.model_validate(k),
            "als_weights": a.pop("weights"),
            "als": cfg.als.model_validate(a),
        }
    )


def tune_stage_one(
    val: Validation, cfg: GenericConfig, budget: float, on_trial
) -> tuple[GenericConfig, dict]:
    """The configured settings with popularity, item-kNN and ALS chosen on ``val`` (quotas aside)."""
    t0 = time.perf_counter()
    pop_how, pop_report = tune_popularity(val, cfg)
    pop = PopScorer(PopularityRecommender(random_state=cfg.seed).fit(transform(val.fit, pop_how)), val.items)
    knn = tune_knn(val, cfg, pop, budget * cfg.knn_budget_share, lambda s, t: on_trial("knn", s, t))
    left = budget * (1 - QUOTA_SHARE) - (time.perf_counter() - t0)
    als = tune_als(val, cfg, pop, left, lambda s, t: on_trial("als", s, t))
    chosen = tuned_config(cfg, pop_how, knn["chosen"], als["chosen"])
    return chosen, {"popularity": pop_report, "knn": knn, "als": als}

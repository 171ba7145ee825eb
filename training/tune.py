"""``jobcare tune``: an Optuna study over the ranker's and ALS's hyperparameters, decided on validation.

Ranker rows of the train and validation windows (:mod:`training.windows`; the test window is never read)
and the validation window's explore slates are built once. Each trial fits ALS with its parameters on
the events before each window's start and recomputes the rows' ``cand_rank_als`` feature (every
request's ALS top ``n_candidates`` over the same allowed items; the rows themselves, i.e. the sampled
candidates, stay those of the configured ALS), then fits a ranker on them. The objective is the
validation explore-slate NDCG@10 (the unbiased protocol), or the logged-label NDCG@10 when the window
has fewer than ``train.gate.min_explore_seekers`` explore requests (the summary names the objective).
LightGBM's logged-label validation NDCG is reported to Optuna every 10 boosting rounds for pruning only
(the median pruner compares trials at the same round on that one signal). Each trial is a nested MLflow
run under one ``tune`` run. The study lives in resumable storage (SQLite by default, or any SQLAlchemy URL
such as PostgreSQL): running again with the same study name adds trials. The best parameters are
written as a complete config file that ``jobcare train --config`` accepts.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import optuna
import yaml

from features import store as fstore
from jobcare.config import ProjectConfig
from jobcare.contracts import validate_world
from jobcare.world.io import read_manifest
from training import tracking
from training.candidates.als import ALSRecommender
from training.interactions import world_interactions
from training.pipeline import ensure_repo
from training.ranker import LambdaRankRanker
from training.request_path import context
from training.stage_two import (
    als_ranks,
    build_rows,
    explore_ndcg,
    explore_rows,
    group_sizes,
    ndcg_by_request,
    read_logs,
)
from training.windows import Windows


def als_search_space(trial: optuna.Trial) -> dict:
    return {
        "factors": trial.suggest_categorical("als_factors", [16, 32, 64, 128]),
        "regularization": trial.suggest_float("als_regularization", 1e-3, 1.0, log=True),
        "alpha": trial.suggest_float("als_alpha", 1.0, 50.0, log=True),
        "iterations": trial.suggest_int("als_iterations", 5, 30),
    }


def search_space(trial: optuna.Trial) -> dict:
    return {
        "n_estimators": trial.suggest_int("n_estimators", 50, 400, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 7, 63, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 5, 100, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
    }


def _pruning_callback(trial: optuna.Trial, every: int = 10):
    def callback(env) -> None:
        if (env.iteration + 1) % every:
            return
        for data, name, value, _ in env.evaluation_result_list:
            if data == "valid" and name.startswith("ndcg"):
                trial.report(value, env.iteration + 1)
                if trial.should_prune():
                    raise optuna.TrialPruned(
                        f"pruned at round {env.iteration + 1} (valid {name} {value:.4f})"
                    )

    return callback


def tune(
    world: str | Path,
    cfg: ProjectConfig,
    trials: int,
    out: str | Path,
    storage: str | None = None,
    study_name: str = "jobcare-ranker",
    item_type: str = "posting",
    console=None,
) -> dict:
    """Run ``trials`` more trials of the study; write the best config to ``out``; return a summary."""
    world = Path(world)
    validate_world(world)
    repo = ensure_repo(world, cfg)
    t = read_logs(world)
    store = fstore.open_store(repo)
    ctx = context(repo, len(t["competency_units"]))
    tc = cfg.train
    w = Windows.of(read_manifest(world)["span"], tc)  # validation only: the test window is never read here
    args = (item_type, t, store, repo, ctx, cfg.candidates)
    n, k = tc.max_requests, tc.negatives_per_request
    train = build_rows(*args, w.train_start, w.valid_start, n, k, tc.seed, workers=tc.replay_workers)
    valid = build_rows(*args, w.valid_start, w.test_start, n, k, tc.seed + 1, workers=tc.replay_workers)
    explore = explore_rows(
        *args, w.valid_start, w.test_start, tc.max_explore_requests, tc.seed + 2, False, valid.stage,
        tc.replay_workers,
    )  # fmt: skip
    feats = train.features
    Xt, yt, gt = train.rows[feats].copy(), train.rows["label"].to_numpy(), group_sizes(train.rows)
    Xv, yv, gv = valid.rows[feats].copy(), valid.rows["label"].to_numpy(), group_sizes(valid.rows)
    windows = [(train, Xt, w.train_start), (valid, Xv, w.valid_start)]
    n_explore = n_seekers = 0
    if explore is not None:
        Xe = explore.rows[feats].copy()
        windows.append((explore, Xe, w.valid_start))
        outcome = explore.rows[explore.rows["shown"] == 1].groupby("request_id")["label"].max() > 0
        n_explore = int(outcome.sum())
        n_seekers = explore.requests.set_index("request_id")["seeker_id"][outcome[outcome].index].nunique()
    # the objective: validation explore-slate NDCG@10 (the unbiased protocol) when there are enough
    # seekers for the gate's rule, else the logged-label NDCG of the validation window (named in the summary)
    on_explore = n_seekers >= tc.gate.min_explore_seekers
    objective_name = "val_explore_ndcg_at_10" if on_explore else "val_ndcg_at_10"
    n_cand = cfg.candidates.n_candidates
    base = tc.ranker_for(item_type)
    fixed = {k: getattr(base, k) for k in ("unbiased", "position_bias_regularization")}  # not searched

    def refit_als(params: dict) -> None:
        """Recompute ``cand_rank_als`` of both windows with an ALS fitted with ``params``."""
        for data, X, start in windows:
            inter = world_interactions(t["events"], item_type, start, cfg.candidates.event_weights)
            als = ALSRecommender(**params, random_state=cfg.candidates.seed).fit(inter)
            X["cand_rank_als"] = als_ranks(data, als, n_cand)

    if storage is None:
        Path(".jobcare").mkdir(exist_ok=True)
        storage = "sqlite:///.jobcare/optuna.db"
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        load_if_exists=True,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=tc.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=20),
    )
    exp = tracking.start(cfg.tracking)
    with mlflow.start_run(experiment_id=exp, run_name="tune") as parent:
        mlflow.set_tags(
            {"stage": "tune", "study": study_name, "storage": storage.split("@")[-1], "item_type": item_type}
        )

        def objective(trial: optuna.Trial) -> float:
            params, als = search_space(trial), als_search_space(trial)
            with mlflow.start_run(experiment_id=exp, run_name=f"trial-{trial.number}", nested=True):
                mlflow.log_params({**params, **{f"als_{k}": v for k, v in als.items()}})
                refit_als(als)
                try:
                    ranker = LambdaRankRanker(**params, **fixed, random_state=tc.seed).fit(
                        Xt,
                        yt,
                        gt,
                        eval_set=(Xv, yv, gv),
                        callbacks=[_pruning_callback(trial)],
                        position=train.rows["shown_position"].to_numpy(),
                    )
                except optuna.TrialPruned:
                    mlflow.set_tag("state", "pruned")
                    raise
                logged = float(ndcg_by_request(valid.rows, ranker.predict(Xv)).mean())
                mlflow.log_metric("val_ndcg_at_10", logged)
                value = logged
                if on_explore:
                    value = float(explore_ndcg(explore, ranker, feats, item_type, X=Xe)["model"].mean())
                    mlflow.log_metric("val_explore_ndcg_at_10", value)
                mlflow.set_tag("state", "complete")
            return value

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study.optimize(objective, n_trials=trials, show_progress_bar=console is not None)
        best = study.best_trial
        tuned = cfg.model_copy(deep=True)
        for k, v in best.params.items():
            if k.startswith("als_"):
                setattr(tuned.candidates.als, k.removeprefix("als_"), v)
            else:
                setattr(tuned.train.ranker, k, v)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            f"# written by `jobcare tune` (study {study_name}, best trial {best.number}, "
            f"{objective_name} {best.value:.4f})\n"
            + yaml.safe_dump(json.loads(tuned.model_dump_json()), sort_keys=False)
        )
        mlflow.log_params({f"best_{k}": v for k, v in best.params.items()})
        mlflow.log_metric(f"best_{objective_name}", best.value)
        mlflow.log_artifact(str(out))
        states = [tr.state.name for tr in study.trials]
        return {
            "run_id": parent.info.run_id,
            "best_value": best.value,
            "objective": objective_name,
            "explore_requests": n_explore,
            "best_params": best.params,
            "n_trials": len(study.trials),
            "n_pruned": states.count("PRUNED"),
            "config": str(out),
            # completed trials only: a pruned trial's value is its last intermediate LightGBM NDCG
            "values": [tr.value for tr in study.trials if tr.state == optuna.trial.TrialState.COMPLETE],
        }

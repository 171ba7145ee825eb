"""``jobcare train``: contracts, features, stage one, ranker, evaluation, MLflow, registry, gate.

One MLflow run logs, per item type (metric prefix ``postings_`` / ``courses_`` / ``certificates_``), the
validation and test metrics, the feature importance, and a model bundle registered as
``jobcare-<type>s``; the run also carries the config, the windows, the world manifest hash and the git
commit. The gate gives the new version alias ``champion`` only when it beats the current champion on the
validation window's explore slates (paired bootstrap over seekers, identical requests); otherwise
``challenger``. The test window is reported and never decides. Nothing here reads the world's truth: an
oracle for reference metrics is passed in by evaluation code (``jobcare train --oracle``).

``train.engine: dask`` builds the ranker rows on a Dask cluster's workers and fits the rankers with
``lightgbm.dask`` (:mod:`training.distributed`); everything else, and the registered bundle, is the same.
Versions are registered only after every item type has been fitted and evaluated: a failure on the way
leaves no registered version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from features import store as fstore
from jobcare.config import ProjectConfig
from jobcare.contracts import validate_world
from jobcare.faultpoints import pause_point
from jobcare.stages import StageRecorder, stage
from jobcare.world.io import MANIFEST, read_manifest
from training import tracking
from training.bundle import Bundle, load_bundle, log_bundle
from training.candidates.evaluate import fit_stage_one
from training.distributed import check_engine, engine_session
from training.registry import (
    CHALLENGER,
    CHAMPION,
    MODEL_NAMES,
    champion_version,
    paired_bootstrap,
    promotion_lock,
    register,
    set_alias,
)
from training.request_path import context
from training.stage_two import explore_ndcg, fit_and_evaluate, ndcg_by_request, read_logs
from training.windows import Windows

log = logging.getLogger(__name__)
PREFIX = {"posting": "postings_", "course": "courses_", "certificate": "certificates_"}


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def ensure_repo(world: Path, cfg: ProjectConfig) -> Path:
    """The feature repository of ``world`` (rendered, applied and materialised here if missing or stale)."""
    repo = Path(cfg.features.repo)
    meta_ok = (repo / fstore.REPO_META).is_file() and fstore.repo_meta(repo)["world"] == str(world.resolve())
    if not meta_ok:
        fcfg = cfg.features.resolved()
        repo = fstore.render_repo(world, fcfg)
        fstore.apply(repo)
        fstore.materialize(repo, workers=fcfg.materialize_workers)
    return repo


def _per_seeker(per_request: pd.DataFrame, requests: pd.DataFrame, col: str) -> pd.Series:
    seeker = requests.set_index("request_id")["seeker_id"]
    return per_request[col].groupby(seeker.reindex(per_request.index).to_numpy()).mean()


def train(world: str | Path, cfg: ProjectConfig, console=None, oracle=None) -> dict:
    """Run the pipeline; return per item type the metrics, the registered version and the gate decision.

    ``oracle``: an object reading the world's truth (``evaluation.reference.world_oracle``), for reference
    metrics only; without it the run needs nothing but the logs (no ``truth/``). ``cfg.train.engine``:
    ``local`` or ``dask`` (a session on ``cfg.train.dask.scheduler`` or a LocalCluster, for this run).

    Raises:
        training.distributed.DistributedTrainingError: the Dask engine failed; nothing was registered.
    """
    world = Path(world)
    tc = cfg.train
    windows = Windows.of(read_manifest(world)["span"], tc)  # before any work: the windows fit the span
    check_engine(tc)  # and what the Dask engine cannot do (train.engine dask: rows and fits on a cluster)
    with StageRecorder() as rec:  # per-stage time and peak memory, logged as stages.json in the run
        with stage("contracts"):
            validate_world(world)  # bad data stops here: nothing is logged, no alias moves
        repo = ensure_repo(world, cfg)
        with stage("read_logs"):
            t = read_logs(world)
        store = fstore.open_store(repo)
        ctx = context(repo, len(t["competency_units"]))
        with engine_session(tc, world, repo, len(t["competency_units"])) as engine:
            return _run(world, cfg, windows, repo, t, store, ctx, engine, console, oracle, rec)


def _run(
    world: Path, cfg: ProjectConfig, windows: Windows, repo: Path, t, store, ctx, engine, console, oracle, rec
):
    """The MLflow run of :func:`train`: every item type fitted and evaluated, then registered and gated.

    ``engine``: None (this process) or a :class:`training.distributed.DaskEngine`. Nothing is registered
    until every item type has been fitted, so a failure (a lost Dask worker, bad rows) leaves no version."""
    tc = cfg.train
    exp = tracking.start(cfg.tracking)
    client = MlflowClient()
    manifest_hash = hashlib.sha256((world / MANIFEST).read_bytes()).hexdigest()
    out: dict = {}
    with mlflow.start_run(experiment_id=exp, run_name="train") as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags(
            {
                "stage": "train",
                "world_manifest_sha256": manifest_hash,
                "git_commit": git_commit(),
                "world": str(world),
                "engine": tc.engine,
            }
        )
        mlflow.log_dict(json.loads(cfg.model_dump_json()), "config.json")
        mlflow.log_dict(windows.as_dict(), "windows.json")
        mlflow.log_params(
            {
                "test_days": tc.test_days,
                "eval_days": tc.eval_days,
                "train_days": tc.train_days,
                "max_requests": tc.max_requests,
                "negatives_per_request": tc.negatives_per_request,
                "max_explore_requests": tc.max_explore_requests,
                "shuffle_labels": tc.shuffle_labels,
                **{f"ranker_{k}": v for k, v in tc.ranker.model_dump().items()},
                **{f"ranker_{it}_{k}": v for it, o in tc.ranker_overrides.items() for k, v in o.items()},
                **{f"als_{k}": v for k, v in cfg.candidates.als.model_dump().items()},
            }
        )
        fitted = {}
        for it in tc.item_types:
            res = fit_and_evaluate(
                it,
                t,
                store,
                repo,
                ctx,
                cfg.candidates,
                tc.ranker_for(it).model_dump(),
                windows,
                tc.max_requests,
                tc.negatives_per_request,
                tc.seed,
                show_progress=console is not None,
                shuffle_labels=tc.shuffle_labels,
                max_explore_requests=tc.max_explore_requests,
                oracle=oracle,
                engine=engine,
                replay_workers=tc.replay_workers,
            )
            m = res["metrics"]
            mlflow.log_metrics({f"{PREFIX[it]}{k}": float(v) for k, v in m.items() if np.isfinite(v)})
            imp = res["final_ranker"].feature_importance()
            mlflow.log_dict(imp.round(3).to_dict(), f"{it}/feature_importance.json")
            fig = _importance_plot(imp, it)
            mlflow.log_figure(fig, f"{it}/feature_importance.png")
            _close(fig)
            # a fresh model: stage one refitted on every event before the data cutoff (the end of the logs)
            fresh = fit_stage_one(it, t["events"], windows.end, store, repo, ctx, cfg.candidates, windows.end)
            bundle = Bundle(
                it,
                fresh.popularity,
                fresh.als,
                fresh.two_tower,
                res["final_ranker"],
                res["features"],
                dict(cfg.candidates.quotas),
                cfg.candidates.n_candidates,
                {
                    "world_manifest_sha256": manifest_hash,
                    "run_id": run.info.run_id,
                    # the data cutoff: stage one saw the events before it (ALS recomputes later seekers)
                    "trained_until": str(windows.end),
                    "windows": windows.as_dict(),
                    "ranker_rows": "train + validation windows",
                    "event_weights": cfg.candidates.event_weights.model_dump(),
                },
                res["final_content"],
            )
            fitted[it] = (res, bundle)
        # registered only now that every item type is fitted and evaluated, and every version before any
        # alias moves: a run killed while registering leaves versions (with digests) but no alias moved
        versions = {}
        with stage("registration"):
            for it, (_, bundle) in fitted.items():
                uri = log_bundle(bundle, Path(tmp) / it, name=f"{it}_bundle")
                versions[it] = register(client, uri, MODEL_NAMES[it])
        for it, (res, _) in fitted.items():
            m, version = res["metrics"], versions[it]
            with stage("gate"):
                decision = gate(client, MODEL_NAMES[it], version, res, tc.gate)
            mlflow.log_metrics(
                {f"{PREFIX[it]}gate_{k}": v for k, v in decision.items() if isinstance(v, float)}
            )
            out[it] = {
                "metrics": m,
                "model": MODEL_NAMES[it],
                "version": version,
                "gate": decision,
                "best_baseline": res["best_baseline"],  # the baseline best on validation
            }
            if console is not None:
                console.print(
                    f"{it}: {summary_line(m, res['best_baseline'])}; {MODEL_NAMES[it]} v{version} -> "
                    f"{decision['alias']} ({decision['reason']})"
                )
        mlflow.log_dict(rec.stages, "stages.json")  # seconds, calls and peak RSS (MiB) per stage
        out["run_id"] = run.info.run_id
        out["stages"] = rec.stages
    return out


def summary_line(m: dict, best: str | None) -> str:
    """One console line: the explore-slate NDCG of validation and test with the ratios (oracle ratios only
    when an oracle was given), then the logged-label NDCG."""
    parts = []
    for p in ("val", "test"):
        n = m.get(f"{p}_explore_requests", 0)
        if f"{p}_explore_ndcg_at_10" not in m:
            parts.append(f"{p}: no explore slates")
            continue
        txt = f"{p} explore ({n} req.) NDCG@10 {m[f'{p}_explore_ndcg_at_10']:.3f}"
        ratios = (
            ("oracle", "oracle"),
            ("best_baseline", best or "baseline"),
            ("content_gbdt", "content-only GBDT"),
        )
        for name, label in ratios:
            r = m.get(f"{p}_explore_ratio_to_{name}")
            if r is not None:
                lo, hi = m[f"{p}_explore_ratio_to_{name}_ci_low"], m[f"{p}_explore_ratio_to_{name}_ci_high"]
                txt += f", {r:.2f}x {label} [{lo:.2f}, {hi:.2f}]"
        parts.append(txt)
    parts.append(f"logged-label val NDCG@10 {m['val_ndcg_at_10']:.3f}")
    return "; ".join(parts)


def gate(client: MlflowClient, name: str, version: str, res: dict, cfg) -> dict:
    """Give ``version`` the champion alias if it beats the current champion, else challenger.

    The evidence: both models order the same validation explore slates (the unbiased protocol); the paired
    bootstrap over seekers of the per-seeker NDCG@10 difference must have its lower bound above
    ``cfg.min_improvement``. With fewer than ``cfg.min_explore_seekers`` explore seekers the logged-label
    rows of validation decide instead, and the reason says so.

    The comparison is against the champion at promotion time: under the model's promotion lock
    (:func:`training.registry.promotion_lock`) the champion is read again right before the alias moves,
    and if another run (or an operator) moved it meanwhile, the comparison is run again against it."""
    champ = champion_version(client, name)
    decision = judge(client, name, version, res, cfg, champ)
    pause_point("before_promotion")  # fault-injection tests only: the decision made, no alias moved
    with promotion_lock(getattr(client, "tracking_uri", None), name):
        now = champion_version(client, name)
        was, is_ = _version(champ), _version(now)
        if was != is_:
            log.info(
                "%s: champion moved from v%s to v%s while v%s was gated; comparing again",
                name,
                was,
                is_,
                version,
            )
            decision = judge(client, name, version, res, cfg, now)
            note = f" (compared again: the champion moved from v{was} to v{is_} during the gate)"
            decision["reason"] += note
            if "why" in decision:
                decision["why"] += note
            decision["champion_moved_from"] = was
        set_alias(client, name, decision["alias"], version, decision.get("why", decision["reason"]))
    return decision


def _version(mv) -> str | None:
    return None if mv is None else str(mv.version)


def judge(client: MlflowClient, name: str, version: str, res: dict, cfg, champ) -> dict:
    """The gate's decision for ``version`` against champion version ``champ`` (None: there is none), with
    ``alias`` and ``reason``; moves no alias."""
    if champ is None:
        return {"alias": CHAMPION, "reason": "first version", "why": "first version: no champion to beat"}
    old_bundle = load_bundle(f"models:/{name}/{champ.version}")
    explore, valid = res["valid_explore"], res["valid"]
    per = res["per_request_explore"]
    use_explore = explore is not None and len(per) and per["seeker_id"].nunique() >= cfg.min_explore_seekers
    data = explore if use_explore else valid
    missing = [c for c in old_bundle.features if c not in data.rows.columns]
    if missing:
        return {
            "alias": CHALLENGER,
            "reason": f"champion v{champ.version} needs features {missing[:5]} the new rows lack",
        }
    if use_explore:
        old_per = explore_ndcg(explore, old_bundle.ranker, old_bundle.features, old_bundle.item_type)
        new = per.groupby("seeker_id")["model"].mean()
        old = old_per.groupby("seeker_id")["model"].mean()
        protocol = "validation explore slates"
    else:
        new = _per_seeker(res["per_request"], valid.requests, "ndcg")
        per_req = pd.DataFrame({"ndcg": ndcg_by_request(valid.rows, old_bundle.ranker.predict(valid.rows))})
        old = _per_seeker(per_req, valid.requests, "ndcg")
        n = 0 if explore is None else per["seeker_id"].nunique()
        protocol = f"logged labels (only {n} explore seekers < min_explore_seekers {cfg.min_explore_seekers})"
    return decide(new, old, str(champ.version), protocol, cfg)


def decide(new: pd.Series, old: pd.Series, champ: str, protocol: str, cfg) -> dict:
    """The gate's rule on per-seeker NDCG@10 of the new model and the champion (same seekers)."""
    boot = paired_bootstrap(new, old, cfg.n_boot, seed=0)
    better = boot["ci_low"] > cfg.min_improvement
    reason = (
        f"{protocol}, paired bootstrap over {boot['n_seekers']} seekers: NDCG@10 diff "
        f"{boot['mean_diff']:+.4f} [{boot['ci_low']:+.4f}, {boot['ci_high']:+.4f}] vs v{champ}; "
        f"rule: lower bound > {cfg.min_improvement}"
    )
    return {
        "alias": CHAMPION if better else CHALLENGER,
        "reason": reason,
        "protocol": protocol,
        **boot,
        "champion_version": float(champ),
    }


def _close(fig) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


def _importance_plot(imp: pd.Series, item_type: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = imp.head(20)[::-1]
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.barh(top.index, top.to_numpy())
    ax.set_title(f"{item_type} ranker: feature importance (gain)")
    fig.tight_layout()
    return fig

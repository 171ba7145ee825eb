"""``jobcare train``: contracts, features, stage one, ranker, evaluation, MLflow, registry, gate.

One MLflow run logs, per item type (metric prefix ``postings_`` / ``courses_`` / ``certificates_``), the
validation metrics, the feature importance, and a model bundle registered as ``jobcare-<type>s``; the
run also carries the config, the world manifest hash and the git commit. The gate gives the new
version alias ``champion`` only when it beats the current champion on the same validation requests
(paired bootstrap over seekers); otherwise ``challenger``.
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
from jobcare.world.io import MANIFEST, read_manifest, read_tables
from training import tracking
from training.bundle import Bundle, load_bundle, log_bundle
from training.registry import CHALLENGER, CHAMPION, MODEL_NAMES, champion_version, paired_bootstrap, set_alias
from training.request_path import context
from training.stage_two import fit_and_evaluate, ndcg_by_request

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
        fstore.materialize(repo)
    return repo


def _per_seeker(per_request: pd.DataFrame, requests: pd.DataFrame, col: str) -> pd.Series:
    seeker = requests.set_index("request_id")["seeker_id"]
    return per_request[col].groupby(seeker.reindex(per_request.index).to_numpy()).mean()


def train(world: str | Path, cfg: ProjectConfig, console=None) -> dict:
    """Run the pipeline; return per item type the metrics, the registered version and the gate decision."""
    world = Path(world)
    validate_world(world)  # bad data stops here: nothing is logged, no alias moves
    repo = ensure_repo(world, cfg)
    t = read_tables(world, ["events", "sessions", "impressions", "postings", "courses", "competency_units"])
    from jobcare.world.oracle import WorldOracle

    oracle = WorldOracle(world)
    store = fstore.open_store(repo)
    ctx = context(repo, len(t["competency_units"]))
    end = pd.Timestamp(read_manifest(world)["span"]["end"])
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
            }
        )
        mlflow.log_dict(json.loads(cfg.model_dump_json()), "config.json")
        mlflow.log_params(
            {
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
        for it in tc.item_types:
            res = fit_and_evaluate(
                it,
                t,
                store,
                repo,
                ctx,
                oracle,
                cfg.candidates,
                tc.ranker_for(it).model_dump(),
                end,
                tc.eval_days,
                tc.train_days,
                tc.max_requests,
                tc.negatives_per_request,
                tc.seed,
                show_progress=console is not None,
                shuffle_labels=tc.shuffle_labels,
                max_explore_requests=tc.max_explore_requests,
            )
            m = res["metrics"]
            mlflow.log_metrics({f"{PREFIX[it]}{k}": float(v) for k, v in m.items() if np.isfinite(v)})
            imp = res["ranker"].feature_importance()
            mlflow.log_dict(imp.round(3).to_dict(), f"{it}/feature_importance.json")
            fig = _importance_plot(imp, it)
            mlflow.log_figure(fig, f"{it}/feature_importance.png")
            _close(fig)
            stage = res["valid"].stage
            bundle = Bundle(
                it,
                stage.popularity,
                stage.als,
                stage.two_tower,
                res["ranker"],
                res["features"],
                dict(cfg.candidates.quotas),
                cfg.candidates.n_candidates,
                {
                    "world_manifest_sha256": manifest_hash,
                    "run_id": run.info.run_id,
                    # stage one saw the events before this moment (ALS recomputes later seekers)
                    "trained_until": str(end - pd.Timedelta(days=tc.eval_days)),
                    "event_weights": cfg.candidates.event_weights.model_dump(),
                },
            )
            uri = log_bundle(bundle, Path(tmp) / it, name=f"{it}_bundle")
            version = str(mlflow.register_model(uri, MODEL_NAMES[it]).version)
            decision = gate(client, MODEL_NAMES[it], version, res, tc.gate)
            mlflow.log_metrics(
                {f"{PREFIX[it]}gate_{k}": v for k, v in decision.items() if isinstance(v, float)}
            )
            out[it] = {"metrics": m, "model": MODEL_NAMES[it], "version": version, "gate": decision}
            if console is not None:
                explore = (
                    f"; explore slates ({m['val_requests_explore']} req.): "
                    f"{m['val_explore_ratio_to_oracle']:.2f}x oracle "
                    f"[{m['val_explore_ratio_to_oracle_ci_low']:.2f}, "
                    f"{m['val_explore_ratio_to_oracle_ci_high']:.2f}], "
                    f"{m['val_explore_ratio_to_als_only']:.2f}x ALS "
                    f"[{m['val_explore_ratio_to_als_only_ci_low']:.2f}, "
                    f"{m['val_explore_ratio_to_als_only_ci_high']:.2f}]"
                    if "val_explore_ratio_to_oracle" in m
                    else ""
                )
                console.print(
                    f"{it}: NDCG@10 {m['val_ndcg_at_10']:.3f} (oracle {m['val_oracle_ndcg_at_10']:.3f}, "
                    f"ALS only {m['val_als_only_ndcg_at_10']:.3f}){explore}; {MODEL_NAMES[it]} v{version} -> "
                    f"{decision['alias']} ({decision['reason']})"
                )
        out["run_id"] = run.info.run_id
    return out


def gate(client: MlflowClient, name: str, version: str, res: dict, cfg) -> dict:
    """Give ``version`` the champion alias if it beats the current champion, else challenger."""
    valid = res["valid"]
    new = _per_seeker(res["per_request"], valid.requests, "ndcg")
    champ = champion_version(client, name)
    if champ is None:
        set_alias(client, name, CHAMPION, version, "first version: no champion to beat")
        return {"alias": CHAMPION, "reason": "first version"}
    old_bundle = load_bundle(f"models:/{name}@{CHAMPION}")
    missing = [c for c in old_bundle.features if c not in valid.rows.columns]
    if missing:
        set_alias(
            client, name, CHALLENGER, version, f"champion needs features {missing[:5]} the new rows lack"
        )
        return {"alias": CHALLENGER, "reason": "champion not comparable (features)"}
    old_scores = old_bundle.ranker.predict(valid.rows)
    per_req = pd.DataFrame({"ndcg": ndcg_by_request(valid.rows, old_scores)})
    old = _per_seeker(per_req, valid.requests, "ndcg")
    boot = paired_bootstrap(new, old, cfg.n_boot, seed=0)
    better = boot["ci_low"] > cfg.min_improvement
    reason = (
        f"paired bootstrap over {boot['n_seekers']} seekers: NDCG@10 diff {boot['mean_diff']:+.4f} "
        f"[{boot['ci_low']:+.4f}, {boot['ci_high']:+.4f}] vs v{champ.version}; rule: lower bound > "
        f"{cfg.min_improvement}"
    )
    set_alias(client, name, CHAMPION if better else CHALLENGER, version, reason)
    return {
        "alias": CHAMPION if better else CHALLENGER,
        "reason": reason,
        **boot,
        "champion_version": float(champ.version),
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

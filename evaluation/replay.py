"""Offline replay: the held-out window's requests through the candidate and ranking code, scored by any
model, as per-request and per-seeker metrics.

The window is the last ``window_days`` of the world. Stage one is fitted on the events before the
window (as the pipeline does), every request of the window (a session with at least one positive
outcome) is replayed at its start with point-in-time Feast features
(:func:`training.stage_two.build_rows`), and each model orders the same candidate rows, so two models
are compared on identical requests. A model is any MLflow model URI of a bundle
(``models:/jobcare-postings@champion``, ``models:/jobcare-postings/3``, ``runs:/<id>/posting_bundle``),
or a built-in baseline: one stage-one source alone by its own rank (``baseline:als``,
``baseline:two_tower``, ``baseline:rules``, ``baseline:popularity``), ``baseline:legacy`` (the logging
policy's rule), ``baseline:content_gbdt`` (the content-only ablation ranker registered with the item
type's champion: no stage-one ranks, no item statistics counted from other seekers) or
``baseline:oracle`` / ``baseline:observable_oracle`` (the world's true expected utility, or only its
observable part; only where the world has truth/).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation import metrics as M
from features import store as fstore
from jobcare.config import ProjectConfig
from jobcare.errors import JobcareError
from jobcare.world.io import read_manifest, read_tables
from training.request_path import context
from training.stage_two import NoRequestsError, RankerData, build_rows, legacy_scores, oracle_scores

KS = (1, 3, 5, 10, 20)
SOURCE_BASELINES = {
    "baseline:als": "ALS",
    "baseline:two_tower": "two-tower",
    "baseline:rules": "rules",
    "baseline:popularity": "popularity",
}
ORACLES = {"baseline:oracle": 0, "baseline:observable_oracle": 1}  # oracle_scores part: all, observable
BASELINES = (*SOURCE_BASELINES, "baseline:legacy", "baseline:content_gbdt", *ORACLES)


class EvaluationError(JobcareError):
    """An evaluation input is unusable (unknown model URI, item type mismatch, empty window)."""


@dataclass
class Replay:
    item_type: str
    data: RankerData
    audit: pd.DataFrame  # per request: seeker_id, gender, age, region_id, education_level, desired group
    oracle: object
    window: tuple
    tables: dict


def replay(
    world: str | Path,
    cfg: ProjectConfig,
    item_type: str,
    window_days: int,
    max_requests: int,
    policy: str | None = None,
    oracle=None,
    stage=None,
    end: pd.Timestamp | None = None,
) -> Replay:
    """Replay the window: requests with an outcome (default), or every session of one logging ``policy``
    (e.g. "explore": the slates only, no sampled candidates, for the off-policy estimates). ``stage``:
    a stage one already fitted before this window (another replay's), not fitted again. ``end``: the
    window's end (default the span's)."""
    from evaluation.reference import has_truth, world_oracle

    world = Path(world)
    repo = Path(cfg.features.repo)
    t = read_tables(world, ["events", "sessions", "impressions", "postings", "courses", "competency_units"])
    store = fstore.open_store(repo)
    ctx = context(repo, len(t["competency_units"]))
    end = pd.Timestamp(read_manifest(world)["span"]["end"] if end is None else end)
    start = end - pd.Timedelta(days=window_days)
    try:
        data = build_rows(
            item_type,
            t,
            store,
            repo,
            ctx,
            cfg.candidates,
            start,
            end,
            max_requests,
            0 if policy else cfg.train.negatives_per_request,
            cfg.train.seed + 1,
            policy=policy,
            stage=stage,
        )
    except NoRequestsError as e:
        raise EvaluationError(f"{e} (the last {window_days} days)") from None
    req = data.requests
    audit = fstore.historical_features(store, req[["seeker_id", "event_timestamp"]], "seeker_audit_v1")
    audit.columns = [c.split("__")[-1] for c in audit.columns]
    seek = fstore.historical_features(store, req[["seeker_id", "event_timestamp"]], "seeker_online_v1")
    first = seek["seeker_profile__desired_occupation_ids"].map(lambda x: int(x[0]) if len(x) else -1)
    audit["occupation_group"] = np.where(first >= 0, ctx.group[np.maximum(first.to_numpy(), 0)], -1)
    audit["request_id"] = req["request_id"].to_numpy()
    audit["cold"] = data.stage.als.users_.index(req["seeker_id"].to_numpy()) < 0
    if oracle is None and has_truth(world):  # the oracle's columns only where the truth exists
        oracle = world_oracle(world)
    return Replay(item_type, data, audit, oracle, (start, end), t)


def model_bundle(model: str, item_type: str):
    """The bundle behind an MLflow model URI, checked to rank ``item_type``; named errors otherwise."""
    if not model.startswith(("models:/", "runs:/")):
        raise EvaluationError(f"model {model!r}: need an MLflow model URI or one of {BASELINES}")
    from mlflow.exceptions import MlflowException

    from training.bundle import load_bundle

    try:
        bundle = load_bundle(model)
    except MlflowException as e:
        raise EvaluationError(f"model {model!r}: {e.message}") from None
    if bundle.item_type != item_type:
        raise EvaluationError(f"model {model!r} ranks {bundle.item_type}s, not {item_type}s")
    return bundle


def scores(model: str, rp: Replay) -> tuple[np.ndarray, str]:
    """Scores of the replay's rows under ``model``; and a label naming what was scored."""
    rows = rp.data.rows
    src = model.removeprefix("baseline:")
    if model in SOURCE_BASELINES:
        label = f"{SOURCE_BASELINES[model]} alone (its stage-one rank)"
        return -rows[f"cand_rank_{src}"].to_numpy(float), label
    if model == "baseline:legacy":
        return legacy_scores(rows), "legacy policy's rule (re-scored from the pair features)"
    if model in ORACLES:
        if rp.oracle is None:
            raise EvaluationError(f"{model}: this world (or log export) has no truth/ to rank by")
        part = ORACLES[model]
        label = (
            "observable-only oracle (the true utility's observable part)"
            if part
            else "oracle (true expected utility)"
        )
        return oracle_scores(rows, rp.data.requests, rp.item_type, rp.oracle, part=part), label
    if model == "baseline:content_gbdt":
        from training.registry import CHAMPION, MODEL_NAMES

        uri = f"models:/{MODEL_NAMES[rp.item_type]}@{CHAMPION}"
        bundle = model_bundle(uri, rp.item_type)
        if bundle.content is None:
            raise EvaluationError(f"{model}: {uri} was registered without its content-only ablation")
        run = bundle.meta.get("run_id", "?")
        return bundle.content.predict(rows), f"content-only GBDT (the ablation of {uri}, run {run})"
    bundle = model_bundle(model, rp.item_type)
    missing = [c for c in bundle.features if c not in rows.columns]
    if missing:
        raise EvaluationError(f"model {model!r} needs features the replay lacks: {missing[:5]}")
    return bundle.ranker.predict(rows), f"{model} (run {bundle.meta.get('run_id', '?')})"


def per_request(rows: pd.DataFrame, score: np.ndarray, ks=KS) -> pd.DataFrame:
    """Per request: NDCG / recall / precision / MAP / MRR / hit at each k (graded labels; hit, recall,
    precision, MAP and MRR count labels > 0), plus the ordered item ids (for exposure)."""
    df = pd.DataFrame(
        {
            "request_id": rows["request_id"].to_numpy(),
            "label": rows["label"].to_numpy(),
            "item_id": rows["item_id"].to_numpy(),
            "s": score,
        }
    )
    out = []
    for rid, g in df.groupby("request_id", sort=True):
        order = np.argsort(-g["s"].to_numpy(), kind="stable")
        lab = g["label"].to_numpy()
        ranked = lab[order]
        n_rel = int((lab > 0).sum())
        rec = {"request_id": rid, "items": g["item_id"].to_numpy()[order][: max(ks)].tolist()}
        for k in ks:
            rec[f"ndcg@{k}"] = M.ndcg_at_k(ranked, k, lab)
            rec[f"recall@{k}"] = M.recall_at_k(ranked, k, n_rel)
            rec[f"precision@{k}"] = M.precision_at_k(ranked, k)
            rec[f"map@{k}"] = M.average_precision_at_k(ranked, k, n_rel)
            rec[f"mrr@{k}"] = M.mrr_at_k(ranked, k)
            rec[f"hit@{k}"] = M.hit_rate_at_k(ranked, k)
        rec["apply_hit@10"] = float((ranked[:10] >= 2).any())
        rec["top10_relevant_exposure"] = float(
            ((ranked[:10] > 0) / np.log2(np.arange(2, min(10, ranked.size) + 2))).sum()
        )
        out.append(rec)
    return pd.DataFrame(out).set_index("request_id")

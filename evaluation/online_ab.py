"""Online A/B inside the world: continue a world from a date with two arms as the logging policy and
report the true online effect (``jobcare world simulate --arms A=URI,B=URI``).

Seekers are split by a stable hash of (salt, seeker id) (:func:`evaluation.online_arms.arm_of`); both
arms live in the same continued world, so they compete for the same postings' openings and course seats
(interference, as in a real A/B test on a marketplace). Outcomes are counted per seeker who had at least
one session in the continued period, and only those caused by the continued sessions (an apply before
the cut that is decided after it is the same for both arms and is left out). A seeker is in one arm
only, so the comparison is two-sample: the difference of per-seeker means B - A with a 95% percentile
bootstrap over seekers resampled within each arm.

An arm is a baseline (:mod:`evaluation.online_arms`) or a registry model URI, served through the service's
request path over the continued world's features (:mod:`evaluation.online_engine`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import ValidationError

from evaluation.online_arms import BASELINE_ARMS, ArmRouter, OracleArm, RandomArm, arm_of
from jobcare.config import CongestionConfig, FairnessConfig
from jobcare.errors import JobcareError
from jobcare.groups import age_band
from jobcare.world.io import write_table

log = logging.getLogger(__name__)
METRICS = ("views", "applies", "hires", "completions", "certificate_passes", "enrolments", "registrations")
SEGMENTS = ("gender", "age_band", "region")
MIN_SEGMENT = 20
MODEL_URIS = ("models:/", "runs:/")


class OnlineABError(JobcareError):
    """Bad arms or split (which field, which rule)."""


class ArmOptionError(OnlineABError):
    """A bad ``?option=value`` on an arm's model URI (which arm, which option, which rule)."""


ARM_OPTIONS = ("congestion", "fairness")


@dataclass(frozen=True)
class Arm:
    """``uri`` as given (options included, the report's label); ``congestion``: the arm's
    ``?congestion=WEIGHT`` (None: the config's ``serving.congestion``, as the service would serve);
    ``fairness``: the arm's ``?fairness=CONTENT_WEIGHT`` (the exposure-aware re-ranking for the config's
    ``serving.fairness`` groups; None: the config's ``serving.fairness``)."""

    name: str
    uri: str
    congestion: CongestionConfig | None = None
    fairness: float | None = None

    @property
    def model_uri(self) -> str:
        """The MLflow URI without the arm's options."""
        return self.uri.split("?", 1)[0]


def arm_options(name: str, uri: str) -> dict:
    """A model arm's options from ``URI?key=value&key=value``: ``congestion=W`` turns on the congestion-aware
    re-ranking (:mod:`serving.congestion`) with weight ``W`` for this arm (0: on, order unchanged);
    ``fairness=W`` the exposure-aware re-ranking (:mod:`serving.fairness`) with content weight ``W`` (0 to
    1) for the seekers of the config's ``serving.fairness.groups``.

    Raises:
        ArmOptionError: an option on a baseline, an unknown or repeated option, a missing ``=`` or a
            weight that is not a number in the config's range.
    """
    if "?" not in uri:
        return {}
    base, query = uri.split("?", 1)
    if not base.startswith(MODEL_URIS):
        raise ArmOptionError(f"--arms: {name}={uri}: options are for model URIs only (rule: models:/...?k=v)")
    out: dict = {}
    for item in query.split("&"):
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise ArmOptionError(f"--arms: {name}={uri}: {item!r} is not key=value (e.g. ?congestion=0.5)")
        key = key.strip()
        if key not in ARM_OPTIONS or key in out:
            raise ArmOptionError(
                f"--arms: {name}={uri}: option {key!r} unknown or repeated (rule: one of {list(ARM_OPTIONS)})"
            )
        if key == "fairness":  # checked by FairnessConfig's own rule; the groups come from the config later
            try:
                out[key] = FairnessConfig(content_weight=float(value)).content_weight
            except (ValueError, ValidationError):
                raise ArmOptionError(
                    f"--arms: {name}={uri}: fairness={value!r} is not a content weight (rule: a number, "
                    "0 <= W <= 1)"
                ) from None
            continue
        try:
            out[key] = CongestionConfig(enabled=True, weight=float(value))
        except (ValueError, ValidationError):
            raise ArmOptionError(
                f"--arms: {name}={uri}: congestion={value!r} is not a weight (rule: a number, 0 <= W <= 100)"
            ) from None
    return out


def parse_arms(text: str) -> list[Arm]:
    """``A=URI,B=URI`` -> two arms; named errors for a missing ``=``, an empty or repeated name, an unknown
    ``baseline:`` policy or a URI that is neither a baseline nor an MLflow model URI."""
    arms = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        if "=" not in part:
            raise OnlineABError(f"--arms: {part!r} has no '=' (rule: NAME=URI, e.g. A=baseline:legacy)")
        name, uri = (x.strip() for x in part.split("=", 1))
        if not name or not uri:
            raise OnlineABError(f"--arms: {part!r} needs both a name and a URI (rule: NAME=URI)")
        if uri.startswith("baseline:") and uri not in BASELINE_ARMS and "?" not in uri:
            raise OnlineABError(f"--arms: {uri!r} is not an online baseline; one of {list(BASELINE_ARMS)}")
        if not uri.startswith(("baseline:", *MODEL_URIS)):  # options are checked by arm_options
            raise OnlineABError(
                f"--arms: {uri!r}: need an MLflow model URI ({', '.join(MODEL_URIS)}...) or one of "
                f"{list(BASELINE_ARMS)}"
            )
        arms.append(Arm(name, uri, **arm_options(name, uri)))
    if len(arms) != 2 or arms[0].name == arms[1].name:
        raise OnlineABError(f"--arms: {text!r}: exactly two arms with different names (rule: A=URI,B=URI)")
    return arms


def two_sample_bootstrap(b: np.ndarray, a: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict:
    """mean(b) - mean(a) over independent units with a 95% percentile bootstrap (each sample resampled
    within itself) and the relative lift over mean(a)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size == 0 or b.size == 0:
        raise OnlineABError("two-sample bootstrap: an arm has no seekers")
    rng = np.random.default_rng(seed)
    boots = b[rng.integers(0, b.size, (n_boot, b.size))].mean(1) - a[
        rng.integers(0, a.size, (n_boot, a.size))
    ].mean(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    d = float(b.mean() - a.mean())
    return {
        "mean_a": float(a.mean()),
        "mean_b": float(b.mean()),
        "diff": d,
        "ci_low": float(lo),
        "ci_high": float(hi),
        "lift": d / float(a.mean()) if a.mean() else float("nan"),
        "n_a": int(a.size),
        "n_b": int(b.size),
    }


def gini(x: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0: all equal; 0 for an all-zero vector)."""
    x = np.sort(np.asarray(x, float))
    n, tot = x.size, x.sum()
    if n == 0 or tot == 0:
        return 0.0
    return float((2 * np.arange(1, n + 1) - n - 1).dot(x) / (n * tot))


def per_seeker(tables: dict, seekers: pd.DataFrame, first_session: int, cut: pd.Timestamp) -> pd.DataFrame:
    """Per seeker with a continued session: counts of each metric caused by continued sessions, days from
    the first continued session to the first hire (NaN if none), arm and segments."""
    sess = tables["sessions"]
    first = sess.groupby("seeker_id")["ts"].min()
    ev = tables["events"]
    ev = ev[ev["session_id"] >= first_session]
    kinds = {
        "views": ev["event_type"] == "view",
        "applies": ev["event_type"] == "apply",
        "hires": ev["event_type"] == "hire",
        "completions": ev["event_type"] == "complete",
        "certificate_passes": ev["event_type"] == "acquire",
        "enrolments": ev["event_type"] == "enrol",
        "registrations": ev["event_type"] == "register",
    }
    df = pd.DataFrame(index=first.index)
    for k, m in kinds.items():
        df[k] = ev[m].groupby("seeker_id").size().reindex(df.index, fill_value=0).astype(float)
    hire_ts = ev[kinds["hires"]].groupby("seeker_id")["ts"].min().reindex(df.index)
    df["days_to_hire"] = (hire_ts - first) / pd.Timedelta(days=1)
    s = seekers.set_index("seeker_id").reindex(df.index)
    df["gender"] = s["gender"].astype(str).to_numpy()
    df["age_band"] = s["age"].map(age_band).to_numpy()
    df["region"] = s["region_id"].to_numpy()
    return df


def postings_side(tables: dict, postings: pd.DataFrame, arm: pd.Series, cut, end, first_session) -> dict:
    """Per arm, over the postings open at some moment of the continued period: the arm's applicants per
    opening (mean, Gini) and the share of postings without an applicant from it."""
    p = postings[(postings["open_at"] < end) & (postings["close_at"] > cut)]
    ev = tables["events"]
    ev = ev[(ev["event_type"] == "apply") & (ev["session_id"] >= first_session)]
    out = {}
    for name, g in ev.groupby(arm.reindex(ev["seeker_id"]).to_numpy()):
        n = g.groupby("item_id").size().reindex(p["posting_id"], fill_value=0).to_numpy()
        per = n / p["headcount"].to_numpy()
        out[str(name)] = {
            "n_postings": int(len(p)),
            "applicants_per_opening_mean": float(per.mean()),
            "applicants_per_opening_gini": gini(per),
            "share_postings_without_applicant": float((n == 0).mean()),
        }
    return out


def report(df: pd.DataFrame, arms: list, n_boot: int, seed: int) -> dict:
    """Per metric and segment: each arm's mean per seeker and B - A with its bootstrap interval."""
    a, b = (df[df["arm"] == arm.name] for arm in arms)
    res = {"metrics": {}, "segments": {}}
    for m in METRICS:
        res["metrics"][m] = two_sample_bootstrap(b[m].to_numpy(), a[m].to_numpy(), n_boot, seed)
    ta, tb = a["days_to_hire"].dropna().to_numpy(), b["days_to_hire"].dropna().to_numpy()
    res["metrics"]["days_to_hire"] = (
        two_sample_bootstrap(tb, ta, n_boot, seed)
        if ta.size and tb.size
        else {
            "mean_a": float(ta.mean()) if ta.size else None,
            "mean_b": float(tb.mean()) if tb.size else None,
        }
    )
    res["metrics"]["days_to_hire"]["note"] = "among hired seekers only (a selected group)"
    for seg in SEGMENTS:
        out = {}
        for value in sorted(df[seg].unique(), key=str):
            ga, gb = a[a[seg] == value], b[b[seg] == value]
            row = {"n_a": int(len(ga)), "n_b": int(len(gb))}
            for m in ("applies", "hires"):
                if min(len(ga), len(gb)) >= MIN_SEGMENT:
                    row[m] = two_sample_bootstrap(gb[m].to_numpy(), ga[m].to_numpy(), n_boot, seed)
                else:
                    row[m] = {"mean_a": float(ga[m].mean()) if len(ga) else None,
                              "mean_b": float(gb[m].mean()) if len(gb) else None}  # fmt: skip
            out[str(value)] = row
        res["segments"][seg] = out
    return res


def markdown(res: dict) -> str:
    a, b = res["arms"]
    lines = [
        f"# Online A/B inside the world: {b['name']} ({b['uri']}) vs {a['name']} ({a['uri']})",
        "",
        f"From {res['from']} for {res['days']} days, seed {res['seed']}, split {res['split']} to "
        f"{b['name']}; {res['n_seekers'][a['name']]} / {res['n_seekers'][b['name']]} seekers with a session.",
        "",
        f"| metric per seeker | {a['name']} | {b['name']} | {b['name']} - {a['name']} [95% CI] |",
        "|---|---|---|---|",
    ]
    for m, r in res["metrics"].items():
        if "diff" in r:
            ci = f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"
            lines.append(f"| {m} | {r['mean_a']:.4f} | {r['mean_b']:.4f} | {r['diff']:+.4f} {ci} |")
        else:
            lines.append(f"| {m} | {r['mean_a']} | {r['mean_b']} | too few to compare |")
    for name, m in res.get("model_arms", {}).items():
        lines += [
            "",
            f"Arm {name} serves " + "; ".join(f"{it}: {lab}" for it, lab in m["serves"].items()) + ".",
        ]
        if m.get("congestion_weight") is not None:
            lines.append(f"Its postings are re-ranked by congestion, weight {m['congestion_weight']:g}.")
        if m.get("fairness") is not None:
            f = m["fairness"]
            lines.append(
                f"Its slates for seekers of {f['dimension']} {', '.join(f['groups'])} are re-ranked with the "
                f"content-only ablation, content weight {f['content_weight']:g} (serving.fairness)."
            )
        if m["data_cutoff_after_cut"]:
            lines.append(
                f"Caution: the {', '.join(m['data_cutoff_after_cut'])} model(s) of arm {name} were trained "
                f"on events up to {max(m['trained_until'].values())}, after the continuation's start: their "
                "stage one has seen these seekers' own future in the world's original run, an advantage no "
                "real A/B test has."
            )
    lines += ["", "| postings side | " + " | ".join(x["name"] for x in res["arms"]) + " |", "|---|---|---|"]
    for k in (
        "applicants_per_opening_mean",
        "applicants_per_opening_gini",
        "share_postings_without_applicant",
    ):
        vals = [res["postings"].get(x["name"], {}).get(k, float("nan")) for x in res["arms"]]
        lines.append(f"| {k} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    return "\n".join(lines) + "\n"


def build_policies(arms, inp, cfg, world, seed: int, oracle=None, cut=None, salt: str = ""):
    """One slate policy per arm (None: the world's legacy policy) and, for registry model arms, what each
    serves and the shared day state (:func:`evaluation.online_engine.build_engine_arms`; needs ``oracle``'s
    tables and the ``cut``)."""
    out: list = [None] * len(arms)
    ecfg = cfg.serving.explore
    named = []
    for k, arm in enumerate(arms):
        if arm.uri == "baseline:legacy":
            out[k] = None
        elif arm.uri == "baseline:random":
            out[k] = RandomArm(inp, seed + k)
        elif arm.uri == "baseline:oracle":
            out[k] = OracleArm(inp, ecfg, f"{ecfg.salt}:{arm.name}")
        elif arm.uri.startswith(MODEL_URIS):
            named.append((k, arm))
        else:  # parse_arms admits nothing else
            raise OnlineABError(f"--arms: {arm.uri!r} has no online policy")
    days, info = None, {}
    if named:
        from evaluation.online_engine import build_engine_arms

        start = pd.Timestamp(oracle.manifest["span"]["start"])
        models, days, info = build_engine_arms(
            [(a.name, a.model_uri) for _, a in named],
            cfg,
            world,
            oracle.tables,
            start,
            cut,
            inp,
            salt,
            congestion={a.name: a.congestion for _, a in named if a.congestion is not None},
            fairness={a.name: _fairness_of(cfg, a) for _, a in named if a.fairness is not None},
        )
        for k, arm in named:
            out[k] = models[arm.name]
    return out, days, info


def _fairness_of(cfg, arm: Arm):
    """The arm's ``?fairness=W`` as a :class:`jobcare.config.FairnessConfig`: the config's dimension and
    groups, on, with content weight W; a named error when the config lists no group."""
    fc = cfg.serving.fairness
    if not fc.groups:
        raise ArmOptionError(
            f"--arms: {arm.name}={arm.uri}: fairness needs the groups to re-rank in the config's "
            "serving.fairness.groups (rule: e.g. {dimension: age band, groups: ['50+']})"
        )
    return FairnessConfig(enabled=True, dimension=fc.dimension, groups=fc.groups, content_weight=arm.fairness)


def model_requests(policies, arms) -> pd.DataFrame | None:
    """Every session a model arm served: its request id, model version, candidates and the model's top
    ``pool`` item ids in order (what the service's impression log keeps to value other policies)."""
    rows = [{"arm": a.name, **r} for p, a in zip(policies, arms) for r in getattr(p, "requests", None) or []]
    return pd.DataFrame(rows) if rows else None


def engine_timing(days, policies, arms) -> dict:
    """Seconds of the model arms: the daily rebuild (features, item state; shared), each arm's model
    compilation and scoring, and the model arms' sessions per second over both."""
    per = {
        a.name: {"sessions": len(p.requests), "seconds": p.seconds}
        for p, a in zip(policies, arms)
        if hasattr(p, "requests")
    }
    total = days.seconds + sum(x["seconds"] for x in per.values())
    n = sum(x["sessions"] for x in per.values())
    return {
        "rebuild_days": days.n_days,
        "rebuild_seconds": days.seconds,
        "arms": per,
        "model_sessions_per_second": n / total if total else None,
    }


def run_online_ab(
    world,
    cfg,
    date,
    days: int,
    arms_text: str,
    split: float,
    seed: int,
    out,
    n_boot=2000,
    ope_window: int | None = None,
    ope_max_requests: int = 1000,
) -> dict:
    """Continue ``world`` from ``date`` for ``days`` days with the two arms; write the continued tables,
    the assignment and the report (JSON + Markdown) to ``out``; return the report. ``ope_window`` (days)
    adds the A/B report's off-policy estimates on the explore slates of that many days before ``date``
    next to the online effect (:mod:`evaluation.online_ope`)."""
    from jobcare.world import online
    from jobcare.world.oracle import WorldOracle

    if not 0 < split < 1:
        raise OnlineABError(f"--split: {split} is not strictly between 0 and 1 (rule: share of seekers to B)")
    arms = parse_arms(arms_text)
    oracle = WorldOracle(world)
    first_day = online.first_day_of(oracle.manifest, date, days)
    inp, resume, rng = online.prepare(oracle, first_day, days, seed)
    salt = f"online-ab:{seed}"
    seekers = oracle.tables["seekers"]
    assignment = arm_of(seekers["seeker_id"].to_numpy(), salt, split)
    cut = pd.Timestamp(oracle.manifest["span"]["start"]) + pd.Timedelta(days=first_day)
    policies, engine_days, model_info = build_policies(arms, inp, cfg, world, seed, oracle, cut, salt)
    router = ArmRouter(policies, assignment)
    first_session = resume.next_session
    t0 = time.perf_counter()
    cont = online.continue_world(oracle, first_day, days, inp, resume, rng, router)
    elapsed = time.perf_counter() - t0
    served = model_requests(policies, arms)
    out = Path(out)
    arm_names = pd.Series(np.asarray([a.name for a in arms])[assignment], index=seekers["seeker_id"])
    df = per_seeker(cont.tables, seekers, first_session, cont.cut)
    df["arm"] = arm_names.reindex(df.index).to_numpy()
    end = cont.cut + pd.Timedelta(days=days)
    res = {
        "world": str(world),
        "from": str(cont.cut),
        "days": days,
        "seed": seed,
        "split": split,
        "salt": salt,
        "arms": [{"name": a.name, "uri": a.uri} for a in arms],
        "n_seekers": {a.name: int((df["arm"] == a.name).sum()) for a in arms},
        "n_sessions": {a.name: int(router.calls[k]) for k, a in enumerate(arms)},
        "seconds": elapsed,
        "sessions_per_second": float(len(cont.tables["sessions"]) / elapsed) if elapsed else None,
        "model_arms": model_info,
        **({"engine": engine_timing(engine_days, policies, arms)} if engine_days is not None else {}),
        **report(df, arms, n_boot, seed),
        "postings": postings_side(
            cont.tables, oracle.tables["postings"], arm_names, cont.cut, end, first_session
        ),
    }
    from evaluation import online_fairness

    so = online_fairness.session_outcomes(cont.tables, first_session)
    names = [a.name for a in arms]
    res["fairness"] = online_fairness.fairness(so, df, names, min(n_boot, 1000), seed)
    md = markdown(res) + online_fairness.markdown(res["fairness"], names)
    if ope_window:
        from evaluation import online_ope

        res["ope_vs_online"] = online_ope.ope_vs_online(
            world, cfg, res, cont.tables, arm_names, ope_window, ope_max_requests
        )
        md += "\n" + online_ope.markdown(res["ope_vs_online"])
    for name, table in cont.tables.items():
        write_table(table, out / f"{name}.parquet")
    write_table(
        pd.DataFrame({"seeker_id": seekers["seeker_id"].to_numpy(), "arm": arm_names.to_numpy()}),
        out / "assignment.parquet",
    )
    write_table(df.reset_index(names="seeker_id"), out / "per_seeker.parquet")
    if served is not None:
        write_table(served, out / "model_requests.parquet")
    (out / "online_ab.json").write_text(json.dumps(res, indent=2, sort_keys=True, default=str))
    (out / "online_ab.md").write_text(md)
    return res

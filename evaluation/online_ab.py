"""Online A/B inside the world: continue a world from a date with two arms as the logging policy and
report the true online effect (``jobcare world simulate --arms A=URI,B=URI``).

Seekers are split by a stable hash of (salt, seeker id) (:func:`evaluation.online_arms.arm_of`); both
arms live in the same continued world, so they compete for the same postings' openings and course seats
(interference, as in a real A/B test on a marketplace). Outcomes are counted per seeker who had at least
one session in the continued period, and only those caused by the continued sessions (an apply before
the cut that is decided after it is the same for both arms and is left out). A seeker is in one arm
only, so the comparison is two-sample: the difference of per-seeker means B - A with a 95% percentile
bootstrap over seekers resampled within each arm.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.online_arms import BASELINE_ARMS, ArmRouter, OracleArm, RandomArm, arm_of
from jobcare.errors import JobcareError
from jobcare.world.io import write_table

log = logging.getLogger(__name__)
METRICS = ("views", "applies", "hires", "completions", "certificate_passes", "enrolments", "registrations")
SEGMENTS = ("gender", "age_band", "region")
MIN_SEGMENT = 20


class OnlineABError(JobcareError):
    """Bad arms or split (which field, which rule)."""


@dataclass(frozen=True)
class Arm:
    name: str
    uri: str


def parse_arms(text: str) -> list[Arm]:
    """``A=URI,B=URI`` -> two arms; named errors for a missing ``=``, an empty or repeated name, or an
    unknown ``baseline:`` policy."""
    arms = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        if "=" not in part:
            raise OnlineABError(f"--arms: {part!r} has no '=' (rule: NAME=URI, e.g. A=baseline:legacy)")
        name, uri = (x.strip() for x in part.split("=", 1))
        if not name or not uri:
            raise OnlineABError(f"--arms: {part!r} needs both a name and a URI (rule: NAME=URI)")
        if uri.startswith("baseline:") and uri not in BASELINE_ARMS:
            raise OnlineABError(f"--arms: {uri!r} is not an online baseline; one of {list(BASELINE_ARMS)}")
        if uri.startswith(("models:/", "runs:/")):
            raise OnlineABError(
                f"--arms: {uri!r}: registry models as arms are not supported yet (the engine's request path "
                f"over the continued world's features is the next step of issue 18); use one of "
                f"{list(BASELINE_ARMS)}"
            )
        if not uri.startswith("baseline:"):
            raise OnlineABError(f"--arms: {uri!r}: need one of {list(BASELINE_ARMS)}")
        arms.append(Arm(name, uri))
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


def _age_band(age) -> str:
    a = float(age)
    return "<30" if a < 30 else "30-39" if a < 40 else "40-49" if a < 50 else "50+"


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
    df["age_band"] = s["age"].map(_age_band).to_numpy()
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
    lines += ["", "| postings side | " + " | ".join(x["name"] for x in res["arms"]) + " |", "|---|---|---|"]
    for k in (
        "applicants_per_opening_mean",
        "applicants_per_opening_gini",
        "share_postings_without_applicant",
    ):
        vals = [res["postings"].get(x["name"], {}).get(k, float("nan")) for x in res["arms"]]
        lines.append(f"| {k} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    return "\n".join(lines) + "\n"


def build_policies(arms, inp, cfg, world, seed: int, first_day: int):
    """One slate policy per arm (None: the world's legacy policy)."""
    out = []
    ecfg = cfg.serving.explore
    for k, arm in enumerate(arms):
        if arm.uri == "baseline:legacy":
            out.append(None)
        elif arm.uri == "baseline:random":
            out.append(RandomArm(inp, seed + k))
        elif arm.uri == "baseline:oracle":
            out.append(OracleArm(inp, ecfg, f"{ecfg.salt}:{arm.name}"))
        else:  # parse_arms admits baselines only
            raise OnlineABError(f"--arms: {arm.uri!r} has no online policy")
    return out


def run_online_ab(
    world, cfg, date, days: int, arms_text: str, split: float, seed: int, out, n_boot=2000
) -> dict:
    """Continue ``world`` from ``date`` for ``days`` days with the two arms; write the continued tables,
    the assignment and the report (JSON + Markdown) to ``out``; return the report."""
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
    router = ArmRouter(build_policies(arms, inp, cfg, world, seed, first_day), assignment)
    first_session = resume.next_session
    t0 = time.perf_counter()
    cont = online.continue_world(oracle, first_day, days, inp, resume, rng, router)
    elapsed = time.perf_counter() - t0
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
        **report(df, arms, n_boot, seed),
        "postings": postings_side(
            cont.tables, oracle.tables["postings"], arm_names, cont.cut, end, first_session
        ),
    }
    for name, table in cont.tables.items():
        write_table(table, out / f"{name}.parquet")
    write_table(
        pd.DataFrame({"seeker_id": seekers["seeker_id"].to_numpy(), "arm": arm_names.to_numpy()}),
        out / "assignment.parquet",
    )
    write_table(df.reset_index(names="seeker_id"), out / "per_seeker.parquet")
    (out / "online_ab.json").write_text(json.dumps(res, indent=2, sort_keys=True, default=str))
    (out / "online_ab.md").write_text(markdown(res))
    return res

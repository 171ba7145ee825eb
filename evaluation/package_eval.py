"""The package evaluated in the world: its first bundle at a past moment T against what seekers did after
T, and against the three independent lists of the trained service at T.

Protocol (every input as of T, every outcome after T):

- **T** is the start of the registered models' test window (``train.test_days`` before the end of the
  world): the rankers were fitted on ranker rows of the train and validation windows, all before T.
- **The service at T**: an in-process :class:`serving.engine.Engine` whose clock is T
  (``serving.as_of``): item arrays, allowed masks, capacity, popularity and certificate demand as of T.
  The registered bundles' stage one was refitted on every event up to the end of the world (ALS would
  hold the seekers' later courses in their factors), so a variant ``as_of_T`` serves the registered
  ranker with a stage one (popularity, ALS, two-tower) refitted on the events before T, as the training
  pipeline does for its own test window.
- **Seekers at T**: ``seeker_online_v1`` from the offline store with ``event_timestamp = T`` (the online
  store holds the end-of-world values); the engine reads them instead of the online store.
- **Who**: seekers with a course completed or a certificate acquired in ``[T, end)``, a sample of them;
  target occupation: their first desired occupation.
- **What they did**: courses enrolled in and certificates registered for in ``[T, end)`` ("chosen",
  all of them offerable at T) and courses completed / certificates acquired in ``[T, end)`` ("done",
  many of whose courses were enrolled in before T and so cannot be offered at T by anyone).
- **Methods**: the package's first bundle (<= 2 courses + 2 certificates; the engine's per-seeker
  allowed masks and the regional demand weight), and the same with courses only within 100 km of the
  seeker's region; the trained lists (top ``k_lists`` courses and top ``k_lists`` certificates of
  ``Engine.recommend`` at T, no exploration); the competency-gap endpoint's closers (a rule: most missing
  units closed first) without the items the seeker already enrolled in / registered for, first
  ``k_lists`` of each type.
- **Metrics** per seeker, averaged: hit (any proposed item among the chosen / done items); coverage gain
  on the target occupation if every proposed item succeeds ("reached") and expected with completion and
  pass rates (:func:`serving.package.bundle_coverage`); for the seekers, the realised gain (the units
  their completions and acquisitions after T gave them) and the gain their chosen items would give.

Run: ``python -m evaluation.package_eval --world .jobcare/world-demo-7 --config configs/demo.yaml``
(after ``make demo``); writes ``benchmarks/results/package_eval.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from features import store as fstore
from jobcare.competency import coverage
from jobcare.config import ProjectConfig, load_config
from jobcare.world.io import read_manifest, read_tables
from serving.engine import Engine
from serving.package import RULES, bundle_coverage
from training.candidates.evaluate import fit_stage_one
from training.offers import allowed_mask
from training.windows import Windows

log = logging.getLogger(__name__)
VARIANT = "as_of_T"
ITEM_TYPES = ("course", "certificate")
CHOSEN = {"course": "enrol", "certificate": "register"}
DONE = {"course": "complete", "certificate": "acquire"}
METHODS = ("package", "package_near", "trained_lists", "gap_closers")
NEAR_KM = 100.0


class _AsOfEngine(Engine):
    """The engine with seeker rows given as of T instead of read from the online store (end of world)."""

    def __init__(self, cfg: ProjectConfig):
        self.rows: dict = {}
        super().__init__(cfg)

    def online_seeker(self, seeker_id: int) -> dict:
        return self.rows[int(seeker_id)]


def evaluate(
    world: str | Path,
    cfg: ProjectConfig,
    n_seekers: int = 500,
    k_lists: int = 2,
    seed: int = 0,
    show_progress: bool = True,
) -> dict:
    """Run the protocol (module docstring); return the result (JSON-ready) with a markdown ``table``."""
    t0 = time.perf_counter()
    world = Path(world)
    windows = Windows.of(read_manifest(world)["span"], cfg.train)
    T, end = windows.test_start, windows.end
    tables = read_tables(world, ["events", "seeker_competency_events", "seekers"])
    ev = tables["events"]
    after = ev[(ev["ts"] >= T) & (ev["ts"] < end)]
    done = after[after["event_type"].isin(DONE.values())]
    registered = tables["seekers"].loc[tables["seekers"]["registered_at"] < T, "seeker_id"]
    population = np.intersect1d(done["seeker_id"].to_numpy(), registered.to_numpy())
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(population, min(n_seekers, population.size), replace=False))

    engine, stage_secs = _engine_at(world, cfg, T, tables["events"], windows)
    rows = _seeker_rows(engine, sample, T)
    engine.rows = rows
    acts = _acts(after, sample)
    gained = _realised_units(tables["seeker_competency_events"], T, end, sample)
    t_setup = time.perf_counter() - t0

    per = {
        m: {"hit_chosen": [], "hit_done": [], "reached": [], "expected": [], "n_items": []} for m in METHODS
    }
    seekers = {"gain_realised": [], "gain_chosen_reached": [], "gain_chosen_expected": [], "coverage_T": []}
    days = {m: {"duration_days": [], "cost_days": []} for m in ("package", "package_near")}
    no_gap = 0
    t1 = time.perf_counter()
    for s in tqdm(sample, desc="package eval", disable=not show_progress, unit="seeker"):
        s = int(s)
        row = rows[s]
        occ = int(list(row["seeker_profile__desired_occupation_ids"])[0])
        proposals, timing = _proposals(engine, s, row, occ, k_lists)
        for m, (dur, cost) in zip(("package", "package_near"), timing):
            days[m]["duration_days"].append(dur)
            days[m]["cost_days"].append(cost)
        chosen, did = acts.get(s, ({}, {}))
        base = bundle_coverage(engine.state, engine.catalog, engine.ctx, row, occ)
        cov0 = base["coverage"]
        no_gap += cov0 >= 1.0 - 1e-12
        for m, (courses, certs) in proposals.items():
            got = bundle_coverage(engine.state, engine.catalog, engine.ctx, row, occ, courses, certs)
            per[m]["hit_chosen"].append(_hit(courses, certs, chosen))
            per[m]["hit_done"].append(_hit(courses, certs, did))
            per[m]["reached"].append(got["reached"] - cov0)
            per[m]["expected"].append(got["expected"] - cov0)
            per[m]["n_items"].append(len(courses) + len(certs))
        ch = bundle_coverage(
            engine.state,
            engine.catalog,
            engine.ctx,
            row,
            occ,
            chosen.get("course", ()),
            chosen.get("certificate", ()),
        )
        seekers["gain_chosen_reached"].append(ch["reached"] - cov0)
        seekers["gain_chosen_expected"].append(ch["expected"] - cov0)
        seekers["gain_realised"].append(_realised_gain(engine.ctx, row, occ, gained.get(s, {})) - cov0)
        seekers["coverage_T"].append(cov0)
    t_loop = time.perf_counter() - t1

    methods = {m: {k: _mean_ci(v) for k, v in d.items()} for m, d in per.items()}
    wins = np.array(per["package"]["reached"]) > np.array(per["trained_lists"]["reached"])
    out = {
        "world": str(world),
        "T": str(T),
        "end": str(end),
        "population": int(population.size),
        "n_seekers": int(sample.size),
        "seekers_without_gap_at_T": int(no_gap),
        "k_lists": k_lists,
        "seed": seed,
        "rules": {
            "pre_select": RULES.pre_select,
            "exam_base_days": RULES.exam_base_days,
            "exam_days_per_grade": RULES.exam_days_per_grade,
            "package_near_max_course_km": NEAR_KM,
        },
        "methods": methods,
        "first_bundle": {
            m: {
                "none": int(np.isnan(d["duration_days"]).sum()),
                **{k: _mean_ci(np.asarray(v)[~np.isnan(v)]) for k, v in d.items()},
            }
            for m, d in days.items()
        },
        "seekers": {k: _mean_ci(v) for k, v in seekers.items()},
        "share_package_reaches_more_than_lists": float(wins.mean()) if wins.size else float("nan"),
        "seconds": {
            "stage_one_refit": round(stage_secs, 1),
            "setup_total": round(t_setup, 1),
            "per_seeker_loop": round(t_loop, 1),
            "total": round(time.perf_counter() - t0, 1),
        },
    }
    out["table"] = table(out)
    return out


# ------------------------------------------------------------------------------------------- set-up
def _engine_at(world: Path, cfg: ProjectConfig, T: pd.Timestamp, events: pd.DataFrame, windows: Windows):
    """The engine at T with the ``as_of_T`` variant: the champion rankers over a stage one refitted on
    the events before T. Returns (engine, seconds spent refitting)."""
    s = cfg.serving.model_copy(
        update={
            "world": world,
            "as_of": str(T),
            "item_types": list(ITEM_TYPES),
            "reload_poll_seconds": 0,
            "item_refresh_seconds": 0,
            "ab": cfg.serving.ab.model_copy(update={"challenger_share": 0.0}),
        }
    )
    engine = _AsOfEngine(cfg.model_copy(update={"serving": s}))
    champion = engine.state.variants["champion"]
    t = time.perf_counter()
    bundles = {}
    for it in ITEM_TYPES:
        b = champion.bundles[it]
        trained = pd.Timestamp(b.meta["windows"]["validation"].split(",")[1].strip(" )"))
        if trained > T:
            raise ValueError(f"{it}: the champion ranker's rows reach {trained}, after T = {T}")
        stage = fit_stage_one(
            it, events, T, engine.store, engine.repo, engine.ctx, cfg.candidates, windows.end
        )
        meta = {**b.meta, "trained_until": str(T)}
        bundles[it] = replace(
            b, popularity=stage.popularity, als=stage.als, two_tower=stage.two_tower, meta=meta
        )
    engine.add_variant(VARIANT, bundles, {it: f"{champion.versions[it]}+stage-one@T" for it in ITEM_TYPES})
    return engine, time.perf_counter() - t


def _seeker_rows(engine: Engine, sample: np.ndarray, T: pd.Timestamp) -> dict:
    """``seeker_online_v1`` rows as of T (offline store), as the online reader returns them."""
    df = pd.DataFrame({"seeker_id": sample.astype(np.int64), "event_timestamp": T})
    feats = fstore.historical_features(engine.store, df, "seeker_online_v1")
    cols = [c for c in feats.columns if "__" in c]
    rows = {}
    for rec in feats[["seeker_id", *cols]].to_dict("records"):
        rows[int(rec["seeker_id"])] = {k: _python(v) for k, v in rec.items()}
    return rows


def _python(v):
    if isinstance(v, np.ndarray):
        return [x.item() if hasattr(x, "item") else x for x in v]
    return v.item() if isinstance(v, np.generic) else v


def _acts(after: pd.DataFrame, sample: np.ndarray) -> dict:
    """seeker -> ({item type: chosen ids}, {item type: done ids}) in [T, end)."""
    a = after[after["seeker_id"].isin(sample)]
    out: dict = {}
    for kind, types in ((0, CHOSEN), (1, DONE)):
        for it, event in types.items():
            sel = a[(a["item_type"] == it) & (a["event_type"] == event)]
            for s, ids in sel.groupby("seeker_id")["item_id"]:
                out.setdefault(int(s), ({}, {}))[kind][it] = set(ids.astype(int))
    return out


def _realised_units(ce: pd.DataFrame, T, end, sample) -> dict:
    """seeker -> {unit: level} gained from courses and certificates in [T, end)."""
    sel = ce[(ce["ts"] >= T) & (ce["ts"] < end) & ce["source"].isin(["course", "certificate"])]
    sel = sel[sel["seeker_id"].isin(sample)]
    best = sel.groupby(["seeker_id", "unit_id"])["level"].max()
    out: dict = {}
    for (s, u), lv in best.items():
        out.setdefault(int(s), {})[int(u)] = int(lv)
    return out


def _realised_gain(ctx, row: dict, occ: int, gained: dict) -> float:
    """Coverage of ``occ`` after the units the seeker really gained after T (max with the held levels)."""
    held = dict(zip(row["seeker_competency__unit_ids"] or [], row["seeker_competency__unit_levels"] or []))
    for u, lv in gained.items():
        held[u] = max(held.get(u, 0), lv)
    units, imp, lvl = ctx.req_units[occ], ctx.req_imp[occ], ctx.req_lvl[occ]
    keep = (imp > 0) & (units < ctx.n_units)
    if not keep.any():
        return 1.0
    h = np.array([held.get(int(u), 0) for u in units[keep]], np.float64)
    return float(coverage(h[None], lvl[keep][None], imp[keep][None])[0])


# ------------------------------------------------------------------------------------------- methods
def _proposals(engine: Engine, s: int, row: dict, occ: int, k_lists: int) -> tuple[dict, list]:
    """(method -> (course ids, certificate ids) proposed at T, [(duration, cost) of each package's first
    bundle, NaN when it has none])."""
    state = engine.state
    held = row["seeker_competency__certificate_ids"] or []
    allowed = {
        it: allowed_mask(state.arrays[it], state.offers[it], s, state.as_of, held, base=state.base[it])
        for it in ITEM_TYPES
    }
    firsts, timing = [], []
    for rules in (RULES, replace(RULES, max_course_km=NEAR_KM)):
        pk = engine.package(occ, seeker_id=s, k=1, rules=rules)  # what POST /package answers at T
        b = pk["bundles"][0] if pk["bundles"] else {"courses": [], "certificates": []}
        firsts.append(([c["id"] for c in b["courses"]], [x["id"] for x in b["certificates"]]))
        timing.append((b.get("duration_days", np.nan), b.get("cost_days", np.nan)))
    lists = [
        [
            i["id"]
            for i in engine.recommend(it, seeker_id=s, k=k_lists, variant=VARIANT, explore=False)["items"]
        ]
        for it in ITEM_TYPES
    ]
    gap = engine.competency_gap(occ, seeker_id=s)
    closers = []  # the endpoint's lists without what the seeker already enrolled in / registered for
    for it, key in (("course", "courses"), ("certificate", "certificates")):
        ok = allowed[it]
        pos = state.arrays[it].positions([o["id"] for o in gap[key]])
        closers.append([o["id"] for o, p in zip(gap[key], pos) if p >= 0 and ok[p]][:k_lists])
    return {
        "package": firsts[0],
        "package_near": firsts[1],
        "trained_lists": (lists[0], lists[1]),
        "gap_closers": (closers[0], closers[1]),
    }, timing


def _hit(courses, certs, acted: dict) -> float:
    return float(
        bool(set(courses) & acted.get("course", set()) or set(certs) & acted.get("certificate", set()))
    )


def _mean_ci(v) -> dict:
    """Mean with a normal 95% interval of the mean."""
    a = np.asarray(v, np.float64)
    if a.size == 0:
        return {"mean": float("nan"), "ci95": float("nan")}
    half = 1.96 * a.std(ddof=1) / np.sqrt(a.size) if a.size > 1 else float("nan")
    return {"mean": round(float(a.mean()), 4), "ci95": round(float(half), 4)}


def table(r: dict) -> str:
    """The result as a markdown table (means, +- half the 95% interval)."""

    def f(x: dict) -> str:
        return f"{x['mean']:.3f} ± {x['ci95']:.3f}"

    head = (
        "| method | items | hit: chosen after T | hit: done after T | coverage gain if all succeed | "
        "expected coverage gain |\n|---|---|---|---|---|---|\n"
    )
    names = {
        "package": "package, first bundle (<= 2 + 2)",
        "package_near": f"package, first bundle, courses within {NEAR_KM:g} km",
        "trained_lists": f"trained lists, top {r['k_lists']} courses + top {r['k_lists']} certificates",
        "gap_closers": f"competency-gap closers, first {r['k_lists']} + {r['k_lists']}",
    }
    rows = []
    for m in METHODS:
        x = r["methods"][m]
        cells = [f(x[c]) for c in ("hit_chosen", "hit_done", "reached", "expected")]
        rows.append(f"| {names[m]} | {x['n_items']['mean']:.2f} | " + " | ".join(cells) + " |\n")
    body = "".join(rows)
    sk = r["seekers"]
    body += (
        f"| what the seekers chose after T (if completed) | | 1 | | {f(sk['gain_chosen_reached'])} | "
        f"{f(sk['gain_chosen_expected'])} |\n"
        f"| what the seekers completed / acquired after T (realised) | | | 1 | {f(sk['gain_realised'])} | |\n"
    )
    return head + body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=Path, default=Path(".jobcare/world-demo-7"))
    ap.add_argument("--config", type=Path, default=Path("configs/demo.yaml"))
    ap.add_argument("--seekers", type=int, default=500)
    ap.add_argument("--k-lists", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/package_eval.json"))
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(a.config, ProjectConfig)
    r = evaluate(a.world, cfg, a.seekers, a.k_lists, a.seed)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(r, indent=2) + "\n")
    print(r["table"])
    print(
        json.dumps({k: r[k] for k in ("T", "population", "n_seekers", "seekers_without_gap_at_T", "seconds")})
    )


if __name__ == "__main__":
    main()

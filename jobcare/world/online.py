"""Continue a generated world from a date under another logging policy: the closed loop's world side.

The simulator's own session loop (:func:`jobcare.world.simulate.simulate`) runs on, from ``first_day``,
with the world's dynamic state rebuilt from its tables at that moment (:func:`resume_at`) and a
pluggable slate policy: seekers, postings, courses, certificates, the true utility, position bias,
hires with headcount and congestion, course capacity and exams are the world's, only the slates change.

What the tables do not record is re-drawn, from the continuation's own random stream:
- each seeker's session rate (``activity``) is the world's exact draw (the simulation stream's first);
- outcomes pending at the cut: an apply without a hire before it is decided on int(day) + U{3..14}
  (world's rule); the draw decides whether the decision fell before the cut (then it was a rejection:
  no hire is logged) or is still to come. Certificate registrations without a pass likewise
  (U{30..60}: before the cut a failed exam, which lifts the seeker's block on the certificate).
  Course completions fall on the course's end day: exact.
The legacy arm continued from the cut therefore matches the world's own continuation in distribution,
not draw for draw.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd

from jobcare.config import WorldConfig
from jobcare.errors import JobcareError
from jobcare.world.generate import _event_tables, _impressions_frame, _truth_frame
from jobcare.world.io import TRUTH_DIR
from jobcare.world.simulate import (
    APPLY_EVENT,
    POP_HALF_LIFE_DAYS,
    Resume,
    SimulationInput,
    session_activity,
    simulate,
)
from jobcare.world.utility import ITEM_TYPES, CompetencyState

SIM_STREAM = 5  # generate_world spawns 6 seed streams; the simulation draws from the last
CONTINUED_TABLES = (
    "sessions",
    "impressions",
    "events",
    "seeker_competency_events",
    "seeker_certificates",
    "seeker_exits",
    f"{TRUTH_DIR}/impressions",
)


class ContinuationError(JobcareError):
    """A continuation the world cannot run (date outside its span, days beyond its end)."""


@dataclass
class Continuation:
    """The continued period's tables (same columns as the world's) and where it sits in the span."""

    tables: dict[str, pd.DataFrame]
    start: pd.Timestamp  # the world's span start
    first_day: int
    days: int

    @property
    def cut(self) -> pd.Timestamp:
        return self.start + pd.Timedelta(days=self.first_day)


def first_day_of(manifest: dict, date, days: int) -> int:
    """The span day index of ``date`` (a midnight inside the span), checked with ``days`` to run."""
    start = pd.Timestamp(manifest["span"]["start"])
    span = int(manifest["span"]["days"])
    ts = pd.Timestamp(date)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    off = (ts - start) / pd.Timedelta(days=1)
    if off != int(off):
        raise ContinuationError(
            f"--from: {date} is not a midnight (UTC) of the world's span (rule: whole days)"
        )
    first = int(off)
    if not 1 <= first < span:
        raise ContinuationError(
            f"--from: {date} is outside the world's span {start.date()} + 1..{span - 1} days "
            "(rule: continue after day 0 and before the end)"
        )
    if days < 1 or first + days > span:
        raise ContinuationError(
            f"--days: {days} from day {first} runs past the span's {span} days (rule: the world's catalogue, "
            f"postings, courses and seekers, exists only inside its span; at most {span - first})"
        )
    return first


def simulation_input(oracle, state: CompetencyState, days: int) -> SimulationInput:
    """The world's simulation input (catalogue, utility, logging-policy settings from its manifest)."""
    cfg = WorldConfig(**oracle.manifest["config"])
    t = oracle.tables
    return SimulationInput(
        arrays=oracle.arrays,
        params=oracle.params,
        state=state,
        seekers=t["seekers"],
        postings=t["postings"],
        courses=t["courses"],
        certificates=t["certificates"],
        course_units=t["course_units"],
        certificate_units=t["certificate_units"],
        start_us=int(pd.Timestamp(oracle.manifest["span"]["start"]).value // 1000),
        days=days,
        slate_size=cfg.slate_size,
        epsilon=cfg.epsilons(),
        session_rate=cfg.sizes().sessions_per_seeker_day,
        session_mix=cfg.session_mix.model_dump(),
    )


def resume_at(oracle, first_day: int, rng: np.random.Generator) -> tuple[Resume, CompetencyState]:
    """The world's dynamic state at the start of ``first_day`` from its tables (see the module doc)."""
    t = oracle.tables
    start = pd.Timestamp(oracle.manifest["span"]["start"])
    cut = start + pd.Timedelta(days=first_day)
    ev = t["events"]
    ev = ev[ev["ts"] < cut]
    day = (ev["ts"] - start).to_numpy() / np.timedelta64(1, "D")
    n_s, n_p, n_c = len(t["seekers"]), len(t["postings"]), len(t["courses"])
    activity = session_activity(
        np.random.default_rng(np.random.SeedSequence(oracle.manifest["seed"]).spawn(6)[SIM_STREAM]), n_s
    )
    alive = np.ones(n_s, dtype=bool)
    ex = t["seeker_exits"]
    alive[ex.loc[ex["exited_at"] < cut, "seeker_id"].to_numpy()] = False

    def sel(it, et):
        m = ((ev["item_type"] == it) & (ev["event_type"] == et)).to_numpy()
        return (
            ev["seeker_id"].to_numpy()[m],
            ev["item_id"].to_numpy()[m],
            day[m],
            ev["session_id"].to_numpy()[m],
        )

    hs, hi, hd, _ = sel("posting", "hire")
    p_hires = np.bincount(hi, minlength=n_p).astype(np.int64)
    head = t["postings"]["headcount"].to_numpy()
    p_filled = np.full(n_p, np.inf)
    order = np.lexsort((hd, hi))
    rank = np.zeros(hi.size, np.int64)
    for k in range(1, hi.size):  # the running hire count per posting, in time order
        a, b = order[k - 1], order[k]
        rank[b] = rank[a] + 1 if hi[a] == hi[b] else 0
    full = rank + 1 == head[hi]
    p_filled[hi[full]] = hd[full]
    as_, ai, ad, asid = sel("posting", "apply")
    p_applies = np.bincount(ai, minlength=n_p).astype(np.int64)
    es, ei, ed, esid = sel("course", "enrol")
    c_enrolled = np.bincount(ei, minlength=n_c).astype(np.int64)
    rs, ri, rd, rsid = sel("certificate", "register")
    decay = math.exp(-math.log(2) / POP_HALF_LIFE_DAYS)
    sizes = {"posting": n_p, "course": n_c, "certificate": len(t["certificates"])}
    pop, excluded = {}, {it: defaultdict(set) for it in ITEM_TYPES}
    for it, (s, i, d) in (
        ("posting", (as_, ai, ad)),
        ("course", (es, ei, ed)),
        ("certificate", (rs, ri, rd)),
    ):
        pop[it] = np.bincount(i, weights=decay ** (first_day - np.floor(d)), minlength=sizes[it])
        for a, b in zip(s.tolist(), i.tolist()):
            excluded[it][a].add(b)
    due: dict[int, list] = defaultdict(list)
    hired = set(zip(hs.tolist(), hi.tolist()))
    for s, i, d, sid in zip(as_.tolist(), ai.tolist(), ad.tolist(), asid.tolist()):
        if (s, i) in hired:
            continue
        when = int(d) + int(rng.integers(3, 15))
        if when >= first_day:
            due[when].append(("posting", s, i, sid, when + float(rng.uniform(0, 0.25))))
    done = set(zip(*sel("course", "complete")[:2]))
    c_end = (t["courses"]["end_at"] - start).to_numpy() / np.timedelta64(1, "D")
    for s, i, sid in zip(es.tolist(), ei.tolist(), esid.tolist()):
        when = int(math.ceil(c_end[i]))
        if (s, i) not in done and when >= first_day:
            due[when].append(("course", s, i, sid, when + float(rng.uniform(0, 0.25))))
    passed = set(zip(*sel("certificate", "acquire")[:2]))
    for s, i, d, sid in zip(rs.tolist(), ri.tolist(), rd.tolist(), rsid.tolist()):
        if (s, i) in passed:
            continue
        when = int(d) + int(rng.integers(30, 61))
        if when >= first_day:
            due[when].append(("certificate", s, i, sid, when + float(rng.uniform(0, 0.25))))
        else:
            excluded["certificate"][s].discard(i)  # failed before the cut: may register again
    for lst in due.values():
        lst.sort(key=lambda x: x[4])
    st = oracle.state_at(cut)
    state = CompetencyState(st.levels.copy(), st.certificates.copy())
    # the world's loop holds every seeker's initial competencies from day 0 (the tables stamp them at
    # registration): those of seekers registering after the cut belong to the state too
    ce, sc = t["seeker_competency_events"], t["seeker_certificates"]
    late = ce[(ce["source"] == "initial") & (ce["ts"] > cut)]
    state.raise_levels(late["seeker_id"].to_numpy(), late["unit_id"].to_numpy(), late["level"].to_numpy())
    late = sc[(sc["source"] == "initial") & (sc["acquired_at"] > cut)]
    state.certificates[late["seeker_id"].to_numpy(), late["certificate_id"].to_numpy()] = True
    resume = Resume(
        first_day=first_day,
        activity=activity,
        alive=alive,
        p_filled=p_filled,
        p_hires=p_hires,
        p_applies=p_applies,
        c_enrolled=c_enrolled,
        pop=pop,
        excluded=excluded,
        due=due,
        next_session=int(t["sessions"]["session_id"].max()) + 1 if len(t["sessions"]) else 0,
    )
    return resume, state


def prepare(
    oracle, first_day: int, days: int, seed: int
) -> tuple[SimulationInput, Resume, np.random.Generator]:
    """The simulation input, the state at the cut and the continuation's random stream."""
    rng = np.random.default_rng([int(seed), first_day, days])
    resume, state = resume_at(oracle, first_day, rng)
    return simulation_input(oracle, state, first_day + days), resume, rng


def continue_world(
    oracle,
    first_day: int,
    days: int,
    inp: SimulationInput,
    resume: Resume,
    rng,
    slate_policy=None,
    show_progress: bool = False,
) -> Continuation:
    """Run the world's loop from ``first_day`` for ``days`` days with ``slate_policy`` (None: the world's
    own logging policy); the continued period's tables."""  # fmt: skip
    start = pd.Timestamp(oracle.manifest["span"]["start"])
    sim = simulate(inp, rng, show_progress=show_progress, resume=resume, slate_policy=slate_policy)
    return Continuation(continued_tables(sim, start), start, first_day, days)


def continued_tables(sim: dict, start: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """The simulator's buffers as the world's tables (no initial competencies: they predate the cut)."""
    s0 = np.datetime64(start.tz_convert(None), "us")

    def empty(**cols):
        return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in cols.items()})

    i32 = np.int32
    none = SimpleNamespace(
        seekers=empty(seeker_id=i32, registered_at="datetime64[us, UTC]"),
        initial_units=empty(seeker_id=i32, unit_id=i32, level=i32),
        initial_certificates=empty(seeker_id=i32, certificate_id=i32),
    )
    with warnings.catch_warnings():  # concatenating the empty initial rows
        warnings.simplefilter("ignore", FutureWarning)
        out = _event_tables(sim, none, s0)
    out["impressions"] = _impressions_frame(_chunk(sim["impressions"]), s0)
    out[f"{TRUTH_DIR}/impressions"] = _truth_frame(_chunk(sim["truth_impressions"]))
    return out


def _chunk(df: pd.DataFrame) -> dict:
    return {c: df[c].to_numpy() for c in df.columns}


def acted(events: pd.DataFrame) -> pd.Series:
    """Per event row: whether it is the item type's action (apply / enrol / register)."""
    return events["event_type"] == events["item_type"].map(APPLY_EVENT)

"""Day-by-day simulation of the employment service: sessions, slates, responses and outcomes.

Each day: (1) due outcomes are resolved before any session (hire decisions with headcount and
congestion, course completions, exam results; the last two raise the seeker's competencies from
that moment); (2) some seekers leave; (3) active seekers open sessions; each session is for one
item type and shows a slate chosen by the logging policy; the seeker examines position p with
probability exam_top * (p + 1) ** -exam_decay and responds according to u = mu + Gumbel.

Logging policy (epsilon-greedy over whole slates): with probability 1 - epsilon the slate is the
top-K of a legacy score (desired occupation 2, same occupation group 1, same region 1, popularity
pop / (1 + pop), plus a fixed per-item tie-break); with probability epsilon it is a uniformly random
K-permutation of the available items. The exact probability of item i at position p is
(1 - epsilon) * [greedy slate has i at p] + epsilon / n_available, recorded per impression.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from jobcare.world.catalog import group_arrays
from jobcare.world.utility import ITEM_TYPES, CompetencyState, UtilityParams, WorldArrays

log = logging.getLogger(__name__)

IMPRESSION_COLUMNS = (
    "session_id",
    "position",
    "seeker_id",
    "item_type",
    "item_id",
    "day",
    "propensity",
    "slate_propensity",
)
TRUTH_COLUMNS = ("session_id", "position", "mu", "observable", "latent", "p_examine", "p_view", "p_apply")
APPLY_EVENT = {"posting": "apply", "course": "enrol", "certificate": "register"}
CHURN_PER_DAY = 1 / 300
EXIT_IF_HIRED = 0.8
POP_HALF_LIFE_DAYS = 14.0
LEGACY = "legacy"  # a slate policy's answer for "the world's own logging policy shows this slate"
SESSION_START_H, SESSION_END_H = 8.0, 22.0  # sessions happen in the day; outcomes before 06:00


@dataclass
class SimulationInput:
    arrays: WorldArrays
    params: UtilityParams
    state: CompetencyState
    seekers: pd.DataFrame
    postings: pd.DataFrame
    courses: pd.DataFrame
    certificates: pd.DataFrame
    course_units: pd.DataFrame
    certificate_units: pd.DataFrame
    start_us: int  # span start, microseconds since the epoch
    days: int
    slate_size: int
    epsilon: dict  # item type -> share of explore slates
    session_rate: float
    session_mix: dict  # item type -> share of sessions


@dataclass
class Resume:
    """The world's dynamic state at the start of ``first_day``, to continue a simulation from there
    (:mod:`jobcare.world.online` rebuilds it from a generated world's tables). Without it
    :func:`simulate` starts from day 0 with nothing applied, filled or enrolled."""

    first_day: int
    activity: np.ndarray  # per seeker, the session-rate multiplier (the world's first random draw)
    alive: np.ndarray  # bool per seeker: not hired-and-left nor churned before ``first_day``
    p_filled: np.ndarray  # per posting, the day (float) it reached its headcount, else inf
    p_hires: np.ndarray
    p_applies: np.ndarray
    c_enrolled: np.ndarray
    pop: dict  # item type -> decayed action counts (the legacy score's popularity)
    excluded: dict  # item type -> {seeker: set of items acted on}
    due: dict  # day -> [(item type, seeker, item, session id, time)] outcomes still to resolve
    next_session: int


class _Columns:
    """Append-only columnar buffer: vector chunks (``add``) and single rows (``add_row``, kept in plain
    lists so that millions of small outcomes do not cost one numpy array each). Strings are stored as
    small integer codes (see ``CODES``) and decoded by the caller."""

    def __init__(self, *names: str, sink=None, flush_rows: int = 2_000_000):
        self.chunks: dict[str, list] = {n: [] for n in names}
        self.rows: dict[str, list] = {n: [] for n in names}
        self.sink = sink  # when set, full buffers are handed to it (a dict of arrays) and dropped
        self.flush_rows = flush_rows
        self._n = 0

    def add(self, **arrays) -> None:
        for k, v in arrays.items():
            self.chunks[k].append(np.atleast_1d(np.asarray(v)))
        self._n += len(next(iter(self.chunks.values()))[-1])
        if self.sink is not None and self._n >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        if self.sink is not None and self._n:
            self.sink({k: np.concatenate(v) for k, v in self.chunks.items()})
            self.chunks = {k: [] for k in self.chunks}
            self._n = 0

    def add_row(self, **values) -> None:
        for k, v in values.items():
            self.rows[k].append(v)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                k: np.concatenate([*self.chunks[k], np.asarray(self.rows[k])])
                if (self.chunks[k] or self.rows[k])
                else np.array([])
                for k in self.chunks
            }
        )


# string columns are buffered as int8 codes into these vocabularies
CODES = {
    "item_type": list(ITEM_TYPES),
    "event_type": ["view", "apply", "hire", "enrol", "complete", "register", "acquire"],
    "policy": ["greedy", "explore"],
    "reason": ["hired", "churn"],
    "source": ["initial", "course", "certificate", "exam"],
}
CODE = {col: {v: np.int8(i) for i, v in enumerate(vals)} for col, vals in CODES.items()}


def decode(col: str, codes) -> np.ndarray:
    """Codes -> an object array of shared string objects (8 bytes a row)."""
    return np.asarray(CODES[col], dtype=object)[np.asarray(codes, dtype=np.int64)]


def session_activity(rng: np.random.Generator, n_seekers: int) -> np.ndarray:
    """Each seeker's session-rate multiplier, Gamma(0.7, 1/0.7): the simulation's first random draw."""
    return rng.gamma(0.7, 1 / 0.7, n_seekers)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def simulate(
    inp: SimulationInput,
    rng: np.random.Generator,
    show_progress: bool = True,
    sinks: dict | None = None,
    resume: Resume | None = None,
    slate_policy=None,
) -> dict[str, pd.DataFrame]:
    """Run the simulation; return sessions, events, outcome tables.

    Impressions and their per-impression truth are the largest outputs (tens of millions of rows at
    national scale): they are streamed to ``sinks["impressions"]`` and ``sinks["truth_impressions"]``
    (callables taking a dict of arrays) in chunks, never held whole.

    ``resume`` continues from its ``first_day`` with its state (its arrays are updated in place);
    ``slate_policy`` replaces the legacy logging policy: ``slate_policy.begin_day(d, live)`` is called
    before each day's sessions (``live``: the buffers and counters so far) and
    ``slate_policy(item_type, session_ids, seekers, days, open_items, excluded)`` returns, per session,
    None (nothing to show), :data:`LEGACY` (the world's own policy) or what :func:`choose_slate`
    returns. Without either, the output is the world's own, byte for byte.
    """
    sinks = sinks or {}
    A, P = inp.arrays, inp.params
    n_s = len(inp.seekers)
    reg_day = _days(inp.seekers["registered_at"], inp)
    activity = session_activity(rng, n_s) if resume is None else resume.activity
    alive = np.ones(n_s, dtype=bool)
    exits = _Columns("seeker_id", "day", "reason")

    # item timing (float days) and dynamic counters
    p_open, p_close = _days(inp.postings["open_at"], inp), _days(inp.postings["close_at"], inp)
    p_filled = np.full(len(inp.postings), np.inf)
    p_head = inp.postings["headcount"].to_numpy().astype(np.int64)
    p_hires = np.zeros(len(inp.postings), np.int64)
    p_applies = np.zeros(len(inp.postings), np.int64)
    c_recruit, c_start = _days(inp.courses["recruit_start_at"], inp), _days(inp.courses["start_at"], inp)
    c_end = _days(inp.courses["end_at"], inp)
    c_cap = inp.courses["capacity"].to_numpy().astype(np.int64)
    c_enrolled = np.zeros(len(inp.courses), np.int64)
    pop = {
        it: np.zeros(n, np.float64)
        for it, n in (
            ("posting", len(inp.postings)),
            ("course", len(inp.courses)),
            ("certificate", len(inp.certificates)),
        )
    }
    jitter = {it: _tie_break(len(pop[it])) for it in ITEM_TYPES}
    item_occ = {"posting": A.post_occ, "course": A.course_occ, "certificate": A.cert_occ}
    item_region = {
        "posting": A.post_region,
        "course": A.course_region,
        "certificate": np.full(len(inp.certificates), -1),
    }
    excluded: dict[str, dict[int, set]] = {it: defaultdict(set) for it in ITEM_TYPES}
    course_units = _unit_lists(inp.course_units, "course_id", len(inp.courses))
    cert_units = _unit_lists(inp.certificate_units, "certificate_id", len(inp.certificates))

    sessions = _Columns("session_id", "seeker_id", "item_type", "day", "policy", "n_available")
    impressions = _Columns(*IMPRESSION_COLUMNS, sink=sinks.get("impressions"))
    truth = _Columns(*TRUTH_COLUMNS, sink=sinks.get("truth_impressions"))
    events = _Columns("seeker_id", "item_type", "item_id", "event_type", "day", "session_id")
    comp_events = _Columns("seeker_id", "unit_id", "level", "day", "source", "source_id")
    cert_events = _Columns("seeker_id", "certificate_id", "day", "source")
    due: dict[int, list] = defaultdict(list)
    next_session = 0
    decay = math.exp(-math.log(2) / POP_HALF_LIFE_DAYS)
    n_registered = 0

    first_day = 0
    if resume is not None:
        first_day, alive, p_filled, p_hires = resume.first_day, resume.alive, resume.p_filled, resume.p_hires
        p_applies, c_enrolled, pop, due = resume.p_applies, resume.c_enrolled, resume.pop, resume.due
        excluded, next_session = resume.excluded, resume.next_session
    live = {"events": events, "comp_events": comp_events, "cert_events": cert_events, "exits": exits}
    live |= {"alive": alive, "p_filled": p_filled, "p_hires": p_hires, "p_applies": p_applies}
    live["c_enrolled"] = c_enrolled
    for d in tqdm(range(first_day, inp.days), desc="simulate days", disable=not show_progress, unit="day"):
        # 1. outcomes due today, resolved before 06:00 in the order they were scheduled
        for kind, s, item, sess, t in due.pop(d, []):
            if not alive[s]:
                continue
            if kind == "posting":
                if p_hires[item] >= p_head[item]:
                    continue
                comp = A.components("posting", np.array([s]), np.array([item]), inp.state)
                screen = _sigmoid(
                    -0.5
                    + 3.0 * (comp["coverage"][0] - 0.5)
                    - comp["education_short"][0]
                    - 0.5 * comp["career_short"][0]
                    - 0.5 * comp["certificates_missing"][0]
                )
                congestion = p_head[item] / (p_head[item] + 0.15 * p_applies[item])
                if rng.random() < screen * congestion:
                    p_hires[item] += 1
                    events.add_row(
                        seeker_id=s,
                        item_type=CODE["item_type"]["posting"],
                        item_id=item,
                        event_type=CODE["event_type"]["hire"],
                        day=t,
                        session_id=sess,
                    )
                    if p_hires[item] >= p_head[item]:
                        p_filled[item] = t
                    if rng.random() < EXIT_IF_HIRED:
                        alive[s] = False
                        exits.add_row(seeker_id=s, day=t, reason=CODE["reason"]["hired"])
            elif kind == "course":
                if rng.random() < inp.courses["completion_rate"].iat[item]:
                    units, levels = course_units[item]
                    _gain(inp.state, comp_events, s, units, levels, t, "course", item)
                    events.add_row(
                        seeker_id=s,
                        item_type=CODE["item_type"]["course"],
                        item_id=item,
                        event_type=CODE["event_type"]["complete"],
                        day=t,
                        session_id=sess,
                    )
            else:
                comp = A.components("certificate", np.array([s]), np.array([item]), inp.state)
                pr = inp.certificates["pass_rate"].iat[item]
                if rng.random() < _sigmoid(math.log(pr / (1 - pr)) + 2.0 * (comp["readiness"][0] - 0.5)):
                    units, levels = cert_units[item]
                    _gain(inp.state, comp_events, s, units, levels, t, "certificate", item)
                    inp.state.certificates[s, item] = True
                    cert_events.add_row(
                        seeker_id=s, certificate_id=item, day=t, source=CODE["source"]["exam"]
                    )
                    events.add_row(
                        seeker_id=s,
                        item_type=CODE["item_type"]["certificate"],
                        item_id=item,
                        event_type=CODE["event_type"]["acquire"],
                        day=t,
                        session_id=sess,
                    )
                else:
                    excluded["certificate"][s].discard(item)  # failed: may register again

        # 2. registrations and churn
        while n_registered < n_s and reg_day[n_registered] < d + 1:
            n_registered += 1
        active = np.flatnonzero(alive[:n_registered] & (reg_day[:n_registered] < d + SESSION_START_H / 24))
        churn = active[rng.random(active.size) < CHURN_PER_DAY]
        if churn.size:
            alive[churn] = False
            exits.add(
                seeker_id=churn,
                day=d + rng.uniform(0, 0.25, churn.size),
                reason=np.full(churn.size, CODE["reason"]["churn"]),
            )
            active = active[alive[active]]

        # 3. sessions
        n_sess = rng.poisson(inp.session_rate * activity[active])
        sess_seeker = np.repeat(active, n_sess)
        if sess_seeker.size == 0:
            _decay(pop, decay)
            continue
        sess_type = rng.choice(3, sess_seeker.size, p=[inp.session_mix[t] for t in ITEM_TYPES])
        sess_day = d + rng.uniform(SESSION_START_H, SESSION_END_H, sess_seeker.size) / 24
        order = np.argsort(sess_day, kind="stable")
        sess_seeker, sess_type, sess_day = sess_seeker[order], sess_type[order], sess_day[order]
        sess_id = next_session + np.arange(sess_seeker.size)
        next_session += sess_seeker.size
        t0 = d + SESSION_START_H / 24
        open_items = {
            "posting": np.flatnonzero((p_open <= t0) & (p_close > d + 1) & (p_filled > t0)),
            "course": np.flatnonzero((c_recruit <= t0) & (c_start > d + 1) & (c_enrolled < c_cap)),
            "certificate": np.arange(len(inp.certificates)),
        }
        if slate_policy is not None:
            slate_policy.begin_day(d, live)
        for ti, it in enumerate(ITEM_TYPES):
            m = sess_type == ti
            if not m.any():
                continue
            _run_sessions(
                it,
                sess_id[m],
                sess_seeker[m],
                sess_day[m],
                open_items[it],
                inp,
                A,
                P,
                rng,
                pop[it],
                jitter[it],
                item_occ[it],
                item_region[it],
                excluded[it],
                sessions,
                impressions,
                truth,
                events,
                on_apply=lambda s, item, t, sid, it=it: _on_apply(
                    it, s, item, t, sid, rng, due, excluded, pop, p_applies, c_enrolled, c_cap, c_end
                ),
                slate_policy=slate_policy,
            )
        _decay(pop, decay)

    return {
        "sessions": sessions.frame(),
        "impressions": impressions.frame() if impressions.sink is None else _flushed(impressions),
        "events": events.frame(),
        "competency_events": comp_events.frame(),
        "certificate_events": cert_events.frame(),
        "seeker_exits": exits.frame(),
        "truth_impressions": truth.frame() if truth.sink is None else _flushed(truth),
        "posting_filled_day": pd.DataFrame({"posting_id": np.arange(len(p_filled)), "filled_day": p_filled}),
    }


def _flushed(cols: _Columns) -> None:
    cols.flush()
    return None


def _on_apply(it, s, item, t, sid, rng, due, excluded, pop, p_applies, c_enrolled, c_cap, c_end) -> bool:
    """Book an apply/enrol/register; schedule its outcome. False when it cannot happen (then not logged)."""
    if item in excluded[it][s]:
        return False  # second session the same day showed an item already acted on
    if it == "course" and c_enrolled[item] >= c_cap[item]:
        return False
    excluded[it][s].add(item)
    pop[it][item] += 1
    if it == "posting":
        p_applies[item] += 1
        day = int(t) + int(rng.integers(3, 15))
    elif it == "course":
        c_enrolled[item] += 1
        day = int(math.ceil(c_end[item]))
    else:
        day = int(t) + int(rng.integers(30, 61))
    due[day].append((it, s, item, sid, day + float(rng.uniform(0, 0.25))))
    return True


def _run_sessions(
    it,
    sid,
    seeker,
    day,
    open_idx,
    inp,
    A,
    P,
    rng,
    pop,
    jitter,
    item_occ,
    item_region,
    excluded,
    sessions,
    impressions,
    truth,
    events,
    on_apply,
    slate_policy=None,
) -> None:
    """Build slates for one item type's sessions of a day, simulate responses, log everything."""
    if open_idx.size == 0:
        return
    if slate_policy is None:
        chosen = _legacy_slates(
            it, seeker, open_idx, inp, A, rng, pop, jitter, item_occ, item_region, excluded
        )
    else:  # a pluggable policy; sessions it answers with LEGACY get the world's own slates
        picked = list(slate_policy(it, sid, seeker, day, open_idx, excluded))
        leg = np.array([g for g, x in enumerate(picked) if isinstance(x, str) and x == LEGACY], np.int64)
        if leg.size:
            own = _legacy_slates(
                it, seeker[leg], open_idx, inp, A, rng, pop, jitter, item_occ, item_region, excluded
            )
            for r, slate in own:
                picked[leg[r]] = slate
        chosen = enumerate(picked)
    rows_s, rows_i, rows_p, rows_prop, rows_slate, rows_sid, rows_day = [], [], [], [], [], [], []
    shown_sessions: list[tuple[int, bool, int]] = []
    for g, slate in chosen:
        if slate is None:
            continue
        shown, prop, slate_prop, explore, n_av = slate
        k = shown.size
        shown_sessions.append((g, explore, n_av))
        rows_s.append(np.full(k, seeker[g]))
        rows_i.append(open_idx[shown])
        rows_p.append(np.arange(k))
        rows_prop.append(prop)
        rows_slate.append(slate_prop)
        rows_sid.append(np.full(k, sid[g]))
        rows_day.append(np.full(k, day[g]))
    if not rows_s:
        return
    g_idx = np.array([x[0] for x in shown_sessions])
    sessions.add(
        session_id=sid[g_idx],
        seeker_id=seeker[g_idx],
        item_type=np.full(g_idx.size, CODE["item_type"][it]),
        day=day[g_idx],
        policy=np.array(
            [CODE["policy"]["explore" if x[1] else "greedy"] for x in shown_sessions], dtype=np.int8
        ),
        n_available=np.array([x[2] for x in shown_sessions]),
    )
    s_all, i_all, p_all = np.concatenate(rows_s), np.concatenate(rows_i), np.concatenate(rows_p)
    sid_all, day_all = np.concatenate(rows_sid), np.concatenate(rows_day)
    mu, obs, lat = A.mu(P, it, s_all, i_all, inp.state)
    p_exam, p_view, p_apply = P.examine(p_all), P.p_view(it, mu), P.p_apply(it, mu)
    impressions.add(
        session_id=sid_all,
        position=p_all,
        seeker_id=s_all,
        item_type=np.full(s_all.size, CODE["item_type"][it]),
        item_id=i_all,
        day=day_all,
        propensity=np.concatenate(rows_prop),
        slate_propensity=np.concatenate(rows_slate),
    )
    truth.add(
        session_id=sid_all,
        position=p_all,
        mu=mu,
        observable=obs,
        latent=lat,
        p_examine=p_exam,
        p_view=p_view,
        p_apply=p_apply,
    )
    examined = rng.random(mu.size) < p_exam
    u = mu + rng.gumbel(0.0, 1.0, mu.size)
    viewed = examined & (u > P.tau_view[it])
    applied = examined & (u > P.tau_apply[it])
    view_day = day_all + (p_all + 1) * 15 / 86_400
    v = np.flatnonzero(viewed)
    events.add(
        seeker_id=s_all[v],
        item_type=np.full(v.size, CODE["item_type"][it]),
        item_id=i_all[v],
        event_type=np.full(v.size, CODE["event_type"]["view"]),
        day=view_day[v],
        session_id=sid_all[v],
    )
    a_idx = np.flatnonzero(applied)
    apply_day = view_day[a_idx] + rng.uniform(20, 300, a_idx.size) / 86_400
    keep = [
        on_apply(int(s_all[j]), int(i_all[j]), float(t), int(sid_all[j])) for j, t in zip(a_idx, apply_day)
    ]
    keep = np.asarray(keep, dtype=bool)
    a_idx, apply_day = a_idx[keep], apply_day[keep]
    events.add(
        seeker_id=s_all[a_idx],
        item_type=np.full(a_idx.size, CODE["item_type"][it]),
        item_id=i_all[a_idx],
        event_type=np.full(a_idx.size, CODE["event_type"][APPLY_EVENT[it]]),
        day=apply_day,
        session_id=sid_all[a_idx],
    )


def _legacy_slates(it, seeker, open_idx, inp, A, rng, pop, jitter, item_occ, item_region, excluded):
    """The world's logging policy over one item type's sessions of a day: (session index, slate) in order."""
    K, eps = inp.slate_size, inp.epsilon[it]
    occ = item_occ[open_idx]
    base = (pop[open_idx] / (1 + pop[open_idx])) + jitter[open_idx]
    col_of = {int(item): c for c, item in enumerate(open_idx)}
    for start in range(0, seeker.size, 512):
        sl = slice(start, start + 512)
        s_chunk = seeker[sl]
        score = (
            2.0 * (A.seek_desired[s_chunk][:, :, None] == occ[None, None, :]).any(axis=1)
            + 1.0 * (A.seek_group[s_chunk][:, None] == A.occ_group[occ][None, :])
            + 1.0 * (A.seek_region[s_chunk][:, None] == item_region[open_idx][None, :])
            + base[None, :]
        )
        if it == "certificate":
            score[inp.state.certificates[s_chunk][:, open_idx]] = -np.inf
        for r, s in enumerate(s_chunk):
            for item in excluded.get(int(s), ()):
                c = col_of.get(item)
                if c is not None:
                    score[r, c] = -np.inf
        for r in range(len(s_chunk)):
            yield start + r, choose_slate(score[r], K, eps, rng)


def choose_slate(score: np.ndarray, k: int, epsilon: float, rng: np.random.Generator):
    """The logging policy for one session.

    Args:
        score: legacy score of every open item; -inf marks an unavailable item.
        k: slate size (capped by the number of available items).
        epsilon: probability of a uniformly random slate.

    Returns:
        None when nothing is available, else (shown columns, P(item at its position), P(item in the
        slate), explore flag, number available). Both probabilities are exact under the policy.
    """
    avail = np.flatnonzero(np.isfinite(score))
    n_av = avail.size
    if n_av == 0:
        return None
    k = min(k, n_av)
    row = score[avail]
    part = np.argpartition(-row, k - 1)[:k] if n_av > k else np.arange(n_av)
    top = avail[part[np.argsort(-row[part], kind="stable")]]
    explore = bool(rng.random() < epsilon)
    shown = rng.choice(avail, k, replace=False) if explore else top
    prop = epsilon / n_av + (1 - epsilon) * (shown == top)
    slate_prop = epsilon * k / n_av + (1 - epsilon) * np.isin(shown, top)
    return shown, prop, slate_prop, explore, n_av


def _gain(state, comp_events, s, units, levels, t, source, source_id) -> None:
    state.raise_levels(np.full(units.size, s), units, levels)
    comp_events.add(
        seeker_id=np.full(units.size, s),
        unit_id=units,
        level=levels,
        day=np.full(units.size, t),
        source=np.full(units.size, CODE["source"][source]),
        source_id=np.full(units.size, source_id),
    )


def _decay(pop: dict, factor: float) -> None:
    for v in pop.values():
        v *= factor


def _tie_break(n: int) -> np.ndarray:
    """A fixed, tiny per-item offset so the greedy order is unique (golden-ratio sequence)."""
    return ((np.arange(n) * 0.6180339887498949) % 1.0) * 1e-6


def _unit_lists(df: pd.DataFrame, key: str, n: int):
    return group_arrays(df, key, n, ["unit_id", "level"])


def _days(ts: pd.Series, inp: SimulationInput) -> np.ndarray:
    return ts.to_numpy(dtype="datetime64[us]").astype("int64") / 86_400e6 - inp.start_us / 86_400e6

"""The world's latent utility u(seeker, item, t) = observable fit + latent taste + noise.

- Observable fit: a weighted sum of components that any model could compute from observed columns
  (competency coverage with level shortfall, RIASEC and work-value congruence, region distance, wage
  vs reservation wage, education and career fit, certificates, desired occupation).
- Latent taste: <a_seeker, b_item> / sqrt(d) + item bias. Posting factors mix an employer factor with
  the posting's own, course factors a provider factor: tastes for employers and providers that no
  observed column carries. Only collaborative filtering can learn them.
- Noise: one standard Gumbel draw per impression; the seeker views an examined item when
  u > tau_view and applies (enrols, registers) when u > tau_apply.

The scales of the first two parts are calibrated so that, across a seeker's open items, they hold the
configured shares of the variance of u (noise variance is pi^2/6). Everything here is pure and
vectorised over (seeker, item) pairs: the simulator and :class:`jobcare.world.oracle.WorldOracle`
evaluate the very same functions.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from jobcare.competency import coverage, riasec_congruence
from jobcare.world.catalog import group_arrays
from jobcare.world.regions import distance_matrix_km
from jobcare.world.taxonomy import RIASEC, WORK_VALUES

ITEM_TYPES = ("posting", "course", "certificate")
GUMBEL_VAR = math.pi**2 / 6

WEIGHTS: dict[str, dict[str, float]] = {
    "posting": {
        "coverage": 2.5,
        "riasec": 1.2,
        "work_values": 0.4,
        "distance_100km": -1.0,
        "log_wage_ratio": 1.0,
        "education_short": -0.8,
        "education_over": -0.3,
        "career_short": -0.6,
        "certificates_missing": -0.5,
        "desired": 1.5,
        "group_match": 0.5,
    },
    "course": {
        "novelty_relevant": 2.0,
        "riasec": 1.0,
        "distance_100km": -2.0,
        "employment_rate": 1.5,
        "desired": 1.0,
        "group_match": 0.8,
    },
    "certificate": {
        "readiness": 1.5,
        "riasec": 1.0,
        "desired": 1.5,
        "group_match": 0.8,
        "education_short": -0.8,
        "difficulty": -0.8,
    },
}


@dataclass
class UtilityParams:
    """Calibrated constants of the utility, saved to ``truth/utility.json``."""

    latent_dim: int
    shares: dict[str, float]
    weights: dict[str, dict[str, float]] = field(default_factory=lambda: json.loads(json.dumps(WEIGHTS)))
    scale_obs: dict[str, float] = field(default_factory=dict)
    scale_latent: dict[str, float] = field(default_factory=dict)
    tau_view: dict[str, float] = field(default_factory=dict)
    tau_apply: dict[str, float] = field(default_factory=dict)
    exam_top: float = 0.95
    exam_decay: float = 0.7

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> UtilityParams:
        return cls(**json.loads(text))

    def examine(self, positions: np.ndarray) -> np.ndarray:
        """P(examine | position), position 0-based: exam_top * (p + 1) ** -exam_decay."""
        return self.exam_top * (np.asarray(positions, dtype=np.float64) + 1.0) ** (-self.exam_decay)

    def p_view(self, item_type: str, mu: np.ndarray) -> np.ndarray:
        """P(view | examined) = P(mu + Gumbel > tau_view)."""
        return -np.expm1(-np.exp(np.asarray(mu) - self.tau_view[item_type]))

    def p_apply(self, item_type: str, mu: np.ndarray) -> np.ndarray:
        """P(apply | examined) = P(mu + Gumbel > tau_apply) (implies a view, since tau_apply > tau_view)."""
        return -np.expm1(-np.exp(np.asarray(mu) - self.tau_apply[item_type]))


class WorldArrays:
    """Dense, index-aligned arrays of the world's static tables plus the latent factors.

    Ids equal row positions in every table (checked by the data contracts), so ids index arrays directly.
    """

    def __init__(self, t: dict[str, pd.DataFrame], latent_seekers: pd.DataFrame, latent_items: pd.DataFrame):
        occ = t["occupations"]
        self.n_units = len(t["competency_units"])
        self.n_seekers = len(t["seekers"])
        self.dist = distance_matrix_km(t["regions"]).astype(np.float64)
        self.occ_group = occ["group_id"].to_numpy()
        self.occ_riasec = occ[RIASEC].to_numpy(dtype=np.float64)
        self.occ_wv = occ[WORK_VALUES].to_numpy(dtype=np.float64)
        self.occ_units, self.occ_lvl, self.occ_imp = _padded(
            t["occupation_units"], "occupation_id", len(occ), "level", "importance", self.n_units
        )
        s = t["seekers"]
        self.seek_region = s["region_id"].to_numpy()
        self.seek_edu = s["education_level"].to_numpy().astype(np.float64)
        self.seek_career = s["career_years"].to_numpy().astype(np.float64)
        self.seek_wage = s["reservation_wage"].to_numpy(dtype=np.float64)
        self.seek_riasec = s[RIASEC].to_numpy(dtype=np.float64)
        self.seek_wv = s[WORK_VALUES].to_numpy(dtype=np.float64)
        self.seek_desired = np.full((len(s), 3), -1, dtype=np.int64)
        for i, d in enumerate(s["desired_occupation_ids"]):
            self.seek_desired[i, : len(d)] = d
        self.seek_group = self.occ_group[self.seek_desired[:, 0]]
        p = t["postings"]
        self.post_occ = p["occupation_id"].to_numpy()
        self.post_region = p["region_id"].to_numpy()
        self.post_wage = p["wage"].to_numpy(dtype=np.float64)
        self.post_edu = p["education_required"].to_numpy().astype(np.float64)
        self.post_career = p["career_required"].to_numpy().astype(np.float64)
        self.post_certs = np.full((len(p), 2), -1, dtype=np.int64)
        for pid, (certs,) in enumerate(
            group_arrays(t["posting_certificates"], "posting_id", len(p), ["certificate_id"])
        ):
            self.post_certs[pid, : len(certs[:2])] = certs[:2]
        c = t["courses"]
        self.course_occ = c["target_occupation_id"].to_numpy()
        self.course_region = c["region_id"].to_numpy()
        self.course_emp = c["employment_rate"].to_numpy(dtype=np.float64)
        self.course_units, self.course_lvl, _ = _padded(
            t["course_units"], "course_id", len(c), "level", None, self.n_units
        )
        ce = t["certificates"]
        self.cert_occ = ce["anchor_occupation_id"].to_numpy()
        self.cert_pass = ce["pass_rate"].to_numpy(dtype=np.float64)
        self.cert_min_edu = ce["min_education"].to_numpy().astype(np.float64)
        self.cert_units, self.cert_lvl, _ = _padded(
            t["certificate_units"], "certificate_id", len(ce), "level", None, self.n_units
        )
        zcols = [c for c in latent_seekers.columns if c.startswith("z")]
        self.seek_z = latent_seekers[zcols].to_numpy(dtype=np.float64)
        self.item_z, self.item_bias = {}, {}
        for it in ITEM_TYPES:
            rows = latent_items[latent_items["item_type"] == it].sort_values("item_id")
            self.item_z[it] = rows[zcols].to_numpy(dtype=np.float64)
            self.item_bias[it] = rows["bias"].to_numpy(dtype=np.float64)

    def components(
        self, item_type: str, s: np.ndarray, i: np.ndarray, state: CompetencyState
    ) -> dict[str, np.ndarray]:
        """Observable-fit components for pairs (s[k], i[k]) given the seekers' competency ``state``."""
        levels = state.levels
        s = np.asarray(s, dtype=np.int64)
        i = np.asarray(i, dtype=np.int64)
        if item_type == "posting":
            occ = self.post_occ[i]
            held = levels[s[:, None], self.occ_units[occ]]
            certs = self.post_certs[i]
            return {
                "coverage": coverage(held, self.occ_lvl[occ], self.occ_imp[occ]),
                "riasec": riasec_congruence(self.seek_riasec[s], self.occ_riasec[occ]),
                "work_values": riasec_congruence(self.seek_wv[s], self.occ_wv[occ]),
                "distance_100km": self.dist[self.seek_region[s], self.post_region[i]] / 100.0,
                "log_wage_ratio": np.clip(np.log(self.post_wage[i] / self.seek_wage[s]), -1, 1),
                "education_short": np.maximum(0, self.post_edu[i] - self.seek_edu[s]),
                "education_over": np.maximum(0, self.seek_edu[s] - self.post_edu[i] - 1),
                "career_short": np.minimum(np.maximum(0, self.post_career[i] - self.seek_career[s]) / 3, 2),
                "certificates_missing": _certs_missing(state.certificates, s, certs),
                "desired": (self.seek_desired[s] == occ[:, None]).any(axis=1).astype(np.float64),
                "group_match": (self.seek_group[s] == self.occ_group[occ]).astype(np.float64),
            }
        if item_type == "course":
            occ = self.course_occ[i]
            lvl = self.course_lvl[i]
            held = levels[s[:, None], self.course_units[i]]
            taught = lvl > 0
            gain = np.where(taught, np.maximum(0, lvl - held) / np.maximum(lvl, 1), 0).sum(1) / np.maximum(
                taught.sum(1), 1
            )
            desired = (self.seek_desired[s] == occ[:, None]).any(axis=1).astype(np.float64)
            group = (self.seek_group[s] == self.occ_group[occ]).astype(np.float64)
            return {
                "novelty_relevant": gain * (desired + 0.5 * group + 0.1),
                "riasec": riasec_congruence(self.seek_riasec[s], self.occ_riasec[occ]),
                "distance_100km": self.dist[self.seek_region[s], self.course_region[i]] / 100.0,
                "employment_rate": self.course_emp[i],
                "desired": desired,
                "group_match": group,
            }
        if item_type == "certificate":
            occ = self.cert_occ[i]
            lvl = self.cert_lvl[i]
            held = levels[s[:, None], self.cert_units[i]]
            return {
                "readiness": coverage(held, np.maximum(lvl, 1), (lvl > 0).astype(np.float64)),
                "riasec": riasec_congruence(self.seek_riasec[s], self.occ_riasec[occ]),
                "desired": (self.seek_desired[s] == occ[:, None]).any(axis=1).astype(np.float64),
                "group_match": (self.seek_group[s] == self.occ_group[occ]).astype(np.float64),
                "education_short": np.maximum(0, self.cert_min_edu[i] - self.seek_edu[s]),
                "difficulty": 1 - self.cert_pass[i],
            }
        raise ValueError(f"unknown item_type {item_type!r}; expected one of {ITEM_TYPES}")

    def raw_parts(self, params: UtilityParams, item_type: str, s, i, state) -> tuple[np.ndarray, np.ndarray]:
        """Unscaled (observable, latent) parts for pairs."""
        comp = self.components(item_type, s, i, state)
        w = params.weights[item_type]
        obs = sum(w[k] * comp[k] for k in w)
        s = np.asarray(s, dtype=np.int64)
        i = np.asarray(i, dtype=np.int64)
        lat = (self.seek_z[s] * self.item_z[item_type][i]).sum(1) / math.sqrt(params.latent_dim)
        lat = lat + self.item_bias[item_type][i]
        return obs, lat

    def mu(
        self, params: UtilityParams, item_type: str, s, i, state
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mu, observable part, latent part) for pairs, scaled by the calibration in ``params``."""
        obs, lat = self.raw_parts(params, item_type, s, i, state)
        obs = obs * params.scale_obs[item_type]
        lat = lat * params.scale_latent[item_type]
        return obs + lat, obs, lat


@dataclass
class CompetencyState:
    """Seekers' competencies at one moment: unit levels (last column is an all-zero pad) and certificates."""

    levels: np.ndarray  # (n_seekers, n_units + 1) int8
    certificates: np.ndarray  # (n_seekers, n_certificates) bool

    @classmethod
    def empty(cls, n_seekers: int, n_units: int, n_certificates: int) -> CompetencyState:
        return cls(
            np.zeros((n_seekers, n_units + 1), dtype=np.int8), np.zeros((n_seekers, n_certificates), bool)
        )

    def raise_levels(self, seekers: np.ndarray, units: np.ndarray, levels: np.ndarray) -> None:
        """levels[s, u] = max(levels[s, u], level) for each row (repeated pairs handled)."""
        np.maximum.at(
            self.levels, (np.asarray(seekers), np.asarray(units)), np.asarray(levels, dtype=np.int8)
        )


def _certs_missing(held: np.ndarray, s: np.ndarray, certs: np.ndarray) -> np.ndarray:
    miss = np.zeros(len(s))
    for j in range(certs.shape[1]):
        c = certs[:, j]
        has = c >= 0
        miss[has] += ~held[s[has], c[has]]
    return miss


def _padded(df, key, n, level_col, imp_col, pad_unit):
    """Pad per-key unit lists into (n, U) arrays; padding points at the all-zero column ``pad_unit``."""
    groups = group_arrays(df, key, n, ["unit_id", level_col] + ([imp_col] if imp_col else []))
    width = max(1, max(len(g[0]) for g in groups))
    units = np.full((n, width), pad_unit, dtype=np.int64)
    lvl = np.zeros((n, width), dtype=np.float64)
    imp = np.zeros((n, width), dtype=np.float64)
    for k, g in enumerate(groups):
        units[k, : len(g[0])] = g[0]
        lvl[k, : len(g[0])] = g[1]
        if imp_col:
            imp[k, : len(g[0])] = g[2]
    return units, lvl, imp


def within_seeker_variance(values: np.ndarray, groups: np.ndarray) -> float:
    """Mean over seekers of the variance of ``values`` across that seeker's items."""
    df = pd.DataFrame({"g": groups, "v": values})
    return float(df.groupby("g")["v"].var(ddof=0).mean())


def solve_threshold(mu: np.ndarray, target: float) -> float:
    """tau such that mean(P(mu + Gumbel > tau)) == target (bisection)."""
    lo, hi = float(mu.min()) - 20, float(mu.max()) + 20
    for _ in range(80):
        mid = (lo + hi) / 2
        p = -np.expm1(-np.exp(mu - mid)).mean()
        lo, hi = (mid, hi) if p > target else (lo, mid)
    return (lo + hi) / 2


def calibrate(
    A: WorldArrays,
    state: CompetencyState,
    params: UtilityParams,
    item_counts: dict[str, int],
    view_rate: float,
    apply_rate: float,
    rng: np.random.Generator,
    n_seekers: int = 2000,
    n_items: int = 60,
) -> UtilityParams:
    """Set the observable/latent scales and the view/apply thresholds in ``params`` (returned).

    On a sample of seekers x random items of each type, the within-seeker variance of the observable
    part is scaled to ``shares['observable'] * V`` and the latent part to ``shares['latent'] * V``,
    where V = pi^2/6 / shares['noise'] (the Gumbel noise holds the rest). Thresholds make the average
    P(view | examined) and P(apply | examined) over the sample equal the targets.
    """
    total = GUMBEL_VAR / params.shares["noise"]
    ns = min(n_seekers, A.n_seekers)
    for it in ITEM_TYPES:
        s = np.repeat(rng.choice(A.n_seekers, ns, replace=False), n_items)
        i = rng.integers(0, item_counts[it], s.size)
        if it == "certificate":
            ok = ~state.certificates[s, i]
            s, i = s[ok], i[ok]
        obs, lat = A.raw_parts(params, it, s, i, state)
        params.scale_obs[it] = math.sqrt(params.shares["observable"] * total / within_seeker_variance(obs, s))
        params.scale_latent[it] = math.sqrt(params.shares["latent"] * total / within_seeker_variance(lat, s))
        mu = obs * params.scale_obs[it] + lat * params.scale_latent[it]
        params.tau_view[it] = solve_threshold(mu, view_rate)
        params.tau_apply[it] = solve_threshold(mu, apply_rate)
    return params

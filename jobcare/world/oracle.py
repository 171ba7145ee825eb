"""The oracle: re-evaluates the world's true utility for any seeker, item and time.

It rebuilds the seekers' competencies at time t from ``seeker_competency_events`` and
``seeker_certificates`` (rows with timestamp <= t) and evaluates the same functions the simulator
used, so ``mu`` matches what the simulator saw for every impression.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from jobcare.world.io import TRUTH_DIR, read_manifest, read_table, read_tables
from jobcare.world.utility import ITEM_TYPES, CompetencyState, UtilityParams, WorldArrays


class WorldOracle:
    """Ground truth of a generated world (reads ``truth/``; models must never do this)."""

    def __init__(self, world: str | Path):
        self.world = Path(world)
        self.manifest = read_manifest(world)
        self.tables = read_tables(world)
        self.params = UtilityParams.from_json((self.world / TRUTH_DIR / "utility.json").read_text())
        self.arrays = WorldArrays(
            self.tables,
            read_table(world, f"{TRUTH_DIR}/latent_seekers"),
            read_table(world, f"{TRUTH_DIR}/latent_items"),
        )
        self._state_cache: dict[int, CompetencyState] = {}
        ce = self.tables["seeker_competency_events"]
        self._ce_ts = _us(ce["ts"])
        self._ce = ce
        sc = self.tables["seeker_certificates"]
        self._sc_ts = _us(sc["acquired_at"])
        self._sc = sc
        ev = self.tables["events"]
        self._hires = ev[ev["event_type"] == "hire"]
        self._enrols = ev[ev["event_type"] == "enrol"]

    def state_at(self, t: pd.Timestamp) -> CompetencyState:
        """Every seeker's competencies and certificates at time ``t`` (inclusive)."""
        key = int(pd.Timestamp(t).value // 1000)
        if key not in self._state_cache:
            st = CompetencyState.empty(
                len(self.tables["seekers"]),
                len(self.tables["competency_units"]),
                len(self.tables["certificates"]),
            )
            m = self._ce_ts <= key
            ce = self._ce[m]
            st.raise_levels(ce["seeker_id"].to_numpy(), ce["unit_id"].to_numpy(), ce["level"].to_numpy())
            sc = self._sc[self._sc_ts <= key]
            st.certificates[sc["seeker_id"].to_numpy(), sc["certificate_id"].to_numpy()] = True
            if len(self._state_cache) > 8:
                self._state_cache.clear()
            self._state_cache[key] = st
        return self._state_cache[key]

    def seeker_state(self, seeker: int, t: pd.Timestamp) -> CompetencyState:
        """A state that is exact for one seeker at ``t`` (other rows empty): cheap per-request oracles."""
        if not hasattr(self, "_scratch"):
            self._scratch = CompetencyState.empty(
                len(self.tables["seekers"]),
                len(self.tables["competency_units"]),
                len(self.tables["certificates"]),
            )
            self._ce_by_seeker = self._ce.groupby("seeker_id").indices
            self._sc_by_seeker = self._sc.groupby("seeker_id").indices
            self._scratch_row = None
        st = self._scratch
        if self._scratch_row is not None:
            st.levels[self._scratch_row] = 0
            st.certificates[self._scratch_row] = False
        key = int(pd.Timestamp(t).value // 1000)
        rows = self._ce_by_seeker.get(seeker, np.zeros(0, np.int64))
        rows = rows[self._ce_ts[rows] <= key]
        np.maximum.at(
            st.levels[seeker],
            self._ce["unit_id"].to_numpy()[rows],
            self._ce["level"].to_numpy()[rows].astype(np.int8),
        )
        crow = self._sc_by_seeker.get(seeker, np.zeros(0, np.int64))
        crow = crow[self._sc_ts[crow] <= key]
        st.certificates[seeker, self._sc["certificate_id"].to_numpy()[crow]] = True
        self._scratch_row = seeker
        return st

    def open_items(self, item_type: str, t: pd.Timestamp) -> np.ndarray:
        """Ids of the items a seeker could act on at ``t``."""
        t = pd.Timestamp(t)
        if item_type == "posting":
            p = self.tables["postings"]
            hires = self._hires[self._hires["ts"] <= t].groupby("item_id").size()
            filled = hires.reindex(p["posting_id"], fill_value=0).to_numpy() >= p["headcount"].to_numpy()
            return p["posting_id"].to_numpy()[(p["open_at"] <= t) & (p["close_at"] > t) & ~filled]
        if item_type == "course":
            c = self.tables["courses"]
            enr = self._enrols[self._enrols["ts"] <= t].groupby("item_id").size()
            full = enr.reindex(c["course_id"], fill_value=0).to_numpy() >= c["capacity"].to_numpy()
            return c["course_id"].to_numpy()[(c["recruit_start_at"] <= t) & (c["start_at"] > t) & ~full]
        if item_type == "certificate":
            return self.tables["certificates"]["certificate_id"].to_numpy()
        raise ValueError(f"unknown item_type {item_type!r}; expected one of {ITEM_TYPES}")

    def mu(
        self, item_type: str, seekers, items, t: pd.Timestamp
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(expected utility, observable part, latent part) for pairs (seekers[k], items[k]) at ``t``."""
        return self.arrays.mu(
            self.params, item_type, np.asarray(seekers), np.asarray(items), self.state_at(t)
        )

    def rank(
        self,
        item_type: str,
        seeker: int,
        t: pd.Timestamp,
        k: int | None = None,
        items: np.ndarray | None = None,
        part: str = "mu",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Items (default: open at t) ordered by true expected utility (or its 'observable'/'latent' part)."""
        items = self.open_items(item_type, t) if items is None else np.asarray(items)
        if item_type == "certificate":
            items = items[~self.state_at(t).certificates[seeker, items]]
        mu, obs, lat = self.mu(item_type, np.full(items.size, seeker), items, t)
        score = {"mu": mu, "observable": obs, "latent": lat}[part]
        order = np.argsort(-score, kind="stable")[: k or items.size]
        return items[order], score[order]

    def slate_apply_probability(self, item_type: str, seeker: int, slate, t: pd.Timestamp) -> np.ndarray:
        """True P(apply) at each position of a shown slate: P(examine | p) * P(u > tau_apply)."""
        slate = np.asarray(slate)
        mu, _, _ = self.mu(item_type, np.full(slate.size, seeker), slate, t)
        return self.params.examine(np.arange(slate.size)) * self.params.p_apply(item_type, mu)


def _us(ts: pd.Series) -> np.ndarray:
    return ts.to_numpy(dtype="datetime64[us]").astype("int64")

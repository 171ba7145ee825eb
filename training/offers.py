"""What limits the offer at a moment: capacity (filled postings, full courses), each seeker's blocking
events (applied, enrolled, registered, acquired) and histories, indexed once per replay or refresh; and
the allowed mask of a request built from them (part of the request path, :mod:`training.request_path`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.item_arrays import ItemArrays
from training.interactions import decayed


class OfferIndex:
    """Per item type, what limits the offer at a moment, indexed once per replay (not per request):
    capacity events (hires fill postings, enrolments fill courses), each seeker's blocking events
    (applied, enrolled, registered or acquired) and each seeker's events for ALS history."""

    _BLOCKING = {"posting": ["apply"], "course": ["enrol"], "certificate": ["register", "acquire"]}
    _CAPACITY = {
        "posting": ("hire", "postings", "posting_id", "headcount"),
        "course": ("enrol", "courses", "course_id", "capacity"),
    }

    def __init__(self, t: dict, item_type: str):
        ev = t["events"]
        self.item_type = item_type
        mine = ev[ev["item_type"] == item_type]
        order = np.argsort(mine["seeker_id"].to_numpy(), kind="stable")  # per seeker, in event order
        self._h_seeker = mine["seeker_id"].to_numpy(np.int64)[order]
        self._h_ts = _us(mine["ts"])[order] * 1000  # ns
        self._h_item = mine["item_id"].to_numpy(np.int64)[order]
        codes, self._h_types = pd.factorize(mine["event_type"])
        self._h_code = codes[order]
        self._h_blocking = np.isin(self._h_types, self._BLOCKING[item_type])[self._h_code]
        self._cap = None
        if item_type in self._CAPACITY:
            kind, table, key, limit = self._CAPACITY[item_type]
            c = ev[(ev["item_type"] == item_type) & (ev["event_type"] == kind)].sort_values(
                "ts", kind="stable"
            )
            ids = t[table][key].to_numpy()
            self._cap = (_us(c["ts"]), c["item_id"].to_numpy(), ids, t[table][limit].to_numpy())
            self._full_at = _full_at(*self._cap)

    def closed(self, ts: pd.Timestamp) -> np.ndarray:
        """Items full at ``ts`` (capacity events at or before ``ts``): those whose limit-th capacity event
        came at or before ``ts``, from each item's moment of filling, computed once (counting the events
        up to ``ts`` on every request was ~12% of the national posting rows' time in a profile)."""
        if self._cap is None:
            return np.zeros(0, np.int64)
        return self._cap[2][self._full_at <= ts.value // 1000]

    def _used(self, ts: pd.Timestamp, size: int) -> np.ndarray:
        """Per capacity item (``self._cap``'s ids): its capacity events at or before ``ts``."""
        cts, items, ids, _ = self._cap
        n = np.searchsorted(cts, ts.value // 1000, side="right")
        return np.bincount(items[:n], minlength=size)[ids]

    def load(self, ts: pd.Timestamp) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(item ids, blocking events before ``ts``, capacity left at ``ts``) of the items with a capacity:
        for postings the applies so far and the openings not yet filled (hires at or before ``ts``, as
        :meth:`closed` counts them). Empty arrays for an item type without a capacity."""
        if self._cap is None:
            z = np.zeros(0, np.int64)
            return z, z, z
        _, _, ids, limit = self._cap
        size = int(max(ids.max(), self._h_item.max(initial=-1))) + 1
        used = self._used(ts, size)
        before = self._h_blocking & (self._h_ts < pd.Timestamp(ts).value)
        acted = np.bincount(self._h_item[before], minlength=size)[ids]
        return ids, acted, limit - used

    def blocked(self, seeker: int, ts: pd.Timestamp) -> np.ndarray:
        """Items the seeker already acted on before ``ts``."""
        lo, hi = self._rows(seeker)
        sel = self._h_blocking[lo:hi] & (self._h_ts[lo:hi] < pd.Timestamp(ts).value)
        return self._h_item[lo:hi][sel]

    def _rows(self, seeker: int) -> tuple[int, int]:
        """The slice of the seeker's events (this item type) in the arrays sorted by seeker."""
        lo, hi = np.searchsorted(self._h_seeker, [seeker, seeker + 1])
        return int(lo), int(hi)

    def acted_since(self, seeker: int, since: pd.Timestamp, ts: pd.Timestamp, weights) -> bool:
        """Whether the seeker has a weighted event in ``[since, ts)``: whether :meth:`history` holds
        anything newer than ``since`` (the service builds the history frame only then; ALS re-fits the
        seeker's factor from it)."""
        lo, hi = self._rows(seeker)
        ev_ts = self._h_ts[lo:hi]
        sel = (ev_ts >= pd.Timestamp(since).value) & (ev_ts < pd.Timestamp(ts).value)
        return bool(sel.any()) and bool((self._type_weights(weights)[self._h_code[lo:hi][sel]] > 0).any())

    def _type_weights(self, weights) -> np.ndarray:
        """Each event type's weight (0 for a type without one), indexed by the history's type codes."""
        return np.array([weights.by_type.get(t, 0.0) for t in self._h_types], np.float64)

    def history(self, seeker: int, ts: pd.Timestamp, weights) -> pd.DataFrame:
        """The seeker's weighted interactions with this item type before ``ts``: what
        :func:`training.interactions.world_interactions` gives for the seeker's events (same arithmetic),
        from arrays indexed once instead of a frame filtered per request."""
        lo, hi = self._rows(seeker)
        until = pd.Timestamp(ts).value
        ev_ts = self._h_ts[lo:hi]
        sel = ev_ts < until
        w = self._type_weights(weights)[self._h_code[lo:hi][sel]]
        w = decayed(w, (until - ev_ts[sel]) / 1e9, weights.half_life_days)
        keep = w > 0
        stamp = pd.DatetimeIndex(ev_ts[sel][keep].astype("datetime64[ns]")).tz_localize("UTC")
        return pd.DataFrame(
            {
                "user": np.full(int(keep.sum()), seeker, np.int64),
                "item": self._h_item[lo:hi][sel][keep],
                "timestamp": stamp,
                "weight": w[keep],
            }
        )


def _us(ts: pd.Series) -> np.ndarray:
    """Timestamps as int64 microseconds since the epoch (UTC)."""
    return ts.to_numpy(dtype="datetime64[us]").astype("int64")


def _full_at(cts: np.ndarray, items: np.ndarray, ids: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """Per item of ``ids``: the moment (µs) of its ``limit``-th capacity event, when it became full
    (``cts``/``items``: the capacity events in time order); the smallest int64 for a limit of 0 or less,
    the largest for an item never filled."""
    order = np.argsort(items, kind="stable")  # per item, still in time order
    it, t = items[order], cts[order]
    first = np.searchsorted(it, ids, side="left")
    count = np.searchsorted(it, ids, side="right") - first
    lim = limit.astype(np.int64)
    filled = (lim >= 1) & (count >= lim)
    out = np.full(len(ids), np.iinfo(np.int64).max, np.int64)
    out[lim <= 0] = np.iinfo(np.int64).min
    out[filled] = t[first[filled] + lim[filled] - 1]
    return out


def static_mask(items: ItemArrays, offers: OfferIndex, ts: pd.Timestamp) -> np.ndarray:
    """What every seeker may be offered at ``ts``: open (postings not closed, courses recruiting) and not
    full. The service computes it once per refresh."""
    mask = items.open_mask(ts)
    gone = items.positions(offers.closed(ts))
    mask[gone[gone >= 0]] = False
    return mask


def allowed_mask(
    items: ItemArrays,
    offers: OfferIndex,
    seeker: int,
    ts: pd.Timestamp,
    held_certificates=None,
    base: np.ndarray | None = None,
    regions=None,
    occupations=None,
) -> np.ndarray:
    """The items the seeker may be offered at ``ts``: ``base`` (default :func:`static_mask`) minus what the
    seeker already applied to / enrolled in / holds, intersected with the region and occupation filters."""
    mask = static_mask(items, offers, ts) if base is None else base.copy()
    gone = items.positions(offers.blocked(seeker, ts)) if seeker >= 0 else np.zeros(0, np.int64)
    if items.item_type == "certificate" and held_certificates is not None:
        gone = np.concatenate([gone, items.positions(np.asarray(held_certificates, dtype=np.int64))])
    mask[gone[gone >= 0]] = False
    if regions:
        mask &= member(items.region, regions)
    if occupations:
        mask &= member(items.occ, occupations)
    return mask


def member(codes: np.ndarray, wanted) -> np.ndarray:
    """``np.isin(codes, wanted)`` for small non-negative integer codes through a lookup table; wanted ids
    outside the codes' range (negative, or larger than any item has) match nothing."""
    if codes.size == 0:
        return np.zeros(0, bool)
    w = np.asarray(list(wanted), dtype=np.int64)
    top = int(codes.max())
    lut = np.zeros(top + 2, bool)  # the last slot stands for the negative codes: never wanted
    lut[w[(w >= 0) & (w <= top)]] = True
    return lut[np.where(codes >= 0, codes, top + 1)]

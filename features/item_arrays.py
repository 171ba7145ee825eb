"""Item features compiled into arrays aligned to one item index (the request path's item side).

:class:`ItemArrays` is built once from an item-feature frame as of a moment
(:func:`features.item_index.item_features`, Feast column names) and never changes: the serving state
compiles one per refresh, a training replay one per simulated day. Row ``i`` is item ``keys[i]``; keys
are ascending, so "position in the index" and "item id order" agree and ties broken by position are
ties broken by id, as in the reference path.

Shapes (``n`` items): ``num[col]`` (n,) float64 (NaN where Feast has no value); ``occ`` / ``region``
(n,) int64; ``units`` / ``unit_levels`` (n, W) int64, padded with ``n_units`` / 0; ``req_certs`` (n, C)
int64 padded with -1 (postings only). List widths are the maximum over the whole catalogue, so one
item's values never depend on which other items are scored with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.pairs import ITEM_VIEW, OCCUPATION_COLUMN, PairContext, pad_lists
from jobcare.errors import JobcareError
from jobcare.ids import IdIndex

ITEM_KEY = {"posting": "posting_id", "course": "course_id", "certificate": "certificate_id"}
REGION_FIELD = {"posting": "region_id", "course": "region_id"}


class ItemStateError(JobcareError):
    """An item-feature frame cannot be compiled (no occupation, duplicate ids)."""


def _as_float(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").to_numpy(np.float64, na_value=np.nan)


@dataclass(frozen=True)
class ItemArrays:
    item_type: str
    keys: np.ndarray
    num: dict
    occ: np.ndarray
    region: np.ndarray | None
    units: np.ndarray | None
    unit_levels: np.ndarray | None
    req_certs: np.ndarray | None
    _index: IdIndex
    _derived: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def compile(cls, item_type: str, items: pd.DataFrame, ctx: PairContext) -> ItemArrays:
        """Arrays of every row of ``items`` (one row per item id, columns ``<view>__<field>``)."""
        key = ITEM_KEY[item_type]
        items = items.sort_values(key, kind="stable").reset_index(drop=True)
        keys = items[key].to_numpy(np.int64)
        if keys.size and (np.diff(keys) == 0).any():
            dup = keys[1:][np.diff(keys) == 0][:5].tolist()
            raise ItemStateError(
                f"{item_type} features: item ids {dup} appear twice (rule: one row per item)"
            )
        view = ITEM_VIEW[item_type]
        occ_col = f"{view}__{OCCUPATION_COLUMN[item_type]}"
        occ = items[occ_col]
        if occ.isna().any():
            bad = keys[occ.isna().to_numpy()][:5].tolist()
            raise ItemStateError(
                f"{item_type} features: {occ_col} is null for items {bad} (rule: occupation)"
            )
        num = {
            c: _as_float(items[c])
            for c in items.columns
            if c != key and pd.api.types.is_numeric_dtype(items[c].dtype)
        }
        region = (
            items[f"{view}__{REGION_FIELD[item_type]}"].to_numpy(np.int64)
            if item_type in REGION_FIELD
            else None
        )
        units = levels = req = None
        if item_type in ("course", "certificate"):
            units = pad_lists(items[f"{view}__unit_ids"], ctx.n_units)
            levels = pad_lists(items[f"{view}__unit_levels"], 0, units.shape[1])
        if item_type == "posting":
            req = pad_lists(items[f"{view}__required_certificate_ids"], -1)
        index = IdIndex.build(keys, sparse=True)
        return cls(item_type, keys, num, occ.to_numpy(np.int64), region, units, levels, req, index)

    def __len__(self) -> int:
        return self.keys.size

    def derived(self, name: str, build):
        """A static array derived from the items (e.g. a rule's item-side term), built once on first use.
        Racing threads may both build it; they build the same value."""
        out = self._derived.get(name)
        if out is None:
            out = self._derived[name] = build()
        return out

    def positions(self, ids) -> np.ndarray:
        """Index positions of item ``ids`` (-1 for ids not in the index)."""
        return self._index.positions(np.asarray(ids, dtype=np.int64).reshape(-1))

    def open_mask(self, ts: pd.Timestamp) -> np.ndarray:
        """Items that can be acted on at ``ts`` (postings open, courses recruiting; certificates always)."""
        return open_at(self.item_type, self.num.__getitem__, len(self), ts)


def open_at(item_type: str, column, n: int, ts: pd.Timestamp) -> np.ndarray:
    """The rule "can be acted on at ``ts``" over item columns (``column(name)`` gives an array of ``n``):
    postings between opening and closing, courses between recruiting start and start, certificates
    always. Filled postings and full courses are not visible in features and are left to the caller."""
    now = pd.Timestamp(ts).value / 86_400e9
    v = ITEM_VIEW[item_type]
    if item_type == "posting":
        return np.asarray((column(f"{v}__open_days") <= now) & (column(f"{v}__close_days") > now))
    if item_type == "course":
        return np.asarray((column(f"{v}__recruit_start_days") <= now) & (column(f"{v}__start_days") > now))
    return np.ones(n, dtype=bool)


def certificate_demand(postings: ItemArrays, open_: np.ndarray, n_occupations: int, n_certificates: int):
    """Per occupation: open postings (n_occ,) and open postings requiring each certificate (n_occ, n_cert).

    What the certificate rule needs from the open postings: the share of the desired occupations' open
    postings that require a certificate is ``count[desired].sum(0) / n_open[desired].sum()``.
    """
    n_open = np.bincount(postings.occ[open_], minlength=n_occupations).astype(np.int64)
    post, cert = postings.derived("certificate_pairs", lambda: _certificate_pairs(postings))
    keep = open_[post] & (cert < n_certificates)
    count = np.zeros((n_occupations, n_certificates), np.int64)
    np.add.at(count, (postings.occ[post[keep]], cert[keep]), 1)
    return n_open, count


def _certificate_pairs(postings: ItemArrays) -> tuple[np.ndarray, np.ndarray]:
    """(posting position, certificate) once per pair: a posting listing a certificate twice counts once."""
    req = postings.req_certs
    rows = np.repeat(np.arange(req.shape[0]), req.shape[1])
    flat = req.ravel()
    pairs = np.unique(np.stack([rows[flat >= 0], flat[flat >= 0]], axis=1), axis=0).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]

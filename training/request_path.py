"""The request path: given a seeker at time t, the allowed items, stage one's lists, the union and the
ranker matrix. Training replays requests through it (ranker rows, the stage-one recall table, the
explore protocol) and the service calls it for one seeker, so both build identical ranker inputs.

Everything item-side is compiled once (:class:`features.item_arrays.ItemArrays` per refresh or replay
day, :class:`StageIndex` per model over it, :class:`RankerPlan` per model); per request only the
seeker-specific part is computed: the allowed mask (blocked items, filters), the seeker x occupation
features for every occupation, each source's scores over the allowed items with an argpartition top k,
the union on integer positions and the float32 ranker matrix of the ~300 candidates in the model's
column order. Positions index the :class:`ItemArrays` (ascending item ids), so every tie is broken by
item id, as in the reference path (``tests/reference_path.py``: pandas frames and
:func:`features.pairs.pair_features`, kept to test this module against).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.item_arrays import ItemArrays, certificate_demand
from features.item_index import item_features
from features.pair_arrays import SeekerArrays, days, occupation_features, pair_matrix
from features.pairs import PAIR_FEATURES, PairContext
from jobcare.errors import JobcareError
from training.candidates.base import top_k, top_k_allowed
from training.candidates.rules import rule_scores
from training.candidates.union import union
from training.offers import OfferIndex, allowed_mask

SOURCE_ORDER = ("als", "two_tower", "popularity", "rules")
# moments stored as days since the epoch: the relative versions are pair features (days_since_open, ...);
# the absolute ones would let the ranker learn the calendar of its training window
ABSOLUTE_TIME = frozenset({"registered_days", "open_days", "close_days", "recruit_start_days", "start_days"})


def is_model_input(name: str, absolute_time: bool = False) -> bool:
    """Whether a numeric column may feed the ranker: not an identifier (``..._id``: no order to split on)
    and, unless ``absolute_time``, not an absolute moment (:data:`ABSOLUTE_TIME`)."""
    leaf = str(name).split("__")[-1]
    return not leaf.endswith("_id") and (absolute_time or leaf not in ABSOLUTE_TIME)


class RequestPathError(JobcareError):
    """A model asks for an input the request path cannot build (which feature, which rule)."""


def context(repo: Path, n_units: int) -> PairContext:
    return PairContext.from_occupation_profile(
        pd.read_parquet(Path(repo) / "data" / "occupation_profile.parquet"), n_units
    )


def occupation_columns(repo: Path) -> dict[str, np.ndarray]:
    """The numeric ``occupation_profile__*`` features indexed by occupation id (latest row per id)."""
    occ = pd.read_parquet(Path(repo) / "data" / "occupation_profile.parquet")
    occ = occ.sort_values(["occupation_id", "event_timestamp"]).drop_duplicates("occupation_id", keep="last")
    occ = occ.set_index("occupation_id").sort_index()
    return {
        f"occupation_profile__{c}": occ[c].to_numpy(np.float64)
        for c in occ.columns
        if c not in ("event_timestamp", "created_timestamp") and pd.api.types.is_numeric_dtype(occ[c].dtype)
    }


# ------------------------------------------------------------------------------------------ stage one
@dataclass(frozen=True)
class StageIndex:
    """A stage one (popularity, ALS, two-tower) compiled over one :class:`ItemArrays`.

    ``als_pos`` are the positions of the items ALS was trained on and ``als_factors`` their factor rows
    (other items cannot be scored by ALS); ``tt_emb`` holds every item's two-tower embedding; ``pop`` the
    popularity score per position (0 for items without interactions) and ``pop_order`` the positions by
    popularity, ties by position."""

    stage: object  # training.candidates.evaluate.StageOne
    als_pos: np.ndarray
    als_factors: np.ndarray
    tt_emb: np.ndarray
    pop: np.ndarray
    pop_order: np.ndarray

    @classmethod
    def compile(cls, stage, items: ItemArrays) -> StageIndex:
        als = stage.als
        col = als.items_.index(items.keys)
        als_pos = np.flatnonzero(col >= 0)
        tt = stage.two_tower
        row = pd.Index(tt.item_keys_).get_indexer(items.keys)
        if (row < 0).any():
            missing = items.keys[row < 0][:5].tolist()
            raise RequestPathError(
                f"two-tower: no item embedding for {items.item_type} ids {missing} (rule: embed every "
                "item of the index; call set_item_index with the catalogue)"
            )
        pop = np.asarray(stage.popularity.score(None, items.keys), dtype=np.float64)
        return cls(
            stage,
            als_pos,
            np.ascontiguousarray(als.item_factors_[col[als_pos]]),
            np.ascontiguousarray(tt.item_embeddings_[row]),
            pop,
            np.lexsort((np.arange(pop.size), -pop)),
        )


def acted_since(history: pd.DataFrame | None, t: pd.Timestamp) -> bool:
    """Whether the seeker's ``history`` holds an interaction at or after ``t`` (its ALS factor is then
    recomputed). On the timestamps' array, not the Series: about a third of the time, once per request."""
    return history is not None and len(history) > 0 and bool((history["timestamp"].array >= t).any())


def stage_one(
    sidx: StageIndex,
    items: ItemArrays,
    ctx: PairContext,
    seeker: SeekerArrays,
    mask: np.ndarray,
    now: float,
    user_vec: np.ndarray,
    history: pd.DataFrame | None,
    trained_until: pd.Timestamp,
    k: int,
    sources=SOURCE_ORDER,
    occ_feats: dict | None = None,
    demand=None,
) -> dict[str, np.ndarray]:
    """Each source's top ``k`` positions among the allowed items (``mask``), best first.

    ALS uses the trained factor, or one recomputed from ``history`` when the seeker acted after
    ``trained_until`` (implicit's recalculate_user); the two-tower scores the item embeddings against
    ``user_vec``; popularity is the same list for everyone; the rules score pair features at ``now``
    (certificates also the demand of the desired occupations' open postings, ``demand``)."""
    out = {}
    if "als" in sources:
        vec = sidx.stage.als.user_vector(
            seeker.seeker_id, history if acted_since(history, trained_until) else None
        )
        if vec is None:
            out["als"] = np.zeros(0, np.int64)
        else:
            ok = np.flatnonzero(mask[sidx.als_pos])
            out["als"] = top_k(sidx.als_pos[ok], sidx.als_factors[ok] @ vec, k)[0]  # float32, as implicit
    if "two_tower" in sources:
        # only the allowed rows are scored, as in the reference: at the national catalogue about 5% of the
        # postings are open, and scoring all 200,000 was ~20% of the posting rows' time
        allowed = np.flatnonzero(mask)
        out["two_tower"] = top_k(allowed, sidx.tt_emb[allowed] @ user_vec, k)[0]
    if "popularity" in sources:
        out["popularity"] = first_allowed(sidx.pop_order, mask, k)
    if "rules" in sources:
        if items.item_type == "posting":  # item-side terms are whole-catalogue arrays: no gather
            sc = rule_scores("posting", seeker, items, slice(None), now, ctx, occ_feats, demand)
            out["rules"] = top_k_allowed(sc, mask, k)
        else:  # per-item pair features: only for the allowed items
            idx = np.flatnonzero(mask)
            sc = rule_scores(items.item_type, seeker, items, idx, now, ctx, occ_feats, demand)
            out["rules"] = top_k(idx, sc, k)[0]
    return out


def first_allowed(order: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` entries of ``order`` that ``mask`` allows, scanning in chunks (the popular items
    are rarely all blocked, so a request looks at a few hundred entries, not the whole catalogue)."""
    got, start, step = [], 0, max(4 * k, 1024)
    need = k
    while need > 0 and start < order.size:
        chunk = order[start : start + step]
        ok = chunk[mask[chunk]][:need]
        got.append(ok)
        need -= ok.size
        start += step
        step *= 4
    return np.concatenate(got) if got else np.zeros(0, np.int64)


def source_ranks(lists: dict[str, np.ndarray], cand: np.ndarray, n_candidates: int) -> dict[str, np.ndarray]:
    """Each source's 1-based rank of every candidate (``n_candidates + 1`` when it did not propose it)."""
    out = {}
    for src, lst in lists.items():
        lst = np.asarray(lst, dtype=np.int64)
        r = np.full(cand.size, n_candidates + 1, np.int64)
        if lst.size:
            order = np.argsort(lst, kind="stable")
            loc = np.searchsorted(lst[order], cand)
            hit = loc < lst.size
            hit[hit] = lst[order][loc[hit]] == cand[hit]
            r[hit] = order[loc[hit]] + 1
        out[src] = r
    return out


# ------------------------------------------------------------------------------------------ the ranker
def default_features(
    item_type: str,
    seeker_columns,
    items: ItemArrays,
    occ_columns: dict | None,
    sources,
    absolute_time: bool = False,
) -> list[str]:
    """The ranker's candidate inputs, explicitly: scalar seeker features, numeric item features and (postings)
    occupation features without identifiers or absolute moments, the pair features, and each stage-one
    source's rank. ``absolute_time=True`` keeps the absolute moments (ranker rows carry them so that a
    model trained before they were dropped can still be scored on new rows)."""

    cols = [c for c in seeker_columns if is_model_input(c, absolute_time)]
    cols += [c for c in sorted(items.num) if is_model_input(c, absolute_time)]
    if item_type == "posting" and occ_columns:
        cols += [c for c in sorted(occ_columns) if is_model_input(c, absolute_time)]
    cols += list(PAIR_FEATURES[item_type])
    cols += [f"cand_rank_{s}" for s in SOURCE_ORDER if s in sources]
    return cols


class RankerPlan:
    """Where each of a model's input columns comes from, resolved once per model load.

    Kinds: ``seeker`` (a scalar of the seeker's online row), ``item`` (an item array), ``occ`` (an
    occupation feature gathered by the item's occupation), ``pair`` (a pair feature) and ``rank`` (a
    stage-one source's rank)."""

    def __init__(
        self,
        item_type: str,
        features: list[str],
        seeker_columns,
        items: ItemArrays,
        occ_columns: dict | None = None,
    ):
        self.item_type = item_type
        self.features = list(features)
        seeker_columns = set(seeker_columns)
        occ_columns = occ_columns or {}
        self.kinds, unknown = [], []
        for f in self.features:
            if f in PAIR_FEATURES[item_type]:
                self.kinds.append(("pair", f))
            elif f.startswith("cand_rank_"):
                self.kinds.append(("rank", f.removeprefix("cand_rank_")))
            elif f in seeker_columns:
                self.kinds.append(("seeker", f))
            elif f in items.num:
                self.kinds.append(("item", f))
            elif f in occ_columns:
                self.kinds.append(("occ", f))
            else:
                unknown.append(f)
        if unknown:
            raise RequestPathError(
                f"{item_type} ranker input(s) {unknown[:5]} are neither seeker, item, occupation, pair nor "
                "stage-one rank columns (rule: every model input has a source)"
            )
        self.pairs = [name for kind, name in self.kinds if kind == "pair"]
        self.occ_columns = occ_columns

    def matrix(
        self,
        seeker: SeekerArrays,
        items: ItemArrays,
        idx: np.ndarray,
        now: float,
        ctx: PairContext,
        ranks: dict[str, np.ndarray] | None = None,
        occ_feats: dict | None = None,
        dtype=np.float32,
    ) -> np.ndarray:
        """The (len(idx), n_features) input matrix in the model's column order."""
        pairs = pair_matrix(self.item_type, seeker, items, idx, now, ctx, occ_feats, self.pairs)
        X = np.empty((idx.size, len(self.features)), dtype=dtype)
        occ = items.occ[idx]
        for j, (kind, name) in enumerate(self.kinds):
            if kind == "pair":
                X[:, j] = pairs[name]
            elif kind == "item":
                X[:, j] = items.num[name][idx]
            elif kind == "seeker":
                v = seeker.row.get(name)
                X[:, j] = np.nan if v is None else float(v)
            elif kind == "occ":
                X[:, j] = self.occ_columns[name][occ]
            else:
                if ranks is None or name not in ranks:
                    raise RequestPathError(f"cand_rank_{name}: the request has no {name} list")
                X[:, j] = ranks[name]
        return X


@dataclass
class Scored:
    """One request through stage one and the ranker's inputs: source lists and candidates as positions."""

    lists: dict
    candidates: np.ndarray
    matrix: np.ndarray
    occ_feats: dict


def candidates_and_matrix(
    sidx: StageIndex,
    plan: RankerPlan,
    items: ItemArrays,
    ctx: PairContext,
    seeker: SeekerArrays,
    mask: np.ndarray,
    now: float,
    user_vec: np.ndarray,
    history,
    trained_until: pd.Timestamp,
    quotas: dict[str, int],
    n_candidates: int,
    demand=None,
    timings: dict | None = None,
) -> Scored:
    """Stage one (the model's sources), the union and the ranker matrix of one request. ``timings``, when
    given, receives the milliseconds of each step (stage_one, union, features)."""
    t0 = time.perf_counter()
    occ_feats = occupation_features(seeker, ctx)
    lists = stage_one(
        sidx,
        items,
        ctx,
        seeker,
        mask,
        now,
        user_vec,
        history,
        trained_until,
        n_candidates,
        tuple(quotas),
        occ_feats,
        demand,
    )
    t1 = time.perf_counter()
    cand = union(lists, quotas, n_candidates)[0]
    ranks = source_ranks(lists, cand, n_candidates)
    t2 = time.perf_counter()
    X = plan.matrix(seeker, items, cand, now, ctx, ranks, occ_feats)
    if timings is not None:
        timings["stage_one"] = (t1 - t0) * 1e3
        timings["union"] = (t2 - t1) * 1e3
        timings["features"] = (time.perf_counter() - t2) * 1e3
    return Scored(lists, cand, X, occ_feats)


@dataclass
class ReplayRequest:
    items: ItemArrays
    seeker: SeekerArrays
    mask: np.ndarray
    history: pd.DataFrame
    occ_feats: dict
    now: float
    lists: dict  # source -> positions in ``items``

    def key_lists(self) -> dict[str, np.ndarray]:
        return key_lists(self.items, self.lists)


class ReplayDays:
    """The item side of a replay, one simulated day at a time: the day's item features (as of its last
    microsecond, the same rows Feast's point-in-time join gives any moment of that day) compiled into
    :class:`ItemArrays` and the stage one's :class:`StageIndex`; for certificates also the day's postings
    (the demand rule)."""

    def __init__(self, repo: Path, item_type: str, ctx: PairContext, stage):
        self.repo, self.item_type, self.ctx, self.stage = Path(repo), item_type, ctx, stage
        self._day = None
        self._value = None

    def at(self, ts: pd.Timestamp) -> tuple[ItemArrays, StageIndex, ItemArrays | None]:
        day = pd.Timestamp(ts).floor("D")
        if day != self._day:
            at = day + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
            items = ItemArrays.compile(self.item_type, item_features(self.repo, self.item_type, at), self.ctx)
            postings = None
            if self.item_type == "certificate":
                postings = ItemArrays.compile("posting", item_features(self.repo, "posting", at), self.ctx)
            self._day, self._value = day, (items, StageIndex.compile(self.stage, items), postings)
        return self._value

    def request(
        self,
        offers: OfferIndex,
        seeker_row,
        seeker_id: int,
        ts: pd.Timestamp,
        user_vec: np.ndarray,
        weights,
        trained_until: pd.Timestamp,
        k: int,
        sources=SOURCE_ORDER,
    ) -> ReplayRequest:
        """One logged request through stage one: the day's items, the seeker's arrays, the allowed mask,
        the ALS history and each source's top ``k`` positions."""
        items, sidx, postings = self.at(ts)
        seeker = SeekerArrays.from_row(seeker_row, self.ctx, seeker_id)
        mask = allowed_mask(items, offers, seeker_id, ts, seeker.certificates)
        history = offers.history(seeker_id, ts, weights)
        occ = occupation_features(seeker, self.ctx)
        now = days(ts)
        lists = stage_one(
            sidx, items, self.ctx, seeker, mask, now, user_vec, history, trained_until, k, sources, occ,
            self.demand(items, postings, ts),
        )  # fmt: skip
        return ReplayRequest(items, seeker, mask, history, occ, now, lists)

    def demand(self, items: ItemArrays, postings: ItemArrays | None, ts: pd.Timestamp):
        """The certificate rule's demand of the postings open at ``ts`` (None for other item types)."""
        if postings is None:
            return None
        n_cert = int(items.keys.max()) + 1 if len(items) else 0
        return certificate_demand(postings, postings.open_mask(ts), self.ctx.group.size, n_cert)


def key_lists(items: ItemArrays, lists: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Source lists as item ids."""
    return {name: items.keys[lst] for name, lst in lists.items()}

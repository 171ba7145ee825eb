"""The generic path: both stages on any implicit-feedback dataset (no world, no Feast).

Input tables (Parquet or CSV): interactions ``user, item [, timestamp] [, weight]``; optional side
tables ``users`` (key ``user``) and ``items`` (key ``item``) with any numeric or categorical columns.

Fit (:func:`fit`):
1. Ranker labels come from the training data alone. For each user with at least two interactions, the
   held-out part is the user's latest interaction (by ``timestamp``; when there are no timestamps, or
   ``holdout: random``, one drawn at random with the seed). Stage one (ALS + popularity) is fitted on
   the rest.
2. For up to ``max_users`` of those users: candidates = ALS top ``n_candidates`` and popularity top
   ``n_candidates`` of the items the user has not interacted with; rows = the held-out item (label 1)
   plus ``negatives`` candidates drawn at random (label 0), one group per user. A user whose held-out
   item stage one did not retrieve is skipped: the ranker only ever sees retrieved candidates, so it
   learns from the same kind of rows it will score.
   Side columns named in ``protected`` (default gender and age) are dropped before anything is built.
3. Features of a (user, item) row: ALS score and rank, popularity score and rank, the user's and the
   item's interaction counts, the side columns of both (categoricals as integer codes), and, per
   categorical item column ``c``, ``hist_share__c``: the share of the user's interactions whose item has
   the candidate's value of ``c``; per numeric item column, ``hist_gap__c``: |candidate value - mean over
   the user's items|; per column present in both side tables, ``match__c`` (1 if equal).
4. A LightGBM LambdaRank ranker is fitted on those rows; then ALS and popularity are refitted on all
   interactions, so recommendations use every user's full history.

The model folder holds ``als/``, ``popularity/``, ``ranker/``, ``generic.json`` (features, config,
category vocabularies, fit statistics) and the interactions and side tables as Parquet.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from jobcare.config import GenericConfig
from jobcare.errors import JobcareError
from training.candidates.als import ALSRecommender
from training.candidates.popularity import PopularityRecommender
from training.interactions import check_interactions
from training.ranker import LambdaRankRanker, protected_in

META = "generic.json"


class GenericInputError(JobcareError):
    """A generic-path input file or table breaks its contract."""


def read_table(path: str | Path, name: str) -> pd.DataFrame:
    """A Parquet or CSV file as a frame; named error for a missing file or another format."""
    p = Path(path)
    if not p.is_file():
        raise GenericInputError(f"{name}: file not found: {p}")
    if p.suffix.lower() == ".parquet":
        return pd.read_parquet(p)
    if p.suffix.lower() == ".csv":
        return pd.read_csv(p)
    raise GenericInputError(f"{name}: {p.name} is neither .parquet nor .csv (rule: file format)")


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix.lower() == ".csv":
        df.to_csv(p, index=False)
    elif p.suffix.lower() == ".parquet":
        df.to_parquet(p, index=False)
    else:
        raise GenericInputError(f"output: {p.name} is neither .parquet nor .csv (rule: file format)")
    return p


def check_side(df: pd.DataFrame | None, key: str, name: str) -> pd.DataFrame | None:
    """Validate a side table: key column present, non-null and unique; other columns numeric or text."""
    if df is None:
        return None
    if key not in df.columns:
        raise GenericInputError(f"{name}: missing key column {key!r} (rule: key column)")
    bad = df[key].isna().to_numpy()
    if bad.any():
        raise GenericInputError(
            f"{name}.{key}: {int(bad.sum())} null key(s), e.g. rows {np.flatnonzero(bad)[:5].tolist()}"
        )
    dup = df[key].duplicated(keep=False).to_numpy()
    if dup.any():
        raise GenericInputError(
            f"{name}.{key}: {int(dup.sum())} rows share a key, e.g. rows {np.flatnonzero(dup)[:5].tolist()} "
            "(rule: one row per key)"
        )
    return df.set_index(key)


def _check_timestamps(df: pd.DataFrame) -> pd.DataFrame:
    if "timestamp" not in df.columns:
        return df
    ts = pd.to_datetime(df["timestamp"], errors="coerce", utc=True, format="mixed")
    if pd.api.types.is_numeric_dtype(df["timestamp"].dtype):
        ts = pd.Series(df["timestamp"].to_numpy(float), index=df.index)  # epoch numbers order as they are
    bad = ts.isna().to_numpy()
    if bad.any():
        raise GenericInputError(
            f"interactions.timestamp: {int(bad.sum())} value(s) not a time, e.g. rows "
            f"{np.flatnonzero(bad)[:5].tolist()}"
        )
    return df.assign(timestamp=ts)


class SideFeatures:
    """Side columns as numbers: numeric columns as they are, the others as codes of a fitted vocabulary."""

    def __init__(self, table: pd.DataFrame | None, prefix: str, vocab: dict | None = None):
        self.prefix = prefix
        self.table = table if table is not None else pd.DataFrame()
        if vocab is None:
            vocab = {
                c: sorted(self.table[c].dropna().astype(str).unique().tolist())
                for c in self.table.columns
                if not pd.api.types.is_numeric_dtype(self.table[c].dtype)
                or pd.api.types.is_bool_dtype(self.table[c].dtype)
            }
        self.vocab = vocab
        self.coded = pd.DataFrame(index=self.table.index)
        for c in self.table.columns:
            if c in vocab:
                codes = pd.Index(vocab[c]).get_indexer(self.table[c].astype(str))
                self.coded[c] = np.where(self.table[c].isna(), -1, codes).astype(np.int64)
            else:
                self.coded[c] = pd.to_numeric(self.table[c], errors="coerce").astype(float)

    @property
    def categorical(self) -> list[str]:
        return list(self.vocab)

    @property
    def numeric(self) -> list[str]:
        return [c for c in self.coded.columns if c not in self.vocab]

    def lookup(self, keys: np.ndarray) -> pd.DataFrame:
        """Coded side columns for ``keys`` (unknown keys: NaN / -1), columns prefixed."""
        out = self.coded.reindex(keys)
        for c in self.categorical:
            out[c] = out[c].fillna(-1).astype(np.int64)
        out.columns = [f"{self.prefix}{c}" for c in out.columns]
        return out.reset_index(drop=True)


def holdout_split(df: pd.DataFrame, how: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, held out): one interaction per user with >= 2 interactions, latest or random."""
    rng = np.random.default_rng(seed)
    order = df.assign(_r=rng.random(len(df)))
    key = ["user", "timestamp", "_r"] if how == "latest" else ["user", "_r"]
    order = order.sort_values(key, kind="stable")
    n = order.groupby("user")["item"].transform("size")
    last = order.groupby("user").cumcount(ascending=False) == 0
    held = order[last & (n >= 2)]
    return df.drop(index=held.index), df.loc[held.index]


class StageOneGeneric:
    def __init__(self, cfg: GenericConfig):
        self.cfg = cfg

    def fit(self, df: pd.DataFrame) -> StageOneGeneric:
        self.als = ALSRecommender(**self.cfg.als.model_dump(), random_state=self.cfg.seed).fit(df)
        self.pop = PopularityRecommender(random_state=self.cfg.seed).fit(df)
        self.seen = df.groupby("user")["item"].apply(lambda s: np.unique(s.to_numpy()))
        self.user_n = df.groupby("user").size()
        self.item_n = df.groupby("item").size()
        return self

    def candidates(self, user, exclude_seen: bool = True) -> pd.DataFrame:
        """ALS and popularity candidates of one user with their scores and ranks."""
        n = self.cfg.n_candidates
        seen = self.seen.get(user, np.zeros(0)) if exclude_seen else np.zeros(0)
        a_items, a_scores = self.als.recommend(user, n, exclude=seen)
        p_items, p_scores = self.pop.recommend(user, n, exclude=seen)
        a = pd.DataFrame({"item": a_items, "als_score": a_scores, "als_rank": np.arange(1, a_items.size + 1)})
        p = pd.DataFrame({"item": p_items, "pop_rank": np.arange(1, p_items.size + 1)})
        return a.merge(p, on="item", how="outer")


def pair_frame(
    stage: StageOneGeneric,
    history: pd.DataFrame,
    users: SideFeatures,
    items: SideFeatures,
    rows: pd.DataFrame,
) -> pd.DataFrame:
    """Features of (user, item) ``rows`` (columns ``user``, ``item``, optional ``als_score``/ranks)."""
    n = stage.cfg.n_candidates
    out = pd.DataFrame(index=rows.index)
    u, i = rows["user"].to_numpy(), rows["item"].to_numpy()
    if "als_score" in rows:
        out["als_score"] = rows["als_score"].to_numpy(float)
        out["als_rank"] = rows["als_rank"].fillna(n + 1).to_numpy(float)
        out["pop_rank"] = rows["pop_rank"].fillna(n + 1).to_numpy(float)
    out["pop_score"] = np.log1p(stage.pop.score(None, i))
    out["user_n"] = stage.user_n.reindex(u).fillna(0).to_numpy(float)
    out["item_n"] = stage.item_n.reindex(i).fillna(0).to_numpy(float)
    ui, ii = users.lookup(u), items.lookup(i)
    out = pd.concat([out.reset_index(drop=True), ui, ii], axis=1)
    # the user's history profile over item side columns
    h = history.loc[history["user"].isin(pd.unique(u)), ["user", "item"]]
    hv = items.lookup(h["item"].to_numpy())
    hv["user"] = h["user"].to_numpy()
    for c in items.categorical:
        col = f"{items.prefix}{c}"
        count = hv.groupby(["user", col]).size()
        share = count / hv.groupby("user").size().reindex(count.index.get_level_values(0)).to_numpy()
        key = pd.MultiIndex.from_arrays([u, out[col].to_numpy()])
        out[f"hist_share__{c}"] = share.reindex(key).fillna(0).to_numpy(float)
    for c in items.numeric:
        col = f"{items.prefix}{c}"
        mean = hv.groupby("user")[col].mean()
        out[f"hist_gap__{c}"] = np.abs(out[col].to_numpy(float) - mean.reindex(u).to_numpy(float))
    for c in set(users.table.columns) & set(items.table.columns):
        a, b = users.table[c].reindex(u).astype(str).to_numpy(), items.table[c].reindex(i).astype(str)
        out[f"match__{c}"] = (a == b.to_numpy()).astype(float)
    return out


def _unprotected(table: pd.DataFrame | None, protected) -> pd.DataFrame | None:
    if table is None:
        return None
    return table.drop(columns=protected_in(table.columns, tuple(protected)))


def _load_inputs(interactions, users, items):
    df = check_interactions(interactions)
    df = _check_timestamps(df)
    return df, check_side(users, "user", "users"), check_side(items, "item", "items")


def fit(
    interactions: pd.DataFrame,
    users: pd.DataFrame | None,
    items: pd.DataFrame | None,
    cfg: GenericConfig,
    out: str | Path,
) -> dict:
    """Fit both stages; save the model folder ``out``; return fit statistics."""
    df, ut, it = _load_inputs(interactions, users, items)
    how = cfg.holdout or ("latest" if "timestamp" in df.columns else "random")
    rest, held = holdout_split(df, how, cfg.seed)
    if held.empty:
        raise GenericInputError(
            "interactions: no user has two or more interactions, so no ranker labels can be held out "
            "(rule: >= 2 interactions for some users)"
        )
    rng = np.random.default_rng(cfg.seed)
    ut, it = _unprotected(ut, cfg.protected), _unprotected(it, cfg.protected)
    us, its = SideFeatures(ut, "user__"), SideFeatures(it, "item__")
    stage = StageOneGeneric(cfg).fit(rest)
    label_users = held["user"].unique()
    if label_users.size > cfg.max_users:
        label_users = np.sort(rng.choice(label_users, cfg.max_users, replace=False))
    pos = held.groupby("user")["item"].apply(lambda s: set(s.tolist()))
    parts = []
    for user in label_users:
        cand = stage.candidates(user)
        pos_items = pos[user]
        neg = cand[~cand["item"].isin(pos_items)]
        if len(neg) > cfg.negatives:
            neg = neg.iloc[np.sort(rng.choice(len(neg), cfg.negatives, replace=False))]
        p = cand[cand["item"].isin(pos_items)]
        if p.empty:  # stage one did not retrieve the held-out item: nothing to rank at serving either
            continue
        g = pd.concat([p.assign(label=1), neg.assign(label=0)], ignore_index=True)
        parts.append(g.assign(user=user))
    if not parts:
        raise GenericInputError(
            "interactions: stage one retrieved none of the held-out items, so the ranker has nothing to"
            f" learn from; raise generic.n_candidates (now {cfg.n_candidates})"
        )
    rows = pd.concat(parts, ignore_index=True)
    X = pair_frame(stage, rest, us, its, rows)
    feats = list(X.columns)
    ranker = LambdaRankRanker(**cfg.ranker.model_dump(), random_state=cfg.seed, protected=()).fit(
        X, rows["label"].to_numpy(), rows.groupby("user", sort=False).size().to_numpy()
    )
    final = StageOneGeneric(cfg).fit(df)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    final.als.save(out / "als")
    final.pop.save(out / "popularity")
    ranker.save(out / "ranker")
    df.to_parquet(out / "interactions.parquet", index=False)
    for name, t in (("users", ut), ("items", it)):
        if t is not None:
            t.reset_index().to_parquet(out / f"{name}.parquet", index=False)
    stats = {
        "interactions": int(len(df)),
        "users": int(df["user"].nunique()),
        "items": int(df["item"].nunique()),
        "holdout": how,
        "label_users": int(label_users.size),
        "ranker_users": int(len(parts)),
        "ranker_rows": int(len(rows)),
        "features": feats,
    }
    (out / META).write_text(
        json.dumps(
            {
                "config": json.loads(cfg.model_dump_json()),
                "vocab": {"users": us.vocab, "items": its.vocab},
                **stats,
            },
            indent=2,
        )
    )
    return stats


class GenericModel:
    """A fitted generic model folder, ready to recommend."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if not (path / META).is_file():
            raise GenericInputError(f"model: {path} holds no {META}; fit one with `jobcare generic fit`")
        meta = json.loads((path / META).read_text())
        self.meta = meta
        cfg = GenericConfig(**meta["config"])
        df = pd.read_parquet(path / "interactions.parquet")
        self.stage = StageOneGeneric(cfg)
        self.stage.als = ALSRecommender.load(path / "als")
        self.stage.pop = PopularityRecommender.load(path / "popularity")
        self.stage.seen = df.groupby("user")["item"].apply(lambda s: np.unique(s.to_numpy()))
        self.stage.user_n = df.groupby("user").size()
        self.stage.item_n = df.groupby("item").size()
        self.history = df
        side = {
            n: pd.read_parquet(path / f"{n}.parquet") if (path / f"{n}.parquet").is_file() else None
            for n in ("users", "items")
        }
        self.users = SideFeatures(
            check_side(side["users"], "user", "users"), "user__", meta["vocab"]["users"]
        )
        self.items = SideFeatures(
            check_side(side["items"], "item", "items"), "item__", meta["vocab"]["items"]
        )
        self.ranker = LambdaRankRanker.load(path / "ranker")

    def recommend(self, users, k: int, exclude_seen: bool = True, chunk: int = 2000) -> pd.DataFrame:
        """Top ``k`` per user: columns user, item, rank, score, als_rank (ALS-only rank, NaN if ALS did not
        propose it). Users without history get popularity candidates ranked with their side features.
        Features are built and scored for ``chunk`` users at a time."""
        users = pd.unique(np.asarray(users))
        parts = []
        for lo in range(0, users.size, chunk):
            cands = [self.stage.candidates(u, exclude_seen).assign(user=u) for u in users[lo : lo + chunk]]
            cand = (
                pd.concat([c for c in cands if len(c)], ignore_index=True)
                if any(len(c) for c in cands)
                else None
            )
            if cand is None:
                continue
            X = pair_frame(self.stage, self.history, self.users, self.items, cand)
            cand["score"] = self.ranker.predict(X, num_threads=2)
            cand = cand.sort_values(
                ["user", "score", "als_rank"], ascending=[True, False, True], kind="stable"
            )
            cand["rank"] = cand.groupby("user", sort=False).cumcount() + 1
            parts.append(cand[cand["rank"] <= k])
        cols = ["user", "item", "rank", "score", "als_rank"]
        if not parts:
            return pd.DataFrame(columns=cols)
        return pd.concat(parts, ignore_index=True)[cols]

    def recommend_als_only(self, users, k: int, exclude_seen: bool = True) -> pd.DataFrame:
        """The baseline: ALS alone (stage one without the ranker)."""
        parts = []
        for user in pd.unique(np.asarray(users)):
            seen = self.stage.seen.get(user, np.zeros(0)) if exclude_seen else np.zeros(0)
            items, scores = self.stage.als.recommend(user, k, exclude=seen)
            parts.append(
                pd.DataFrame(
                    {"user": user, "item": items, "rank": np.arange(1, items.size + 1), "score": scores}
                )
            )
        return pd.concat(parts, ignore_index=True)

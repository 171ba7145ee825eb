"""Two-tower retrieval (PyTorch, CPU) over side features, trained with in-batch negatives.

Each tower encodes one side table: categorical columns (object/str dtype, or integer columns whose
name ends in ``_id``) get embeddings, list columns (e.g. desired occupations, held units) get a mean
EmbeddingBag, other numeric columns are standardised. An MLP maps the concatenation to a normalised
``dim``-vector; the score is the dot product. Because only side features are used, the model scores
users and items it never saw (a seeker registered today, a posting opened today). Training samples
(user, item) pairs in proportion to the interaction weight, uses the other items of the batch as
negatives, and applies the logQ correction (Yi et al., RecSys 2019) so popular items are not
over-penalised as negatives.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from jobcare.errors import JobcareError
from training.candidates.base import CandidateGenerator
from training.interactions import check_interactions


class SideFeatureError(JobcareError):
    """A side-feature table is missing its key column or a column the model was trained on."""


def _kind(name: str, s: pd.Series) -> str:
    if s.dtype == object and s.map(_is_list).any():
        return "list"
    if s.dtype == object or isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(s.dtype):
        return "cat"
    if pd.api.types.is_integer_dtype(s.dtype) and name.endswith("_id"):
        return "cat"
    return "num"


def _is_list(v) -> bool:
    return isinstance(v, (list, tuple, np.ndarray))


def _distinct_str(s: pd.Series) -> set[str]:
    """``set(s.astype(str))``, converting each distinct value once: ``astype(str)`` builds a Python string
    per row, ~40% of a national two-tower fit in a profile (1M seekers' categorical columns). Measured on
    1M rows of 20 or 400 distinct ids: 15 ms against about 200 ms per row (no gain when most are distinct)."""
    codes, uniq = pd.factorize(s)
    out = set(pd.Series(uniq).astype(str))
    return out | set(s[codes < 0].astype(str)) if (codes < 0).any() else out


def _cat_codes(s: pd.Series, vocab: dict) -> np.ndarray:
    """``s.astype(str).map(vocab).fillna(0)`` as int64, each distinct value converted and looked up once
    (nulls, which factorize sets aside, as ``astype(str)`` spells them)."""
    codes, uniq = pd.factorize(s)
    look = pd.Series(uniq).astype(str).map(vocab).fillna(0).to_numpy(np.int64)
    out = np.zeros(len(s), np.int64)
    ok = codes >= 0
    out[ok] = look[codes[ok]]
    if not ok.all():
        out[~ok] = s[~ok].astype(str).map(vocab).fillna(0).to_numpy(np.int64)
    return out


def _tokens(s: pd.Series) -> pd.Series:
    """One row per list element, indexed by the row's position; an empty or missing list gives one NaN."""
    return s.reset_index(drop=True).explode()


def _bag(s: pd.Series, voc: dict) -> tuple[np.ndarray, np.ndarray]:
    """EmbeddingBag input of a list column: (indices, offsets), unknown tokens and empty lists as 0.

    Vectorised (explode, then :func:`_cat_codes` of the tokens) instead of a per-row Python loop."""
    ex = _tokens(s)
    present = ex.notna().to_numpy()
    idx = np.zeros(len(ex), np.int64)
    if present.any():
        idx[present] = _cat_codes(ex[present], voc)
    counts = np.bincount(ex.index.to_numpy(), minlength=len(s))
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return idx, offsets


class TableEncoder:
    """Turns a side table into index / bag / numeric arrays with vocabularies fitted on training data."""

    def __init__(self, key: str):
        self.key = key

    def fit(self, df: pd.DataFrame) -> TableEncoder:
        if self.key not in df.columns:
            raise SideFeatureError(f"side table needs a '{self.key}' column")
        self.columns_ = {c: _kind(c, df[c]) for c in df.columns if c != self.key}
        self.vocab_, self.stats_ = {}, {}
        for c, kind in self.columns_.items():
            if kind == "cat":
                self.vocab_[c] = {v: i + 1 for i, v in enumerate(sorted(_distinct_str(df[c])))}  # 0 = unknown
            elif kind == "list":
                self.vocab_[c] = {
                    v: i + 1 for i, v in enumerate(sorted(_distinct_str(_tokens(df[c]).dropna())))
                }
            else:
                x = pd.to_numeric(df[c], errors="coerce").astype(float)
                self.stats_[c] = (float(x.mean()) if x.notna().any() else 0.0, float(x.std() or 1.0) or 1.0)
        return self

    def transform(self, df: pd.DataFrame) -> dict:
        missing = [c for c in self.columns_ if c not in df.columns]
        if missing:
            raise SideFeatureError(f"side table is missing column(s) {missing} the model was trained on")
        out = {"cat": {}, "list": {}, "num": None}
        nums = []
        for c, kind in self.columns_.items():
            if kind == "cat":
                out["cat"][c] = _cat_codes(df[c], self.vocab_[c])
            elif kind == "list":
                out["list"][c] = _bag(df[c], self.vocab_[c])
            else:
                m, s = self.stats_[c]
                nums.append(
                    ((pd.to_numeric(df[c], errors="coerce").astype(float).fillna(m) - m) / s).to_numpy()
                )
        out["num"] = np.stack(nums, axis=1).astype(np.float32) if nums else np.zeros((len(df), 0), np.float32)
        return out

    def transform_record(self, rec: dict) -> dict:
        """:meth:`transform` of a one-row table given as a dict (the serving path: no frame per request)."""
        missing = [c for c in self.columns_ if c not in rec]
        if missing:
            raise SideFeatureError(f"side record is missing field(s) {missing} the model was trained on")
        out = {"cat": {}, "list": {}, "num": None}
        nums = []
        for c, kind in self.columns_.items():
            v = rec[c]
            if kind == "cat":
                out["cat"][c] = np.array([self.vocab_[c].get(str(v), 0)], np.int64)
            elif kind == "list":
                voc = self.vocab_[c]
                idx = [voc.get(str(x), 0) for x in (v if _is_list(v) else [])] or [0]
                out["list"][c] = (np.asarray(idx, np.int64), np.zeros(1, np.int64))
            else:
                m, s = self.stats_[c]
                x = float(v) if v is not None else np.nan
                nums.append(((m if np.isnan(x) else x) - m) / s)
        out["num"] = np.asarray([nums], np.float64).astype(np.float32).reshape(1, len(nums))
        return out


def _tower(enc: TableEncoder, dim: int, hidden: int):
    import torch
    from torch import nn

    class Tower(nn.Module):
        def __init__(self):
            super().__init__()
            self.cat = nn.ModuleDict(
                {c: nn.Embedding(len(enc.vocab_[c]) + 1, 16) for c, k in enc.columns_.items() if k == "cat"}
            )
            self.bags = nn.ModuleDict(
                {
                    c: nn.EmbeddingBag(len(enc.vocab_[c]) + 1, 16, mode="mean")
                    for c, k in enc.columns_.items()
                    if k == "list"
                }
            )
            n_num = sum(1 for k in enc.columns_.values() if k == "num")
            width = 16 * (len(self.cat) + len(self.bags)) + n_num
            self.mlp = nn.Sequential(nn.Linear(max(width, 1), hidden), nn.ReLU(), nn.Linear(hidden, dim))

        def forward(self, x):
            parts = [self.cat[c](x["cat"][c]) for c in self.cat]
            parts += [self.bags[c](*x["list"][c]) for c in self.bags]
            if x["num"].shape[1]:
                parts.append(x["num"])
            h = torch.cat(parts, dim=1) if parts else torch.zeros((x["num"].shape[0], 1))
            return nn.functional.normalize(self.mlp(h), dim=1)

    return Tower()


def _to_torch(enc_out: dict, rows: np.ndarray | None = None):
    """Tensors for the given rows (all rows when None)."""
    import torch

    cat = {c: torch.from_numpy(v if rows is None else v[rows]) for c, v in enc_out["cat"].items()}
    bags = {}
    for c, (flat, offsets) in enc_out["list"].items():
        if rows is None:
            bags[c] = (torch.from_numpy(flat), torch.from_numpy(offsets))
            continue
        # each row's slice of ``flat``, without a Python loop over the rows; the lengths come from the
        # next offset (a row's end), looked up for the batch's rows only
        starts = offsets[rows]
        nxt = rows + 1
        ends = np.where(nxt < offsets.size, offsets[np.minimum(nxt, offsets.size - 1)], flat.size)
        lens = ends - starts
        new_off = np.cumsum(lens) - lens
        take = np.repeat(starts - new_off, lens) + np.arange(int(lens.sum()))
        bags[c] = (torch.from_numpy(flat[take]), torch.from_numpy(new_off.astype(np.int64)))
    num = torch.from_numpy(enc_out["num"] if rows is None else enc_out["num"][rows])
    return {"cat": cat, "list": bags, "num": num}


class _NumpyTower:
    """A trained tower's forward pass for one encoded row in numpy (float32): embeddings, mean bags,
    the numeric block, Linear-ReLU-Linear and L2 normalisation, in the tower's own part order."""

    def __init__(self, tower):
        def arr(t):
            return t.detach().numpy().astype(np.float32, copy=True)

        self.cat = {c: arr(m.weight) for c, m in tower.cat.items()}
        self.bags = {c: arr(m.weight) for c, m in tower.bags.items()}
        first, last = tower.mlp[0], tower.mlp[2]
        self.w1, self.b1 = np.ascontiguousarray(arr(first.weight).T), arr(first.bias)
        self.w2, self.b2 = np.ascontiguousarray(arr(last.weight).T), arr(last.bias)

    def __call__(self, enc_out: dict) -> np.ndarray:
        parts = [self.cat[c][enc_out["cat"][c][0]] for c in self.cat]
        parts += [self.bags[c][enc_out["list"][c][0]].mean(axis=0) for c in self.bags]
        num = enc_out["num"][0]
        if num.size:
            parts.append(num)
        h = np.concatenate(parts).astype(np.float32) if parts else np.zeros(1, np.float32)
        z = np.maximum(h @ self.w1 + self.b1, 0.0) @ self.w2 + self.b2
        return (z / max(float(np.linalg.norm(z)), 1e-12)).astype(np.float32)


class TwoTowerRecommender(CandidateGenerator):
    name = "two_tower"

    def __init__(
        self,
        dim: int = 32,
        hidden: int = 128,
        epochs: int = 8,
        batch_size: int = 512,
        lr: float = 3e-3,
        temperature: float = 0.1,
        samples_per_epoch: int = 100_000,
        random_state: int = 0,
        num_threads: int = 1,
    ):
        self.dim = dim
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.temperature = temperature
        self.samples_per_epoch = samples_per_epoch
        self.random_state = random_state
        # torch intra-op threads while fitting. 1: batches of 512 gain nothing from a second thread, which
        # spin-waits whenever another process holds the other core (the demo's certificate tower took
        # 17 s with 1 thread and 96 s with 2 while one other process ran; the stack notes' thrash)
        self.num_threads = num_threads

    def fit(
        self, interactions: pd.DataFrame, users: pd.DataFrame | None = None, items: pd.DataFrame | None = None
    ) -> TwoTowerRecommender:
        import torch

        if users is None or items is None:
            raise SideFeatureError(
                "two-tower needs side tables: users (column 'user') and items (column 'item')"
            )
        df = check_interactions(interactions)
        users = users.drop_duplicates("user").reset_index(drop=True)
        items = items.drop_duplicates("item").reset_index(drop=True)
        u_row = pd.Index(users["user"]).get_indexer(df["user"])
        i_row = pd.Index(items["item"]).get_indexer(df["item"])
        ok = (u_row >= 0) & (i_row >= 0)
        if not ok.any():
            raise SideFeatureError("no interaction has both its user and its item in the side tables")
        u_row, i_row, w = u_row[ok], i_row[ok], df["weight"].to_numpy(np.float64)[ok]
        self.user_encoder_ = TableEncoder("user").fit(users)
        self.item_encoder_ = TableEncoder("item").fit(items)
        torch.manual_seed(self.random_state)
        rng = np.random.default_rng(self.random_state)
        self.user_tower_ = _tower(self.user_encoder_, self.dim, self.hidden)
        self.item_tower_ = _tower(self.item_encoder_, self.dim, self.hidden)
        enc_u, enc_i = self.user_encoder_.transform(users), self.item_encoder_.transform(items)
        params = list(self.user_tower_.parameters()) + list(self.item_tower_.parameters())
        opt = torch.optim.Adam(params, lr=self.lr)
        p = w / w.sum()
        # logQ correction: in-batch negatives over-penalise frequent items; subtract log(sampling prob)
        item_q = np.bincount(i_row, weights=p, minlength=len(items))
        log_q = torch.from_numpy(np.log(np.maximum(item_q, 1e-12)).astype(np.float32))
        self.loss_history_ = []
        threads = torch.get_num_threads()
        torch.set_num_threads(self.num_threads)
        try:
            self._train(rng, opt, p, u_row, i_row, enc_u, enc_i, log_q)
        finally:
            torch.set_num_threads(threads)
        self.user_tower_.eval()
        self.item_tower_.eval()
        self.item_keys_ = items["item"].to_numpy()
        self.item_embeddings_ = self._embed(self.item_tower_, enc_i)
        self.user_keys_ = users["user"].to_numpy()
        self.user_embeddings_ = self._embed(self.user_tower_, enc_u)
        return self

    def _train(self, rng, opt, p, u_row, i_row, enc_u, enc_i, log_q) -> None:
        """The epochs: in-batch softmax with the logQ correction over weighted draws of the pairs
        (``p``: each pair's sampling probability)."""
        import torch

        with torch.inference_mode(False):
            for _ in range(self.epochs):
                draw = rng.choice(p.size, min(self.samples_per_epoch, 20 * p.size), p=p)
                total, n = 0.0, 0
                for b in range(0, draw.size, self.batch_size):
                    sel = draw[b : b + self.batch_size]
                    if sel.size < 2:
                        continue
                    uu, ii = u_row[sel], i_row[sel]
                    eu = self.user_tower_(_to_torch(enc_u, uu))
                    ei = self.item_tower_(_to_torch(enc_i, ii))
                    logits = eu @ ei.T / self.temperature - log_q[torch.from_numpy(ii)][None, :]
                    # the same item twice in a batch is not a negative for either row
                    same = torch.from_numpy(ii[:, None] == ii[None, :]) & ~torch.eye(
                        sel.size, dtype=torch.bool
                    )
                    logits = logits.masked_fill(same, -1e9)
                    loss = torch.nn.functional.cross_entropy(logits, torch.arange(sel.size))
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total, n = total + float(loss.detach()), n + 1
                self.loss_history_.append(total / max(n, 1))

    @staticmethod
    def _embed(tower, enc_out) -> np.ndarray:
        import torch

        with torch.no_grad():
            return tower(_to_torch(enc_out)).numpy().astype(np.float32)

    def embed_users(self, users: pd.DataFrame) -> np.ndarray:
        self._check_fitted()
        return self._embed(self.user_tower_, self.user_encoder_.transform(users))

    def embed_user_record(self, rec: dict) -> np.ndarray:
        """The embedding of one user given as a side-table record (the values of :meth:`embed_users` to
        float32 rounding). The serving path: the user tower's forward pass in numpy, because one row
        through torch costs a millisecond of operator dispatch (and intra-op threads that fight the
        service's workers) for a few microseconds of arithmetic."""
        self._check_fitted()
        if getattr(self, "_user_np", None) is None:
            self._user_np = _NumpyTower(self.user_tower_)
        return self._user_np(self.user_encoder_.transform_record(rec))

    def embed_items(self, items: pd.DataFrame) -> np.ndarray:
        """Embeddings of (possibly new) items: precompute these for the open items."""
        self._check_fitted()
        return self._embed(self.item_tower_, self.item_encoder_.transform(items))

    def set_item_index(self, items: pd.DataFrame) -> TwoTowerRecommender:
        """Replace the scorable item set with ``items`` (e.g. today's open items, new ones included)."""
        self.item_keys_ = items["item"].to_numpy()
        self.item_embeddings_ = self.embed_items(items)
        return self

    def known_items(self) -> np.ndarray:
        return self.item_keys_

    def _user_vec(self, user, user_features) -> np.ndarray | None:
        if user_features is not None and len(user_features):
            return self.embed_users(user_features.head(1))[0]
        idx = pd.Index(self.user_keys_).get_indexer([user])[0]
        return self.user_embeddings_[idx] if idx >= 0 else None

    def score(self, user, items, history=None, user_features=None) -> np.ndarray:
        self._check_fitted()
        items = np.asarray(items)
        vec = self._user_vec(user, user_features)
        out = np.full(items.size, np.nan)
        if vec is None:
            return out
        idx = pd.Index(self.item_keys_).get_indexer(items)
        ok = idx >= 0
        out[ok] = self.item_embeddings_[idx[ok]] @ vec
        return out

    def _state_for_pickle(self, state: dict) -> dict:
        state = dict(state)
        for k in ("user_tower_", "item_tower_"):
            state[k] = {n: t.detach().numpy().copy() for n, t in state[k].state_dict().items()}
        return state

    def _restore_state(self, state: dict) -> None:
        import torch

        towers = {k: state.pop(k) for k in ("user_tower_", "item_tower_")}
        vars(self).update(state)
        self.user_tower_ = _tower(self.user_encoder_, self.dim, self.hidden)
        self.item_tower_ = _tower(self.item_encoder_, self.dim, self.hidden)
        for k, sd in towers.items():
            getattr(self, k).load_state_dict({n: torch.from_numpy(v) for n, v in sd.items()})
            getattr(self, k).eval()

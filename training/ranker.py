"""Stage two: a LightGBM LambdaRank ranker over numeric feature frames.

``fit`` validates its input (no protected column, numeric features only, groups given as sizes that
add up to the rows, each group's rows contiguous); learned state ends in ``_``. Prediction passes
``num_threads`` on each call (``Booster.reset_parameter`` segfaulted here, see the stack notes).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from jobcare.errors import JobcareError
from jobcare.faultpoints import pause_point

PROTECTED_DEFAULT = ("gender", "age")


class RankerInputError(JobcareError):
    """The ranker's training or scoring input breaks its contract."""


def protected_in(columns, protected=PROTECTED_DEFAULT) -> list[str]:
    """Columns that are, or derive from, a protected attribute (by name, e.g. ``seeker_profile__age``)."""
    out = []
    for c in columns:
        leaf = str(c).split("__")[-1]
        if any(leaf == p or leaf.startswith(f"{p}_") for p in protected):
            out.append(str(c))
    return out


def _matrix(X: pd.DataFrame) -> np.ndarray:
    """The float32 matrix LightGBM fits and scores: one dtype for training and serving, so a value the
    request path builds as float32 meets the same split thresholds it was trained on."""
    return X.to_numpy(dtype=np.float32, na_value=np.nan)


class LambdaRankRanker:
    def __init__(
        self,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        feature_fraction: float = 0.9,
        lambdarank_truncation_level: int = 20,
        random_state: int = 0,
        num_threads: int = 2,
        protected: tuple[str, ...] = PROTECTED_DEFAULT,
        unbiased: bool = True,
        position_bias_regularization: float = 0.0,
    ):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.feature_fraction = feature_fraction
        self.lambdarank_truncation_level = lambdarank_truncation_level
        self.random_state = random_state
        self.num_threads = num_threads
        self.protected = tuple(protected)
        self.unbiased = unbiased
        self.position_bias_regularization = position_bias_regularization

    def get_params(self) -> dict:
        return {
            k: getattr(self, k)
            for k in (
                "n_estimators",
                "learning_rate",
                "num_leaves",
                "min_child_samples",
                "feature_fraction",
                "lambdarank_truncation_level",
                "random_state",
                "num_threads",
                "protected",
                "unbiased",
                "position_bias_regularization",
            )
        }

    def _lgb_params(self) -> dict:
        return {
            "objective": "lambdarank",
            "metric": "ndcg",
            "ndcg_eval_at": [10],
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "lambdarank_truncation_level": self.lambdarank_truncation_level,
            "seed": self.random_state,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "lambdarank_position_bias_regularization": self.position_bias_regularization,
            "verbosity": -1,
        }

    def _check(self, X: pd.DataFrame, y=None, group=None) -> None:
        bad = protected_in(X.columns, self.protected)
        if bad:
            raise RankerInputError(f"protected column(s) {bad} must never reach the ranker (rule: protected)")
        non_num = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c].dtype)]
        if non_num:
            raise RankerInputError(f"column(s) {non_num} are not numeric (rule: numeric features)")
        if group is not None:
            g = np.asarray(group)
            if (g <= 0).any() or g.sum() != len(X):
                raise RankerInputError(
                    f"group sizes must be > 0 and add up to {len(X)} rows; they add up to "
                    f"{int(g.sum())} (rule: group sizes)"
                )
        if y is not None and (np.asarray(y) < 0).any():
            raise RankerInputError("labels must be >= 0 (rule: graded relevance)")

    def fit(
        self,
        X: pd.DataFrame,
        y,
        group,
        eval_set: tuple | None = None,
        callbacks: list | None = None,
        position=None,
    ) -> LambdaRankRanker:
        """Fit on rows grouped per request (``group``: sizes, contiguous); ``callbacks`` go to lgb.train.

        ``position``: each row's logged display position (any integer id; one id for "not shown"). With
        ``unbiased`` LightGBM learns a bias per position jointly with the ranker (unbiased LambdaMART),
        so the clicks that the logging order caused are not learnt as relevance. Not a feature: scoring
        needs no position."""
        import lightgbm as lgb

        self._check(X, y, group)
        pos = None
        if self.unbiased and position is not None:
            pos = np.asarray(position)
            if pos.shape != (len(X),) or not np.issubdtype(pos.dtype, np.integer) or (pos < 0).any():
                raise RankerInputError(
                    f"position: need one non-negative integer per row ({len(X)} rows) (rule: positions)"
                )
        names = [str(c) for c in X.columns]
        train = lgb.Dataset(
            _matrix(X),
            label=np.asarray(y),
            group=np.asarray(group),
            position=pos,
            feature_name=names,
            free_raw_data=False,
        )
        valid, evals = [], {}
        if eval_set is not None:
            Xv, yv, gv = eval_set
            self._check(Xv, yv, gv)
            valid = [
                lgb.Dataset(
                    _matrix(Xv[list(X.columns)]),
                    label=np.asarray(yv),
                    group=np.asarray(gv),
                    feature_name=names,
                    reference=train,
                )
            ]
        pause_point("ranker_fit")  # fault-injection tests only (jobcare.faultpoints): no-op otherwise
        self.booster_ = lgb.train(
            self._lgb_params(),
            train,
            num_boost_round=self.n_estimators,
            valid_sets=valid,
            valid_names=["valid"] if valid else None,
            callbacks=([lgb.record_evaluation(evals)] if valid else []) + list(callbacks or []),
        )
        self.feature_names_ = list(X.columns)
        self.eval_history_ = evals
        self.__dict__.pop("_leaf_contrib", None)  # contributions' per-leaf tables belong to the old trees
        return self

    def predict(self, X: pd.DataFrame | np.ndarray, num_threads: int = 1) -> np.ndarray:
        """Scores of the rows of ``X``: a frame holding the feature columns, or a matrix whose columns are
        ``feature_names_`` in that order (the request path's). Scored as float32, as trained."""
        if not hasattr(self, "booster_"):
            raise RankerInputError("the ranker is not fitted")
        if isinstance(X, np.ndarray):
            if X.ndim != 2 or X.shape[1] != len(self.feature_names_):
                raise RankerInputError(
                    f"matrix of shape {X.shape}: need {len(self.feature_names_)} columns, in the order "
                    "of feature_names_ (rule: matrix input)"
                )
            return self.booster_.predict(np.asarray(X, dtype=np.float32), num_threads=num_threads)
        missing = [c for c in self.feature_names_ if c not in X.columns]
        if missing:
            raise RankerInputError(f"feature(s) {missing} missing at scoring time")
        return self.booster_.predict(_matrix(X[self.feature_names_]), num_threads=num_threads)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-row, per-feature contributions to the score, plus the expected score in the last column
        (rows sum to the prediction), by path attribution over the trees (Saabas): each split on a row's
        path credits its feature with the change in the node's expected output. The same additive form as
        LightGBM's ``pred_contrib`` (TreeSHAP), which cost 11.1 ms for the 10 shown items of a demo request
        (200 trees) against 0.43 ms for this: one ``pred_leaf`` pass and a gather of per-leaf vectors."""
        if not hasattr(self, "booster_"):
            raise RankerInputError("the ranker is not fitted")
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names_):
            raise RankerInputError(f"matrix of shape {X.shape}: need {len(self.feature_names_)} columns")
        tables = self.__dict__.get("_leaf_contrib")
        if tables is None:
            tables = self.__dict__["_leaf_contrib"] = _leaf_contributions(
                self.booster_, len(self.feature_names_)
            )
        leaves = self.booster_.predict(X, pred_leaf=True, num_threads=1).astype(np.int64).reshape(len(X), -1)
        table, offset = tables
        return table[leaves + offset[None, :]].sum(axis=1)

    def feature_importance(self) -> pd.Series:
        return pd.Series(self.booster_.feature_importance("gain"), index=self.feature_names_).sort_values(
            ascending=False
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(str(path / "model.txt"))
        (path / "ranker.json").write_text(
            json.dumps({"params": self.get_params(), "features": self.feature_names_})
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> LambdaRankRanker:
        import lightgbm as lgb

        path = Path(path)
        meta = json.loads((path / "ranker.json").read_text())
        obj = cls(**{**meta["params"], "protected": tuple(meta["params"]["protected"])})
        obj.booster_ = lgb.Booster(model_file=str(path / "model.txt"))
        obj.feature_names_ = meta["features"]
        obj.eval_history_ = {}
        return obj


def _leaf_contributions(booster, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """For every leaf of every tree, the path attribution vector (n_features + 1: the tree's expected
    output last), stacked: ``table[offset[t] + leaf]``."""
    trees = booster.dump_model()["tree_info"]
    offset = np.zeros(len(trees), np.int64)
    blocks = []
    for t, info in enumerate(trees):
        offset[t] = sum(b.shape[0] for b in blocks)
        block = np.zeros((info["num_leaves"], n_features + 1))
        root = info["tree_structure"]
        if "leaf_value" in root:  # a single-leaf tree: a constant
            block[0, -1] = root["leaf_value"]
            blocks.append(block)
            continue
        block[:, -1] = root["internal_value"]
        stack = [(root, np.zeros(n_features))]
        while stack:
            node, acc = stack.pop()
            value = node["internal_value"]
            for child in (node["left_child"], node["right_child"]):
                step = acc.copy()
                child_value = child["leaf_value"] if "leaf_index" in child else child["internal_value"]
                step[node["split_feature"]] += child_value - value
                if "leaf_index" in child:
                    block[child["leaf_index"], :-1] = step
                else:
                    stack.append((child, step))
        blocks.append(block)
    return np.concatenate(blocks), offset

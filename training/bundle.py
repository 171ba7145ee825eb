"""The model bundle: every stage of one item type's recommender, logged to MLflow as one pyfunc model.

A bundle folder holds the stage-one generators (``popularity/``, ``als/``, ``two_tower/``), the ranker
(``ranker/``), the content-only ablation ranker (``content/``: the same recipe without the
collaborative features, the A/B report's ``baseline:content_gbdt``; a reference, never served) and
``bundle.json`` (item type, ranker feature list, union quotas, candidate count, the world manifest
hash and config). ``load_bundle("models:/jobcare-postings@champion")`` returns it in one call. The
pyfunc ``predict`` scores a frame of ranker features (the columns of ``features``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import mlflow.pyfunc
import pandas as pd

from training.candidates.als import ALSRecommender
from training.candidates.popularity import PopularityRecommender
from training.candidates.two_tower import TwoTowerRecommender
from training.ranker import LambdaRankRanker

PIP_REQUIREMENTS = ["lightgbm==4.7.0", "implicit==0.7.3", "torch==2.13.0", "pandas", "numpy", "scipy"]


@dataclass
class Bundle:
    item_type: str
    popularity: PopularityRecommender
    als: ALSRecommender
    two_tower: TwoTowerRecommender
    ranker: LambdaRankRanker
    features: list[str]
    quotas: dict[str, int]
    n_candidates: int
    meta: dict = field(default_factory=dict)
    content: LambdaRankRanker | None = None  # the ablation without collaborative features (reference only)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        self.popularity.save(path / "popularity")
        self.als.save(path / "als")
        self.two_tower.save(path / "two_tower")
        self.ranker.save(path / "ranker")
        if self.content is not None:
            self.content.save(path / "content")
        (path / "bundle.json").write_text(
            json.dumps(
                {
                    "item_type": self.item_type,
                    "features": self.features,
                    "quotas": self.quotas,
                    "n_candidates": self.n_candidates,
                    "meta": self.meta,
                },
                indent=2,
                default=str,
            )
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> Bundle:
        path = Path(path)
        m = json.loads((path / "bundle.json").read_text())
        return cls(
            m["item_type"],
            PopularityRecommender.load(path / "popularity"),
            ALSRecommender.load(path / "als"),
            TwoTowerRecommender.load(path / "two_tower"),
            LambdaRankRanker.load(path / "ranker"),
            m["features"],
            m["quotas"],
            m["n_candidates"],
            m.get("meta", {}),
            LambdaRankRanker.load(path / "content") if (path / "content").is_dir() else None,
        )

    def score(self, frame: pd.DataFrame) -> pd.Series:
        """Ranker scores for rows carrying the bundle's feature columns."""
        return pd.Series(self.ranker.predict(frame), index=frame.index, name="score")


class BundleModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: ``load_context`` loads the bundle once; ``predict`` scores ranker feature rows."""

    def load_context(self, context) -> None:
        self.bundle = Bundle.load(context.artifacts["bundle"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.Series:
        return self.bundle.score(model_input)


def log_bundle(bundle: Bundle, folder: Path, name: str) -> str:
    """Save and log ``bundle`` in the active run; return the logged model URI."""
    bundle.save(folder)
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=BundleModel(),
        artifacts={"bundle": str(folder)},
        pip_requirements=PIP_REQUIREMENTS,
    )
    return info.model_uri


def load_bundle(uri: str) -> Bundle:
    """Load a bundle from any MLflow model URI (``runs:/...``, ``models:/name@champion``)."""
    return mlflow.pyfunc.load_model(uri).unwrap_python_model().bundle

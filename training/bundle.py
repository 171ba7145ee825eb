"""The model bundle: every stage of one item type's recommender, logged to MLflow as one pyfunc model.

A bundle folder holds the stage-one generators (``popularity/``, ``als/``, ``two_tower/``), the ranker
(``ranker/``), the content-only ablation ranker (``content/``: the same recipe without the
collaborative features, the A/B report's ``baseline:content_gbdt``; a reference, never served) and
``bundle.json`` (item type, ranker feature list, union quotas, candidate count, the world manifest
hash and config). ``load_bundle("models:/jobcare-postings@champion")`` returns it in one call, after
checking every file of the logged model against the sha256 digests recorded in the registry database at
logging (:mod:`training.integrity`): loading unpickles, so unchecked files are never loaded. The pyfunc
``predict`` scores a frame of ranker features (the columns of ``features``).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
from mlflow import MlflowClient

from training import integrity
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
    """Save and log ``bundle`` in the active run; record the sha256 digests of the logged model's files
    (as the artifact store now holds them, MLflow's ``MLmodel`` and ``python_model.pkl`` included) as
    tags of the logged model in the tracking database; return the logged model URI (``models:/m-<id>``).
    """
    bundle.save(folder)
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=BundleModel(),
        artifacts={"bundle": str(folder)},
        pip_requirements=PIP_REQUIREMENTS,
    )
    with tempfile.TemporaryDirectory() as tmp:
        integrity.record_logged_model(MlflowClient(), info.model_id, info.model_uri, tmp)
    return info.model_uri


def resolve(client: MlflowClient, uri: str) -> tuple[str, str | None, str | None]:
    """(model, version, logged model id) of a model URI: ``models:/name@alias``, ``models:/name/version``
    (a registered version: its digests are the registry's), ``models:/m-<id>`` or ``runs:/<run>/<name>``
    (a logged model: its digests are its own tags)."""
    from mlflow.exceptions import MlflowException

    from training.registry import RegistryError, alias_version

    if uri.startswith("runs:/"):
        run_id, _, art = uri.removeprefix("runs:/").partition("/")
        try:
            outputs = client.get_run(run_id).outputs
        except MlflowException as e:
            raise RegistryError(f"{uri}: no such run ({e.message})") from None
        for out in outputs.model_outputs if outputs else []:
            if client.get_logged_model(out.model_id).name == art.strip("/"):
                return out.model_id, None, out.model_id
        raise RegistryError(f"{uri}: run {run_id} logged no model named {art!r}")
    if not uri.startswith("models:/"):
        raise RegistryError(f"{uri}: need a models:/ or runs:/ URI (a local folder is not verifiable)")
    model_id = integrity.model_id_of(uri)
    if model_id is not None:
        return model_id, None, model_id
    rest = uri.removeprefix("models:/").strip("/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        mv = alias_version(client, name, alias)
        if mv is None:
            raise RegistryError(f"{uri}: {name} has no version with alias {alias!r}")
        return name, str(mv.version), None
    name, _, version = rest.partition("/")
    if not version:
        raise RegistryError(f"{uri}: name a version or an alias (models:/name/3, models:/name@champion)")
    return name, version, None


def load_verified(path: str | Path, model: str, version: str | None) -> Bundle:
    """Load a bundle from a local folder whose files were checked (:mod:`training.integrity`)."""
    try:
        return mlflow.pyfunc.load_model(str(path)).unwrap_python_model().bundle
    except Exception as e:  # any failure to load is the model's: named, with the cause
        raise integrity.ModelLoadError(
            model, version, f"files match their digests but do not load: {type(e).__name__}: {e}"
        ) from e


def load_bundle(uri: str, client: MlflowClient | None = None) -> Bundle:
    """Load a bundle from an MLflow model URI (``models:/jobcare-postings@champion``,
    ``models:/jobcare-postings/3``, ``models:/m-<id>``, ``runs:/<run>/posting_bundle``): download its files,
    check every one against the digests recorded in the registry database, then load from the local copy.

    Raises:
        training.integrity.IntegrityError: no digests recorded, a file that does not match (named), or
            files that do not load; nothing of the model was unpickled before the check.
        training.integrity.ArtifactUnavailableError: the files or the registry cannot be read now.
    """
    client = client or MlflowClient()
    model, version, model_id = resolve(client, uri)
    with tempfile.TemporaryDirectory(prefix="jobcare-model-") as tmp:
        if version is not None:
            local = integrity.fetch_verified(client, model, version, tmp)
        else:
            rec = integrity.recorded_for_logged_model(client, model_id)
            local = integrity.download(f"models:/{model_id}", tmp)
            integrity.verify_folder(local, rec, model, None)
        return load_verified(local, model, version)

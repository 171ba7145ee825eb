"""Registry: one registered model per item type, aliases ``champion`` / ``challenger`` (no stages),
the promotion gate, and promote / rollback recorded as tags (who, when, why)."""

from __future__ import annotations

import getpass
import time

import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from evaluation import stats
from jobcare.errors import JobcareError

CHAMPION, CHALLENGER = "champion", "challenger"
MODEL_NAMES = {
    "posting": "jobcare-postings",
    "course": "jobcare-courses",
    "certificate": "jobcare-certificates",
}


class RegistryError(JobcareError):
    """A registry operation cannot be done (unknown model or version, nothing to roll back to)."""


def paired_bootstrap(new: pd.Series, old: pd.Series, n_boot: int = 2000, seed: int = 0) -> dict:
    """The gate's test (:func:`evaluation.stats.paired_bootstrap` of new - old over seekers)."""
    try:
        return stats.paired_bootstrap(new, old, n_boot, seed)
    except ValueError:
        raise RegistryError("no shared validation seekers between the new model and the champion") from None


def champion_version(client: MlflowClient, name: str):
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def set_alias(client: MlflowClient, name: str, alias: str, version: str, reason: str) -> None:
    """Move ``alias`` to ``version`` and record who, when and why on the version and the model."""
    previous = None
    if alias == CHAMPION:
        cur = champion_version(client, name)
        previous = cur.version if cur is not None else None
    client.set_registered_model_alias(name, alias, version)
    who, when = getpass.getuser(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    client.set_model_version_tag(name, version, f"{alias}_set_by", who)
    client.set_model_version_tag(name, version, f"{alias}_set_at", when)
    client.set_model_version_tag(name, version, f"{alias}_reason", reason)
    if alias == CHAMPION and previous is not None and previous != version:
        client.set_registered_model_tag(name, "previous_champion", previous)
    client.set_registered_model_tag(name, f"last_{alias}_change", f"{when} v{version} by {who}: {reason}")


def promote(client: MlflowClient, name: str, version: str, reason: str) -> None:
    try:
        client.get_model_version(name, str(version))
    except MlflowException:
        raise RegistryError(f"{name} has no version {version}") from None
    set_alias(client, name, CHAMPION, str(version), reason)


def rollback(client: MlflowClient, name: str, reason: str) -> str:
    """Point ``champion`` back at the previous champion; return that version."""
    try:
        prev = client.get_registered_model(name).tags.get("previous_champion")
    except MlflowException:
        raise RegistryError(f"no registered model {name}") from None
    if not prev:
        raise RegistryError(f"{name}: no previous champion recorded, nothing to roll back to")
    set_alias(client, name, CHAMPION, prev, f"rollback: {reason}")
    return prev

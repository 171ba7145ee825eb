"""MLflow set-up shared by every training entry point (called from the CLI, never at import)."""

from __future__ import annotations

import os
from pathlib import Path

from jobcare.config import TrackingConfig


def ensure_database(uri: str) -> None:
    """Create the PostgreSQL database of a ``postgresql+psycopg://`` tracking URI if it does not exist."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(uri)
    if not url.drivername.startswith("postgresql") or not url.database:
        return
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as con:
        exists = con.execute("select 1 from pg_database where datname = %s", (url.database,)).fetchone()
        if not exists:
            con.execute(f'create database "{url.database}"')


def start(cfg: TrackingConfig) -> str:
    """Point MLflow at ``cfg``, the audit log at ``cfg.audit_log``, and make sure the experiment exists
    with our artifact folder; return its id."""
    import mlflow

    from training import audit

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    cfg = cfg.resolved()
    audit.configure(cfg.audit_log)  # promotions, rollbacks and reloads of this process are logged there
    if cfg.uri.startswith("sqlite:///"):
        Path(cfg.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    elif cfg.uri.startswith("postgresql"):
        ensure_database(cfg.uri)
    mlflow.set_tracking_uri(cfg.uri)
    from mlflow.exceptions import MlflowException

    exp = mlflow.get_experiment_by_name(cfg.experiment)
    if exp is None:
        art = Path(cfg.artifacts).resolve()
        art.mkdir(parents=True, exist_ok=True)
        try:
            return mlflow.create_experiment(cfg.experiment, artifact_location=art.as_uri())
        except MlflowException:  # another run created it meanwhile (two trainings on one registry)
            exp = mlflow.get_experiment_by_name(cfg.experiment)
            if exp is None:
                raise
    return exp.experiment_id

"""Registry: one registered model per item type, aliases ``champion`` / ``challenger`` (no stages),
the promotion gate's helpers, registration with recorded digests, the promotion lock, and promote /
rollback recorded as tags (who, when, why) and in the audit log (:mod:`training.audit`).

Who may write to the registry: whoever can write to its database can register versions, move aliases
and record digests, so only the training job and the operators who promote or roll back should hold
write credentials; the service needs read access only (it never writes to the registry). Writing to the
artifact store is not enough to have a model served: the service refuses files that do not match the
digests in the database (:mod:`training.integrity`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from evaluation import stats
from jobcare.errors import JobcareError
from jobcare.faultpoints import pause_point
from training import audit, integrity

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
MODEL_NAMES = {
    "posting": "jobcare-postings",
    "course": "jobcare-courses",
    "certificate": "jobcare-certificates",
}


class RegistryError(JobcareError):
    """A registry operation cannot be done (unknown model or version, nothing to roll back to)."""


class RegistryUnavailableError(RegistryError):
    """The registry database did not answer (not: the model or alias does not exist)."""


class PromotionLockError(RegistryError):
    """The promotion lock of a model could not be taken in time (another promotion holds it)."""


def paired_bootstrap(new: pd.Series, old: pd.Series, n_boot: int = 2000, seed: int = 0) -> dict:
    """The gate's test (:func:`evaluation.stats.paired_bootstrap` of new - old over seekers)."""
    try:
        return stats.paired_bootstrap(new, old, n_boot, seed)
    except ValueError:
        raise RegistryError("no shared validation seekers between the new model and the champion") from None


def alias_version(client: MlflowClient, name: str, alias: str):
    """The model version ``alias`` points at; None when the model or the alias does not exist.

    Raises:
        RegistryUnavailableError: the database did not answer (never taken for "no such alias", which
            would let a gate promote over a champion it could not see).
    """
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as e:
        if e.error_code in integrity.NOT_FOUND:
            return None
        raise RegistryUnavailableError(f"{name}@{alias}: registry unreachable ({e.error_code})") from e


def champion_version(client: MlflowClient, name: str):
    return alias_version(client, name, CHAMPION)


def register(client: MlflowClient, model_uri: str, name: str) -> str:
    """Register the logged model ``model_uri`` (``models:/m-<id>``) as a new version of ``name``, created
    with the digests recorded for its files when it was logged (:func:`training.bundle.log_bundle`) as
    its tags in one call, so no version exists without them; return the version."""
    model_id = integrity.model_id_of(model_uri)
    if model_id is None:
        raise RegistryError(f"{model_uri}: not a logged model URI (models:/m-<id>)")
    rec = integrity.recorded_for_logged_model(client, model_id)
    ensure_registered_model(client, name)
    run_id = client.get_logged_model(model_id).source_run_id
    mv = client.create_model_version(
        name, model_uri, run_id=run_id, tags=integrity.digest_tags(rec.manifest), model_id=model_id
    )
    version = str(mv.version)
    pause_point("registered")  # fault-injection tests: a version registered, no alias moved yet
    return version


def ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException as e:
        if e.error_code not in integrity.NOT_FOUND:
            raise RegistryUnavailableError(f"{name}: registry unreachable ({e.error_code})") from e
        with contextlib.suppress(MlflowException):  # a concurrent run may create it first
            client.create_registered_model(name)


def set_alias(
    client: MlflowClient,
    name: str,
    alias: str,
    version: str,
    reason: str,
    action: str = "gate",
    audit_log: str | Path | None = None,
) -> None:
    """Move ``alias`` to ``version`` and record who, when and why on the version and the model (tags),
    and in the audit log with the version it moved from. ``action``: ``gate`` (the training gate),
    ``promote`` or ``rollback``. The audit log is opened first: when it cannot be written the alias does
    not move (:class:`training.audit.AuditError`)."""
    with audit.Writer(audit_log) as writer:
        cur = alias_version(client, name, alias)
        previous = str(cur.version) if cur is not None else None
        client.set_registered_model_alias(name, alias, version)
        rec = audit.record(
            action, model=name, version=version, why=reason, alias=alias, from_version=previous
        )
        who, when = rec["who"], time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        client.set_model_version_tag(name, version, f"{alias}_set_by", who)
        client.set_model_version_tag(name, version, f"{alias}_set_at", when)
        client.set_model_version_tag(name, version, f"{alias}_reason", reason)
        if alias == CHAMPION and previous is not None and previous != version:
            client.set_registered_model_tag(name, "previous_champion", previous)
        client.set_registered_model_tag(name, f"last_{alias}_change", f"{when} v{version} by {who}: {reason}")
        writer.write(rec)


def promote(client: MlflowClient, name: str, version: str, reason: str, audit_log=None) -> None:
    try:
        client.get_model_version(name, str(version))
    except MlflowException:
        raise RegistryError(f"{name} has no version {version}") from None
    with promotion_lock(client.tracking_uri, name):
        set_alias(client, name, CHAMPION, str(version), reason, action="promote", audit_log=audit_log)


def rollback(client: MlflowClient, name: str, reason: str, audit_log=None) -> str:
    """Point ``champion`` back at the previous champion; return that version."""
    with promotion_lock(client.tracking_uri, name):
        try:
            prev = client.get_registered_model(name).tags.get("previous_champion")
        except MlflowException:
            raise RegistryError(f"no registered model {name}") from None
        if not prev:
            raise RegistryError(f"{name}: no previous champion recorded, nothing to roll back to")
        set_alias(client, name, CHAMPION, prev, f"rollback: {reason}", action="rollback", audit_log=audit_log)
    return prev


def record_digests(client: MlflowClient, name: str, version: str, reason: str, audit_log=None) -> str:
    """Trust ``name`` v``version`` as its files are now: digest them and record the digests on the
    version (for versions registered before digests were recorded). Audited; return the manifest's sha256.
    Run it only after checking the files: this is what makes the service accept them."""
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException:
        raise RegistryError(f"{name} has no version {version}") from None
    with audit.Writer(audit_log) as writer, tempfile.TemporaryDirectory() as tmp:
        local = integrity.download(mv.source, tmp)
        tags = integrity.digest_tags(integrity.file_digests(local))
        integrity.record_version(client, name, str(version), tags)
        writer.write(
            audit.record(
                "record_digests",
                model=name,
                version=str(version),
                why=reason,
                sha256=tags[integrity.DIGEST_TAG],
            )
        )
    return tags[integrity.DIGEST_TAG]


def _lock_key(name: str) -> int:
    return int.from_bytes(
        hashlib.sha256(f"jobcare-promotion:{name}".encode()).digest()[:8], "big", signed=True
    )


@contextlib.contextmanager
def promotion_lock(tracking_uri: str | None, name: str, timeout_s: float = 600.0):
    """Serialise alias moves of ``name`` across processes: a PostgreSQL advisory lock on a PostgreSQL
    registry (every host), an exclusive file lock next to a SQLite database (one host). Both are released
    when the holder dies, so a killed training run never leaves the lock taken."""
    tracking_uri = tracking_uri or ""
    if tracking_uri.startswith("postgresql"):
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(tracking_uri).set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            con = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as e:
            raise RegistryUnavailableError(f"{name}: cannot take the promotion lock ({e})") from e
        try:
            con.execute(f"set statement_timeout = {int(timeout_s * 1000)}")
            try:
                con.execute("select pg_advisory_lock(%s)", (_lock_key(name),))
            except psycopg.errors.QueryCanceled:
                raise PromotionLockError(
                    f"{name}: promotion lock held by another run for {timeout_s:.0f} s"
                ) from None
            yield
            con.execute("select pg_advisory_unlock(%s)", (_lock_key(name),))
        finally:
            con.close()
        return
    if tracking_uri.startswith("sqlite:///") and tracking_uri != "sqlite:///:memory:":
        path = Path(tracking_uri.removeprefix("sqlite:///").split("?")[0] + f".{name}.promotion.lock")
    else:
        log.warning("%s: no cross-host promotion lock for %s; locking on this host only", name, tracking_uri)
        path = Path(tempfile.gettempdir()) / f"jobcare-{name}.promotion.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise PromotionLockError(
                        f"{name}: promotion lock {path} held by another run for {timeout_s:.0f} s"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)

"""Model integrity: sha256 digests of every file of a logged model, recorded in the registry database at
registration and checked before anything of the model is unpickled.

Loading a pyfunc model runs code: MLflow unpickles ``python_model.pkl`` with cloudpickle and the bundle
unpickles its generators' ``state.pkl``. So whoever can change a model's files in the artifact store can
run code in the service and in evaluation. The trust anchor is the registry database instead: when a
bundle is logged, the files the artifact store then holds are downloaded and digested; the sorted
manifest (``{relative path: sha256}``) and the sha256 of its text are written as tags of the logged
model and, at registration, of the model version (:data:`DIGEST_TAG`, :data:`MANIFEST_TAG`). Loading
downloads the files to a local folder, checks the manifest against its recorded digest and every file
against the manifest (no file missing, none added, none changed), and only then unpickles, from that
local copy. A version with no recorded digests is refused, as is one whose files do not match.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from jobcare.errors import JobcareError

log = logging.getLogger(__name__)

DIGEST_TAG = "jobcare.sha256"  # sha256 of the manifest's text
MANIFEST_TAG = "jobcare.manifest"  # the manifest: sorted JSON {relative path: sha256 of the file}
# written by the MLflow client into a downloaded registered model's folder, never part of the logged files
CLIENT_FILES = frozenset({"registered_model_meta"})
_CHUNK = 1 << 20
# MLflow error codes meaning "no such model / version / alias" (anything else: the database is unreachable)
NOT_FOUND = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"})
_MODEL_ID = re.compile(r"^models:/(m-[0-9a-f]{32})/?$")


class IntegrityError(JobcareError):
    """A model version is refused: its files are not those recorded at registration, it has no recorded
    digests, or it fails to load. ``reason`` is the metric label; the message names model, version and file.
    """

    reason = "integrity"

    def __init__(self, model: str, version: str | None, detail: str):
        self.model, self.version, self.detail = model, version, detail
        super().__init__(f"{model} v{version}: {detail}" if version is not None else f"{model}: {detail}")


class NoDigestsError(IntegrityError):
    """The registry holds no digests for the version (registered outside ``jobcare train``)."""

    reason = "no_digests"


class DigestMismatchError(IntegrityError):
    """A file differs from, is missing from or is not in the recorded manifest, or the manifest itself
    does not match its recorded sha256."""

    reason = "digest_mismatch"


class ModelLoadError(IntegrityError):
    """The files match their digests but the model does not load (or does not compile for serving)."""

    reason = "load_failed"


class ArtifactUnavailableError(JobcareError):
    """The model's files or its registry record cannot be read now (store or database unreachable): not
    the model's fault, so the version is not refused and the next attempt retries."""


@dataclass(frozen=True)
class Recorded:
    """What the registry database says a model's files are: the manifest, its sha256, and where it was
    found (``version`` tags or the version's ``logged model`` tags)."""

    manifest: dict
    sha256: str
    where: str


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digests(folder: str | Path) -> dict:
    """``{relative posix path: sha256}`` of every file under ``folder`` (sorted by path), leaving out
    :data:`CLIENT_FILES` at the top level. A symbolic link is refused: it could point anywhere."""
    folder = Path(folder)
    out = {}
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files) + [d for d in dirs if (Path(root) / d).is_symlink()]:
            p = Path(root) / name
            rel = p.relative_to(folder).as_posix()
            if rel in CLIENT_FILES:
                continue
            if p.is_symlink():
                raise DigestMismatchError(str(folder), None, f"file {rel}: a symbolic link, refused")
            out[rel] = file_sha256(p)
    return dict(sorted(out.items()))


def manifest_text(manifest: dict) -> str:
    """The canonical text of a manifest (sorted keys, no spaces): what :data:`DIGEST_TAG` hashes."""
    return json.dumps(dict(sorted(manifest.items())), sort_keys=True, separators=(",", ":"))


def manifest_sha256(manifest: dict) -> str:
    return hashlib.sha256(manifest_text(manifest).encode()).hexdigest()


def digest_tags(manifest: dict) -> dict:
    """The tags that record ``manifest`` in the registry."""
    return {DIGEST_TAG: manifest_sha256(manifest), MANIFEST_TAG: manifest_text(manifest)}


def verify_folder(folder: str | Path, recorded: Recorded, model: str, version: str | None) -> dict:
    """Check ``folder`` against ``recorded`` before anything in it is read as a model; return the
    manifest. Raises :class:`DigestMismatchError` naming the first file (in path order) that differs,
    is missing or is extra, or the manifest whose text does not hash to the recorded digest."""
    if manifest_sha256(recorded.manifest) != recorded.sha256:
        raise DigestMismatchError(
            model,
            version,
            f"the manifest in {MANIFEST_TAG} ({recorded.where}) does not hash to {DIGEST_TAG} "
            f"{recorded.sha256[:12]}...: the recorded digests were changed",
        )
    actual = file_digests(folder)
    for rel in sorted(set(recorded.manifest) | set(actual)):
        want, got = recorded.manifest.get(rel), actual.get(rel)
        if want == got:
            continue
        if got is None:
            detail = f"file {rel}: recorded at registration, missing from the artifact store"
        elif want is None:
            detail = f"file {rel}: in the artifact store but not recorded at registration"
        else:
            detail = f"file {rel}: sha256 {got[:12]}... but {want[:12]}... was recorded at registration"
        raise DigestMismatchError(model, version, detail)
    return recorded.manifest


def _parse(tags: dict, where: str) -> Recorded | None:
    if DIGEST_TAG not in tags or MANIFEST_TAG not in tags:
        return None
    try:
        manifest = json.loads(tags[MANIFEST_TAG])
    except ValueError:
        manifest = {}
    if not isinstance(manifest, dict):
        manifest = {}
    return Recorded(manifest, tags[DIGEST_TAG], where)


def model_id_of(source: str | None) -> str | None:
    """The logged model id of a ``models:/m-<id>`` source (what MLflow 3 records for a version)."""
    m = _MODEL_ID.match(source or "")
    return m.group(1) if m else None


def recorded_for_version(client, name: str, version: str) -> Recorded:
    """The digests the registry database holds for ``name`` v``version``: its own tags, else those of
    the logged model it was registered from (a version registered again from the same logged model
    shares its files). :class:`NoDigestsError` when neither has them."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version(name, str(version))
        rec = _parse(mv.tags or {}, f"model version {name} v{version}")
        if rec is not None:
            return rec
        model_id = getattr(mv, "model_id", None) or model_id_of(mv.source)
        if model_id:
            rec = _parse(client.get_logged_model(model_id).tags or {}, f"logged model {model_id}")
            if rec is not None:
                return rec
    except MlflowException as e:
        if e.error_code in NOT_FOUND:
            raise NoDigestsError(name, version, f"not in the registry ({e.message})") from None
        raise ArtifactUnavailableError(f"{name} v{version}: registry unreachable ({e.error_code})") from e
    raise NoDigestsError(
        name,
        version,
        f"no {DIGEST_TAG} recorded in the registry for it or its logged model: registered outside "
        "`jobcare train`; refused (record digests with `jobcare registry record-digests` after checking it)",
    )


def recorded_for_logged_model(client, model_id: str) -> Recorded:
    from mlflow.exceptions import MlflowException

    try:
        rec = _parse(client.get_logged_model(model_id).tags or {}, f"logged model {model_id}")
    except MlflowException as e:
        if e.error_code in NOT_FOUND:
            raise NoDigestsError(model_id, None, f"not in the tracking database ({e.message})") from None
        raise ArtifactUnavailableError(f"{model_id}: tracking database unreachable ({e.error_code})") from e
    if rec is None:
        raise NoDigestsError(model_id, None, f"no {DIGEST_TAG} recorded for this logged model: refused")
    return rec


def download(source: str, dst: str | Path) -> Path:
    """Download the files of model ``source`` (``models:/m-<id>``, ``models:/name/version``, ``runs:/``)
    into ``dst``; only bytes, nothing is loaded."""
    import mlflow.artifacts
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
    from mlflow.exceptions import MlflowException

    # no progress bar per download (every model load and registration downloads): log noise in the
    # service and the CLI; an explicit setting in the environment wins
    os.environ.setdefault(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name, "false")
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(dst)))
    except (MlflowException, OSError) as e:
        raise ArtifactUnavailableError(f"{source}: cannot download the model files ({e})") from e


def fetch_verified(client, name: str, version: str, dst: str | Path) -> Path:
    """Download ``name`` v``version`` into ``dst`` and check every file against the digests recorded in
    the registry; return the local folder to load from. Nothing is unpickled here."""
    from mlflow.exceptions import MlflowException

    t0 = time.perf_counter()
    rec = recorded_for_version(client, name, version)
    try:
        source = client.get_model_version(name, str(version)).source
    except MlflowException as e:
        raise ArtifactUnavailableError(f"{name} v{version}: registry unreachable ({e.error_code})") from e
    local = download(source, dst)
    t1 = time.perf_counter()
    verify_folder(local, rec, name, version)
    log.debug(
        "%s v%s: %d files match the digests recorded in the registry (download %.0f ms, check %.0f ms)",
        name,
        version,
        len(rec.manifest),
        (t1 - t0) * 1e3,
        (time.perf_counter() - t1) * 1e3,
    )
    return local


def record_logged_model(client, model_id: str, source: str, scratch: str | Path) -> dict:
    """Digest the files the artifact store holds for logged model ``model_id`` (downloaded into
    ``scratch``) and record them as its tags; return the tags."""
    local = download(source, scratch)
    tags = digest_tags(file_digests(local))
    client.set_logged_model_tags(model_id, tags)
    return tags


def record_version(client, name: str, version: str, tags: dict) -> None:
    """Copy the digest tags onto the model version (the registry's own record of what it registered)."""
    for k in (MANIFEST_TAG, DIGEST_TAG):  # the digest last: a version with it has both
        client.set_model_version_tag(name, str(version), k, tags[k])

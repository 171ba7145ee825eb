"""Model integrity (digests checked before loading), the audit log, the promotion lock and the fault points,
on folders and fakes (no MLflow): every way a model's files can differ from the recorded manifest is
refused with the file named; an alias does not move when its audit record cannot be written."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
import threading
import time
from types import SimpleNamespace

import pytest

from jobcare.faultpoints import pause_point
from training import audit, integrity
from training.registry import CHAMPION, PromotionLockError, promotion_lock, set_alias


def _model(tmp_path):
    root = tmp_path / "model"
    (root / "artifacts" / "posting" / "ranker").mkdir(parents=True)
    (root / "MLmodel").write_text("flavors: {}\n")
    (root / "python_model.pkl").write_bytes(b"\x80\x05pickle")
    (root / "artifacts" / "posting" / "ranker" / "model.txt").write_text("tree\n")
    return root


def _recorded(root) -> integrity.Recorded:
    m = integrity.file_digests(root)
    return integrity.Recorded(m, integrity.manifest_sha256(m), "test")


def test_digests_are_sha256_of_each_file_by_relative_path_and_the_manifest_is_canonical(tmp_path):
    root = _model(tmp_path)
    (root / "abc").write_bytes(b"abc")
    m = integrity.file_digests(root)
    assert (
        m["abc"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )  # FIPS 180-2 example
    assert (
        list(m)
        == sorted(m)
        == [
            "MLmodel",
            "abc",
            "artifacts/posting/ranker/model.txt",
            "python_model.pkl",
        ]
    )
    text = integrity.manifest_text(dict(reversed(list(m.items()))))  # the order given does not matter
    assert text == integrity.manifest_text(m) and text.startswith('{"MLmodel":"')
    assert integrity.manifest_sha256(m) == hashlib.sha256(text.encode()).hexdigest()
    tags = integrity.digest_tags(m)
    assert json.loads(tags[integrity.MANIFEST_TAG]) == m
    assert tags[integrity.DIGEST_TAG] == integrity.manifest_sha256(m)


def test_the_file_the_mlflow_client_writes_on_download_is_not_part_of_the_model(tmp_path):
    root = _model(tmp_path)
    before = integrity.file_digests(root)
    (root / "registered_model_meta").write_text("model_name: x\n")
    assert integrity.file_digests(root) == before
    (root / "artifacts" / "registered_model_meta").write_text("deeper: counted\n")  # only at the top
    assert "artifacts/registered_model_meta" in integrity.file_digests(root)


def test_matching_files_pass_and_return_the_manifest(tmp_path):
    root = _model(tmp_path)
    rec = _recorded(root)
    assert integrity.verify_folder(root, rec, "jobcare-postings", "3") == rec.manifest


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda r: (r / "python_model.pkl").write_bytes(b"\x80\x05evil"), "file python_model.pkl: sha256"),
        (lambda r: (r / "artifacts/posting/ranker/model.txt").unlink(), "missing from the artifact store"),
        (lambda r: (r / "artifacts/posting/extra.pkl").write_bytes(b"x"), "not recorded at registration"),
        (lambda r: (r / "MLmodel").write_text("flavors: {}\n "), "file MLmodel: sha256"),
    ],
    ids=["changed pickle", "missing file", "added file", "one byte added"],
)
def test_any_difference_is_refused_naming_model_version_and_file(tmp_path, change, needle):
    root = _model(tmp_path)
    rec = _recorded(root)
    change(root)
    with pytest.raises(integrity.DigestMismatchError) as e:
        integrity.verify_folder(root, rec, "jobcare-postings", "3")
    assert needle in str(e.value) and str(e.value).startswith("jobcare-postings v3: ")
    assert e.value.reason == "digest_mismatch" and e.value.version == "3"


def test_a_manifest_edited_to_match_tampered_files_is_caught_by_its_recorded_digest(tmp_path):
    root = _model(tmp_path)
    rec = _recorded(root)
    (root / "python_model.pkl").write_bytes(b"\x80\x05evil")
    forged = dict(rec.manifest, **{"python_model.pkl": integrity.file_sha256(root / "python_model.pkl")})
    with pytest.raises(integrity.DigestMismatchError, match="does not hash to jobcare.sha256"):
        integrity.verify_folder(root, integrity.Recorded(forged, rec.sha256, "test"), "m", "1")


def test_a_symbolic_link_is_refused(tmp_path):
    root = _model(tmp_path)
    (root / "link.pkl").symlink_to(tmp_path / "elsewhere.pkl")
    with pytest.raises(integrity.DigestMismatchError, match="link.pkl: a symbolic link"):
        integrity.file_digests(root)


def test_model_id_of_a_logged_model_source():
    assert integrity.model_id_of("models:/m-" + "a" * 32) == "m-" + "a" * 32
    assert integrity.model_id_of("models:/jobcare-postings/3") is None
    assert integrity.model_id_of(None) is None


class _FakeClient:
    """The registry calls set_alias makes, recorded; ``champion`` is the current champion version."""

    def __init__(self, champion: str | None):
        self.champion, self.calls = champion, []

    def get_model_version_by_alias(self, name, alias):
        if self.champion is None:
            from mlflow.exceptions import MlflowException

            raise MlflowException("alias not found", error_code="INVALID_PARAMETER_VALUE")
        return SimpleNamespace(version=self.champion)

    def set_registered_model_alias(self, name, alias, version):
        self.calls.append(("alias", alias, version))

    def set_model_version_tag(self, name, version, key, value):
        self.calls.append(("version_tag", key, value))

    def set_registered_model_tag(self, name, key, value):
        self.calls.append(("model_tag", key, value))


def test_set_alias_appends_who_when_why_and_from_to_to_the_audit_log(tmp_path):
    path = tmp_path / "state" / "audit.jsonl"
    client = _FakeClient(champion="4")
    set_alias(client, "jobcare-postings", CHAMPION, "7", "it is better", action="promote", audit_log=path)
    set_alias(client, "jobcare-postings", CHAMPION, "4", "rollback: worse", action="rollback", audit_log=path)
    first, second = audit.read(path)
    assert {k: first[k] for k in ("action", "model", "alias", "version", "from_version", "why")} == {
        "action": "promote",
        "model": "jobcare-postings",
        "alias": "champion",
        "version": "7",
        "from_version": "4",
        "why": "it is better",
    }
    assert first["who"] == getpass.getuser() and first["pid"] == os.getpid()
    assert first["host"] == socket.gethostname() and first["when"].endswith("+00:00")
    assert (second["action"], second["version"], second["why"]) == ("rollback", "4", "rollback: worse")
    assert ("model_tag", "previous_champion", "4") in client.calls  # the MLflow tags are still written


def test_an_alias_does_not_move_when_its_audit_record_cannot_be_written(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the audit log's folder should be")
    client = _FakeClient(champion="1")
    with pytest.raises(audit.AuditError, match="nothing was done"):
        set_alias(client, "jobcare-postings", CHAMPION, "2", "r", audit_log=blocker / "audit.jsonl")
    assert client.calls == []


def test_the_configured_audit_path_is_used_when_none_is_given(tmp_path, monkeypatch):
    monkeypatch.setattr(audit, "_configured", None)
    assert audit.current_path() == audit.DEFAULT_PATH
    audit.configure(tmp_path / "a.jsonl")
    audit.append(audit.record("reload", model="m", version="2", why="w", from_version="1"))
    assert [(r["version"], r["from_version"]) for r in audit.read(tmp_path / "a.jsonl")] == [("2", "1")]


def test_the_promotion_lock_excludes_a_second_holder_until_released(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    held, release = threading.Event(), threading.Event()

    def holder():
        with promotion_lock(uri, "jobcare-postings"):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(10)
    with pytest.raises(PromotionLockError, match="held by another run"):
        with promotion_lock(uri, "jobcare-postings", timeout_s=0.3):
            pass
    with promotion_lock(uri, "jobcare-courses", timeout_s=0.3):  # another model: its own lock
        pass
    release.set()
    t.join(10)
    with promotion_lock(uri, "jobcare-postings", timeout_s=5):
        pass
    assert (tmp_path / "mlflow.db.jobcare-postings.promotion.lock").exists()


def test_a_pause_point_does_nothing_unless_named_and_waits_for_its_go_file(tmp_path, monkeypatch):
    monkeypatch.delenv("JOBCARE_PAUSE_AT", raising=False)
    monkeypatch.setenv("JOBCARE_PAUSE_DIR", str(tmp_path))
    pause_point("ranker_fit")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("JOBCARE_PAUSE_AT", "registered,ranker_fit")
    done = threading.Event()
    t = threading.Thread(target=lambda: (pause_point("ranker_fit"), done.set()))
    t.start()
    deadline = time.monotonic() + 10
    while not (tmp_path / "ranker_fit.reached").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (tmp_path / "ranker_fit.reached").read_text() == str(os.getpid())
    assert not done.wait(0.2)  # still waiting for its go file
    (tmp_path / "ranker_fit.go").touch()
    assert done.wait(10)
    t.join()

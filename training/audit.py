"""The audit log: one JSON line per promotion, rollback, gate decision and service reload or refusal.

Each record says who (the OS user), when (UTC), where (host, pid), what (action, model, version,
from-version, alias) and why. The file is ``tracking.audit_log`` (default ``.jobcare/audit.jsonl``),
set for the process by :func:`training.tracking.start`; callers may pass a path. A record is one
``write`` of one line on a file opened for appending, so concurrent writers on one host do not
interleave lines. The MLflow tags written on promotion stay; this log also keeps what tags overwrite
(every move, not only the last) and what the service did.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

from jobcare.errors import JobcareError

DEFAULT_PATH = Path(".jobcare/audit.jsonl")
_configured: Path | None = None


class AuditError(JobcareError):
    """The audit log cannot be written (the action it would record is not done, or is named as done)."""


def configure(path: str | Path | None) -> None:
    """The audit log of this process (called by :func:`training.tracking.start` from the CLI)."""
    global _configured
    _configured = Path(path) if path is not None else None


def current_path(path: str | Path | None = None) -> Path:
    return Path(path) if path is not None else (_configured or DEFAULT_PATH)


def who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (some containers)
        return f"uid:{os.getuid()}"


def record(
    action: str,
    *,
    model: str,
    version: str | None,
    why: str,
    alias: str | None = None,
    from_version: str | None = None,
    path: str | Path | None = None,
    **extra,
) -> dict:
    """A record with who / when / host / pid and the given fields (not yet written)."""
    return {
        "when": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "who": who(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "action": action,
        "model": model,
        "alias": alias,
        "version": None if version is None else str(version),
        "from_version": None if from_version is None else str(from_version),
        "why": why,
        **extra,
    }


class Writer:
    """The audit file opened for appending before the action, so an action is not done when its record
    could not be written: ``with Writer(path) as w: move(); w.write(rec)``."""

    def __init__(self, path: str | Path | None = None):
        self.path = current_path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in __exit__
        except OSError as e:
            raise AuditError(
                f"audit log {self.path}: cannot open for appending ({e}); nothing was done"
            ) from e

    def write(self, rec: dict) -> None:
        try:
            self._f.write(json.dumps(rec, default=str) + "\n")
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError as e:
            raise AuditError(
                f"audit log {self.path}: {rec['action']} of {rec['model']} "
                f"v{rec['version']} was done but its record could not be written ({e})"
            ) from e

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()


def append(rec: dict, path: str | Path | None = None) -> None:
    with Writer(path) as w:
        w.write(rec)


def read(path: str | Path | None = None) -> list[dict]:
    """Every record of the audit log, oldest first ([] when there is none yet)."""
    p = current_path(path)
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]

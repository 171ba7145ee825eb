"""What the service knows about its models' trust and its registry: which versions it refused and why,
whether the registry database answered the last poll, and why it is not ready when it has no champion.

The engine reports here; :class:`WatchHooks` turn the reports into Prometheus metrics in the service
(``jobcare_model_refused_total{reason}``, ``jobcare_registry_reachable``,
``jobcare_registry_poll_failures_total``); every refusal and every reload is a log line and an audit
record (:mod:`training.audit`). A refused version is remembered, so the poll does not download it again
every period; a new version under the alias is tried afresh.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from training import audit

log = logging.getLogger(__name__)


def _noop(*_args) -> None:
    return None


@dataclass(frozen=True)
class WatchHooks:
    """Callbacks for the service's metrics: ``refused(reason)`` per refused version, ``poll(ok)`` per
    registry poll (ok: the database answered)."""

    refused: Callable[[str], None] = _noop
    poll: Callable[[bool], None] = _noop


@dataclass
class ModelWatch:
    hooks: WatchHooks = field(default_factory=WatchHooks)
    audit_log: Path | None = None
    refused: dict = field(default_factory=dict)  # (alias, item type, version) -> the refusal's message
    reachable: bool = True
    failed_polls: int = 0  # since the last poll the database answered
    total_failed_polls: int = 0
    last_error: str | None = None
    not_ready: str | None = None  # why there is no champion to serve (None: there is one)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def is_refused(self, alias: str, item_type: str, version: str | None) -> bool:
        return (alias, item_type, version) in self.refused

    def refuse(self, alias: str, item_type: str, error, serving: str | None) -> None:
        """Record that ``error.model`` v``error.version`` (under ``alias``) is refused; ``serving`` is the
        version still served instead (None: none)."""
        with self._lock:
            self.refused[(alias, item_type, error.version)] = str(error)
        keeps = f"still serving v{serving}" if serving else "nothing to serve for it"
        log.error("model refused (%s): %s; %s", error.reason, error, keeps)
        self.hooks.refused(error.reason)
        self._audit(
            "refuse",
            model=error.model,
            version=error.version,
            alias=alias,
            from_version=serving,
            why=f"{error.reason}: {error.detail}",
        )

    def reloaded(self, alias: str, model: str, version: str, previous: str | None) -> None:
        log.info("model reloaded: %s@%s v%s -> v%s", model, alias, previous, version)
        self._audit(
            "reload",
            model=model,
            version=version,
            alias=alias,
            from_version=previous,
            why=f"registry alias {alias} points at v{version}; digests verified",
        )

    def poll_failed(self, error: Exception) -> None:
        with self._lock:
            first = self.reachable
            self.reachable = False
            self.failed_polls += 1
            self.total_failed_polls += 1
            self.last_error = f"{type(error).__name__}: {error}"
        if first:
            log.warning("registry unreachable, still serving the loaded models: %s", self.last_error)
        self.hooks.poll(False)

    def poll_ok(self) -> None:
        with self._lock:
            back, n = not self.reachable, self.failed_polls
            self.reachable, self.failed_polls = True, 0
        if back:
            log.warning("registry reachable again after %d failed poll(s)", n)
        self.hooks.poll(True)

    def _audit(self, action: str, **fields) -> None:
        try:
            audit.append(audit.record(action, **fields), self.audit_log)
        except audit.AuditError as e:  # the service keeps serving; the failure itself is logged
            log.error("%s", e)

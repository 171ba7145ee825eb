"""The impression log: every response the service gives, appended to rotated JSONL files.

``append`` puts the record on an in-memory buffer and returns; one writer thread drains it to disk, so a
slow or failing disk delays the files, never a request. A file is rotated when it exceeds ``max_bytes`` or
is older than ``max_seconds``; the current file is ``impressions-<start>-<pid>-<n>.jsonl.open`` and gets
its final ``.jsonl`` name when closed. Lines are whole JSON objects, written one ``write`` at a time (no
user-space buffer); a line the disk could only take in part is cut off again (``ftruncate``), so a file
never holds a torn line followed by more records.

When writing fails (any ``OSError``: disk full, read-only, permission, the folder deleted or replaced by a
file) the record goes back to the front of the buffer, the writer retries it every ``retry_seconds`` and
the buffer is the spool: records keep their order and are written, oldest first, as soon as the disk takes
them again. The buffer holds at most ``spool_max_records``; beyond it **the oldest record is dropped** (the
newest traffic is the most useful for the next retraining) and counted. Nothing leaves silently: besides
``written``, the log counts ``deferred`` (records that had to wait for a failing disk), ``dropped`` by
reason (``spool_full``; ``unserialisable``, a record ``json.dumps`` refuses; ``writer_crash``, a record
that crashed the writer three times; ``shutdown``, records still unwritten when ``close`` times out;
``closed``, appended after ``close``), ``write_errors`` by errno name (and ``file_removed`` when the open
file was deleted under the writer: the records already in it went with it) and ``restarts``. So at any
time ``appended == written + dropped + pending``. :class:`LogHooks` passes the same events to the service's
Prometheus counters. A writer thread that dies of any exception is replaced by a new one (after
``retry_seconds``), which carries on with the record in hand.

Records hold the request id, time, seeker key (the seeker id, or a salted hash for an inline
profile: never the profile), variant, model version, item type and the shown items with their
scores and positions, and the logging policy: ``policy`` ("model", "explore" or "degraded"),
``epsilon``, each shown item's ``propensities`` and the model's top-``pool`` ids (see
``serving.engine.explore_slate``), which make the log usable for off-policy estimates
(``evaluation.ope``). :func:`read_records` reads a folder one row per response, :func:`read_impressions`
one row per shown item.
"""

from __future__ import annotations

import collections
import errno
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from jobcare.config import ImpressionLogConfig

log = logging.getLogger(__name__)
CRASHES_PER_RECORD = 3  # a record that crashed the writer this many times is dropped ("writer_crash")
DROP_REASONS = ("spool_full", "unserialisable", "writer_crash", "shutdown", "closed")


@dataclass(frozen=True)
class LogHooks:
    """What the log reports as it happens (the service passes Prometheus counters and a gauge); each hook
    may be None. ``written(n)``, ``deferred(n)``, ``dropped(reason, n)``, ``write_error(errno name)`` and
    ``restarted()`` count; ``pending(n)`` sets the number of records in memory not yet on disk. Hooks run
    on the writer thread, except ``deferred`` and ``dropped`` for records appended while the disk fails,
    which run in ``append``."""

    written: Callable[[int], None] | None = None
    deferred: Callable[[int], None] | None = None
    dropped: Callable[[str, int], None] | None = None
    write_error: Callable[[str], None] | None = None
    restarted: Callable[[], None] | None = None
    pending: Callable[[int], None] | None = None


class ImpressionLog:
    """Append-only JSONL impression files written by a supervised background thread (module docstring).

    Args:
        folder: where the files go (created, and re-created if it disappears).
        max_bytes, max_seconds, spool_max_records, retry_seconds: see
            :class:`jobcare.config.ImpressionLogConfig` (None: its default).
        hooks: counters and gauge to report to (:class:`LogHooks`).
    """

    def __init__(
        self,
        folder: str | Path,
        max_bytes: int | None = None,
        max_seconds: float | None = None,
        spool_max_records: int | None = None,
        retry_seconds: float | None = None,
        hooks: LogHooks | None = None,
    ):
        d = ImpressionLogConfig()
        self.folder = Path(folder)
        self.max_bytes = d.max_bytes if max_bytes is None else max_bytes
        self.max_seconds = d.max_seconds if max_seconds is None else max_seconds
        self.spool_max_records = d.spool_max_records if spool_max_records is None else spool_max_records
        self.retry_seconds = d.retry_seconds if retry_seconds is None else retry_seconds
        if self.spool_max_records < 1 or self.retry_seconds <= 0:
            raise ValueError("spool_max_records >= 1 and retry_seconds > 0 (rule: a bounded, retrying spool)")
        self.hooks = hooks or LogHooks()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # the writer retries; requests are answered meanwhile
            log.error(
                "impression log folder %s cannot be created yet (%s); records wait in memory", folder, e
            )
        self._cv = threading.Condition()
        self._buf: collections.deque = collections.deque()
        self._inflight = None  # the record being written (out of the buffer)
        self._inflight_crashes = 0
        self._failing = False
        self._warned_drop = False
        self._reported_pending = 0
        self._stopping = False
        self._stop_deadline = float("inf")
        self._closed = False
        self._n = 0
        self._file = None
        self._path: Path | None = None
        self._size = 0
        self._opened = 0.0
        self.appended = 0
        self.written = 0
        self.deferred = 0
        self.dropped: collections.Counter = collections.Counter()
        self.write_errors: collections.Counter = collections.Counter()
        self.restarts = 0
        self._thread = self._start_writer()

    # ------------------------------------------------------------------ public
    @property
    def pending(self) -> int:
        """Records in memory not yet on disk."""
        with self._cv:
            return len(self._buf) + (self._inflight is not None)

    @property
    def failing(self) -> bool:
        """True from a failed write until the next write succeeds."""
        return self._failing

    @property
    def thread(self) -> threading.Thread:
        """The current writer thread (a new object after a restart)."""
        return self._thread

    def append(self, record: dict) -> None:
        """Queue one record (never blocks on the disk). Over ``spool_max_records`` waiting, the oldest
        waiting record is dropped and counted."""
        with self._cv:
            self.appended += 1
            if self._closed:
                self.dropped["closed"] += 1
                deferred, dropped, reason = 0, 1, "closed"
            else:
                self._buf.append(record)
                deferred = 1 if self._failing else 0
                self.deferred += deferred
                dropped, reason = self._enforce_bound(), "spool_full"
                if not self._failing:
                    self._cv.notify()
        if deferred and self.hooks.deferred:
            self.hooks.deferred(1)
        if dropped:
            self._report_drop(reason, dropped)

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, close the current file, stop the writer. If the disk still fails after
        ``timeout`` seconds, what is left is dropped (reason ``shutdown``), counted and logged."""
        with self._cv:
            if self._closed:
                return
            self._closed = self._stopping = True
            self._stop_deadline = time.monotonic() + timeout
            self._cv.notify_all()
        end = time.monotonic() + timeout + self.retry_seconds + 5.0
        while True:
            t = self._thread
            t.join(max(0.0, end - time.monotonic()))
            if t is self._thread or time.monotonic() >= end:
                break  # no replacement was started while we waited (or we gave up waiting)

    def stats(self) -> dict:
        """The counters, for tests, benchmarks and logs."""
        with self._cv:
            return {
                "appended": self.appended,
                "written": self.written,
                "deferred": self.deferred,
                "dropped": dict(self.dropped),
                "pending": len(self._buf) + (self._inflight is not None),
                "write_errors": dict(self.write_errors),
                "restarts": self.restarts,
            }

    # ------------------------------------------------------------------ bookkeeping (under self._cv)
    def _enforce_bound(self) -> int:
        n = 0
        while len(self._buf) > self.spool_max_records:
            self._buf.popleft()  # the rule: the oldest waiting record goes first
            n += 1
        if n:
            self.dropped["spool_full"] += n
        return n

    def _report_drop(self, reason: str, n: int) -> None:
        if not self._warned_drop or reason != "spool_full":
            self._warned_drop = True
            log.error(
                "impression log: dropped %d record(s) (%s; rule: at most %d wait in memory, the oldest "
                "goes first); dropped so far: %s",
                n,
                reason,
                self.spool_max_records,
                dict(self.dropped),
            )
        if self.hooks.dropped:
            self.hooks.dropped(reason, n)

    def _report_pending(self, n: int) -> None:
        if self.hooks.pending and n != self._reported_pending:
            self._reported_pending = n
            self.hooks.pending(n)

    # ------------------------------------------------------------------ writer thread
    def _start_writer(self) -> threading.Thread:
        t = threading.Thread(target=self._run, name="impression-log", daemon=True)
        self._thread = t
        t.start()
        return t

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # noqa: BLE001 - any crash: counted, logged, and a new writer takes over
            self._crashed(e)

    def _crashed(self, e: BaseException) -> None:
        log.error("impression log writer crashed (%s: %s); restarting it", type(e).__name__, e, exc_info=e)
        dropped = 0
        with self._cv:
            self.restarts += 1
            if self._inflight is not None:
                self._inflight_crashes += 1
                if self._inflight_crashes >= CRASHES_PER_RECORD:
                    self.dropped["writer_crash"] += 1
                    dropped, self._inflight_crashes = 1, 0
                else:
                    self._buf.appendleft(self._inflight)
                self._inflight = None
        try:
            self._finish_file()
        except Exception:  # noqa: BLE001 - the file is best effort here; the records are not in it
            log.exception("impression log: closing the crashed writer's file failed")
        if self.hooks.restarted:
            self.hooks.restarted()
        if dropped:
            self._report_drop("writer_crash", 1)
        with self._cv:  # a pause, so that a writer failing on every record does not spin
            self._cv.wait_for(lambda: self._stopping, timeout=self.retry_seconds)
            if not (self._stopping and time.monotonic() >= self._stop_deadline):
                self._start_writer()
                return
        self._drop_rest()  # closing, and out of time

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._buf and not self._stopping:
                    self._cv.wait()
                if not self._buf:
                    break  # stopping, everything written
                rec = self._inflight = self._buf.popleft()
            try:
                line = json.dumps(rec, separators=(",", ":"), default=str) + "\n"
            except (TypeError, ValueError) as e:
                with self._cv:
                    self.dropped["unserialisable"] += 1
                    self._inflight = None
                log.error("impression log: record not serialisable (%s): dropped", e)
                self._report_drop("unserialisable", 1)
                continue
            try:
                self._prepare_file()
                self.write_line(line)
            except OSError as e:
                self._write_failed(e)
                if not self._wait_retry():
                    self._drop_rest()
                    break
                continue
            with self._cv:
                self._inflight = None
                self._inflight_crashes = 0
                self.written += 1
                recovered, self._failing = self._failing, False
                left = len(self._buf)
            if self.hooks.written:
                self.hooks.written(1)
            if recovered:
                self._warned_drop = False
                log.warning(
                    "impression log: %s writable again; writing the %d record(s) held in memory (%s)",
                    self.folder,
                    left + 1,
                    self.stats(),
                )
            self._report_pending(left)
        self._finish_file()

    def _write_failed(self, e: OSError) -> None:
        name = errno.errorcode.get(e.errno, type(e).__name__) if e.errno else type(e).__name__
        with self._cv:
            self._buf.appendleft(self._inflight)  # back to the front: order is kept
            self._inflight = None
            first = not self._failing
            if first:
                self._failing = True
                self.deferred += len(self._buf)
                held = len(self._buf)
            dropped = self._enforce_bound()
            self.write_errors[name] += 1
            pending = len(self._buf)
        if first:
            log.error(
                "impression log: writing to %s failed (%s: %s); records wait in memory (at most %d, then the "
                "oldest are dropped), retried every %.1f s",
                self.folder,
                name,
                e,
                self.spool_max_records,
                self.retry_seconds,
            )
            if self.hooks.deferred:
                self.hooks.deferred(held)
        if dropped:
            self._report_drop("spool_full", dropped)
        if self.hooks.write_error:
            self.hooks.write_error(name)
        self._report_pending(pending)
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            self._finish_file()  # read-only, gone, replaced...: a new file once the disk is back
        # disk full: the file stays open (cut back to its last whole line), so retries add no empty files

    def _wait_retry(self) -> bool:
        """Sleep ``retry_seconds`` (shorter when closing); False once ``close``'s deadline has passed."""
        until = time.monotonic() + self.retry_seconds
        with self._cv:
            while True:
                now = time.monotonic()
                if self._stopping and now >= self._stop_deadline:
                    return False
                if now >= until:
                    return True
                self._cv.wait(min(until, self._stop_deadline) - now)

    def _drop_rest(self) -> None:
        with self._cv:
            n = len(self._buf)
            self._buf.clear()
            self.dropped["shutdown"] += n
        if n:
            log.error("impression log closed while %s still fails: %d record(s) dropped", self.folder, n)
            self._report_drop("shutdown", n)

    # ------------------------------------------------------------------ files
    def _prepare_file(self) -> None:
        """An open file to write to: rotated by size or age, replaced when it was deleted under us."""
        if self._file is not None:
            if os.fstat(self._file.fileno()).st_nlink == 0:
                log.error(
                    "impression log: %s was deleted while open (the folder removed?); the records in it "
                    "went with it; continuing in a new file",
                    self._path,
                )
                with self._cv:
                    self.write_errors["file_removed"] += 1
                if self.hooks.write_error:
                    self.hooks.write_error("file_removed")
                self._finish_file()
            elif self._size >= self.max_bytes or time.monotonic() - self._opened >= self.max_seconds:
                self._finish_file()
        if self._file is None:
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            path = self.folder / f"impressions-{stamp}-{os.getpid()}-{self._n:05d}.jsonl.open"
            self.folder.mkdir(parents=True, exist_ok=True)
            f = open(path, "ab", buffering=0)  # noqa: SIM115 - kept open across records, closed on rotation
            self._n += 1
            self._file, self._path, self._size, self._opened = f, path, 0, time.monotonic()

    def write_line(self, line: str) -> None:
        """Write one line to the current file (the step a slow or full disk slows down or fails). On an
        ``OSError`` the part already written is cut off again, so the file keeps whole lines only."""
        raw = line.encode("utf-8")
        data, good = memoryview(raw), self._size
        try:
            while data:
                data = data[self._file.write(data) :]
        except OSError:
            try:
                os.ftruncate(self._file.fileno(), good)
            except OSError:
                self._finish_file()  # the torn line stays (read_records skips it); nothing follows it
            raise
        self._size = good + len(raw)

    def _finish_file(self) -> None:
        """Close the current file and give it its final name (an empty one is removed). Never raises:
        a file that cannot be synced or renamed keeps its ``.open`` name, which readers read too."""
        f, path, size = self._file, self._path, self._size
        if f is None:
            return
        self._file = None
        try:
            os.fsync(f.fileno())
        except OSError as e:
            log.warning("impression log: fsync of %s failed (%s)", path, e)
        try:
            f.close()
        except OSError as e:
            log.warning("impression log: closing %s failed (%s)", path, e)
        try:
            if size == 0:
                path.unlink(missing_ok=True)
            else:
                path.rename(path.with_suffix(""))  # drop ".open"
        except OSError as e:
            log.warning("impression log: %s keeps its .open name (%s)", path, e)


RECORD_COLUMNS = [
    "request_id",
    "time",
    "as_of",
    "seeker",
    "variant",
    "model_version",
    "item_type",
    "degraded",
    "k",
    "filters",
    "policy",
    "epsilon",
    "items",
    "scores",
    "propensities",
    "pool",
]


def read_records(folder: str | Path) -> pd.DataFrame:
    """Every logged response in ``folder``, one row each (closed and open files; a torn last line of a
    file being written is skipped). Records written before the logging policy was recorded read as
    policy "model" with propensity 1 (the service then always showed the model's order)."""
    recs = []
    for p in sorted(Path(folder).glob("impressions-*.jsonl*")):
        for line in p.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            n = len(rec["items"])
            rec.setdefault("as_of", None)
            rec.setdefault("k", n)
            rec.setdefault("filters", None)
            rec.setdefault("policy", "degraded" if rec["degraded"] else "model")
            rec.setdefault("epsilon", 0.0)
            rec.setdefault("propensities", [1.0] * n)
            rec.setdefault("pool", rec["items"])
            recs.append({c: rec[c] for c in RECORD_COLUMNS})
    df = pd.DataFrame(recs, columns=RECORD_COLUMNS)
    # ISO 8601 in whatever precision each record has: Python's isoformat() leaves out the microseconds
    # when they are 0 (one record in a million), which broke format inference in a 10-minute soak
    df["time"] = pd.to_datetime(df["time"], utc=True, format="ISO8601")
    df["as_of"] = pd.to_datetime(df["as_of"], utc=True, format="ISO8601")
    return df


def read_impressions(folder: str | Path) -> pd.DataFrame:
    """Every logged response in ``folder`` as one row per shown item, with its position and propensity."""
    rec = read_records(folder)
    per_item = ["items", "scores", "positions", "propensities"]
    rec["positions"] = rec["items"].map(lambda x: list(range(1, len(x) + 1)))
    keep = [c for c in RECORD_COLUMNS if c not in (*per_item, "filters", "pool")]
    df = rec[keep + per_item].explode(per_item, ignore_index=True)
    df = df.dropna(subset=["items"]).rename(
        columns={"items": "item_id", "scores": "score", "positions": "position", "propensities": "propensity"}
    )
    return df.astype(
        {"item_id": "int64", "score": "float64", "position": "int64", "propensity": "float64"}
    ).reset_index(drop=True)

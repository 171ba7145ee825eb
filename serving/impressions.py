"""The impression log: every response the service gives, appended to rotated JSONL files.

``append`` only puts the record on an unbounded in-memory queue and returns; one writer thread drains
it to disk, so a slow disk delays the files, never a request, and no record is dropped (``close``
drains the queue before returning). A file is rotated when it exceeds ``max_bytes`` or is older than
``max_seconds``; the current file is ``impressions-<start>-<pid>-<n>.jsonl.open`` and gets its final
``.jsonl`` name when closed. Lines are whole JSON objects, written and flushed one at a time.

Records hold the request id, time, seeker key (the seeker id, or a salted hash for an inline
profile: never the profile), variant, model version, item type and the shown items with their
scores and positions. :func:`read_impressions` turns a folder of them into one row per shown item.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from pathlib import Path

import pandas as pd

_STOP = object()


class ImpressionLog:
    def __init__(self, folder: str | Path, max_bytes: int = 20_000_000, max_seconds: float = 3600.0):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.max_seconds = max_bytes, max_seconds
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._n = 0
        self._file = None
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="impression-log", daemon=True)
        self._thread.start()

    def append(self, record: dict) -> None:
        """Queue one record (never blocks on the disk)."""
        self._q.put(record)

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, close the current file, stop the writer."""
        if self._thread.is_alive():
            self._q.put(_STOP)
            self._thread.join(timeout)

    # ------------------------------------------------------------ writer thread
    def _open(self) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self._path = self.folder / f"impressions-{stamp}-{os.getpid()}-{self._n:05d}.jsonl.open"
        self._n += 1
        self._file = open(self._path, "a", encoding="utf-8")
        self._opened = time.monotonic()

    def _rotate(self) -> None:
        if self._file is None:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._path.rename(self._path.with_suffix(""))  # drop ".open"
        self._file = None

    def write_line(self, line: str) -> None:
        """Write one line to the current file (the step a slow disk slows down)."""
        self._file.write(line)
        self._file.flush()

    def _run(self) -> None:
        while True:
            rec = self._q.get()
            if rec is _STOP:
                self._rotate()
                return
            if self._file is not None and (
                self._file.tell() >= self.max_bytes or time.monotonic() - self._opened >= self.max_seconds
            ):
                self._rotate()
            if self._file is None:
                self._open()
            self.write_line(json.dumps(rec, separators=(",", ":"), default=str) + "\n")
            self.written += 1


def read_impressions(folder: str | Path) -> pd.DataFrame:
    """Every logged response in ``folder`` as one row per shown item (closed and open files; a torn last
    line of a file being written is skipped)."""
    rows = []
    for p in sorted(Path(folder).glob("impressions-*.jsonl*")):
        for line in p.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            for item, score, pos in zip(rec["items"], rec["scores"], rec["positions"]):
                rows.append(
                    {
                        "request_id": rec["request_id"],
                        "time": rec["time"],
                        "seeker": rec["seeker"],
                        "variant": rec["variant"],
                        "model_version": rec["model_version"],
                        "item_type": rec["item_type"],
                        "degraded": rec["degraded"],
                        "item_id": item,
                        "score": score,
                        "position": pos,
                    }
                )
    cols = [
        "request_id",
        "time",
        "seeker",
        "variant",
        "model_version",
        "item_type",
        "degraded",
        "item_id",
        "score",
        "position",
    ]
    df = pd.DataFrame(rows, columns=cols)
    df["time"] = pd.to_datetime(df["time"], utc=True)
    return df

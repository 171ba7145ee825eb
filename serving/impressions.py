"""The impression log: every response the service gives, appended to rotated JSONL files.

``append`` only puts the record on an unbounded in-memory queue and returns; one writer thread drains
it to disk, so a slow disk delays the files, never a request, and no record is dropped (``close``
drains the queue before returning). A file is rotated when it exceeds ``max_bytes`` or is older than
``max_seconds``; the current file is ``impressions-<start>-<pid>-<n>.jsonl.open`` and gets its final
``.jsonl`` name when closed. Lines are whole JSON objects, written and flushed one at a time.

Records hold the request id, time, seeker key (the seeker id, or a salted hash for an inline
profile: never the profile), variant, model version, item type and the shown items with their
scores and positions, and the logging policy: ``policy`` ("model", "explore" or "degraded"),
``epsilon``, each shown item's ``propensities`` and the model's top-``pool`` ids (see
``serving.engine.explore_slate``), which make the log usable for off-policy estimates
(``evaluation.ope``). :func:`read_records` reads a folder one row per response, :func:`read_impressions`
one row per shown item.
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
    def __init__(
        self, folder: str | Path, max_bytes: int = 20_000_000, max_seconds: float = 3600.0, on_written=None
    ):
        """``on_written`` (optional) is called once per record on disk (e.g. a Prometheus counter's inc)."""
        self.folder = Path(folder)
        self.on_written = on_written
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
            if self.on_written is not None:
                self.on_written()


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
    df["time"] = pd.to_datetime(df["time"], utc=True)
    df["as_of"] = pd.to_datetime(df["as_of"], utc=True)
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

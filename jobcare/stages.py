"""Wall time and memory of a run's named stages: ``with stage("materialize"): ...``.

Each finished stage is logged at INFO (name, seconds, resident memory). While a :class:`StageRecorder` is
active (``jobcare train`` keeps one for its MLflow run; ``benchmarks/national.py`` reads it), it also
collects every stage with the peak resident memory sampled while it ran (this process's resident set plus
its children's unique sets, :func:`tree_rss`: the processes that materialise feature views or replay
requests in parallel count too). A stage entered several times
(stage one is fitted before each window) is one entry with the summed time, the number of calls and the
highest peak. Stages may nest; names use ``/`` for the item type (``posting/stage_one``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import psutil

log = logging.getLogger(__name__)
_active: list[StageRecorder] = []


class StageRecorder:
    """Collects the stages run inside ``with StageRecorder() as rec:`` (this process, every thread).

    ``rec.stages``: name -> {"seconds", "calls", "peak_rss_mib"}, in the order stages were first entered;
    ``rec.peak_rss_mib``: the highest resident memory (this process and its children) sampled while the
    recorder was active."""

    def __init__(self, interval: float = 0.1):
        self.stages: dict[str, dict] = {}
        self.peak_rss_mib = 0.0
        self._interval = interval
        # Children (parallel materialisation, Dask workers) are listed every 10 samples, not each one:
        # psutil finds them by reading every process's /proc entry, which was ~6% of a national profile.
        self._children_every = 10 * interval
        self._children: list[psutil.Process] = []
        self._children_bytes = 0
        self._children_due = 0.0
        self._open: dict[int, list] = {}  # id of an open stage entry -> [name, peak MiB so far]
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StageRecorder:
        self._sample()
        self._thread = threading.Thread(target=self._run, name="stage-recorder", daemon=True)
        self._thread.start()
        _active.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _active.remove(self)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> float:
        # Measured under the lock: a reading taken before a stage began must not count as that stage's
        # peak (the sampler thread could read while the last stage's memory was alive, then apply it to
        # the stage the main thread had just opened).
        with self._lock:
            now = time.monotonic()
            if now >= self._children_due:  # listing the children walks /proc: not at every sample
                self._children = self._proc.children(recursive=True)
                self._children_bytes = _unique_bytes(self._children)  # smaps: ~17 ms a child
                self._children_due = now + self._children_every
            mib = (self._proc.memory_info().rss + self._children_bytes) / 2**20
            self.peak_rss_mib = max(self.peak_rss_mib, mib)
            for entry in self._open.values():
                entry[1] = max(entry[1], mib)
        return mib

    def _begin(self, name: str) -> list:
        entry = [name, 0.0]
        with self._lock:
            self._open[id(entry)] = entry
            self.stages.setdefault(name, {"seconds": 0.0, "calls": 0, "peak_rss_mib": 0.0})
        self._sample()
        return entry

    def _end(self, entry: list, seconds: float) -> None:
        self._sample()
        with self._lock:
            self._open.pop(id(entry), None)
            s = self.stages[entry[0]]
            s["seconds"] += seconds
            s["calls"] += 1
            s["peak_rss_mib"] = max(s["peak_rss_mib"], entry[1])


def tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of ``proc`` and its children (parallel materialisation, Dask workers, a server's
    workers, forked replay workers): ``proc``'s resident set plus each child's unique set (USS)."""
    return proc.memory_info().rss + _unique_bytes(proc.children(recursive=True))


def _unique_bytes(children: list[psutil.Process]) -> int:
    """The children's unique resident memory (USS: pages no other process maps). Not their resident sets:
    a forked child's RSS includes every parent page it maps, which the parent's RSS already counts (a
    forked replay worker of a 9 GB trainer would add 9 GB); a spawned child's shared libraries are left
    out too (file pages shared with other processes)."""
    total = 0
    for child in children:
        try:
            total += child.memory_full_info().uss
        except psutil.Error:  # exited between the listing and the read
            pass
    return total


@contextlib.contextmanager
def stage(name: str):
    """Time the block as stage ``name`` (logged; collected by every active :class:`StageRecorder`)."""
    entries = [(rec, rec._begin(name)) for rec in list(_active)]
    t0 = time.perf_counter()
    try:
        yield
    finally:
        secs = time.perf_counter() - t0
        for rec, entry in entries:
            rec._end(entry, secs)
        log.info("stage %s: %.2f s, rss %.0f MiB", name, secs, psutil.Process().memory_info().rss / 2**20)

"""The impression log under faults: a disk that fails and comes back, a bounded spool with the oldest
dropped, a deleted or replaced folder, a crashing writer thread. Every count checked against what was
appended; the real full disk (tmpfs) is in tests/integration/test_serving_faults.py."""

from __future__ import annotations

import errno
import shutil
import threading
import time
from collections import Counter

import pandas as pd
import pytest

from serving.impressions import ImpressionLog, LogHooks, read_records


def wait_until(pred, timeout: float = 10.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


def rec(i: int) -> dict:
    return {
        "request_id": f"r{i:05d}",
        "time": "2025-01-01T00:00:00Z",
        "seeker": str(i),
        "variant": "champion",
        "model_version": "1",
        "item_type": "posting",
        "degraded": False,
        "items": [i],
        "scores": [1.0],
        "positions": [1],
    }


def ids_on_disk(folder) -> list[int]:
    return [int(r[1:]) for r in read_records(folder)["request_id"]]


class Recorder:
    """LogHooks that remember every call (what the service's Prometheus counters would receive)."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.pending: list[int] = []
        self.lock = threading.Lock()

    def hooks(self) -> LogHooks:
        def add(key, n=1):
            with self.lock:
                self.counts[key] += n

        return LogHooks(
            written=lambda n: add("written", n),
            deferred=lambda n: add("deferred", n),
            dropped=lambda reason, n: add(f"dropped:{reason}", n),
            write_error=lambda name: add(f"error:{name}"),
            restarted=lambda: add("restarts"),
            pending=self.pending.append,
        )


class FlakyDisk:
    """Patches a log's write step: raises ENOSPC while ``full`` is set, else writes for real."""

    def __init__(self, log: ImpressionLog, full: bool = True):
        self.full = full
        self.real = log.write_line
        log.write_line = self.write_line

    def write_line(self, line: str) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.real(line)


def test_a_failing_disk_holds_records_in_order_and_writes_them_when_it_returns(tmp_path):
    r = Recorder()
    log = ImpressionLog(tmp_path, retry_seconds=0.02, spool_max_records=1000, hooks=r.hooks())
    disk = FlakyDisk(log, full=False)
    for i in range(20):
        log.append(rec(i))
    wait_until(lambda: log.written == 20, what="20 written")
    disk.full = True
    for i in range(20, 120):
        log.append(rec(i))
    wait_until(lambda: log.write_errors["ENOSPC"] >= 3, what="retries")
    assert log.failing and log.written == 20 and log.pending == 100
    assert log.deferred == 100  # every record since the failure waited in memory
    disk.full = False
    wait_until(lambda: log.written == 120, what="the held records written")
    log.close()
    s = log.stats()
    assert s["appended"] == 120 and s["dropped"] == {} and s["pending"] == 0
    assert ids_on_disk(tmp_path) == list(range(120))  # nothing lost, order kept across the outage
    assert r.counts["written"] == 120 and r.counts["deferred"] == 100
    assert r.counts["error:ENOSPC"] == log.write_errors["ENOSPC"]
    assert r.pending[-1] == 0 and max(r.pending) >= 99
    assert not list(tmp_path.glob("*.open"))


def test_the_spool_is_bounded_and_drops_the_oldest_counted(tmp_path):
    r = Recorder()
    log = ImpressionLog(tmp_path, retry_seconds=0.02, spool_max_records=30, hooks=r.hooks())
    disk = FlakyDisk(log, full=True)
    for i in range(100):
        log.append(rec(i))
        if i == 50:
            wait_until(lambda: log.write_errors["ENOSPC"] >= 2, what="the writer retrying")
    wait_until(lambda: log.write_errors["ENOSPC"] >= 5, what="more retries")
    assert log.pending == 30 and log.dropped == {"spool_full": 70} and log.written == 0
    disk.full = False
    wait_until(lambda: log.written == 30, what="the spool written")
    log.close()
    assert log.written == log.appended - sum(log.dropped.values()) == 30
    assert ids_on_disk(tmp_path) == list(range(70, 100))  # the newest 30 kept, the oldest 70 dropped
    assert r.counts["dropped:spool_full"] == 70 and r.counts["written"] == 30


def test_a_crashing_writer_thread_is_restarted_and_loses_nothing(tmp_path):
    r = Recorder()
    log = ImpressionLog(tmp_path, retry_seconds=0.02, hooks=r.hooks())
    real, calls = log.write_line, Counter()

    def crash_once_on_record_5(line):
        calls[line] += 1
        if '"r00005"' in line and calls[line] == 1:
            raise RuntimeError("injected writer crash")
        real(line)

    log.write_line = crash_once_on_record_5
    first = log.thread
    for i in range(20):
        log.append(rec(i))
    wait_until(lambda: log.written == 20, what="all written after the restart")
    assert log.restarts == 1 and r.counts["restarts"] == 1
    assert log.thread is not first and log.thread.is_alive() and not first.is_alive()
    log.close()
    assert ids_on_disk(tmp_path) == list(range(20))  # the record in hand is retried, none duplicated
    assert log.dropped == {}


def test_a_record_that_always_crashes_the_writer_is_dropped_after_three_tries(tmp_path):
    log = ImpressionLog(tmp_path, retry_seconds=0.01)
    real = log.write_line

    def poison(line):
        if '"r00003"' in line:
            raise KeyError("injected: this record always crashes the writer")
        real(line)

    log.write_line = poison
    for i in range(8):
        log.append(rec(i))
    wait_until(lambda: log.written == 7, what="the others written")
    log.close()
    assert log.restarts == 3 and log.dropped == {"writer_crash": 1}
    assert ids_on_disk(tmp_path) == [0, 1, 2, 4, 5, 6, 7]


def test_an_unserialisable_record_is_dropped_and_counted(tmp_path):
    log = ImpressionLog(tmp_path)
    bad = rec(1)
    bad["loop"] = bad  # json.dumps: "Circular reference detected"
    for r in (rec(0), bad, rec(2)):
        log.append(r)
    log.close()
    assert log.written == 2 and log.dropped == {"unserialisable": 1} and log.restarts == 0
    assert ids_on_disk(tmp_path) == [0, 2]


def test_the_folder_replaced_by_a_file_holds_records_until_it_is_a_folder_again(tmp_path):
    folder = tmp_path / "log"
    log = ImpressionLog(folder, retry_seconds=0.02)
    for i in range(10):
        log.append(rec(i))
    wait_until(lambda: log.written == 10, what="10 written")
    shutil.rmtree(folder)
    folder.write_text("not a folder")
    for i in range(10, 40):
        log.append(rec(i))
    wait_until(lambda: log.write_errors["EEXIST"] >= 2, what="mkdir refused (a file is in the way)")
    # the open file was deleted with its folder: noticed before the next write, not written into
    assert log.write_errors["file_removed"] == 1
    assert log.written == 10 and log.pending == 30 and log.deferred == 30
    folder.unlink()  # the operator removes the file; the writer re-creates the folder
    wait_until(lambda: log.written == 40, what="the held records written")
    log.close()
    # records 0-9 were in the deleted folder's file (gone with it, counted as file_removed); 10-39 all kept
    assert ids_on_disk(folder) == list(range(10, 40))


def test_the_folder_deleted_between_writes_is_recreated_and_nothing_after_is_lost(tmp_path):
    folder = tmp_path / "log"
    log = ImpressionLog(folder)
    for i in range(5):
        log.append(rec(i))
    wait_until(lambda: log.written == 5, what="5 written")
    shutil.rmtree(folder)
    for i in range(5, 25):
        log.append(rec(i))
    log.close()
    assert log.write_errors == {"file_removed": 1} and log.pending == 0 and log.dropped == {}
    assert ids_on_disk(folder) == list(range(5, 25))


def test_a_folder_that_cannot_be_created_at_start_does_not_stop_the_log(tmp_path):
    (tmp_path / "blocker").write_text("a file where the folder's parent should be")
    folder = tmp_path / "blocker" / "log"
    log = ImpressionLog(folder, retry_seconds=0.02)  # no exception: requests must still be answered
    log.append(rec(0))
    wait_until(lambda: log.write_errors.get("ENOTDIR", 0) + log.write_errors.get("EEXIST", 0) >= 1)
    (tmp_path / "blocker").unlink()
    wait_until(lambda: log.written == 1, what="written once the path is free")
    log.close()
    assert ids_on_disk(folder) == [0]


def test_close_while_the_disk_still_fails_drops_what_is_left_and_counts_it(tmp_path):
    r = Recorder()
    log = ImpressionLog(tmp_path, retry_seconds=0.02, hooks=r.hooks())
    FlakyDisk(log, full=True)
    for i in range(12):
        log.append(rec(i))
    wait_until(lambda: log.failing, what="the failure")
    log.close(timeout=0.2)
    log.append(rec(12))  # after close: counted, not queued forever
    assert log.written == 0 and log.dropped == {"shutdown": 12, "closed": 1}
    assert log.appended == log.written + sum(log.dropped.values()) + log.pending
    assert r.counts["dropped:shutdown"] == 12 and r.counts["dropped:closed"] == 1
    assert not log.thread.is_alive()


def test_a_full_disk_leaves_no_torn_line_and_no_empty_files(tmp_path):
    """A write the disk takes only in part is cut back, and retries reuse the open file."""
    log = ImpressionLog(tmp_path, retry_seconds=0.01)
    log.append(rec(0))
    wait_until(lambda: log.written == 1)
    real_file = log._file
    budget = {"bytes": 40}  # the disk takes 40 more bytes, then is full

    class NearlyFull:
        def write(self, data):
            if budget["bytes"] <= 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            n = min(len(data), budget["bytes"])
            budget["bytes"] -= n
            return real_file.write(data[:n])

        def fileno(self):
            return real_file.fileno()

    log._file = NearlyFull()
    log.append(rec(1))
    wait_until(lambda: log.write_errors["ENOSPC"] >= 3, what="retries")
    assert (tmp_path / real_file.name).stat().st_size == log._size  # the 40 bytes were cut off
    log._file = real_file
    wait_until(lambda: log.written == 2)
    log.close()
    assert ids_on_disk(tmp_path) == [0, 1]
    assert len(list(tmp_path.iterdir())) == 1  # one file: the retries opened no new ones


@pytest.mark.parametrize("bad", [{"spool_max_records": 0}, {"retry_seconds": 0}])
def test_the_bounds_must_be_positive(tmp_path, bad):
    with pytest.raises(ValueError, match="spool_max_records >= 1 and retry_seconds > 0"):
        ImpressionLog(tmp_path, **bad)


def test_records_whose_times_differ_in_precision_are_read_back(tmp_path):
    """Python's isoformat() leaves out the microseconds when they are 0: one record in a million carried
    a time like that and the reader's inferred format failed on it (found by a 10-minute soak)."""
    log = ImpressionLog(tmp_path)
    times = ["2026-12-05T15:14:50.123456+00:00", "2026-12-05T15:14:50+00:00", "2026-12-05T15:14:51.5Z"]
    for i, t in enumerate(times):
        log.append({**rec(i), "time": t, "as_of": "2024-12-30 23:59:59.999999+00:00" if i else "2024-12-31"})
    log.close()
    df = read_records(tmp_path)
    assert df["time"].dt.strftime("%S.%f").tolist() == ["50.123456", "50.000000", "51.500000"]
    assert str(df["time"].dt.tz) == "UTC"
    assert df["as_of"].iloc[0] == df["as_of"].iloc[1] + pd.Timedelta(microseconds=1)

"""The three time windows of a training run, checked against the world's span before any work.

train [T2 - train_days, T2), validation [T2, T1), test [T1, end) with T1 = end - test_days and
T2 = T1 - eval_days. Every choice (tuning, the gate, the unbiased on/off choice) is made on validation;
the test window is reported once per run and never chosen on. Each window's stage one is fitted on the
events before the window starts, and its labels come only from events inside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from jobcare.errors import JobcareError


class WindowError(JobcareError):
    """The configured windows do not fit the world's span."""


@dataclass(frozen=True)
class Windows:
    train_start: pd.Timestamp
    valid_start: pd.Timestamp  # T2
    test_start: pd.Timestamp  # T1
    end: pd.Timestamp

    @classmethod
    def of(cls, span: dict, tc) -> Windows:
        """The windows of ``tc`` (a TrainConfig) in a world ``span`` (the manifest's start / end)."""
        start, end = pd.Timestamp(span["start"]), pd.Timestamp(span["end"])
        if tc.until is not None:
            until = _utc(tc.until)
            if not start < until <= end:
                raise WindowError(
                    f"train.until {until} is outside the world's span ({start} to {end}); rule: the data "
                    "cutoff lies after the span's start and at or before its end"
                )
            end = until
        t1 = end - pd.Timedelta(days=tc.test_days)
        t2 = t1 - pd.Timedelta(days=tc.eval_days)
        w = cls(t2 - pd.Timedelta(days=tc.train_days), t2, t1, end)
        need = tc.test_days + tc.eval_days + tc.train_days + tc.min_history_days
        have = (end - start) / pd.Timedelta(days=1)
        if have < need:
            raise WindowError(
                f"train.test_days {tc.test_days} + eval_days {tc.eval_days} + train_days {tc.train_days} + "
                f"min_history_days {tc.min_history_days} = {need} days, but the world spans {have:g} days "
                f"{'up to train.until ' if tc.until is not None else ''}"
                f"({start.date()} to {end.date()}); rule: the windows and the history before them fit the "
                "span (shorten them in the config's train: section, e.g. configs/tiny.yaml)"
            )
        return w

    def as_dict(self) -> dict[str, str]:
        return {
            "train": f"[{self.train_start}, {self.valid_start})",
            "validation": f"[{self.valid_start}, {self.test_start})",
            "test": f"[{self.test_start}, {self.end})",
        }


def _utc(moment: str) -> pd.Timestamp:
    """An ISO date or moment as a UTC timestamp (a naive one is read as UTC); a named error otherwise."""
    try:
        t = pd.Timestamp(moment)
    except (ValueError, TypeError) as e:
        raise WindowError(f"train.until {moment!r} is not an ISO date or moment: {e}") from None
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")

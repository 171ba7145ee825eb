"""training.windows: the three windows end at the data cutoff (``train.until``) or the world's end."""

from __future__ import annotations

import pandas as pd
import pytest

from jobcare.config import TrainConfig
from training.windows import WindowError, Windows

SPAN = {"start": "2024-01-01T00:00:00+00:00", "end": "2025-12-31T00:00:00+00:00"}


def _tc(**kw) -> TrainConfig:
    return TrainConfig(test_days=30, eval_days=20, train_days=40, min_history_days=10, **kw)


def test_windows_end_at_the_world_end_by_default_and_at_the_cutoff_when_given():
    w = Windows.of(SPAN, _tc())
    assert w.end == pd.Timestamp("2025-12-31", tz="UTC")
    assert w.test_start == pd.Timestamp("2025-12-01", tz="UTC")
    cut = Windows.of(SPAN, _tc(until="2025-10-02"))  # a naive date is UTC
    assert cut.end == pd.Timestamp("2025-10-02", tz="UTC")
    assert cut.test_start == pd.Timestamp("2025-09-02", tz="UTC")
    assert cut.valid_start == pd.Timestamp("2025-08-13", tz="UTC")
    assert cut.train_start == pd.Timestamp("2025-07-04", tz="UTC")
    plus9 = Windows.of(SPAN, _tc(until="2025-10-02T09:00:00+09:00"))  # converted to UTC
    assert plus9.end == pd.Timestamp("2025-10-02", tz="UTC")


@pytest.mark.parametrize(
    "until, match",
    [
        ("2026-01-05", r"train.until 2026-01-05 00:00:00\+00:00 is outside the world's span"),
        ("2024-01-01", r"outside the world's span"),
        ("yesterday", r"train.until 'yesterday' is not an ISO date"),
    ],
)
def test_a_cutoff_outside_the_span_or_unreadable_is_a_named_error(until, match):
    with pytest.raises(WindowError, match=match):
        Windows.of(SPAN, _tc(until=until))


def test_windows_before_an_early_cutoff_must_still_fit_after_the_start():
    # 30 + 20 + 40 + 10 = 100 days, but only 60 days lie between the start and the cutoff
    with pytest.raises(WindowError, match=r"= 100 days, but the world spans 60 days up to train.until"):
        Windows.of(SPAN, _tc(until="2024-03-01"))

"""The continued world's feature tables, as of any day of an online A/B continuation: what the model arms
(:mod:`evaluation.online_engine`) read instead of the Feast repository's tables, which after the cut
describe the world's own run.

Once per simulated day, after the night's outcomes and before the first session (08:00),
:class:`ContinuedFeatures` rebuilds the feature tables the continuation changes with the builders of
:mod:`features.tables`, over the world's rows before the cut plus the continued rows so far:

- ``seeker_competency`` (units, certificates, completed courses) of the seekers whose state changed after
  the cut; every other seeker keeps the row built once from the rows before the cut (initial competencies
  of seekers who register later included: they are stamped at registration);
- ``seeker_activity`` from the events of the last 91 days (its 7/30/90-day counts read no older event);
- ``posting_popularity`` of the postings opened by then and not closed before the cut, snapshots up to
  the day only.

What the continuation does not change (profiles, psych tests, posting / course / certificate attributes,
occupations) is read from the Feast repository's files. Every table is then taken as of 08:00, the latest
row per key, which is what Feast's point-in-time join returns for the views (all without TTL but the
certificate snapshots, which the service's item refresh reads the same way). No competency, certificate or
registration changes between 08:00 and the last session of the day, so the seeker rows are exact for
every session; item features are a daily refresh, as the service's are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features import tables as ft
from features.item_index import ITEM_VIEWS, latest_rows
from jobcare.world.catalog import to_ts
from jobcare.world.io import to_arrow
from jobcare.world.simulate import SESSION_START_H, decode

STAMPS = ["event_timestamp", "created_timestamp"]
SEEKER_VIEWS = ("seeker_profile", "seeker_psych", "seeker_competency", "seeker_activity")
ACTIVITY_LOOKBACK_DAYS = max(ft.WINDOWS) + 1


def latest(df: pd.DataFrame, key: str, at: pd.Timestamp) -> pd.DataFrame:
    """The latest row per ``key`` with event_timestamp <= ``at`` (ties: the later created_timestamp, then
    the later row): :func:`features.item_index.latest_rows` over a frame instead of a file."""
    df = df[df["event_timestamp"] <= at]
    return df.sort_values([key, *STAMPS], kind="stable").drop_duplicates(key, keep="last")


def as_stored(df: pd.DataFrame) -> pd.DataFrame:
    """A built feature table as the repository's Parquet file gives it back (microsecond UTC stamps,
    lists as arrays)."""
    return to_arrow(df).to_pandas()


def live_tables(live: dict, start: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """The continued rows so far (the simulator's buffers) as the world's events, competency events and
    certificates."""
    s0 = np.datetime64(start.tz_convert(None), "us")
    ev, ce, cr = live["events"].frame(), live["comp_events"].frame(), live["cert_events"].frame()
    i32 = np.int32
    return {
        "events": pd.DataFrame(
            {
                "seeker_id": ev["seeker_id"].to_numpy().astype(i32),
                "item_type": decode("item_type", ev["item_type"].to_numpy()),
                "item_id": ev["item_id"].to_numpy().astype(i32),
                "event_type": decode("event_type", ev["event_type"].to_numpy()),
                "ts": to_ts(s0, ev["day"].to_numpy()),
                "session_id": ev["session_id"].to_numpy().astype(np.int64),
            }
        ),
        "seeker_competency_events": pd.DataFrame(
            {
                "seeker_id": ce["seeker_id"].to_numpy().astype(i32),
                "unit_id": ce["unit_id"].to_numpy().astype(i32),
                "level": ce["level"].to_numpy().astype(np.int8),
                "ts": to_ts(s0, ce["day"].to_numpy()),
                "source": decode("source", ce["source"].to_numpy()),
            }
        ),
        "seeker_certificates": pd.DataFrame(
            {
                "seeker_id": cr["seeker_id"].to_numpy().astype(i32),
                "certificate_id": cr["certificate_id"].to_numpy().astype(i32),
                "acquired_at": to_ts(s0, cr["day"].to_numpy()),
                "source": decode("source", cr["source"].to_numpy()),
            }
        ),
    }


class SeekerRows:
    """Every registered seeker's ``seeker_online_v1`` row as of one moment, one dict per seeker on demand."""

    def __init__(self, views: dict[str, pd.DataFrame], columns: list[str]):
        ids = views["seeker_profile"]["seeker_id"].to_numpy(np.int64)
        self._pos = pd.Index(ids)
        self._cols = {}
        for col in columns:
            view, field = col.split("__", 1)
            frame = views[view].set_index("seeker_id")[field]
            self._cols[col] = frame.reindex(ids).to_numpy()
        self._cache: dict[int, dict] = {}

    def row(self, seeker: int) -> dict:
        got = self._cache.get(seeker)
        if got is None:
            i = self._pos.get_loc(seeker)
            got = {c: v[i] for c, v in self._cols.items()}
            got["seeker_id"] = seeker
            self._cache[seeker] = got
        return got


class ContinuedFeatures:
    """The feature tables of the continued world as of any day of the continuation (see the module doc).

    Args:
        tables: the world's tables (seekers, postings, courses, occupations, occupation_groups,
            occupation_units, events, seeker_competency_events, seeker_certificates).
        repo: the Feast repository built from the same world (its ``data/`` files).
        start: the world's span start; ``cut``: the continuation's first midnight.
    """

    def __init__(self, tables: dict, repo: Path, start: pd.Timestamp, cut: pd.Timestamp):
        self.repo, self.start, self.cut = Path(repo), start, cut
        self.static = {
            k: tables[k] for k in ("seekers", "occupations", "occupation_units", "postings", "courses")
        }
        self.n_groups = len(tables["occupation_groups"])  # as features.tables.build_feature_tables
        ce, sc, ev = tables["seeker_competency_events"], tables["seeker_certificates"], tables["events"]
        # initial competencies are stamped at registration: a seeker registering after the cut has them too
        self.before = {
            "events": ev[ev["ts"] < cut],
            "seeker_competency_events": ce[(ce["ts"] < cut) | (ce["source"] == "initial")],
            "seeker_certificates": sc[(sc["acquired_at"] < cut) | (sc["source"] == "initial")],
        }
        self._competency0 = as_stored(ft.seeker_competency({**self.static, **self.before}, self.n_groups))
        p = tables["postings"]
        self._old_postings = p.loc[p["close_at"] < cut, "posting_id"].to_numpy()

    def moment(self, d: int) -> pd.Timestamp:
        """08:00 of span day ``d``: the first session's moment and the day's feature clock."""
        return self.start + pd.Timedelta(days=d) + pd.Timedelta(hours=SESSION_START_H)

    def combined(self, live: dict | None) -> dict[str, pd.DataFrame]:
        """The world's rows before the cut plus the continued rows so far."""
        if live is None:
            return dict(self.before)
        new = live_tables(live, self.start)
        return {k: pd.concat([v, new[k]], ignore_index=True) for k, v in self.before.items()}

    def tables_at(self, at: pd.Timestamp, t: dict) -> dict[str, pd.DataFrame]:
        """The changing feature tables (``seeker_competency``, ``seeker_activity``, ``posting_popularity``)
        as of ``at``, latest row per key, built from the combined rows ``t`` (:meth:`combined`)."""
        n0 = {k: len(v) for k, v in self.before.items()}
        ce = t["seeker_competency_events"].iloc[n0["seeker_competency_events"] :]
        sc = t["seeker_certificates"].iloc[n0["seeker_certificates"] :]
        ev_new = t["events"].iloc[n0["events"] :]
        done = ev_new.loc[ev_new["event_type"] == "complete", "seeker_id"]
        touched = np.unique(np.concatenate([ce["seeker_id"], sc["seeker_id"], done]).astype(np.int64))
        comp = self._competency0
        if touched.size:
            sub = {
                "seekers": self.static["seekers"][self.static["seekers"]["seeker_id"].isin(touched)],
                "occupations": self.static["occupations"],
                "occupation_units": self.static["occupation_units"],
                **{
                    k: t[k][t[k]["seeker_id"].isin(touched)]
                    for k in ("events", "seeker_competency_events", "seeker_certificates")
                },
            }
            sub["events"] = sub["events"][sub["events"]["event_type"] == "complete"]
            again = as_stored(ft.seeker_competency(sub, self.n_groups))
            comp = pd.concat([comp[~comp["seeker_id"].isin(touched)], again], ignore_index=True)
        midnight = at.floor("D")
        ev = t["events"]
        recent = ev[(ev["ts"] >= midnight - pd.Timedelta(days=ACTIVITY_LOOKBACK_DAYS)) & (ev["ts"] < at)]
        activity = as_stored(ft.seeker_activity(recent, self.static["seekers"], at))
        p = self.static["postings"]
        p = p[(p["open_at"] <= at) & ~p["posting_id"].isin(self._old_postings)]
        p = p.assign(close_at=p["close_at"].where(p["close_at"] < at, at))  # no snapshot after today
        pev = ev[(ev["item_type"] == "posting") & ev["item_id"].isin(p["posting_id"]) & (ev["ts"] < at)]
        pop = as_stored(ft.posting_popularity(p, pev))
        old = latest_rows(self.repo / "data" / "posting_popularity.parquet", "posting_id", at)
        old = old[old["posting_id"].isin(self._old_postings)]
        return {
            "seeker_competency": latest(comp, "seeker_id", at),
            "seeker_activity": latest(activity, "seeker_id", at),
            "posting_popularity": pd.concat([old, latest(pop, "posting_id", at)], ignore_index=True),
        }

    def view_at(self, view: str, key: str, at: pd.Timestamp, changing: dict) -> pd.DataFrame:
        """One feature view as of ``at``: rebuilt if the continuation changes it, else the repository's."""
        if view in changing:
            return changing[view]
        return latest_rows(self.repo / "data" / f"{view}.parquet", key, at)

    def items_at(self, at: pd.Timestamp, changing: dict) -> dict[str, pd.DataFrame]:
        """Per item type, every item's features as of ``at`` (:func:`features.item_index.item_features`'s
        frame: ``<view>__<field>`` columns, one row per item id)."""
        out = {}
        for it, (key, views) in ITEM_VIEWS.items():
            frame = None
            for view in views:
                df = self.view_at(view, key, at, changing).drop(columns=STAMPS).set_index(key)
                df.columns = [f"{view}__{c}" for c in df.columns]
                frame = df if frame is None else frame.join(df, how="outer")
            out[it] = frame.reset_index()
        return out

    def seekers_at(self, at: pd.Timestamp, changing: dict, columns: list[str]) -> SeekerRows:
        views = {v: self.view_at(v, "seeker_id", at, changing) for v in SEEKER_VIEWS}
        return SeekerRows(views, columns)

"""Online A/B inside the tiny world: the oracle arm beats the random arm on true hires, the run is
deterministic, the legacy continuation looks like the world's own, and the logged propensities are
the arms' exact ones."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from evaluation.online_ab import run_online_ab
from jobcare.config import ProjectConfig

FROM, DAYS = "2024-03-01", 60  # tiny world: day 60 of 120


TABLES = ("sessions", "impressions", "events", "seeker_exits", "truth/impressions", "assignment")


def table_digests(folder, names=TABLES) -> dict:
    """sha256 per continued table (identical tables for the same seed); shared with the model-arm tests."""
    return {
        n: hashlib.sha256(pd.read_parquet(folder / f"{n}.parquet").to_csv().encode()).hexdigest()
        for n in names
    }


@pytest.fixture(scope="module")
def oracle_vs_random(tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("online_ab")
    res = run_online_ab(
        tiny_world, ProjectConfig(), FROM, DAYS, "A=baseline:random,B=baseline:oracle", 0.5, 3, out
    )
    return res, out


def test_oracle_arm_gets_more_hires_than_random_with_ci_above_zero(oracle_vs_random):
    res, _ = oracle_vs_random
    h, a = res["metrics"]["hires"], res["metrics"]["applies"]
    assert min(res["n_seekers"].values()) > 100
    assert h["ci_low"] > 0, h  # hires, not just applies: 60 days give ~30 hires on the tiny world
    assert a["ci_low"] > 0 and a["lift"] > 1.0, a  # the oracle's slates are applied to far more often
    post = res["postings"]
    assert post["B"]["share_postings_without_applicant"] < post["A"]["share_postings_without_applicant"]
    for seg in ("gender", "age_band", "region"):
        assert res["segments"][seg]


def test_same_seed_gives_identical_tables_and_another_seed_does_not(tiny_world, oracle_vs_random, tmp_path):
    _, out = oracle_vs_random
    arms = "A=baseline:random,B=baseline:oracle"
    run_online_ab(tiny_world, ProjectConfig(), FROM, DAYS, arms, 0.5, 3, tmp_path / "again")
    assert table_digests(tmp_path / "again") == table_digests(out)
    run_online_ab(tiny_world, ProjectConfig(), FROM, DAYS, arms, 0.5, 4, tmp_path / "other")
    assert table_digests(tmp_path / "other")["events"] != table_digests(out)["events"]


def test_logged_propensities_are_the_arms_exact_ones(oracle_vs_random):
    res, out = oracle_vs_random
    imp = pd.read_parquet(out / "impressions.parquet")
    sess = pd.read_parquet(out / "sessions.parquet")
    arm = pd.read_parquet(out / "assignment.parquet").set_index("seeker_id")["arm"]
    imp = imp.merge(sess[["session_id", "policy", "n_available"]], on="session_id")
    rnd = imp[arm.reindex(imp["seeker_id"]).to_numpy() == "A"]
    assert (rnd["policy"] == "explore").all()
    assert np.allclose(rnd["propensity"], 1 / rnd["n_available"])
    ora = imp[arm.reindex(imp["seeker_id"]).to_numpy() == "B"]
    eps = ProjectConfig().serving.explore.epsilon
    s = sess[arm.reindex(sess["seeker_id"]).to_numpy() == "B"]
    explored = (s["policy"] == "explore").mean()
    assert abs(explored - eps) < 4 * np.sqrt(eps * (1 - eps) / len(s)) + 1e-9
    greedy = ora[ora["policy"] == "greedy"]
    assert (greedy["propensity"] >= 1 - eps).all()  # the served order: (1 - eps) + eps / pool
    # the continued tables sit after the cut and their sessions are new ids
    assert sess["ts"].min() >= pd.Timestamp(FROM, tz="UTC")
    ev = pd.read_parquet(out / "events.parquet")
    assert ev["event_type"].isin(["view", "apply", "hire", "enrol", "complete", "register", "acquire"]).all()


def test_legacy_continuation_resembles_the_worlds_own(tiny_world, tiny_tables, tmp_path):
    res = run_online_ab(
        tiny_world, ProjectConfig(), FROM, DAYS, "A=baseline:legacy,B=baseline:legacy", 0.5, 1, tmp_path
    )
    ev = pd.read_parquet(tmp_path / "events.parquet")
    own = tiny_tables["events"]
    own = own[own["ts"] >= pd.Timestamp(FROM, tz="UTC")]
    for et in ("view", "apply"):
        n_new, n_own = (ev["event_type"] == et).sum(), (own["event_type"] == et).sum()
        assert 0.8 < n_new / n_own < 1.25, (et, n_new, n_own)
    h = res["metrics"]["hires"]
    assert h["ci_low"] < 0 < h["ci_high"]  # the same policy in both arms: no effect


def test_closed_loop_fairness_recomputed_from_the_written_tables(oracle_vs_random):
    """Per arm and group: the apply hit rate and the relevant exposure (summed true p_apply of the slate)
    recounted from the output tables; the oracle's slates offer every group more expected applies."""
    res, out = oracle_vs_random
    fair = res["fairness"]["dims"]
    s = pd.read_parquet(out / "sessions.parquet")
    s = s[s["item_type"] == "posting"]
    ev = pd.read_parquet(out / "events.parquet")
    truth = pd.read_parquet(out / "truth" / "impressions.parquet")
    seg = pd.read_parquet(out / "per_seeker.parquet").set_index("seeker_id")
    hit = s["session_id"].isin(ev.loc[ev["event_type"] == "apply", "session_id"])
    exp = truth.groupby("session_id")["p_apply"].sum().reindex(s["session_id"]).fillna(0).to_numpy()
    frame = pd.DataFrame({"hit": hit.to_numpy(float), "exp": exp}, index=s["seeker_id"].to_numpy())
    frame = frame.join(seg[["arm", "gender", "age_band"]])
    for dim in ("gender", "age_band"):
        for arm in ("A", "B"):
            got = fair[dim]["arms"][arm]
            want = frame[frame["arm"] == arm].groupby(dim)[["hit", "exp"]].mean()
            assert sorted(got["groups"]) == sorted(want.index.astype(str))
            for g, row in want.iterrows():
                assert got["groups"][str(g)]["apply_hit_rate"] == pytest.approx(row["hit"])
                assert got["groups"][str(g)]["exposure"] == pytest.approx(row["exp"])
            assert got["hit_rate_ratio"] == pytest.approx(want["hit"].min() / want["hit"].max())
            assert got["exposure_ratio"] == pytest.approx(want["exp"].min() / want["exp"].max())
        for g in fair[dim]["arms"]["A"]["groups"]:
            assert (
                fair[dim]["arms"]["B"]["groups"][g]["exposure"]
                > fair[dim]["arms"]["A"]["groups"][g]["exposure"]
            )

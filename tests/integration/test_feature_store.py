"""The Feast repository for real: CLI plan/apply, point-in-time training sets, online/offline parity
(SQLite and Redis + SQL registry on PostgreSQL), and training/serving pair-feature identity."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import store
from features.item_index import item_features
from features.pairs import PairContext, pair_features

pytestmark = pytest.mark.integration


def test_feast_cli_plan_and_apply_on_the_rendered_repo(local_repo):
    feast = Path(sys.executable).with_name("feast")
    env = dict(os.environ, FEAST_USAGE="False")
    plan = subprocess.run(
        [str(feast), "-c", str(local_repo), "plan"], capture_output=True, text=True, env=env, timeout=300
    )
    assert plan.returncode == 0, plan.stderr[-2000:]
    applied = subprocess.run(
        [str(feast), "-c", str(local_repo), "apply"], capture_output=True, text=True, env=env, timeout=300
    )
    assert applied.returncode == 0, applied.stderr[-2000:]
    listed = subprocess.run(
        [str(feast), "-c", str(local_repo), "feature-services", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert "job_ranker_v1" in listed.stdout and "certificate_ranker_v1" in listed.stdout


def test_protected_attributes_are_tagged_and_kept_out_of_ranker_services(local_repo):
    st = store.open_store(local_repo)
    view = st.get_feature_view("seeker_profile")
    tagged = {f.name for f in view.features if f.tags.get("protected") == "true"}
    assert tagged == {"gender", "age"}
    for svc in ("job_ranker_v1", "course_ranker_v1", "certificate_ranker_v1", "seeker_online_v1"):
        names = {f.name for p in st.get_feature_service(svc).feature_view_projections for f in p.features}
        assert not names & tagged, svc
    for view in st.list_feature_views():
        assert all(f.description for f in view.features), view.name


def test_training_set_is_point_in_time_correct_around_a_course_completion(local_repo, tiny_tables):
    comp = tiny_tables["seeker_competency_events"]
    row = comp[comp["source"] == "course"].iloc[0]
    s, unit, lvl, ts = int(row.seeker_id), int(row.unit_id), int(row.level), row.ts
    edf = pd.DataFrame(
        {"seeker_id": [s, s], "event_timestamp": [ts - pd.Timedelta(seconds=1), ts + pd.Timedelta(seconds=1)]}
    )
    h = store.historical_features(store.open_store(local_repo), edf, "seeker_online_v1")
    before = dict(zip(h.loc[0, "seeker_competency__unit_ids"], h.loc[0, "seeker_competency__unit_levels"]))
    after = dict(zip(h.loc[1, "seeker_competency__unit_ids"], h.loc[1, "seeker_competency__unit_levels"]))
    earlier = comp[(comp.seeker_id == s) & (comp.unit_id == unit) & (comp.ts < ts)]["level"]
    assert before.get(unit, 0) == (earlier.max() if len(earlier) else 0)
    assert after[unit] == max(before.get(unit, 0), lvl)
    assert (
        h.loc[1, "seeker_competency__n_courses_completed"]
        == h.loc[0, "seeker_competency__n_courses_completed"] + 1
    )


def test_historical_feature_columns_come_in_one_order_whatever_the_hash_seed(local_repo):
    """Feast lists a view's features in a hash-seed-dependent order (two demo runs trained on differently
    ordered columns and got different models); ours are sorted, the same in every process."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json, pandas as pd; from features import store; "
        "edf = pd.DataFrame({'seeker_id': [1], 'posting_id': [0], 'occupation_id': [0], "
        "'event_timestamp': [pd.Timestamp('2025-06-01', tz='UTC')]}); "
        f"h = store.historical_features(store.open_store({str(local_repo)!r}), edf, 'job_ranker_v1'); "
        "print(json.dumps(list(h.columns)))"
    )
    cols = []
    for seed in ("1", "2", "3"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        cols.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert cols[0] == cols[1] == cols[2]
    feats = [c for c in cols[0] if "__" in c]
    assert feats == sorted(feats)
    assert cols[0][:4] == ["seeker_id", "posting_id", "occupation_id", "event_timestamp"]


def test_activity_features_in_training_rows_use_only_earlier_events(local_repo, tiny_tables):
    ev = tiny_tables["events"]
    applies = ev[ev["event_type"] == "apply"].sample(40, random_state=1)
    edf = pd.DataFrame(
        {
            "seeker_id": applies["seeker_id"].astype("int64").to_numpy(),
            "event_timestamp": applies["ts"].to_numpy(),
        }
    )
    h = store.historical_features(store.open_store(local_repo), edf, "seeker_online_v1")
    for (_, r), t in zip(h.iterrows(), applies["ts"]):
        midnight = t.floor("D")
        mine = ev[(ev["seeker_id"] == r["seeker_id"]) & (ev["event_type"] == "apply")]
        expected = ((mine["ts"] < midnight) & (mine["ts"] >= midnight - pd.Timedelta(days=30))).sum()
        assert r["seeker_activity__applies_30d"] == expected


def _latest_offline(repo: Path, view: str, key: str, at: pd.Timestamp) -> pd.DataFrame:
    from features.item_index import latest_rows

    return latest_rows(repo / "data" / f"{view}.parquet", key, at).set_index(key)


def _assert_parity(repo: Path, end: pd.Timestamp, seekers, postings) -> None:
    end = store.serving_clock(end)  # materialize loads the online store up to the service's clock
    st = store.open_store(repo)
    online = store.online_features(st, [{"seeker_id": int(s)} for s in seekers], "seeker_online_v1")
    for view in ("seeker_profile", "seeker_competency", "seeker_activity", "seeker_psych"):
        off = _latest_offline(repo, view, "seeker_id", end)
        cols = [c for c in online.columns if c.startswith(f"{view}__")]
        for _, r in online.iterrows():
            exp = off.loc[int(r["seeker_id"])]
            for c in cols:
                got, want = r[c], exp[c.split("__", 1)[1]]
                if isinstance(want, (list, np.ndarray)):
                    assert list(got) == list(want), (view, c)
                else:
                    assert got == pytest.approx(want), (view, c)
    fs = st.get_online_features(
        features=["posting_attributes:wage", "posting_attributes:required_certificate_ids"],
        entity_rows=[{"posting_id": int(p)} for p in postings],
    ).to_df()
    off = _latest_offline(repo, "posting_attributes", "posting_id", end)
    for _, r in fs.iterrows():
        assert r["wage"] == pytest.approx(off.loc[int(r["posting_id"]), "wage"])
        assert list(r["required_certificate_ids"]) == list(
            off.loc[int(r["posting_id"]), "required_certificate_ids"]
        )


def test_online_equals_latest_offline_sqlite(local_repo, tiny_tables):
    end = pd.Timestamp(store.repo_meta(local_repo)["span"]["end"])
    seekers = tiny_tables["seekers"]["seeker_id"].sample(25, random_state=0)
    p = tiny_tables["postings"]
    postings = p.loc[p["open_at"] > end - pd.Timedelta(days=150), "posting_id"].head(25)
    _assert_parity(local_repo, end, seekers, postings)


def test_production_profile_redis_and_postgres_registry(
    tiny_world, tmp_path, redis_url, postgres_url, unique_project, tiny_tables
):
    from jobcare.config import FeaturesConfig

    cfg = FeaturesConfig(
        profile="production",
        repo=tmp_path / "repo",
        project=unique_project,
        redis=redis_url,
        registry_url=postgres_url,
    )
    repo = store.render_repo(tiny_world, cfg)
    text = (repo / "feature_store.yaml").read_text()
    assert "registry_type: sql" in text and "skip_dedup: true" in text  # one round trip per write batch
    applied = store.apply(repo)
    assert "job_ranker_v1" in applied["feature_services"]
    # two processes, each materialising its own group of views (features.materialize_workers): the parity
    # below reads every seeker view and a posting view back from Redis
    store.materialize(repo, workers=2)
    end = pd.Timestamp(store.repo_meta(repo)["span"]["end"])
    p = tiny_tables["postings"]
    _assert_parity(
        repo,
        end,
        tiny_tables["seekers"]["seeker_id"].sample(20, random_state=2),
        p.loc[p["open_at"] > end - pd.Timedelta(days=150), "posting_id"].head(20),
    )
    # the registry really lives in PostgreSQL: a fresh store on another folder sees the project
    import sqlalchemy

    eng = sqlalchemy.create_engine(postgres_url)
    with eng.connect() as c:
        n = c.execute(
            sqlalchemy.text("select count(*) from feature_views where project_id = :p"), {"p": unique_project}
        ).scalar()
    assert n == 9
    # each view's materialisation interval was recorded by the process that wrote it
    fresh = store.open_store(repo)
    assert all(v.materialization_intervals for v in fresh.list_feature_views())
    fresh.teardown()


def test_training_and_serving_paths_give_identical_pair_features(tiny_world, tmp_path, tiny_tables):
    """Training: get_historical_features(job_ranker_v1) at t. Serving: one online read of the seeker
    (online store materialised up to t) plus the in-memory item table as of t. Same pair features."""
    from jobcare.config import FeaturesConfig

    local_repo = store.render_repo(tiny_world, FeaturesConfig(repo=tmp_path / "repo"))
    store.apply(local_repo)
    end = pd.Timestamp(store.repo_meta(local_repo)["span"]["end"]) - pd.Timedelta(days=10)
    store.materialize(local_repo, end=end)
    st = store.open_store(local_repo)
    ctx = PairContext.from_occupation_profile(
        pd.read_parquet(local_repo / "data" / "occupation_profile.parquet"),
        len(tiny_tables["competency_units"]),
    )
    items = item_features(local_repo, "posting", end)
    now_days = end.value / 86_400e9
    items = items[
        (items["posting_attributes__open_days"] <= now_days)
        & (items["posting_attributes__close_days"] > now_days)
    ]
    assert len(items) >= 10
    for seeker in tiny_tables["seekers"]["seeker_id"].sample(5, random_state=4):
        edf = pd.DataFrame(
            {
                "seeker_id": int(seeker),
                "posting_id": items["posting_id"].astype("int64"),
                "occupation_id": items["posting_attributes__occupation_id"].astype("int64"),
                "event_timestamp": end,
            }
        )
        train = pair_features(store.historical_features(st, edf, "job_ranker_v1"), "posting", ctx)
        online = store.online_features(st, [{"seeker_id": int(seeker)}], "seeker_online_v1").iloc[0]
        serve_frame = items.copy()
        for c, v in online.items():
            if "__" in c:
                serve_frame[c] = [v] * len(serve_frame)
        serve_frame["event_timestamp"] = end
        serve = pair_features(serve_frame.reset_index(drop=True), "posting", ctx)
        pd.testing.assert_frame_equal(train, serve, check_exact=False, rtol=1e-6)

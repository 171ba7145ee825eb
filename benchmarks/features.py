"""Benchmark: the feature store on the demo world.

Measures (2 cores): feature-table build, ``apply`` and materialisation into SQLite and Redis; online
read latency for 1 seeker and for 300 postings from each online store (median, p99) next to an
in-memory gather of the same postings; historical retrieval throughput of Feast's offline store for the
demo world's training rows (posting impressions of the last 90 days) next to a DuckDB ASOF-join baseline
computing the same point-in-time join in the same run (and checking the values agree). Writes
``benchmarks/results/features.json``. Target: Feast training-set build <= 2x the DuckDB baseline.

    python benchmarks/features.py [--world DIR] [--rows N]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

# this script's own name would shadow the `features` package when run as `python benchmarks/features.py`
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

os.environ.setdefault("FEAST_USAGE", "False")


def pct(xs, q):
    return float(np.percentile(np.asarray(xs) * 1000, q))


def timed_reads(fn, n):
    fn()  # warm-up
    gc.collect()
    gc.freeze()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    gc.unfreeze()
    return {"median_ms": round(pct(out, 50), 3), "p99_ms": round(pct(out, 99), 3), "n": n}


def reachable(host, port):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def online_bench(repo: Path, seekers, postings, items_mem: pd.DataFrame) -> dict:
    from features import store

    st = store.open_store(repo)
    svc = st.get_feature_service("seeker_online_v1")
    post_feats = [
        f"posting_attributes:{f.name}" for f in st.get_feature_view("posting_attributes").features
    ] + [f"posting_popularity:{f.name}" for f in st.get_feature_view("posting_popularity").features]
    rng = np.random.default_rng(0)
    one = lambda: st.get_online_features(features=svc, entity_rows=[{"seeker_id": int(rng.choice(seekers))}])  # noqa: E731
    rows = [{"posting_id": int(p)} for p in postings[:300]]
    many = lambda: st.get_online_features(features=post_feats, entity_rows=rows).to_dict()  # noqa: E731
    idx = items_mem.index.get_indexer(postings[:300])
    cols = items_mem.to_numpy()
    gather = lambda: cols[idx]  # noqa: E731
    return {
        "seeker_1": timed_reads(one, 300),
        "postings_300": timed_reads(many, 60),
        "postings_300_in_memory_gather": timed_reads(gather, 300),
    }


def asof_baseline(repo: Path, edf: pd.DataFrame, views: dict[str, tuple[str, list[str]]]) -> pd.DataFrame:
    """The same point-in-time join in DuckDB: one ASOF LEFT JOIN per feature view."""
    con = duckdb.connect()
    con.register("e", edf)
    sql = "SELECT e.*"
    joins = ""
    for i, (view, (key, cols)) in enumerate(views.items()):
        path = repo / "data" / f"{view}.parquet"
        sql += "".join(f", v{i}.{c} AS {view}__{c}" for c in cols)
        joins += (
            f" ASOF LEFT JOIN read_parquet('{path}') v{i} ON e.{key} = v{i}.{key}"
            f" AND e.event_timestamp >= v{i}.event_timestamp"
        )
    out = con.execute(sql + " FROM e" + joins + " ORDER BY e._row").df()
    con.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=Path, help="a demo world (default: generate demo seed 7 in a temp dir)")
    ap.add_argument("--rows", type=int, default=0, help="cap the training rows (0 = all of the last 90 days)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "features.json")
    a = ap.parse_args()
    from features import store
    from features.item_index import item_features
    from jobcare.config import FeaturesConfig, WorldConfig
    from jobcare.world.generate import generate_world

    tmp = Path(tempfile.mkdtemp(prefix="bench-features-"))
    res: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d"),
    }
    world = a.world
    if world is None:
        world = tmp / "world"
        generate_world(WorldConfig(scale="demo", seed=7), world, show_progress=False)
    res["world"] = str(world)

    t = time.perf_counter()
    repo = store.render_repo(world, FeaturesConfig(repo=tmp / "local"))
    res["build_feature_tables_s"] = round(time.perf_counter() - t, 2)
    res["feature_table_rows"] = store.repo_meta(repo)["rows"]
    t = time.perf_counter()
    store.apply(repo)
    res["apply_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    store.materialize(repo)
    res["materialize_sqlite_s"] = round(time.perf_counter() - t, 2)
    print(
        json.dumps({k: res[k] for k in ("build_feature_tables_s", "apply_s", "materialize_sqlite_s")}),
        flush=True,
    )

    end = pd.Timestamp(store.repo_meta(repo)["span"]["end"])
    now = end - pd.Timedelta(days=1)
    mem = item_features(repo, "posting", now).set_index("posting_id")
    open_now = mem.index[
        (mem["posting_attributes__open_days"] <= now.value / 86_400e9)
        & (mem["posting_attributes__close_days"] > now.value / 86_400e9)
    ].to_numpy()
    postings = np.resize(open_now, 300)  # the open postings (repeated if fewer than 300)
    seekers = pd.read_parquet(world / "seekers.parquet", columns=["seeker_id"])["seeker_id"].to_numpy()
    res["online"] = {"sqlite": online_bench(repo, seekers, postings, mem)}
    print(json.dumps(res["online"]), flush=True)

    if reachable("127.0.0.1", 6379) and reachable("127.0.0.1", 5432):
        project = f"bench_{uuid.uuid4().hex[:8]}"
        prod = store.render_repo(
            world, FeaturesConfig(profile="production", repo=tmp / "prod", project=project)
        )
        store.apply(prod)
        t = time.perf_counter()
        store.materialize(prod)
        res["materialize_redis_s"] = round(time.perf_counter() - t, 2)
        res["online"]["redis"] = online_bench(prod, seekers, postings, mem)
        print(
            json.dumps({"materialize_redis_s": res["materialize_redis_s"], "redis": res["online"]["redis"]}),
            flush=True,
        )
        with contextlib.suppress(Exception):
            store.open_store(prod).teardown()
    else:
        res["online"]["redis"] = "skipped: Redis or PostgreSQL not reachable"

    # historical retrieval: posting impressions of the last 90 days
    imp = pd.read_parquet(world / "impressions.parquet", columns=["seeker_id", "item_type", "item_id", "ts"])
    imp = imp[(imp["item_type"] == "posting") & (imp["ts"] >= end - pd.Timedelta(days=90))]
    if a.rows:
        imp = imp.head(a.rows)
    occ = pd.read_parquet(world / "postings.parquet", columns=["occupation_id"])["occupation_id"].to_numpy()
    edf = pd.DataFrame(
        {
            "seeker_id": imp["seeker_id"].astype("int64").to_numpy(),
            "posting_id": imp["item_id"].astype("int64").to_numpy(),
            "event_timestamp": imp["ts"].to_numpy(),
        }
    )
    edf["occupation_id"] = occ[edf["posting_id"]].astype("int64")
    st = store.open_store(repo)
    views = {}
    for proj in st.get_feature_service("job_ranker_v1").feature_view_projections:
        fv = st.get_feature_view(proj.name)
        views[proj.name] = (st.get_entity(fv.entities[0]).join_key, [f.name for f in proj.features])
    check = [
        "seeker_competency__n_units",
        "seeker_activity__applies_30d",
        "posting_popularity__applies_total",
        "posting_attributes__wage",
        "occupation_profile__job_zone",
        "seeker_profile__region_id",
    ]
    res["historical"] = []
    sizes = sorted({min(n, len(edf)) for n in (20_000, 100_000, len(edf))})
    for n in sizes:
        part = edf.iloc[:n]
        t = time.perf_counter()
        feast_df = store.historical_features(st, part, "job_ranker_v1")
        feast_s = time.perf_counter() - t
        t = time.perf_counter()
        base = asof_baseline(repo, part.assign(_row=np.arange(n)), views)
        duck_s = time.perf_counter() - t
        agree = {
            c: bool(np.allclose(feast_df[c].astype(float).fillna(-1), base[c].astype(float).fillna(-1)))
            for c in check
        }
        row = {
            "rows": n,
            "feast_duckdb_offline_s": round(feast_s, 2),
            "duckdb_asof_baseline_s": round(duck_s, 2),
            "ratio": round(feast_s / duck_s, 2),
            "feast_rows_per_s": round(n / feast_s),
            "values_agree": all(agree.values()),
            "meets_target_2x": feast_s <= 2 * duck_s,
        }
        res["historical"].append(row)
        print(json.dumps(row), flush=True)
    # Feast's file (dask) offline store on the smallest size, for the record (it also loses rows)
    file_repo = tmp / "local_file"
    file_repo.mkdir()
    (file_repo / "data").symlink_to(repo / "data")
    (file_repo / "definitions.py").write_text((repo / "definitions.py").read_text())
    (file_repo / "jobcare_repo.json").write_text((repo / "jobcare_repo.json").read_text())
    (file_repo / "feature_store.yaml").write_text(
        (repo / "feature_store.yaml").read_text().replace("type: duckdb", "type: file")
    )
    fst = store.open_store(file_repo)
    part = edf.iloc[: sizes[0]]
    t = time.perf_counter()
    with contextlib.chdir(file_repo):
        got = fst.get_historical_features(
            entity_df=part, features=fst.get_feature_service("job_ranker_v1"), full_feature_names=True
        ).to_df()
    res["historical_file_offline_store"] = {
        "rows_in": len(part),
        "rows_out": len(got),
        "seconds": round(time.perf_counter() - t, 2),
    }
    print(json.dumps(res["historical_file_offline_store"]), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

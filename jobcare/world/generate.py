"""``jobcare world generate``: build a deterministic world folder for a seed and scale."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from jobcare import __version__
from jobcare.config import WorldConfig
from jobcare.errors import ConfigError
from jobcare.world.catalog import make_courses, make_employers, make_postings, to_ts
from jobcare.world.io import MANIFEST, TRUTH_DIR, TableStream, write_table
from jobcare.world.seekers import make_seekers
from jobcare.world.simulate import IMPRESSION_COLUMNS, TRUTH_COLUMNS, SimulationInput, decode, simulate
from jobcare.world.taxonomy import Taxonomy, synthetic_taxonomy
from jobcare.world.utility import CompetencyState, UtilityParams, WorldArrays, calibrate

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1
EVENT_ORDER = {"view": 0, "apply": 1, "enrol": 1, "register": 1, "hire": 2, "complete": 2, "acquire": 2}


def build_taxonomy(cfg: WorldConfig, rng: np.random.Generator) -> Taxonomy:
    sizes = cfg.sizes()
    if cfg.taxonomy == "onet":
        from jobcare.world.onet import onet_taxonomy

        if cfg.onet_dir is None:
            raise ConfigError("taxonomy 'onet' needs onet_dir (the O*NET 29.2 text files folder)")
        return onet_taxonomy(cfg.onet_dir, sizes, rng)
    return synthetic_taxonomy(sizes, rng, cfg.seed)


def latent_factors(n_seekers, postings, courses, n_certs, n_employers, n_providers, dim, rng):
    """Seeker tastes and item factors: postings inherit an employer factor, courses a provider factor."""
    zs = rng.normal(0, 1, (n_seekers, dim))
    emp = rng.normal(0, 1, (n_employers, dim))
    prov = rng.normal(0, 1, (n_providers, dim))
    zp = 0.8 * emp[postings["employer_id"].to_numpy()] + 0.6 * rng.normal(0, 1, (len(postings), dim))
    zc = 0.8 * prov[courses["provider_id"].to_numpy()] + 0.6 * rng.normal(0, 1, (len(courses), dim))
    zc_ = rng.normal(0, 1, (n_certs, dim))
    cols = [f"z{k}" for k in range(dim)]
    seekers = pd.DataFrame(zs, columns=cols)
    seekers.insert(0, "seeker_id", np.arange(n_seekers, dtype=np.int32))
    items = []
    for it, z in (("posting", zp), ("course", zc), ("certificate", zc_)):
        df = pd.DataFrame(z, columns=cols)
        df.insert(0, "bias", rng.normal(0, 0.7, len(z)))
        df.insert(0, "item_id", np.arange(len(z), dtype=np.int32))
        df.insert(0, "item_type", it)
        items.append(df)
    return seekers, pd.concat(items, ignore_index=True)


def generate_world(cfg: WorldConfig, out: str | Path, show_progress: bool = True) -> dict:
    """Generate the world described by ``cfg`` into ``out``; return the manifest."""
    t_start = time.perf_counter()
    sizes = cfg.sizes()
    out = Path(out)
    seeds = np.random.SeedSequence(cfg.seed).spawn(6)
    r_tax, r_cat, r_seek, r_lat, r_cal, r_sim = (np.random.default_rng(s) for s in seeds)
    start = np.datetime64(cfg.start_date, "us")

    tax = build_taxonomy(cfg, r_tax)
    employers, providers = make_employers(sizes.n_employers, sizes.n_providers, tax, r_cat)
    courses, course_units = make_courses(sizes.n_courses, tax, providers, sizes, start, r_cat)
    postings, posting_certs = make_postings(sizes.n_postings, tax, employers, sizes, start, r_cat)
    pack = make_seekers(sizes, tax, start, r_seek)
    lat_seekers, lat_items = latent_factors(
        len(pack.seekers),
        postings,
        courses,
        len(tax.certificates),
        len(employers),
        len(providers),
        cfg.latent_dim,
        r_lat,
    )
    tables = tax.tables() | {
        "employers": employers,
        "providers": providers,
        "courses": courses,
        "course_units": course_units,
        "postings": postings,
        "posting_certificates": posting_certs,
        "seekers": pack.seekers,
    }
    log.info("catalog built in %.1fs", time.perf_counter() - t_start)
    A = WorldArrays(tables, lat_seekers, lat_items)
    state = CompetencyState.empty(len(pack.seekers), len(tax.units), len(tax.certificates))
    iu = pack.initial_units
    state.raise_levels(iu["seeker_id"].to_numpy(), iu["unit_id"].to_numpy(), iu["level"].to_numpy())
    ic = pack.initial_certificates
    state.certificates[ic["seeker_id"].to_numpy(), ic["certificate_id"].to_numpy()] = True
    params = calibrate(
        A,
        state,
        UtilityParams(latent_dim=cfg.latent_dim, shares=cfg.shares.model_dump()),
        {"posting": len(postings), "course": len(courses), "certificate": len(tax.certificates)},
        cfg.view_rate_target,
        cfg.apply_rate_target,
        r_cal,
    )
    out.mkdir(parents=True, exist_ok=True)
    streams = {
        "impressions": TableStream(out / "impressions.parquet"),
        f"{TRUTH_DIR}/impressions": TableStream(out / TRUTH_DIR / "impressions.parquet"),
    }
    sinks = {
        "impressions": lambda c: streams["impressions"].write(_impressions_frame(c, start)),
        "truth_impressions": lambda c: streams[f"{TRUTH_DIR}/impressions"].write(_truth_frame(c)),
    }
    sim = simulate(
        SimulationInput(
            arrays=A,
            params=params,
            state=state,
            seekers=pack.seekers,
            postings=postings,
            courses=courses,
            certificates=tax.certificates,
            course_units=course_units,
            certificate_units=tax.certificate_units,
            start_us=int(start.astype("int64")),
            days=sizes.days,
            slate_size=cfg.slate_size,
            epsilon=cfg.epsilons(),
            session_rate=sizes.sessions_per_seeker_day,
            session_mix=cfg.session_mix.model_dump(),
        ),
        r_sim,
        show_progress=show_progress,
        sinks=sinks,
    )
    stream_hashes = {
        "impressions": streams["impressions"].close(
            _impressions_frame(_empty_chunk(IMPRESSION_COLUMNS), start)
        ),
        f"{TRUTH_DIR}/impressions": streams[f"{TRUTH_DIR}/impressions"].close(
            _truth_frame(_empty_chunk(TRUTH_COLUMNS))
        ),
    }
    tables |= _event_tables(sim, pack, start)
    truth = {
        f"{TRUTH_DIR}/latent_seekers": lat_seekers,
        f"{TRUTH_DIR}/latent_items": lat_items,
    }
    (out / TRUTH_DIR).mkdir(exist_ok=True)
    (out / TRUTH_DIR / "utility.json").write_text(params.to_json())
    hashes = dict(stream_hashes)
    for name, df in (tables | truth).items():
        hashes[name] = write_table(df, out / f"{name}.parquet")
    counts = {name: len(df) for name, df in (tables | truth).items()} | {
        k: s.rows for k, s in streams.items()
    }
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "generator_version": __version__,
        "seed": cfg.seed,
        "scale": cfg.scale,
        "taxonomy": cfg.taxonomy,
        "config": json.loads(cfg.model_dump_json()),
        "sizes": sizes.model_dump(),
        "span": {
            "start": str(pd.Timestamp(start, tz="UTC")),
            "days": sizes.days,
            "end": str(pd.Timestamp(start, tz="UTC") + pd.Timedelta(days=sizes.days)),
        },
        "utility": {
            "formula": "u = observable + latent + Gumbel; view if u > tau_view, apply if u > tau_apply",
            "variance_shares_target": cfg.shares.model_dump(),
            "params_file": f"{TRUTH_DIR}/utility.json",
        },
        "logging_policy": {
            "kind": "epsilon-greedy slates",
            "epsilon": cfg.epsilon,
            "epsilon_by_item_type": cfg.epsilons(),
            "slate_size": cfg.slate_size,
        },
        "tables": {name: {"rows": int(counts[name]), "sha256": hashes[name]} for name in sorted(counts)},
        "attribution": tax.attribution,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    if tax.attribution:
        (out / "ATTRIBUTION.txt").write_text(tax.attribution + "\n")
    log.info("world written to %s in %.1fs", out, time.perf_counter() - t_start)
    return manifest


def _empty_chunk(cols: list[str]) -> dict:
    return {c: np.zeros(0, dtype=np.int8 if c == "item_type" else np.float64) for c in cols}


def _impressions_frame(c: dict, start: np.datetime64) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "session_id": c["session_id"].astype(np.int64),
            "position": c["position"].astype(np.int16),
            "seeker_id": c["seeker_id"].astype(np.int32),
            "item_type": decode("item_type", c["item_type"]),
            "item_id": c["item_id"].astype(np.int32),
            "ts": to_ts(start, c["day"]),
            "propensity": c["propensity"].astype(np.float64),
            "slate_propensity": c["slate_propensity"].astype(np.float64),
        }
    )


def _truth_frame(c: dict) -> pd.DataFrame:
    df = pd.DataFrame({k: c[k].astype(np.float64) for k in TRUTH_COLUMNS[2:]})
    df.insert(0, "position", c["position"].astype(np.int16))
    df.insert(0, "session_id", c["session_id"].astype(np.int64))
    return df


def _event_tables(sim: dict, pack, start: np.datetime64) -> dict[str, pd.DataFrame]:
    """Turn the simulator's day offsets into timestamped tables with stable ids."""
    seekers = pack.seekers
    sessions = sim["sessions"]
    sessions = pd.DataFrame(
        {
            "session_id": sessions["session_id"].astype(np.int64),
            "seeker_id": sessions["seeker_id"].astype(np.int32),
            "item_type": decode("item_type", sessions["item_type"]),
            "ts": to_ts(start, sessions["day"]),
            "policy": decode("policy", sessions["policy"]),
            "n_available": sessions["n_available"].astype(np.int32),
        }
    )
    ev = sim["events"]
    ev = ev.assign(
        event_type=decode("event_type", ev["event_type"]), item_type=decode("item_type", ev["item_type"])
    )
    ev = ev.assign(order=ev["event_type"].map(EVENT_ORDER)).sort_values(
        ["day", "order", "seeker_id", "item_id"], kind="stable"
    )
    events = pd.DataFrame(
        {
            "event_id": np.arange(len(ev), dtype=np.int64),
            "seeker_id": ev["seeker_id"].astype(np.int32).to_numpy(),
            "item_type": ev["item_type"].to_numpy(),
            "item_id": ev["item_id"].astype(np.int32).to_numpy(),
            "event_type": ev["event_type"].to_numpy(),
            "ts": to_ts(start, ev["day"].to_numpy()),
            "session_id": ev["session_id"].astype(np.int64).to_numpy(),
        }
    )
    reg = seekers.set_index("seeker_id")["registered_at"]
    iu = pack.initial_units
    ce = sim["competency_events"]
    comp = pd.concat(
        [
            pd.DataFrame(
                {
                    "seeker_id": iu["seeker_id"],
                    "unit_id": iu["unit_id"],
                    "level": iu["level"].astype(np.int8),
                    "ts": reg.loc[iu["seeker_id"]].to_numpy(),
                    "source": "initial",
                    "source_id": -1,
                }
            ),
            pd.DataFrame(
                {
                    "seeker_id": ce["seeker_id"].astype(np.int32),
                    "unit_id": ce["unit_id"].astype(np.int32),
                    "level": ce["level"].astype(np.int8),
                    "ts": to_ts(start, ce["day"]),
                    "source": decode("source", ce["source"]),
                    "source_id": ce["source_id"].astype(np.int32),
                }
            ),
        ],
        ignore_index=True,
    )
    comp = comp.astype({"seeker_id": np.int32, "unit_id": np.int32, "source_id": np.int32})
    comp["ts"] = pd.to_datetime(comp["ts"], utc=True)
    ic = pack.initial_certificates
    cer = sim["certificate_events"]
    certs = pd.concat(
        [
            pd.DataFrame(
                {
                    "seeker_id": ic["seeker_id"],
                    "certificate_id": ic["certificate_id"],
                    "acquired_at": reg.loc[ic["seeker_id"]].to_numpy(),
                    "source": "initial",
                }
            ),
            pd.DataFrame(
                {
                    "seeker_id": cer["seeker_id"].astype(np.int32),
                    "certificate_id": cer["certificate_id"].astype(np.int32),
                    "acquired_at": to_ts(start, cer["day"]),
                    "source": decode("source", cer["source"]),
                }
            ),
        ],
        ignore_index=True,
    ).astype({"seeker_id": np.int32, "certificate_id": np.int32})
    certs["acquired_at"] = pd.to_datetime(certs["acquired_at"], utc=True)
    ex = sim["seeker_exits"]
    exits = pd.DataFrame(
        {
            "seeker_id": ex["seeker_id"].astype(np.int32),
            "exited_at": to_ts(start, ex["day"]),
            "reason": decode("reason", ex["reason"]),
        }
    ).sort_values(["exited_at", "seeker_id"], kind="stable", ignore_index=True)
    return {
        "seeker_competency_events": comp.sort_values(
            ["ts", "seeker_id", "unit_id"], kind="stable", ignore_index=True
        ),
        "seeker_certificates": certs.sort_values(
            ["acquired_at", "seeker_id"], kind="stable", ignore_index=True
        ),
        "sessions": sessions,
        "events": events,
        "seeker_exits": exits,
    }

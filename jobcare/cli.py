"""The ``jobcare`` command line. Only entry points configure logging; errors become exit code 2."""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from jobcare.config import ProjectConfig, load_config
from jobcare.errors import JobcareError

app = typer.Typer(
    help="JobCare recommender: world simulator, features, training, serving, evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
world_app = typer.Typer(help="Generate, validate and summarise simulated worlds.", no_args_is_help=True)
app.add_typer(world_app, name="world")
candidates_app = typer.Typer(help="Stage one: candidate generators.", no_args_is_help=True)
app.add_typer(candidates_app, name="candidates")
features_app = typer.Typer(
    help="The Feast feature store: apply definitions, materialise.", no_args_is_help=True
)
app.add_typer(features_app, name="features")
generic_app = typer.Typer(
    help="Both stages on any implicit-feedback dataset (user, item [, timestamp, weight]).",
    no_args_is_help=True,
)
app.add_typer(generic_app, name="generic")
auth_app = typer.Typer(help="API keys of the online service (serving.auth).", no_args_is_help=True)
app.add_typer(auth_app, name="auth")
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config (configs/*.yaml)")]


def _errors_to_exit(fn):
    """Turn project errors into a clear message and exit 2 (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except JobcareError as e:
            err.print(f"[bold red]error:[/] {type(e).__name__}: {e}", markup=True, highlight=False)
            raise typer.Exit(2) from None

    return wrapper


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_quiet_filter)


def _config(path: Optional[Path]) -> ProjectConfig:
    return load_config(path, ProjectConfig)


def _config_with_repo(path: Optional[Path], repo: Optional[Path]) -> ProjectConfig:
    """The config, with ``--repo`` (when given) as the feature repository."""
    cfg = _config(path)
    if repo is not None:
        cfg.features.repo = repo
    return cfg


@world_app.command("generate")
@_errors_to_exit
def world_generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
    config: ConfigOpt = None,
    scale: Annotated[Optional[str], typer.Option(help="tiny | demo | national")] = None,
    seed: Annotated[Optional[int], typer.Option(help="random seed")] = None,
    taxonomy: Annotated[Optional[str], typer.Option(help="synthetic | onet")] = None,
    onet_dir: Annotated[Optional[Path], typer.Option(help="O*NET 29.2 text files")] = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Generate a deterministic world (Parquet tables, truth/, manifest.json)."""
    from pydantic import ValidationError

    from jobcare.errors import ConfigError
    from jobcare.world.generate import generate_world

    cfg = _config(config).world
    try:
        for k, v in (("scale", scale), ("seed", seed), ("taxonomy", taxonomy), ("onet_dir", onet_dir)):
            if v is not None:
                setattr(cfg, k, v)
    except ValidationError as e:
        raise ConfigError(
            "; ".join(f"--{'-'.join(str(x) for x in er['loc'])}: {er['msg']}" for er in e.errors())
        ) from None
    t0 = time.perf_counter()
    manifest = generate_world(cfg, out, show_progress=progress)
    rows = manifest["tables"]
    console.print(
        f"world [bold]{cfg.scale}[/] seed {cfg.seed} ({cfg.taxonomy}) written to {out} in "
        f"{time.perf_counter() - t0:.1f}s: {rows['seekers']['rows']:,} seekers, "
        f"{rows['postings']['rows']:,} postings, {rows['events']['rows']:,} events, "
        f"{rows['impressions']['rows']:,} impressions"
    )


@world_app.command("validate")
@_errors_to_exit
def world_validate(
    world: Annotated[Path, typer.Argument(help="world folder")], config: ConfigOpt = None
) -> None:
    """Check every table against its declared schema and the semantic rules."""
    from jobcare.contracts import validate_world

    _config(config)
    with console.status("validating data contracts"):
        rows = validate_world(world)
    console.print(f"[green]valid[/]: {len(rows)} tables, {sum(rows.values()):,} rows honour their contracts")


@world_app.command("respond")
@_errors_to_exit
def world_respond(
    world: Annotated[Path, typer.Option(help="world folder the service ran on")],
    impressions: Annotated[Path, typer.Option(help="the service's impression log folder")],
    out: Annotated[Path, typer.Option(help="outcomes to write (.parquet or .csv)")],
    seed: Annotated[int, typer.Option(help="seed of the seekers' draws")] = 0,
) -> None:
    """The simulated seekers answer the slates the service logged (apply / enrol / register at the
    world's true probability per position): the outcome table `ab-report --outcomes` reads."""
    from jobcare.world.oracle import WorldOracle
    from jobcare.world.respond import respond
    from serving.impressions import read_records
    from training.generic import write_table

    records = read_records(impressions)
    df = respond(WorldOracle(world), records, seed)
    write_table(df, out)
    console.print(f"{len(df):,} actions on {len(records):,} logged responses -> {out}")


@world_app.command("simulate")
@_errors_to_exit
def world_simulate(
    world: Annotated[Path, typer.Option(help="world folder to continue")],
    from_date: Annotated[str, typer.Option("--from", help="a midnight (UTC) in the span")],
    days: Annotated[int, typer.Option(help="days to simulate")],
    arms: Annotated[
        str,
        typer.Option(
            help="A=URI,B=URI, URI: baseline:legacy|random|oracle or a model (models:/NAME@ALIAS), "
            "a model optionally with ?congestion=W (congestion-aware re-ranking for that arm)"
        ),
    ],
    out: Annotated[Path, typer.Option(help="folder for the continued tables and the report")],
    split: Annotated[float, typer.Option(help="share of seekers routed to arm B")] = 0.5,
    seed: Annotated[int, typer.Option(help="seed of the continuation")] = 0,
    ope_window: Annotated[
        Optional[int],
        typer.Option(help="also: off-policy estimates on the explore slates of this many days before --from"),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Online A/B inside the world: continue it from --from with each seeker's arm as the logging policy;
    the continued tables and the true online effect per arm (online_ab.json / online_ab.md)."""
    from evaluation.online_ab import run_online_ab

    res = run_online_ab(
        world, _config(config), from_date, days, arms, split, seed, out, ope_window=ope_window
    )
    a, h = res["metrics"]["applies"], res["metrics"]["hires"]
    console.print(
        f"{res['days']} days from {res['from']} in {res['seconds']:.1f}s -> {out}: per seeker B - A: applies "
        f"{a['diff']:+.3f} [{a['ci_low']:+.3f}, {a['ci_high']:+.3f}], hires "
        f"{h['diff']:+.3f} [{h['ci_low']:+.3f}, {h['ci_high']:+.3f}]"
    )


@world_app.command("summary")
@_errors_to_exit
def world_summary(
    world: Annotated[Path, typer.Argument(help="world folder")],
    config: ConfigOpt = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the summary as JSON")] = None,
) -> None:
    """Counts, behaviour magnitudes, variance shares and the learnability check."""
    from jobcare.world.summary import summarize

    cfg = _config(config).summary
    with console.status("summarising (oracle, popularity and random rankings of held-out applies)"):
        s = summarize(world, cfg.n_eval_seekers, cfg.seed)
    print_summary(s)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(s, indent=2, default=str))
        console.print(f"summary JSON: {json_out}")


def print_summary(s: dict) -> None:
    t = Table(title="world summary", show_header=True)
    t.add_column("what")
    t.add_column("value", justify="right")
    for k in ("seekers", "postings", "courses", "certificates", "sessions", "impressions", "events"):
        t.add_row(f"rows: {k}", f"{s['rows'][k]:,}")
    for k in (
        "applies_per_active_seeker_month",
        "top1pct_postings_share_of_applies",
        "postings_with_no_apply_share",
        "course_completion_rate_median",
        "course_employment_rate_median",
        "explore_session_share",
    ):
        t.add_row(k, str(s[k]))
    vs = s["variance_shares"]
    t.add_row("variance shares obs/latent/noise", f"{vs['observable']}/{vs['latent']}/{vs['noise']}")
    console.print(t)
    lt = Table(title=f"learnability: NDCG@{s['learnability']['k']} on the held-out window")
    lt.add_column("protocol")
    for name in ("oracle", "observable_only", "popularity", "random"):
        lt.add_column(name, justify="right")
    lt.add_column("n", justify="right")
    for proto, n_key in (("logged", "n_seekers"), ("explore", "n_slates")):
        r = s["learnability"][proto]
        lt.add_row(
            proto,
            *(
                f"{r[n]:.3f}" if r[n] is not None else "-"
                for n in ("oracle", "observable_only", "popularity", "random")
            ),
            str(r[n_key]),
        )
    console.print(lt)


def _features_cfg(config, repo, profile):
    from pydantic import ValidationError

    from jobcare.errors import ConfigError

    cfg = _config(config).features
    try:
        if repo is not None:
            cfg.repo = repo
        if profile is not None:
            cfg.profile = profile
    except ValidationError as e:
        raise ConfigError("; ".join(f"--{er['loc'][0]}: {er['msg']}" for er in e.errors())) from None
    return cfg.resolved()


RepoOpt = Annotated[Optional[Path], typer.Option(help="feature repository folder (default from config)")]
ProfileOpt = Annotated[Optional[str], typer.Option(help="local | production")]
OracleOpt = Annotated[
    bool,
    typer.Option(
        help="also report the oracle (reads the simulated world's truth/; evaluation only, never a decision)"
    ),
]


@features_app.command("apply")
@_errors_to_exit
def features_apply(
    world: Annotated[Path, typer.Option(help="world folder whose tables feed the feature store")],
    config: ConfigOpt = None,
    repo: RepoOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Build the feature tables of a world, write the repo config for the profile, and apply."""
    from features import store

    cfg = _features_cfg(config, repo, profile)
    with console.status(f"building feature tables from {world}"):
        path = store.render_repo(world, cfg)
    with console.status(f"feast apply ({cfg.profile} profile)"):
        applied = store.apply(path)
    console.print(
        f"applied to {path} ({cfg.profile}): {len(applied['feature_views'])} feature views "
        f"({', '.join(applied['feature_views'])}); services: {', '.join(applied['feature_services'])}"
    )


@features_app.command("materialize")
@_errors_to_exit
def features_materialize(
    config: ConfigOpt = None,
    repo: RepoOpt = None,
    profile: ProfileOpt = None,
    incremental: Annotated[
        bool, typer.Option("--incremental", help="only since the last materialisation")
    ] = False,
) -> None:
    """Load the latest feature values (up to the world's end) into the online store."""
    from features import store

    cfg = _features_cfg(config, repo, profile)
    t0 = time.perf_counter()
    end = store.materialize(cfg.repo, incremental=incremental, workers=cfg.materialize_workers)
    console.print(
        f"materialised up to {end} into the {store.repo_meta(cfg.repo)['profile']} online store "
        f"in {time.perf_counter() - t0:.1f}s"
    )


@candidates_app.command("evaluate")
@_errors_to_exit
def candidates_evaluate(
    world: Annotated[Path, typer.Option(help="world folder")],
    config: ConfigOpt = None,
    repo: RepoOpt = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the table as JSON")] = None,
    oracle: OracleOpt = False,
) -> None:
    """Recall@100/300 of each source and the union on a time split; printed and logged to MLflow."""
    from evaluation.reference import world_oracle
    from training.candidates.report import evaluate_and_log

    cfg = _config_with_repo(config, repo)
    res = evaluate_and_log(world, cfg, console=console, oracle=world_oracle(world) if oracle else None)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(res, indent=2, default=str))
        console.print(f"table JSON: {json_out}")


@app.command("train")
@_errors_to_exit
def train_cmd(
    world: Annotated[Path, typer.Option(help="world folder")],
    config: ConfigOpt = None,
    repo: RepoOpt = None,
    oracle: OracleOpt = False,
    engine: Annotated[
        Optional[str],
        typer.Option(help="local | dask: ranker rows and fits on a Dask cluster (default: train.engine)"),
    ] = None,
    scheduler: Annotated[
        Optional[str],
        typer.Option(
            help="Dask scheduler, e.g. tcp://HOST:8786 (implies --engine dask; default: a LocalCluster)"
        ),
    ] = None,
    until: Annotated[
        Optional[str],
        typer.Option(
            help="data cutoff (ISO date, UTC): the windows end here, so the model sees nothing after it "
            "(default: train.until, else the end of the logs)"
        ),
    ] = None,
) -> None:
    """Contracts, Feast features, stage one, LambdaRank, evaluation, MLflow, registry and the gate."""
    from evaluation.reference import world_oracle
    from training.pipeline import train

    cfg = _config_with_repo(config, repo)
    _set_engine(cfg, engine, scheduler)
    if until is not None:
        cfg.train.until = until
    res = train(world, cfg, console=console, oracle=world_oracle(world) if oracle else None)
    console.print(f"MLflow run {res['run_id']} ({cfg.tracking.resolved().uri})")


def champions_line(trained: dict, item_types: list[str]) -> str:
    """``jobcare demo``'s last line: each item type's model, alias and version from ``train``'s result
    (which also holds ``run_id`` and ``stages``)."""
    return ", ".join(
        f"{trained[it]['model']}@{trained[it]['gate']['alias']} = v{trained[it]['version']}"
        for it in item_types
    )


def _set_engine(cfg: ProjectConfig, engine: Optional[str], scheduler: Optional[str]) -> None:
    """Apply ``--engine`` / ``--scheduler`` to ``cfg.train`` (a scheduler implies the Dask engine)."""
    from jobcare.errors import ConfigError

    if engine not in (None, "local", "dask"):
        raise ConfigError(f"--engine must be local or dask, got {engine!r}")
    if scheduler is not None:
        if engine == "local":
            raise ConfigError("--scheduler needs --engine dask (the local engine uses no cluster)")
        engine = "dask"
        cfg.train.dask.scheduler = scheduler
    if engine is not None:
        cfg.train.engine = engine


@app.command("tune")
@_errors_to_exit
def tune_cmd(
    world: Annotated[Path, typer.Option(help="world folder")],
    trials: Annotated[int, typer.Option(help="trials to add to the study")] = 20,
    out: Annotated[Path, typer.Option(help="where to write the best config")] = Path("configs/tuned.yaml"),
    storage: Annotated[
        Optional[str], typer.Option(help="Optuna storage URL (default sqlite:///.jobcare/optuna.db)")
    ] = None,
    study: Annotated[str, typer.Option(help="study name (same name resumes)")] = "jobcare-ranker",
    config: ConfigOpt = None,
    repo: RepoOpt = None,
) -> None:
    """Optuna (TPE, median pruner) over the ranker's hyperparameters; each trial a nested MLflow run."""
    from training.tune import tune

    if trials <= 0:
        from jobcare.errors import ConfigError

        raise ConfigError(f"--trials must be > 0, got {trials}")
    cfg = _config_with_repo(config, repo)
    res = tune(world, cfg, trials, out, storage, study, console=console)
    console.print(
        f"study {study}: {res['n_trials']} trials ({res['n_pruned']} pruned), best validation NDCG@10 "
        f"{res['best_value']:.4f} with {res['best_params']}; config written to {res['config']} "
        f"(use: jobcare train --config {res['config']})"
    )


ItemTypeOpt = Annotated[str, typer.Option("--item-type", help="posting | course | certificate")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="why (recorded as a tag)")]


def _registry(config, item_type: str):
    from mlflow import MlflowClient

    from jobcare.errors import ConfigError
    from training import tracking
    from training.registry import MODEL_NAMES

    if item_type not in MODEL_NAMES:
        raise ConfigError(f"--item-type must be one of {sorted(MODEL_NAMES)}, got {item_type!r}")
    tracking.start(_config(config).tracking)
    return MlflowClient(), MODEL_NAMES[item_type]


@app.command("promote")
@_errors_to_exit
def promote_cmd(
    version: Annotated[str, typer.Argument(help="model version to make champion")],
    item_type: ItemTypeOpt = "posting",
    reason: ReasonOpt = "manual promotion",
    config: ConfigOpt = None,
) -> None:
    """Move the champion alias to VERSION (recorded: who, when, why)."""
    from training.registry import promote

    client, name = _registry(config, item_type)
    promote(client, name, version, reason)
    console.print(f"{name}: champion -> v{version}")


@app.command("rollback")
@_errors_to_exit
def rollback_cmd(
    item_type: ItemTypeOpt = "posting", reason: ReasonOpt = "manual rollback", config: ConfigOpt = None
) -> None:
    """Move the champion alias back to the previous champion."""
    from training.registry import rollback

    client, name = _registry(config, item_type)
    console.print(f"{name}: champion -> v{rollback(client, name, reason)} (rolled back)")


@app.command("record-digests")
@_errors_to_exit
def record_digests_cmd(
    version: Annotated[str, typer.Argument(help="model version whose files to trust as they are now")],
    item_type: ItemTypeOpt = "posting",
    reason: ReasonOpt = "registered before digests were recorded; files checked by hand",
    config: ConfigOpt = None,
) -> None:
    """Record the sha256 digests of VERSION's files in the registry (versions registered without them,
    which the service refuses). Audited; check the files first: this makes the service accept them."""
    from training.registry import record_digests

    client, name = _registry(config, item_type)
    digest = record_digests(client, name, version, reason)
    console.print(f"{name} v{version}: digests recorded (manifest sha256 {digest})")


@app.command("demo")
@_errors_to_exit
def demo(
    config: ConfigOpt = Path("configs/demo.yaml"),
    work: Annotated[Path, typer.Option(help="working folder for generated data")] = Path(".jobcare"),
    seed: Annotated[Optional[int], typer.Option(help="world seed")] = None,
) -> None:
    """The main job end to end on the embedded defaults: world -> contracts -> summary -> features ->
    candidate generation -> training (rankers, MLflow registry, promotion gate) -> A/B report."""
    from jobcare.contracts import validate_world
    from jobcare.world.generate import generate_world
    from jobcare.world.summary import summarize

    cfg = _config(config)
    if seed is not None:
        cfg.world.seed = seed
    world = work / f"world-{cfg.world.scale}-{cfg.world.seed}"
    t0 = time.perf_counter()
    console.rule(f"1/7 world: {cfg.world.scale}, seed {cfg.world.seed}")
    generate_world(cfg.world, world)
    console.rule("2/7 data contracts")
    rows = validate_world(world)
    console.print(f"[green]valid[/]: {len(rows)} tables, {sum(rows.values()):,} rows")
    console.rule("3/7 summary and learnability")
    s = summarize(world, cfg.summary.n_eval_seekers, cfg.summary.seed)
    print_summary(s)
    (work / "reports").mkdir(parents=True, exist_ok=True)
    out = work / "reports" / "world_summary.json"
    out.write_text(json.dumps(s, indent=2, default=str))
    console.rule(f"4/7 feature store ({cfg.features.profile} profile): apply and materialise")
    from features import store

    fcfg = cfg.features.resolved()
    fcfg.repo = work / "feature_repo"
    repo = store.render_repo(world, fcfg)
    applied = store.apply(repo)
    console.print(
        f"applied {len(applied['feature_views'])} feature views, services {applied['feature_services']}"
    )
    t1 = time.perf_counter()
    store.materialize(repo, workers=fcfg.materialize_workers)
    console.print(f"materialised in {time.perf_counter() - t1:.0f}s")
    console.rule("5/7 candidate generation: time-split recall of each source (logged to MLflow)")
    from training.candidates.report import evaluate_and_log

    cfg.features.repo = repo
    from evaluation.reference import world_oracle

    cand = evaluate_and_log(world, cfg, console=console, oracle=world_oracle(world))
    (work / "reports" / "candidates.json").write_text(json.dumps(cand, indent=2, default=str))
    console.rule("6/7 training: LambdaRank rankers, MLflow registry, promotion gate")
    from training.pipeline import train

    trained = train(
        world, cfg, console=console, oracle=world_oracle(world)
    )  # a simulated world: oracle ratios
    (work / "reports" / "train.json").write_text(json.dumps(trained, indent=2, default=str))
    pm = trained["posting"]["metrics"]  # the stage-one source best on validation (a replayable baseline)
    best = max(
        ("als", "two_tower", "rules", "popularity"), key=lambda b: pm.get(f"val_explore_{b}_ndcg_at_10", -1)
    )
    console.rule(
        f"7/7 A/B report: the postings champion (B) against {best} alone (A, the stage-one source best "
        f"on validation) on the last {cfg.train.test_days} days (the test window)"
    )
    from evaluation.ab_report import ab_report

    ab_out = work / "reports" / "ab-report.html"
    champion = "models:/jobcare-postings@champion"
    ab = ab_report(
        world, cfg, f"baseline:{best}", champion, "posting", cfg.train.test_days, ab_out, max_requests=400
    )
    h = ab["headline"]
    console.print(
        f"{ab['decision']} (on {ab['decision_basis']}): NDCG@10 B - A {h['mean_diff']:+.4f} "
        f"[{h['ci_low']:+.4f}, {h['ci_high']:+.4f}], p = {h['p_value']:.4f}"
    )
    champions = champions_line(trained, cfg.train.item_types)
    console.rule("done")
    console.print(
        f"finished in {time.perf_counter() - t0:.0f}s. Look at:\n"
        f"  world tables and manifest: {world}/ (manifest.json)\n"
        f"  world summary:             {out}\n"
        f"  feature repository:        {repo} (feast -c {repo} feature-views list)\n"
        f"  candidate recall:          {work / 'reports' / 'candidates.json'}\n"
        f"  training metrics, gate:    {work / 'reports' / 'train.json'}\n"
        f"  registered models:         {champions}\n"
        f"  A/B report (open in a browser): {ab_out} (+ .md, .json)\n"
        f"  MLflow UI:                 mlflow ui --backend-store-uri {cfg.tracking.resolved().uri} "
        f"--port 5000, then http://127.0.0.1:5000 (training run {trained['run_id']})\n"
        f"  the service and the JobCare report page: make serve, then http://127.0.0.1:3000/ui/ "
        f"(API docs at http://127.0.0.1:3000/)"
    )


def _item_type_of(uri: str, given: Optional[str]) -> str:
    from jobcare.errors import ConfigError
    from training.registry import MODEL_NAMES

    if given:
        if given not in MODEL_NAMES:
            raise ConfigError(f"--item-type: {given!r} is not one of {sorted(MODEL_NAMES)}")
        return given
    for it, name in MODEL_NAMES.items():
        if f"/{name}/" in uri or f"/{name}@" in uri:
            return it
    raise ConfigError(f"cannot tell the item type of {uri!r}: pass --item-type posting|course|certificate")


WindowOpt = Annotated[int, typer.Option(min=1, help="held-out window: the last N days of the world")]


@app.command("evaluate")
@_errors_to_exit
def evaluate_cmd(
    model: Annotated[
        str, typer.Option(help="MLflow model URI (models:/jobcare-postings@champion) or baseline:als")
    ],
    world: Annotated[Path, typer.Option(help="world folder")],
    window: WindowOpt = 60,
    item_type: Annotated[Optional[str], typer.Option(help="posting | course | certificate")] = None,
    max_requests: Annotated[int, typer.Option(min=1)] = 1000,
    config: ConfigOpt = None,
    repo: RepoOpt = None,
) -> None:
    """Replay the held-out window through stage one and the model; warm vs cold (and the oracle where
    the world has truth/)."""
    from evaluation.replay import KS, per_request, replay, scores
    from training import tracking

    cfg = _config_with_repo(config, repo)
    tracking.start(cfg.tracking)  # models:/ URIs resolve against the configured registry
    it = _item_type_of(model, item_type) if not model.startswith("baseline:") else (item_type or "posting")
    rp = replay(world, cfg, it, window, max_requests)
    rows = rp.data.rows
    sm, label = scores(model, rp)
    pm = per_request(rows, sm)
    po = per_request(rows, scores("baseline:oracle", rp)[0]) if rp.oracle is not None else None
    cold = rp.audit.set_index("request_id")["cold"].reindex(pm.index)
    table = Table(
        title=f"{label}: {len(pm)} {it} requests, {rp.window[0]:%Y-%m-%d} to {rp.window[1]:%Y-%m-%d}"
    )
    for c in ("metric", "all", "warm", "cold", *(("oracle (all)",) if po is not None else ())):
        table.add_column(c, justify="right")
    for k in KS:
        for m in ("ndcg", "recall", "map", "mrr", "hit"):
            col = f"{m}@{k}"
            if m != "ndcg" and k != 10:
                continue
            table.add_row(
                col,
                f"{pm[col].mean():.4f}",
                f"{pm.loc[~cold, col].mean():.4f}",
                f"{pm.loc[cold, col].mean():.4f}",
                *((f"{po[col].mean():.4f}",) if po is not None else ()),
            )
    console.print(table)


@app.command("ab-report")
@_errors_to_exit
def ab_report_cmd(
    a: Annotated[str, typer.Option("--a", help="model A: MLflow model URI or baseline:als")],
    b: Annotated[str, typer.Option("--b", help="model B: MLflow model URI or baseline:als")],
    world: Annotated[Path, typer.Option(help="world folder")],
    out: Annotated[Path, typer.Option(help="HTML report to write (.md and .json next to it)")] = Path(
        ".jobcare/reports/ab-report.html"
    ),
    window: WindowOpt = 60,
    item_type: Annotated[Optional[str], typer.Option(help="posting | course | certificate")] = None,
    max_requests: Annotated[int, typer.Option(min=1)] = 1000,
    impressions: Annotated[
        Optional[Path], typer.Option(help="also estimate A and B off-policy on this service impression log")
    ] = None,
    outcomes: Annotated[
        Optional[Path], typer.Option(help="outcomes of the logged requests (e.g. `jobcare world respond`)")
    ] = None,
    config: ConfigOpt = None,
    repo: RepoOpt = None,
) -> None:
    """Paired A/B comparison on the replayed window: lift with CIs, segments, fairness, HTML report."""
    from evaluation.ab_report import ab_report

    if (impressions is None) != (outcomes is None):
        raise JobcareError("--impressions and --outcomes: give both or neither (rule: logs need outcomes)")
    cfg = _config_with_repo(config, repo)
    uri = a if not a.startswith("baseline:") else b
    it = _item_type_of(uri, item_type)
    res = ab_report(world, cfg, a, b, it, window, out, max_requests, service_log=(impressions, outcomes))
    h = res["headline"]
    n = res["unbiased"]["n_seekers"] if res["decision_basis"] == "explore slates" else res["n_seekers"]
    console.print(
        f"{res['decision']} (on {res['decision_basis']}): NDCG@10 B - A {h['mean_diff']:+.4f} "
        f"[{h['ci_low']:+.4f}, {h['ci_high']:+.4f}], p = {h['p_value']:.4f} ({n} seekers)\n"
        f"report: {out} (+ .md, .json; MLflow run {res['run_id']})"
    )


FileOpt = Annotated[Optional[Path], typer.Option(help="Parquet or CSV file")]


@generic_app.command("fit")
@_errors_to_exit
def generic_fit(
    interactions: Annotated[Path, typer.Option(help="Parquet or CSV: user, item [, timestamp, weight]")],
    out: Annotated[Path, typer.Option(help="model folder to write")],
    users: FileOpt = None,
    items: FileOpt = None,
    config: ConfigOpt = None,
    budget_seconds: Annotated[
        Optional[float],
        typer.Option(min=0, help="seconds of the stage-one search (default: generic.budget_seconds)"),
    ] = None,
) -> None:
    """Tune ALS, item-kNN and popularity on a validation split, check a LambdaRank ranker against the best
    of them, refit on everything and save (any implicit-feedback dataset)."""
    from training.generic import fit, read_table, validation_table

    cfg = _config(config).generic
    tables = {n: read_table(p, n) if p is not None else None for n, p in (("users", users), ("items", items))}
    meta = fit(
        read_table(interactions, "interactions"),
        tables["users"],
        tables["items"],
        cfg,
        out,
        budget_seconds=budget_seconds,
        show_progress=True,
    )
    t = meta["tuning"]
    console.print(
        f"fitted on {meta['interactions']:,} interactions ({meta['users']:,} users, {meta['items']:,} items) "
        f"in {meta['timings']['fit_seconds']:.0f} s; search budget {t['budget_seconds']:g} s bought "
        + ", ".join(
            f"{s} {t[s]['trials']} trials (validation NDCG@10 best {t[s]['best_ndcg_at_10']:.4f}, default "
            + ("-" if t[s]["default_ndcg_at_10"] is None else f"{t[s]['default_ndcg_at_10']:.4f}")
            + ")"
            for s in ("als", "knn")
        )
    )
    console.print(validation_table(meta))
    console.print(f"{meta['ranker']['reason']} -> {out}")


@generic_app.command("recommend")
@_errors_to_exit
def generic_recommend(
    model: Annotated[Path, typer.Option(help="model folder from `jobcare generic fit`")],
    users: Annotated[Path, typer.Option(help="Parquet or CSV with a `user` column")],
    out: Annotated[Path, typer.Option(help="Parquet or CSV to write (user, item, rank, score, als_rank)")],
    k: Annotated[int, typer.Option(min=1, help="items per user")] = 10,
    exclude_seen: Annotated[bool, typer.Option("--exclude-seen/--include-seen")] = True,
) -> None:
    """Top-k items per user from a generic model."""
    from training.generic import GenericInputError, GenericModel, read_table, write_table

    who = read_table(users, "users")
    if "user" not in who.columns:
        raise GenericInputError(f"users: {users} has no `user` column (rule: key column)")
    recs = GenericModel(model).recommend(who["user"].to_numpy(), k, exclude_seen)
    write_table(recs, out)
    console.print(f"{len(recs):,} recommendations for {recs['user'].nunique():,} users -> {out}")


@auth_app.command("hash-key")
@_errors_to_exit
def auth_hash_key(
    key_id: Annotated[str, typer.Option("--id", help="the caller's name in logs, limits and metrics")],
    stdin: Annotated[
        bool, typer.Option("--stdin", help="hash the key read from standard input (else a new key)")
    ] = False,
    log2_n: Annotated[int, typer.Option(min=10, max=20, help="scrypt cost: n = 2**log2_n")] = 14,
) -> None:
    """Print a `serving.auth.key_hashes` entry (stdout) for a new key (printed once, on stderr) or for the
    key on standard input. Keys are never arguments: those end up in shell history and `ps`."""
    import re

    from jobcare.config import KEY_ID_RE, ApiKeyHash
    from jobcare.errors import ConfigError
    from serving.auth import SCRYPT_P, SCRYPT_R, check_key, hash_key, new_key

    if not re.match(KEY_ID_RE, key_id) or key_id.startswith("env-"):
        raise ConfigError(f"--id {key_id!r}: rule: {KEY_ID_RE} and not env-* (reserved for JOBCARE_API_KEYS)")
    key = check_key(sys.stdin.readline().rstrip("\r\n")) if stdin else new_key()
    entry = ApiKeyHash(id=key_id, hash=hash_key(key, n=2**log2_n, r=SCRYPT_R, p=SCRYPT_P))
    if not stdin:
        typer.echo(f"new API key for {key_id} (shown once; give it to the caller only): {key}", err=True)
    typer.echo(f"- {{id: {entry.id}, hash: '{entry.hash}'}}")


def _quiet_filter(record: logging.LogRecord) -> bool:
    """Drop the chatty INFO lines of libraries (Feast's registry refreshes ...) unless --verbose."""
    return record.levelno >= logging.WARNING or record.name.split(".")[0] not in _NOISY


_NOISY = {"feast", "dask", "distributed", "alembic", "mlflow"}


if __name__ == "__main__":
    app()

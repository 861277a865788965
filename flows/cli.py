"""`conveyor`: the command line for local work with Conveyor."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from blocks.settings import configure_prefect_env

# Before prefect is imported anywhere: this process talks to Conveyor's API, whatever the shell says.
SETTINGS = configure_prefect_env()

app = typer.Typer(
    name="conveyor",
    help="Continuous integration and delivery for machine learning, as Prefect flows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# `conveyor validate`: exit status of a file that cannot be read at all (1 means read, and invalid).
_UNREADABLE = 2
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


class CommandError(Exception):
    """A command could not do what was asked; the message is the one sentence the user sees."""


def _print(data: dict[str, Any] | list[Any], as_json: bool, text: str) -> None:
    typer.echo(json.dumps(data, indent=2, default=str) if as_json else text)


@app.command()
def generate(
    rows: Annotated[int, typer.Option(min=1, help="Telemetry rows per day.")] = 50_000,
    day: Annotated[
        dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Day of the (first) partition; default: yesterday.")
    ] = None,
    days: Annotated[int, typer.Option(min=1, help="Consecutive days to write, starting at --day.")] = 1,
    out: Annotated[Path | None, typer.Option(help="Folder to write into; default: the landing folder.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the fleet and its readings.")] = 7,
    drift: Annotated[list[str] | None, typer.Option(help="Shift a sensor, e.g. temperature:+5 (repeatable).")] = None,
    corrupt: Annotated[
        list[str] | None, typer.Option(help="Inject damage: nulls, types or range (repeatable).")
    ] = None,
    corrupt_fraction: Annotated[float, typer.Option(min=0, max=1, help="Share of rows damaged.")] = 0.02,
    as_json: JsonFlag = False,
) -> None:
    """Write synthetic telemetry partitions into the landing folder."""
    from blocks.stores import ConveyorStores
    from tasks.synthetic import Corruption, Drift, generate_telemetry, write_partition

    try:
        drifts = tuple(Drift.parse(d) for d in drift or ())
        corruptions = tuple(Corruption(c) for c in corrupt or ())
    except ValueError as error:
        raise CommandError(f"{error}; corruption kinds are {', '.join(Corruption)}.") from None
    target = out or ConveyorStores.resolve().landing_path
    # Yesterday by default: a whole day of readings, none of them in the future.
    first = day.date() if day else dt.date.today() - dt.timedelta(days=1)
    written = []
    for offset in range(days):
        date = first + dt.timedelta(days=offset)
        frame = generate_telemetry(rows, date, seed, drifts, corruptions, corrupt_fraction)
        written.append(str(write_partition(frame, target, date)))
    _print({"partitions": written, "rows": rows}, as_json, "\n".join(written))


@app.command()
def up(as_json: JsonFlag = False) -> None:
    """Start the local stack: Prefect server, work pools, blocks, deployments, workers, landing watcher (idempotent)."""
    from deployments import stack

    started = stack.start_server(SETTINGS)
    pools = stack.ensure_work_pools()
    block = stack.ensure_stores_block(SETTINGS)
    stack.deploy_all(SETTINGS)
    workers = stack.start_workers(SETTINGS)
    watcher = stack.start_watcher(SETTINGS)
    summary = {
        "api_url": SETTINGS.api_url,
        "ui_url": SETTINGS.ui_url,
        "server_started": started,
        "work_pools_created": pools,
        "stores_block_created": block,
        "workers_started": workers,
        "watcher_started": watcher,
    }
    _print(
        summary,
        as_json,
        f"Conveyor is up: UI {SETTINGS.ui_url}, workers for {', '.join(SETTINGS.worker_pools)}, landing watcher.",
    )


@app.command()
def down(as_json: JsonFlag = False) -> None:
    """Stop exactly the server, workers and landing watcher `conveyor up` started."""
    from deployments import stack

    stopped = stack.stop_all(SETTINGS)
    _print({"stopped": stopped}, as_json, f"Stopped: {', '.join(stopped)}." if stopped else "Nothing was running.")


@app.command()
def status(as_json: JsonFlag = False) -> None:
    """Show the server, work pools and their workers, deployments, landing folder and model store."""
    from deployments.status import describe_status, status_text

    report = describe_status(SETTINGS)
    _print(report, as_json, status_text(report))


@app.command()
def run(
    deployment: Annotated[str, typer.Argument(help="FLOW/DEPLOYMENT, e.g. refit/default.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE, VALUE read as JSON if it parses.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run a deployment on its work pool, wait for it, and print its outcome."""
    from deployments.status import describe_run, run_deployment_and_wait, run_text

    outcome = describe_run(SETTINGS, run_deployment_and_wait(deployment, _parse_params(param or [])))
    _print(outcome, as_json, run_text(outcome))
    if outcome["state"] != "COMPLETED":
        raise typer.Exit(1)


@app.command()
def demo(
    rows: Annotated[int, typer.Option(min=1, help="Telemetry rows of the first partition.")] = 50_000,
) -> None:
    """Bring the stack up, land a first partition unless one exists, and run refit/default."""
    from blocks.stores import ConveyorStores
    from tasks.data import landed_partitions

    up(as_json=False)
    landing = ConveyorStores.resolve().landing_path
    if not landed_partitions(landing):
        generate(rows=rows, day=None, days=1, out=landing)
    run("refit/default", param=None, as_json=False)


@app.command()
def models(as_json: JsonFlag = False) -> None:
    """List the registered model versions and their held-out metrics."""
    from blocks.stores import ConveyorStores
    from tasks.registry import list_versions

    versions = list_versions(ConveyorStores.resolve().model_path)
    lines = [
        f"{v.name} v{v.version}  ROC AUC {v.metrics['roc_auc']:.3f}  data {v.data_sha256[:12]}  {v.onnx_path}"
        for v in versions
    ]
    _print([v.model_dump() for v in versions], as_json, "\n".join(lines) or "No model version is registered yet.")


@app.command("train")
def train_command(
    data: Annotated[Path, typer.Argument(help="A telemetry parquet file.")],
    workers: Annotated[int, typer.Option(min=1, help="Training ranks; more than 1 trains with DDP on Dask.")] = 1,
    scheduler: Annotated[
        str | None, typer.Option(help="Existing Dask scheduler, e.g. tcp://host:8786; default: a local cluster.")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training rows (torch).")] = 12,
    family: Annotated[str, typer.Option(help="Model family: torch (the MLP) or xgboost (boosted trees).")] = "torch",
    rounds: Annotated[int, typer.Option(min=1, help="Boosting rounds (xgboost).")] = 100,
    out: Annotated[
        Path | None, typer.Option(help="Folder to copy the model file and the evaluation plot into.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Train again even if a cached model exists.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Train and evaluate on a data file as a flow run (DDP or xgboost.dask across Dask workers when asked)."""
    from typing import get_args

    from flows.train import ModelFamily, train
    from tasks.boosting import BoostingParams
    from tasks.cluster import ClusterSpec
    from tasks.training import TrainingParams

    if not data.is_file():
        raise CommandError(f"No data file at {data}.")
    if family not in get_args(ModelFamily):
        raise CommandError(f"--family must be one of {', '.join(get_args(ModelFamily))}; got {family!r}.")
    state = train(
        data=str(data.resolve()),
        cluster=ClusterSpec(workers=workers, scheduler=scheduler),
        training=TrainingParams(epochs=epochs),
        out=str(out.resolve()) if out else None,
        force_recompute=force,
        family=family,
        boosting=BoostingParams(rounds=rounds),
        return_state=True,
    )
    if not state.is_completed():
        raise CommandError(f"Training ended {state.type.value}: {state.message}")
    result = state.result()
    metrics = result.metrics
    text = (
        f"{result.family:<12} {result.weights_path} (sha256 {result.weights_sha256[:12]})\n"
        f"ranks        {result.world_size}"
        + (f", resumed from epoch {result.resumed_from_epoch}" if result.resumed_from_epoch else "")
        + f"\nheld-out     ROC AUC {metrics.roc_auc:.3f}, PR AUC {metrics.pr_auc:.3f}, log loss {metrics.log_loss:.3f}"
        f"\nwall time    {result.train_wall_s:.1f} s training"
    )
    _print(result.model_dump(), as_json, text)


@app.command("tune")
def tune_command(
    data: Annotated[Path, typer.Argument(help="A telemetry parquet file.")],
    workers: Annotated[int, typer.Option(min=1, help="Dask workers the trials run on side by side.")] = 2,
    scheduler: Annotated[
        str | None, typer.Option(help="Existing Dask scheduler, e.g. tcp://host:8786; default: a local cluster.")
    ] = None,
    max_depth: Annotated[list[int] | None, typer.Option(help="Tree depth to try (repeatable).")] = None,
    learning_rate: Annotated[list[float] | None, typer.Option(help="Shrinkage to try (repeatable).")] = None,
    rounds: Annotated[int, typer.Option(min=1, help="Boosting rounds of every trial.")] = 100,
    metric: Annotated[str, typer.Option(help="Held-out metric that picks the best trial.")] = "roc_auc",
    compare_torch: Annotated[
        bool, typer.Option("--compare-torch", help="Also train the torch model and compare the families.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Run every trial again even if cached.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Search XGBoost hyper-parameters on a data file, trials fanned out on Dask workers, as a flow run."""
    from typing import get_args

    from pydantic import ValidationError

    from flows.tune import DEFAULT_SPACE, tune
    from tasks.boosting import BoostingParams
    from tasks.cluster import ClusterSpec
    from tasks.training import TrainingParams
    from tasks.tuning import TuningMetric

    if not data.is_file():
        raise CommandError(f"No data file at {data}.")
    if metric not in get_args(TuningMetric):
        raise CommandError(f"--metric must be one of {', '.join(get_args(TuningMetric))}; got {metric!r}.")
    try:
        space = DEFAULT_SPACE.model_copy(
            update={
                "max_depth": max_depth or DEFAULT_SPACE.max_depth,
                "learning_rate": learning_rate or DEFAULT_SPACE.learning_rate,
            }
        )
        space.trials(BoostingParams(rounds=rounds))
        cluster = ClusterSpec(workers=workers, scheduler=scheduler)
    except ValidationError as error:
        problem = error.errors()[0]
        raise CommandError(f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}.") from None
    state = tune(
        data=str(data.resolve()),
        base=BoostingParams(rounds=rounds),
        space=space,
        metric=metric,
        cluster=cluster,
        compare_torch=TrainingParams() if compare_torch else None,
        force_recompute=force,
        return_state=True,
    )
    if not state.is_completed():
        raise CommandError(f"Tuning ended {state.type.value}: {state.message}")
    result = state.result()
    lines = [
        f"trial {i}{' (best)' if i == result.best else ''}: max_depth {t.params.max_depth}, "
        f"learning_rate {t.params.learning_rate:g}, {metric} {getattr(t.metrics, metric):.4f}, {t.wall_s:.1f} s"
        for i, t in enumerate(result.trials)
    ]
    if result.torch:
        lines.append(f"torch: {metric} {getattr(result.torch, metric):.4f}")
    _print(result.model_dump(), as_json, "\n".join(lines))


@app.command("edge-run")
def edge_run(
    bundle: Annotated[Path, typer.Argument(help="An edge bundle: its folder or its .tar.gz.")],
    input_file: Annotated[Path, typer.Option("--input", help="Raw telemetry rows: a parquet or CSV file.")],
    out: Annotated[Path | None, typer.Option(help="Write the probabilities here (parquet).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Verify an edge bundle against its manifest and score raw telemetry with it."""
    import pandas as pd

    from tasks.edge import open_bundle, run_bundle
    from tasks.files import write_atomically
    from tasks.modeling import OUTPUT_NAME

    frame = pd.read_csv(input_file) if input_file.suffix == ".csv" else pd.read_parquet(input_file)
    with open_bundle(bundle) as opened:
        probabilities = run_bundle(opened, frame)
        manifest = opened.manifest
    threshold = manifest["decision_threshold"]
    if out:
        scored = pd.DataFrame({OUTPUT_NAME: probabilities})
        write_atomically(out, lambda tmp: scored.to_parquet(tmp, index=False))
    summary = {
        "model": f"{manifest['model_name']} v{manifest['model_version']}",
        "target": manifest["target"]["name"],
        "rows": len(probabilities),
        "predicted_failures": int((probabilities >= threshold).sum()),
        "out": str(out) if out else None,
    }
    text = (
        f"{summary['model']} on {summary['target']}: {summary['rows']} rows scored, "
        f"{summary['predicted_failures']} predicted to fail within 7 days"
        + (f"; probabilities in {out}" if out else "")
    )
    _print(summary, as_json, text)


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="A parquet batch to check where it lies; it is never moved.")],
    as_json: JsonFlag = False,
) -> None:
    """Check a batch against the contract: exit 0 if valid, 1 if invalid, 2 if it cannot be read at all."""
    import tempfile

    from blocks.stores import ConveyorStores
    from tasks.data import Snapshot
    from tasks.datastore import DataStore
    from tasks.files import sha256_file
    from tasks.quarantine import report_folder
    from tasks.statistics import find_reference
    from tasks.validation import check_batch, write_report

    if not path.is_file():
        _fail(f"cannot read {path}: {'it is a directory' if path.is_dir() else 'no such file'}.", _UNREADABLE)
    try:
        batch = Snapshot(sha256=sha256_file(path), path=str(path), source=str(path), size_bytes=path.stat().st_size)
    except OSError as error:
        _fail(f"cannot read {path}: {error.strerror or error}.", _UNREADABLE)
    stores = ConveyorStores.resolve()
    data_store = DataStore.of(stores)
    with tempfile.TemporaryDirectory(prefix="conveyor-data-docs-") as docs:
        report = check_batch(batch, find_reference(stores.model_path, data_store), Path(docs))
        report = write_report(report.model_copy(update={"data_docs": docs}), report_folder(data_store, batch.sha256))
    outcome = {"passed": report.passed, "summary": report.summary(), "report": report.report_dir, **report.model_dump()}
    if not report.readable and not as_json:
        _fail(f"{report.summary()} Report: {report.report_dir}", _UNREADABLE)
    _print(outcome, as_json, f"{report.summary()}\nReport: {report.report_dir}/report.md")
    if not report.readable:
        raise typer.Exit(_UNREADABLE)
    if not report.passed:
        raise typer.Exit(1)


@app.command("hash")
def hash_command(
    path: Annotated[Path, typer.Argument(help="A file or a folder.")],
    as_json: JsonFlag = False,
) -> None:
    """Print the BLAKE3 content hash of a file, or of a folder's manifest (the hash cache keys use)."""
    from tasks.hashing import content_hash

    if not path.exists():
        raise CommandError(f"Nothing to hash at {path}.")
    digest = content_hash(path)
    kind = "folder" if path.is_dir() else "file"
    _print({"path": str(path), "kind": kind, "blake3": digest}, as_json, f"{digest}  {path}")


cache_app = typer.Typer(help="Inspect and prune the task cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("explain")
def cache_explain(
    flow_run_id: Annotated[str, typer.Argument(help="A flow run's id, as in the Prefect UI.")],
    as_json: JsonFlag = False,
) -> None:
    """Per task run of a flow run (and its subflows): cache hit or miss, and which key component changed."""
    from uuid import UUID

    from tasks.caching import decisions_of, explain_table

    try:
        UUID(flow_run_id)
    except ValueError:
        raise CommandError(f"{flow_run_id!r} is not a flow run id (a UUID, as in the Prefect UI).") from None
    rows = explain_table(decisions_of(flow_run_id))
    if not rows:
        raise CommandError(f"No cache decisions are recorded for flow run {flow_run_id} in {SETTINGS.task_cache_dir}.")
    width = max(len(r["task run"]) for r in rows)
    text = "\n".join(f"{r['task run']:<{width}}  {r['cache']:<10}  {r['why']}" for r in rows)
    _print(rows, as_json, text)


@cache_app.command("prune")
def cache_prune(
    older_than: Annotated[int, typer.Option(min=0, help="Drop entries not used for this many days.")],
    as_json: JsonFlag = False,
) -> None:
    """Drop cached results (and their output files) that no run has used for N days."""
    from tasks.caching import prune_cache

    entries, folders = prune_cache(dt.timedelta(days=older_than))
    summary = {"entries_removed": entries, "output_folders_removed": folders}
    _print(summary, as_json, f"Removed {entries} cache entries and {folders} output folders.")


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"--param takes KEY=VALUE; got {pair!r}.")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def main() -> None:
    """Console-script entry: every expected failure ends in one sentence and exit code 1."""
    import httpx

    from deployments.errors import StackError, UnknownDeploymentError

    try:
        app()
    except httpx.ConnectError:
        _fail(f"cannot reach the Prefect API at {SETTINGS.api_url}; start it with `conveyor up`.")
    except (CommandError, StackError, UnknownDeploymentError, LookupError, ValueError, OSError) as error:
        _fail(str(error))
    finally:
        if "prefect" in sys.modules:
            from deployments.stack import flush_prefect_clients

            # Block loads emit events; flush them quietly instead of Prefect warning about them at exit.
            flush_prefect_clients()


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"Error: {message}", err=True, fg="red")
    sys.exit(code)

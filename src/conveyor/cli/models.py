"""Model commands: list registered versions, train or tune on a file, score with an edge bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from conveyor.cli.console import CommandError, DatasetOption, JsonFlag, show


def models(as_json: JsonFlag = False) -> None:
    """List the registered model versions and their held-out metrics, and name any damaged version."""
    from conveyor.blocks import ConveyorStores
    from conveyor.registry.storage import ModelStore
    from conveyor.registry.store import read_versions

    versions, damaged = read_versions(ModelStore.of(ConveyorStores.resolve()))
    lines = [
        f"{v.name} v{v.version}  ROC AUC {v.metrics['roc_auc']:.3f}  data {v.data_sha256[:12]}  {v.onnx_path}"
        for v in versions
    ] + [f"DAMAGED  {problem}" for problem in damaged.values()]
    listed = [v.model_dump() for v in versions] + [{"path": p, "damaged": why} for p, why in damaged.items()]
    show(listed, as_json, "\n".join(lines) or "No model version is registered yet.")


def train_command(
    data: Annotated[Path, typer.Argument(help="A parquet file of the dataset's rows.")],
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
    dataset: DatasetOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Train and evaluate on a data file as a flow run (DDP or xgboost.dask across Dask workers when asked)."""
    from typing import get_args

    from conveyor.export.families import ModelFamily
    from conveyor.flows.train import train
    from conveyor.models.boosting import BoostingParams
    from conveyor.models.cluster import ClusterSpec
    from conveyor.models.training import TrainingParams

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
        dataset=dataset,
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
    show(result.model_dump(), as_json, text)


def tune_command(
    data: Annotated[Path, typer.Argument(help="A parquet file of the dataset's rows.")],
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
    dataset: DatasetOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Search XGBoost hyper-parameters on a data file, trials fanned out on Dask workers, as a flow run."""
    from typing import get_args

    from pydantic import ValidationError

    from conveyor.flows.tune import DEFAULT_SPACE, tune
    from conveyor.models.boosting import BoostingParams
    from conveyor.models.cluster import ClusterSpec
    from conveyor.models.training import TrainingParams
    from conveyor.models.tuning import TuningMetric

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
        dataset=dataset,
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
    show(result.model_dump(), as_json, "\n".join(lines))


def edge_run(
    bundle: Annotated[Path, typer.Argument(help="An edge bundle: its folder or its .tar.gz.")],
    input_file: Annotated[Path, typer.Option("--input", help="Raw rows: a parquet or CSV file.")],
    out: Annotated[Path | None, typer.Option(help="Write the probabilities here (parquet).")] = None,
    expect_sha256: Annotated[
        str | None,
        typer.Option(help="The tarball's SHA-256 the registry recorded (its version's manifest.json, edge.<target>)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Verify an edge bundle (signature, files) and score raw rows with it; rows it cannot score are refused."""
    import re

    import pandas as pd

    from conveyor.export.edge import REFUSED_COLUMN, open_bundle, run_bundle
    from conveyor.io.files import write_atomically

    if expect_sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", expect_sha256):
        raise CommandError(f"--expect-sha256 must be 64 hex digits; got {expect_sha256!r}.")
    frame = pd.read_csv(input_file) if input_file.suffix == ".csv" else pd.read_parquet(input_file)
    with open_bundle(bundle, expect_sha256=expect_sha256) as opened:
        scoring = run_bundle(opened, frame)
        manifest = opened.manifest
    if out:
        scored = pd.DataFrame({manifest["output"]["name"]: scoring.probabilities, REFUSED_COLUMN: scoring.refused})
        write_atomically(out, lambda tmp: scored.to_parquet(tmp, index=False))
    refusals = scoring.refusals()
    summary = {
        "model": f"{manifest['model_name']} v{manifest['model_version']}",
        "target": manifest["target"]["name"],
        "rows": len(frame),
        "scored": int(scoring.scored.sum()),
        "predicted_positive": int((scoring.probabilities[scoring.scored] >= manifest["decision_threshold"]).sum()),
        "refused": refusals,
        "out": str(out) if out else None,
    }
    refused = sum(refusals.values())
    text = (
        f"{summary['model']} on {summary['target']}: {summary['scored']} rows scored, "
        f"{summary['predicted_positive']} predicted {manifest['encoding']['label']} = 1"
        + (f"; {refused} rows refused: " + ", ".join(f"{r} ({n})" for r, n in refusals.items()) if refused else "")
        + (f"; probabilities in {out}" if out else "")
    )
    show(summary, as_json, text)

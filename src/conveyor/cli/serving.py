"""`conveyor serve`: a model's production version over HTTP, following the registry, until stopped."""

from __future__ import annotations

from typing import Annotated

import typer

from conveyor.cli.console import CommandError, DatasetOption, settings


def serve(
    model: Annotated[
        str | None, typer.Option(help="Registry name of the model; default: the model of the dataset (--dataset).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind; default: CONVEYOR_SERVING_HOST.")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port to listen on; default: CONVEYOR_SERVING_PORT.")
    ] = None,
    dataset: DatasetOption = None,
) -> None:
    """Serve a model's production version (and a canary beside it) over HTTP until stopped; one worker process."""
    from conveyor.blocks import ConveyorStores
    from conveyor.registry.storage import ModelStore
    from conveyor.registry.store import version_dirs
    from conveyor.schema.catalog import find_spec
    from conveyor.serving import run as serving
    from conveyor.serving.server import ModelServer

    current = settings().serving
    name = model or find_spec(dataset).model_name
    try:
        listening = serving.bound_socket(host or current.serving_host, port or current.serving_port)
    except serving.ServingError as error:  # before anything talks to Prefect: a taken port is one sentence, at once
        raise CommandError(str(error)) from None
    store = ModelStore.of(ConveyorStores.resolve())  # a folder, or a bucket read through verified local copies
    if not version_dirs(store, name):
        listening.close()
        raise CommandError(f"No model named {name} is registered in {store}; nothing to serve.")
    serving.serve(ModelServer(store, name, current), listening)

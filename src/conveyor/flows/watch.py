"""The landing-zone watcher: poll the landing folder (or an fsspec URL), announce each complete new partition.

`conveyor up` starts it as a process (``python -m conveyor.flows.watch``, pid file ``watcher.pid``); `conveyor down`
stops it with SIGTERM, which it honours between polls. Polls that find nothing new make no flow run, so an
idle watcher costs a directory listing per poll and nothing on the Prefect server.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Annotated

from pydantic import Field

from conveyor.settings import configure_prefect_env

SETTINGS = configure_prefect_env()
_LOG = logging.getLogger("conveyor.watcher")

from prefect import flow, get_run_logger  # noqa: E402

from conveyor.blocks import ConveyorStores  # noqa: E402
from conveyor.data.landing import (  # noqa: E402
    FileSignature,
    LandedPartition,
    WatcherState,
    announce_partition,
    complete_partitions,
    scan_landing,
)
from conveyor.schema.catalog import find_spec, known_specs  # noqa: E402


@flow(name="announce-landed-partitions")
def announce_landed_partitions(
    partitions: Annotated[
        dict[str, FileSignature], Field(description="Complete partitions by URL, with the size and version seen.")
    ],
    datasets: Annotated[dict[str, str], Field(description="The dataset of each partition, by URL.")],
) -> list[LandedPartition]:
    """Emit conveyor.data.landed for each complete new partition the watcher found."""
    landed = [announce_partition(url, signature, datasets[url]) for url, signature in partitions.items()]
    for partition in landed:
        get_run_logger().info("Announced %s (sha256 %s)", partition.url, partition.sha256[:12])
    return landed


def _scan_every_dataset(url: str) -> tuple[dict[str, FileSignature], dict[str, str]]:
    """Partitions of every known dataset (specs are read afresh each poll: a new one is watched at once)."""
    current: dict[str, FileSignature] = {}
    datasets: dict[str, str] = {}
    for spec in map(find_spec, known_specs()):
        for found, signature in scan_landing(url, spec.partition_glob).items():
            current[found], datasets[found] = signature, spec.name
    return current, datasets


def watch(stop: threading.Event, max_polls: int | None = None) -> None:
    """Poll until stopped: a file counts as complete once two polls in a row see the same size and version."""
    url = SETTINGS.watcher.watch_url or ConveyorStores.resolve().landing_dir
    state = WatcherState.load(SETTINGS.watcher_state_file)
    previous: dict[str, FileSignature] = {}
    polls = 0
    while not stop.is_set() and (max_polls is None or polls < max_polls):
        try:
            current, datasets = _scan_every_dataset(url)
            if ready := complete_partitions(previous, current, state):
                for landed in announce_landed_partitions({u: current[u] for u in ready}, datasets):
                    state.announced[landed.url] = landed
                state.save(SETTINGS.watcher_state_file)  # after the events left: a crash re-announces, never skips
        except Exception as error:  # an unreachable store or API must not end the watcher; the next poll retries
            _LOG.warning("Poll of %s failed, retrying: %s", url, error)
            current = {}
        previous = current
        polls += 1
        stop.wait(SETTINGS.watcher.watch_poll_seconds)


def main() -> None:
    """Process entry point: watch until SIGTERM or SIGINT."""
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    watch(stop)


if __name__ == "__main__":
    main()

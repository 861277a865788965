"""The test session's environment, set before anything imports prefect; fixtures live in tests/fixtures/.

Prefect reads its settings when first imported, so the whole session's environment is set here, before any test
module imports prefect: a private state folder and a free port.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

_STATE_DIR = Path(tempfile.mkdtemp(prefix="conveyor-tests-"))


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


for _name in [n for n in os.environ if n.startswith("CONVEYOR_")]:
    del os.environ[_name]
os.environ["CONVEYOR_STATE_DIR"] = str(_STATE_DIR)
os.environ["CONVEYOR_SERVER_PORT"] = str(free_port())

pytest_plugins = [
    "tests.fixtures.server",
    "tests.fixtures.object_store",
    "tests.fixtures.data",
    "tests.fixtures.models",
    "tests.fixtures.corpus",
]

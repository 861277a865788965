"""Installed from a wheel, away from the checkout, Conveyor works: its CLI, its data contract and its deployments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel and installed (without dependencies: this environment has them) into a folder."""
    wheels = tmp_path_factory.mktemp("wheels")
    target = tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(PROJECT)], check=True, timeout=300)
    (wheel,) = wheels.glob("conveyor-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, timeout=300)
    return target


def _run(installed: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run Python with the installed package first on the path, in a folder that is not the checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    # Its own state folder, and a port where no server answers: nothing of the test session's stack is used.
    env |= {
        "PYTHONPATH": str(installed),
        "CONVEYOR_STATE_DIR": str(cwd / "state"),
        "CONVEYOR_SERVER_PORT": str(free_port()),
    }
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_the_package_imports_from_the_install_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    done = _run(installed, tmp_path, "-c", "import conveyor; print(conveyor.__file__)")
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(installed)


def test_the_command_line_generates_and_validates_a_partition(installed: Path, tmp_path: Path) -> None:
    assert "generate" in _run(installed, tmp_path, "-m", "conveyor", "--help").stdout
    generated = _run(installed, tmp_path, "-m", "conveyor", "generate", "--rows", "2000", "--out", str(tmp_path))
    assert generated.returncode == 0, generated.stderr
    (partition,) = tmp_path.glob("telemetry-*.parquet")
    # The Great Expectations suite is package data: validation needs it from the wheel.
    checked = _run(installed, tmp_path, "-m", "conveyor", "validate", str(partition))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "is valid" in checked.stdout


def test_every_deployment_finds_its_flow_by_module_path(installed: Path, tmp_path: Path) -> None:
    deployments = yaml.safe_load((PROJECT / "deployments" / "prefect.yaml").read_text())["deployments"]
    entrypoints = sorted({d["entrypoint"] for d in deployments})
    assert all(":" not in e for e in entrypoints), "entrypoints are module paths, not files in the checkout"
    probe = (
        "import sys; from prefect.flows import load_flow_from_entrypoint; "
        "print(' '.join(load_flow_from_entrypoint(e).name for e in sys.argv[1:]))"
    )
    loaded = _run(installed, tmp_path, "-c", probe, *entrypoints)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == [e.rsplit(".", 1)[1].replace("_", "-") for e in entrypoints]

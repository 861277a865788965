"""Dataset specs by name: the built-in telemetry spec, and every ``<name>.yaml`` in the configured specs folder."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from conveyor.schema.spec import DatasetSpec, SpecError, load_spec
from conveyor.settings import get_settings

BUILT_IN = Path(__file__).parent / "datasets"


def _folders() -> list[Path]:
    configured = get_settings().datasets.datasets_dir
    return [configured, BUILT_IN] if configured else [BUILT_IN]


@cache
def _load(path: Path, mtime_ns: int) -> DatasetSpec:
    spec = load_spec(path)
    if spec.name != path.stem:
        raise SpecError(f"Dataset spec {path} names itself {spec.name!r}; name the file {spec.name}.yaml.")
    return spec


def find_spec(name: str | None = None) -> DatasetSpec:
    """The spec of that name (default: CONVEYOR_DATASET); a user's folder comes before the built-in specs."""
    name = name or get_settings().datasets.dataset
    for folder in _folders():
        path = folder / f"{name}.yaml"
        if path.is_file():
            return _load(path, path.stat().st_mtime_ns)
    raise SpecError(f"No dataset spec is named {name!r}; known: {', '.join(known_specs()) or 'none'}.")


def known_specs() -> list[str]:
    """Names of every spec that can be found, the user's and the built-in ones."""
    return sorted({path.stem for folder in _folders() if folder.is_dir() for path in folder.glob("*.yaml")})

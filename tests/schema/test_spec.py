"""A dataset spec is the one description of the data: read once, checked whole, refused in one sentence."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conveyor.schema.catalog import BUILT_IN, find_spec, known_specs
from conveyor.schema.spec import DatasetSpec, SpecError, load_spec
from conveyor.schema.telemetry import TELEMETRY
from conveyor.validation.contract import pandas_schema
from conveyor.validation.expectations import suite
from tests.fixtures.cli import run_cli

TELEMETRY_YAML = yaml.safe_load((BUILT_IN / "telemetry.yaml").read_text())


def _write(tmp_path: Path, changes: dict[str, object], name: str = "telemetry") -> Path:
    spec = {**TELEMETRY_YAML, **changes}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _with_column(name: str, **fields: object) -> dict[str, object]:
    columns = dict(TELEMETRY_YAML["columns"])
    columns[name] = {**columns[name], **fields}
    return {"columns": columns}


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"features": {**TELEMETRY_YAML["features"], "numeric": ["age_days", "failure_within_7d"]}}, "label"),
        (_with_column("temperature", min=200, max=100), "columns.temperature: min 200 is above max 100"),
        ({"unique": ["machine_id", "reading_no"]}, "unique: column 'reading_no'"),
        ({"entity": "fleet"}, "entity: column 'fleet'"),
        (
            {"features": {**TELEMETRY_YAML["features"], "categorical": [{"column": "machine_model"}]}},
            "features.categorical.0.vocabulary",
        ),
        (_with_column("failure_within_7d", allowed=[0, 1, 2]), "label"),
        (_with_column("machine_id", min=0), "columns.machine_id: min and max apply to numbers"),
        (_with_column("machine_id", pattern="(["), "is not a regular expression"),
        ({"event_time": "machine_model"}, "event_time: 'machine_model' is not a datetime column"),
        ({"colour": "blue"}, "colour"),
    ],
    ids=[
        "label is a feature",
        "min above max",
        "key column missing",
        "entity missing",
        "categorical without vocabulary",
        "label not binary",
        "range on a string",
        "broken regex",
        "event time not a datetime",
        "unknown field",
    ],
)
def test_a_spec_that_contradicts_itself_is_refused_in_one_sentence_naming_the_field(
    tmp_path: Path, changes: dict[str, object], named: str
) -> None:
    with pytest.raises(SpecError) as refused:
        load_spec(_write(tmp_path, changes))
    message = str(refused.value)
    assert named in message
    assert message.count("\n") == 0 and message.endswith(".")


def test_an_unreadable_spec_file_is_one_sentence(tmp_path: Path) -> None:
    broken = tmp_path / "telemetry.yaml"
    broken.write_text("name: [unclosed")
    with pytest.raises(SpecError, match=r"cannot be read"):
        load_spec(broken)


def test_the_built_in_telemetry_spec_is_the_default_dataset() -> None:
    assert find_spec() == TELEMETRY
    assert "telemetry" in known_specs()
    assert TELEMETRY.model_name == "failure-predictor"
    assert TELEMETRY.partition_name(__import__("datetime").date(2026, 1, 2)) == "telemetry-2026-01-02.parquet"


def test_a_users_folder_adds_specs_and_a_misnamed_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_DATASETS_DIR", str(tmp_path))
    _write(tmp_path, {"name": "pumps", "partition_prefix": "pumps-"}, name="pumps")
    assert find_spec("pumps").partition_glob == "pumps-*.parquet"
    assert "pumps" in known_specs()
    _write(tmp_path, {"name": "valves"}, name="other")
    with pytest.raises(SpecError, match=r"names itself 'valves'; name the file valves.yaml"):
        find_spec("other")
    with pytest.raises(SpecError, match=r"No dataset spec is named 'nothing'; known: .*telemetry"):
        find_spec("nothing")


def test_both_engines_are_generated_from_the_spec_alone() -> None:
    narrower = TELEMETRY.model_copy(
        update={"columns": {**TELEMETRY.columns, "rpm": TELEMETRY.columns["rpm"].model_copy(update={"max": 5000})}}
    )
    DatasetSpec.model_validate(narrower.model_dump())  # still consistent
    rpm_checks = {c.name: c.statistics for c in pandas_schema(narrower).columns["rpm"].checks}
    assert rpm_checks["less_than_or_equal_to"]["max_value"] == 5000
    ranges = [
        e for e in suite(narrower)["expectations"] if e["kwargs"].get("column") == "rpm" and "max_value" in e["kwargs"]
    ]
    assert ranges[0]["kwargs"]["max_value"] == 5000


def test_the_cli_names_an_unknown_dataset_in_one_sentence(landed_partition: Path) -> None:
    result = run_cli("validate", "--dataset", "nothing", str(landed_partition))
    assert result.returncode != 0
    assert "No dataset spec is named 'nothing'" in result.stderr
    assert "Traceback" not in result.stderr

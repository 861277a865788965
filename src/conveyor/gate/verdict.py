"""The gate's verdict: every check with its numbers, kept as gate.json with the version and shown as artifacts."""

from __future__ import annotations

import datetime as dt
import hashlib

from pydantic import BaseModel, Field

from conveyor.gate.checks import GateCheck
from conveyor.gate.scoring import Latency
from conveyor.gate.statistics import Comparison, MetricComparison
from conveyor.registry.storage import ModelStore

VERDICT_FILE = "gate.json"
# Every verdict also lies here by its hash, so the hash an audit line records always finds its evidence.
EVIDENCE_FOLDER = "evidence"


class GateVerdict(BaseModel):
    """What the gate decided for one challenger against one champion, and on what evidence."""

    model: str
    challenger: int
    champion: int | None = Field(description="The production version compared with; empty: there was none.")
    target: str = Field(description="The alias the challenger would move to.")
    decided_at: dt.datetime
    checks: list[GateCheck]
    comparison: Comparison
    latency: dict[str, Latency] = Field(description="By role: challenger, and champion when there is one.")
    rows: int = Field(description="Held-out rows both versions were scored on.")
    families: dict[str, str] = Field(description="By role: the model family (torch, xgboost) of each version.")

    @property
    def passed(self) -> bool:
        """Every check passed."""
        return all(check.passed for check in self.checks)

    @property
    def failed_checks(self) -> list[str]:
        """The names of the checks that failed."""
        return [check.name for check in self.checks if not check.passed]


def keep_verdict(store: ModelStore, verdict: GateVerdict) -> str:
    """Write the verdict as the version's gate.json and as evidence by its SHA-256; returns the hash."""
    text = verdict.model_dump_json(indent=2).encode()
    digest = hashlib.sha256(text).hexdigest()
    store.create(f"{verdict.model}/{EVIDENCE_FOLDER}/{digest}.json", text)  # named by its bytes: kept once
    store.write(f"{verdict.model}/v{verdict.challenger}/{VERDICT_FILE}", text)
    return digest


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _metric_row(label: str, result: MetricComparison | None) -> str:
    if result is None:
        return f"| {label} | - | - | - | not computable |"
    gain = result.improvement
    champion = result.champion.value if result.champion else None
    interval = f"[{_number(gain.lower)}, {_number(gain.upper)}]" if gain else "-"
    return (
        f"| {label} | {_number(champion)} | {_number(result.challenger.value)} | "
        f"{_number(gain.value if gain else None)} | {interval} |"
    )


def verdict_markdown(verdict: GateVerdict, evidence_sha256: str) -> str:
    """The verdict for people: checks, the paired comparison with intervals, slices and latency."""
    outcome = "passed" if verdict.passed else f"refused ({', '.join(verdict.failed_checks)})"
    families = verdict.families
    against = (
        f"production v{verdict.champion} ({families.get('champion')})"
        if verdict.champion
        else "no champion (first version)"
    )
    checks = "\n".join(f"| {c.name} | {'pass' if c.passed else '**FAIL**'} | {c.summary} |" for c in verdict.checks)
    metrics = "\n".join(_metric_row(metric, result) for metric, result in verdict.comparison.overall.metrics.items())
    slices = "\n".join(
        _metric_row(f"{value}: {metric}", result)
        for value, group in verdict.comparison.slices.items()
        for metric, result in group.metrics.items()
        if metric == "roc_auc"
    )
    latency = "\n".join(
        f"| {role} | {t.p50_ms_batch_1:.3f} | {t.p99_ms_batch_1:.3f} | {t.rows_per_s_batch_256:,.0f} |"
        for role, t in verdict.latency.items()
    )
    return (
        f"# Gate: {verdict.model} v{verdict.challenger} ({families['challenger']}) → {verdict.target}: {outcome}\n\n"
        f"Compared with {against} on {verdict.rows:,} held-out rows of the challenger's snapshot, both scored by "
        f"ONNX Runtime from their registered files. Evidence `{evidence_sha256}`.\n\n"
        f"| check | result | why |\n|---|---|---|\n{checks}\n\n"
        f"## Metrics (improvement: positive is better; interval: paired bootstrap over entities)\n\n"
        f"| metric | champion | challenger | improvement | 95 % interval |\n|---|---|---|---|---|\n{metrics}\n\n"
        + (
            f"## Slices\n\n| slice: metric | champion | challenger | improvement | 95 % interval |\n"
            f"|---|---|---|---|---|\n{slices}\n\n"
            if slices
            else ""
        )
        + f"## Latency (ONNX Runtime)\n\n| version | p50 ms (batch 1) | p99 ms (batch 1) | rows/s (batch 256) |\n"
        f"|---|---|---|---|\n{latency}\n"
    )

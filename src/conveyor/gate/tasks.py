"""The gate's steps as Prefect tasks: find the contest, gather evidence, judge, keep the verdict, move or refuse."""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel, Field

from conveyor.cache import uncached_task
from conveyor.data.snapshots import Snapshot
from conveyor.events import emit_model_rejected
from conveyor.gate.checks import (
    check_comparison,
    check_floors,
    check_known_inputs,
    check_latency,
    check_parity_evidence,
    check_slices,
)
from conveyor.gate.policy import GatePolicy
from conveyor.gate.scoring import held_out_rows, known_input_error, measure_latency, paired_scores
from conveyor.gate.statistics import compare_models
from conveyor.gate.verdict import GateVerdict, keep_verdict, verdict_markdown
from conveyor.registry.aliases import AliasError, AliasMove, check_alias_name, move_alias, read_aliases
from conveyor.registry.storage import ModelStore
from conveyor.registry.store import RegisteredVersion, read_manifest, verify_version, version_dirs
from conveyor.schema.spec import DatasetSpec

CHAMPION_ALIAS = "production"


class GateRejectedError(RuntimeError):
    """The challenger failed the gate; the message names the failed checks, and no alias moved."""


class Contest(BaseModel):
    """A challenger, the champion it is compared with, and the alias it would move."""

    challenger: RegisteredVersion
    champion: RegisteredVersion | None
    target: str
    expected: int | None = Field(description="The version the target alias names now: the move's compare-and-swap.")
    manifest: dict[str, Any] = Field(description="The challenger's manifest (parity evidence, params, dataset).")

    @property
    def holdout_fraction(self) -> float:
        """The share of entities the challenger's training held out."""
        return float(self.manifest["params"]["holdout_fraction"])


@uncached_task("Find challenger and champion", why="reads the registry's current aliases")
def find_contest(model_store: ModelStore, name: str, version: int, target: str) -> Contest:
    """The challenger (its files verified), production's version as champion, and what the target names now."""
    check_alias_name(target)
    if target == CHAMPION_ALIAS:
        raise AliasError(
            f"{CHAMPION_ALIAS} moves through the deliver flow; the gate promotes to staging or another alias."
        )
    versions = version_dirs(model_store, name)
    if version not in versions:
        known = ", ".join(f"v{n}" for n in versions) or "none"
        raise AliasError(f"{name} has no version {version} (registered: {known}).")
    aliases = read_aliases(model_store, name)
    champion = aliases.get(CHAMPION_ALIAS)
    return Contest(
        challenger=verify_version(model_store, versions[version]),
        champion=verify_version(model_store, versions[champion])
        if champion is not None and champion != version
        else None,
        target=target,
        expected=aliases.get(target),
        manifest=read_manifest(versions[version]),
    )


@uncached_task("Judge challenger against champion", why="measures the evidence the verdict rests on, now")
def judge(contest: Contest, spec: DatasetSpec, snapshot: Snapshot, policy: GatePolicy) -> GateVerdict:
    """Score both versions on the challenger's held-out rows, compare them paired, time them, and run every check."""
    logger = get_run_logger()
    rows = held_out_rows(snapshot, spec, contest.holdout_fraction)
    scores = paired_scores(contest.challenger, contest.champion, rows, spec)
    logger.info("Scored %d held-out rows with ONNX Runtime; bootstrapping %d resamples", len(rows), policy.resamples)
    comparison = compare_models(
        scores.labels,
        scores.challenger,
        scores.champion,
        scores.entities,
        scores.slices,
        resamples=policy.resamples,
        confidence=policy.confidence,
        seed=policy.seed,
    )
    budget = policy.latency
    latency = {"challenger": measure_latency(contest.challenger, rows, budget.threads, budget.calls)}
    if contest.champion:
        latency["champion"] = measure_latency(contest.champion, rows, budget.threads, budget.calls)
    champion = contest.champion.version if contest.champion else None
    challenger_metrics = {m: r.challenger.value if r else None for m, r in comparison.overall.metrics.items()}
    checks = [
        check_floors(challenger_metrics, policy.floors),
        check_comparison(comparison, policy, champion),
        check_slices(comparison, policy, champion),
        check_known_inputs(*known_input_error(contest.challenger), policy.known_inputs_atol),
        check_parity_evidence(contest.manifest),
        check_latency(latency["challenger"], latency.get("champion"), budget),
    ]
    return GateVerdict(
        model=contest.challenger.name,
        challenger=contest.challenger.version,
        champion=champion,
        target=contest.target,
        decided_at=dt.datetime.now(dt.UTC),
        checks=checks,
        comparison=comparison,
        latency=latency,
        rows=len(rows),
        families={"challenger": contest.challenger.family}
        | ({"champion": contest.champion.family} if contest.champion else {}),
    )


@uncached_task("Keep and publish verdict", why="writes the evidence and this run's artifacts")
def publish_verdict(model_store: ModelStore, verdict: GateVerdict) -> str:
    """Keep the verdict with the version (gate.json, and by hash) and show it as markdown and table artifacts."""
    evidence = keep_verdict(model_store, verdict)
    create_markdown_artifact(verdict_markdown(verdict, evidence), key="gate-verdict", description="Promotion gate")
    create_table_artifact(
        [{"check": c.name, "passed": c.passed, "why": c.summary} for c in verdict.checks],
        key="gate-checks",
        description=f"{verdict.model} v{verdict.challenger} → {verdict.target}",
    )
    return evidence


@uncached_task("Move alias or refuse", why="moves the registry's alias now")
def act_on_verdict(model_store: ModelStore, contest: Contest, verdict: GateVerdict, evidence: str) -> AliasMove | None:
    """Pass: move the target alias to the challenger (CAS on what it named when the gate began). Fail: refuse."""
    name, version = verdict.model, verdict.challenger
    if not verdict.passed:
        emit_model_rejected(name, version, verdict.target, verdict.failed_checks, evidence)
        failed = "; ".join(f"{c.name}: {c.summary}" for c in verdict.checks if not c.passed)
        raise GateRejectedError(
            f"{name} v{version} did not pass the gate to {verdict.target} ({failed}); nothing moved."
        )
    against = f"v{verdict.champion}" if verdict.champion else "no champion"
    move = move_alias(
        model_store,
        name,
        verdict.target,
        version,
        contest.expected,
        via="promote",
        reason=f"passed the gate against {against}",
        evidence_sha256=evidence,
    )
    get_run_logger().info("%s@%s now names v%d", name, verdict.target, version)
    return move

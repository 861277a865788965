"""`conveyor registry`: versions and their aliases, promotion, rollback, the audit log, and diffs of two versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.cli.console import CommandError, JsonFlag, show

if TYPE_CHECKING:
    from conveyor.registry.storage import ModelStore

registry_app = typer.Typer(help="Model versions, aliases (dev, staging, production), promotion and audit.")
Reference = Annotated[str, typer.Argument(help="NAME (newest version), NAME@ALIAS or NAME:VERSION.")]
ModelName = Annotated[str, typer.Argument(help="Registry name of the model, e.g. failure-predictor.")]


def _model_store() -> ModelStore:
    from conveyor.blocks import ConveyorStores
    from conveyor.registry.storage import ModelStore

    return ModelStore.of(ConveyorStores.resolve())


def _aliases_by_version(model_store: ModelStore, name: str) -> dict[int, list[str]]:
    from conveyor.registry.aliases import read_aliases

    named: dict[int, list[str]] = {}
    for alias, version in read_aliases(model_store, name).items():
        named.setdefault(version, []).append(alias)
    return named


@registry_app.command("ls")
def registry_ls(
    name: Annotated[str | None, typer.Argument(help="One model; empty: every model.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List versions with the aliases that name them, their ROC AUC and data hash; damaged versions are named."""
    from conveyor.registry.store import read_versions

    store = _model_store()
    versions, damaged = read_versions(store, name)
    if name and not versions and not damaged:
        raise CommandError(f"No model named {name} is registered in {store}.")
    aliases = {n: _aliases_by_version(store, n) for n in {v.name for v in versions}}
    listed = [{**v.model_dump(), "aliases": aliases[v.name].get(v.version, [])} for v in versions]
    lines = [
        f"{v['name']} v{v['version']}  {'[' + ', '.join(v['aliases']) + ']' if v['aliases'] else '':<28}"
        f"ROC AUC {v['metrics']['roc_auc']:.3f}  data {v['data_sha256'][:12]}"
        for v in listed
    ] + [f"DAMAGED  {problem}" for problem in damaged.values()]
    damaged_rows = [{"path": path, "damaged": why} for path, why in damaged.items()]
    show(listed + damaged_rows, as_json, "\n".join(lines) or "No model version is registered yet.")


@registry_app.command("show")
def registry_show(reference: Reference, as_json: JsonFlag = False) -> None:
    """One version: its manifest (data, params, metrics, ONNX, files) verified by hash, its aliases and last gate."""
    from conveyor.gate.verdict import VERDICT_FILE
    from conveyor.registry.aliases import resolve_reference
    from conveyor.registry.store import read_manifest

    store = _model_store()
    version = resolve_reference(store, reference)
    manifest = read_manifest(Path(version.path))
    verdict = store.read(f"{version.name}/v{version.version}/{VERDICT_FILE}")
    gate = json.loads(verdict[0]) if verdict else None
    aliases = _aliases_by_version(store, version.name).get(version.version, [])
    shown = {**manifest, "aliases": aliases, "path": version.path, "gate": gate}
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in version.metrics.items() if isinstance(v, float))
    gate_line = (
        f"last gate: to {gate['target']} against {'v' + str(gate['champion']) if gate['champion'] else 'no champion'}, "
        + ("passed" if all(c["passed"] for c in gate["checks"]) else "refused")
        if gate
        else "never gated"
    )
    text = "\n".join(
        [
            f"{version.name} v{version.version}  aliases: {', '.join(aliases) or 'none'}  (every file verified)",
            f"data      {version.data_sha256}",
            f"onnx      {manifest['onnx']['sha256']}  opset {manifest['onnx']['opset']}",
            f"metrics   {metrics}",
            f"run       {version.flow_run_id}",
            f"{gate_line}",
            f"folder    {version.path}",
        ]
    )
    show(shown, as_json, text)


@registry_app.command("promote")
def registry_promote(
    name: ModelName,
    version: Annotated[int, typer.Argument(min=1, help="The version to point the alias at.")],
    to: Annotated[str, typer.Option("--to", help="The alias: dev, staging, production, or your own.")],
    expect: Annotated[
        str | None,
        typer.Option(help="The version the alias must name now (compare-and-swap), or 'none'; default: as read now."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Move a protected alias (staging, production) outside its flow.")] = False,
    reason: Annotated[str, typer.Option(help="Why; required with --force, recorded in the audit log.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Point an alias at a version; staging and production move only through their flows unless forced."""
    from conveyor.registry.aliases import check_alias_name, move_alias, read_aliases

    store = _model_store()
    check_alias_name(to)
    if expect is None:
        expected = read_aliases(store, name).get(to)
    elif expect == "none":
        expected = None
    elif expect.removeprefix("v").isdigit():
        expected = int(expect.removeprefix("v"))
    else:
        raise CommandError(f"--expect takes a version number or 'none'; got {expect!r}.")
    move = move_alias(
        store,
        name,
        to,
        version,
        expected,
        via="force" if force else "user",
        reason=reason or ("" if force else "promoted by hand"),  # a forced move states its own reason
        forced=force,
    )
    if move is None:
        show({"moved": False, "alias": to, "version": version}, as_json, f"{name}@{to} already names v{version}.")
        return
    was = f"v{move.from_version}" if move.from_version is not None else "nothing"
    forced = " (forced)" if force else ""
    show(
        move.model_dump(mode="json"),
        as_json,
        f"{name}@{to}: {was} → v{version}{forced}, logged as move {move.sequence}.",
    )


@registry_app.command("rollback")
def registry_rollback(
    name: ModelName,
    alias: Annotated[str, typer.Option("--alias", help="The alias to point back at its previous version.")],
    reason: Annotated[str, typer.Option(help="Why, recorded in the audit log.")] = "rolled back by hand",
    as_json: JsonFlag = False,
) -> None:
    """Point an alias back at the version it named before its last move; audited, effective at once."""
    from conveyor.registry.aliases import rollback_alias

    move = rollback_alias(_model_store(), name, alias, reason)
    text = f"{name}@{alias}: v{move.from_version} → v{move.to_version} (rolled back), logged as move {move.sequence}."
    show(move.model_dump(mode="json"), as_json, text)


@registry_app.command("audit")
def registry_audit(name: ModelName, as_json: JsonFlag = False) -> None:
    """Every alias move of a model, oldest first: when, which alias, from and to, by whom, why, forced or not."""
    from conveyor.registry.aliases import read_audit
    from conveyor.registry.store import version_dirs

    store = _model_store()
    if not version_dirs(store, name):
        raise CommandError(f"No model named {name} is registered in {store}.")
    moves = read_audit(store, name)
    lines = [
        f"{m.sequence:>4}  {m.at:%Y-%m-%d %H:%M:%S}  {m.alias:<11} "
        f"{'v' + str(m.from_version) if m.from_version is not None else '-':>4} → v{m.to_version:<4} "
        f"{m.kind}{' FORCED' if m.forced else ''}  by {m.by} via {m.via}: {m.reason}"
        for m in moves
    ]
    show([m.model_dump(mode="json") for m in moves], as_json, "\n".join(lines) or f"No alias of {name} has moved yet.")


def _flat(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {
            k: v for key, item in value.items() for k, v in _flat(f"{prefix}.{key}" if prefix else key, item).items()
        }
    return {prefix: value}


@registry_app.command("diff")
def registry_diff(first: Reference, second: Reference, as_json: JsonFlag = False) -> None:
    """Two versions side by side: metrics, data hash, params, family, ONNX and files; only what differs."""
    from conveyor.registry.aliases import resolve_reference
    from conveyor.registry.store import read_manifest

    store = _model_store()
    left, right = (resolve_reference(store, reference) for reference in (first, second))
    sections = ("family", "dataset", "data", "params", "metrics", "onnx", "files")
    manifests = [read_manifest(Path(v.path)) for v in (left, right)]
    flat = [_flat("", {key: m.get(key) for key in sections}) for m in manifests]
    rows: list[dict[str, Any]] = [
        {"field": key, "first": flat[0].get(key), "second": flat[1].get(key)}
        for key in sorted(set(flat[0]) | set(flat[1]))
        if flat[0].get(key) != flat[1].get(key)
    ]
    width = max((len(str(r["field"])) for r in rows), default=5)
    header = f"{'field':<{width}}  {left.name} v{left.version}  |  {right.name} v{right.version}"
    lines = [header] + [f"{r['field']:<{width}}  {r['first']}  |  {r['second']}" for r in rows]
    show(rows, as_json, "\n".join(lines) if rows else "The two versions record the same data, params and metrics.")

"""MkDocs hook: generated reference pages, so they cannot drift from the code.

A page asks for a generated section with an HTML comment on a line of its own:

- ``<!-- settings-reference -->``: every setting of ``conveyor.settings.ConveyorSettings``, with its environment
  variable, type, default and description; nested groups (pydantic models) become sections;
- ``<!-- cli-reference -->``: every command of the ``conveyor`` Typer app (``conveyor.cli.app``), with its usage,
  help, arguments and options, read from the click objects Typer builds;
- ``<!-- events-reference -->``: the event vocabulary, the docstring of ``conveyor.events`` (read, not imported).

Anywhere in a page, ``{{ env("stores.landing_dir") }}`` becomes the environment variable of that setting (its path
in the settings model, groups first), e.g. ``CONVEYOR_STORES__LANDING_DIR``; a path the model does not have fails
the build, so prose cannot name a variable that no longer exists.

The code is imported lazily, on the first page that needs it, from ``src/`` beside ``mkdocs.yml`` (or wherever
``conveyor`` is installed). If it cannot be imported the build fails: a reference page is never left stale or empty.
"""

from __future__ import annotations

import ast
import contextlib
import enum
import importlib
import importlib.util
import os
import re
import sys
import tempfile
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SETTINGS_MARKER = "<!-- settings-reference -->"
CLI_MARKER = "<!-- cli-reference -->"
EVENTS_MARKER = "<!-- events-reference -->"
ENV_PATTERN = re.compile(r"""\{\{\s*env\(\s*["']([A-Za-z0-9_.]+)["']\s*\)\s*\}\}""")

SETTINGS_MODULE, SETTINGS_CLASS = "conveyor.settings", "ConveyorSettings"
CLI_MODULE, CLI_OBJECT = "conveyor.cli", "app"
EVENTS_MODULE = "conveyor.events"
CLI_NAME = "conveyor"

_repo_root: Path | None = None  # where mkdocs.yml is
_project_dir: Path | None = None  # the settings module's PROJECT_DIR: defaults under it are shown as <checkout>


class GeneratedReferenceError(RuntimeError):
    """The code a generated reference is read from could not be loaded."""


# --------------------------------------------------------------------------------------------------- mkdocs events


def on_config(config: Any) -> Any:
    """Make ``src/`` importable, so a plain checkout builds its docs without installing the package."""
    global _repo_root
    _repo_root = Path(config.config_file_path).resolve().parent
    src = _repo_root / "src"
    if src.is_dir() and str(src) not in sys.path:
        sys.path.insert(0, str(src))
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace each marker that stands on a line of its own with the reference it names."""
    for marker, render in (
        (SETTINGS_MARKER, settings_reference),
        (CLI_MARKER, cli_reference),
        (EVENTS_MARKER, events_reference),
    ):
        pattern = re.compile(rf"^[ \t]*{re.escape(marker)}[ \t]*$", re.MULTILINE)
        if pattern.search(markdown):
            text = render()
            markdown = pattern.sub(lambda _match, text=text: text, markdown)
    return ENV_PATTERN.sub(lambda match: env_variable(match.group(1), page.file.src_uri), markdown)


# --------------------------------------------------------------------------------------------------- importing


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    """Import code that configures its process (the CLI points Prefect at Conveyor's state) without side effects.

    The state folder goes to a temporary directory and the environment is restored afterwards, so building the
    docs creates nothing in the checkout and leaves no PREFECT_* variables behind.
    """
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="conveyor-docs-") as state:
        os.environ["CONVEYOR_STATE_DIR"] = state
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)


def _load(module: str, name: str) -> Any:
    try:
        with _quiet_import():
            return getattr(importlib.import_module(module), name)
    except Exception as error:  # any failure must stop the build, with the reason
        raise GeneratedReferenceError(
            f"docs/hooks/reference.py: cannot import {module}.{name} ({type(error).__name__}: {error}). "
            "The generated reference pages need the conveyor package and its dependencies: build the docs "
            "with the project's environment (.venv/bin/python -m mkdocs build --strict)."
        ) from error


# --------------------------------------------------------------------------------------------------- settings


def _cell(text: str) -> str:
    """Text safe in a markdown table cell: one line; outside code spans, pipes escaped and ``<>`` as entities."""
    parts = " ".join(str(text).split()).split("`")
    return "`".join(part if i % 2 else _escape(part).replace("|", "\\|") for i, part in enumerate(parts))


def _escape(text: str) -> str:
    """Plain text that markdown must not read as HTML (``<state dir>`` is not a tag)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _type_name(annotation: Any) -> str:
    """A readable type: ``Path | None``, ``list[str]``, ``Literal['a', 'b']``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(repr(a.value if isinstance(a, enum.Enum) else a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(_type_name(a) for a in args)}]" if args else name
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _shown_path(value: str) -> str:
    """Defaults anchored to the checkout are shown as ``<checkout>/…``, not as this machine's path."""
    roots = [r for r in (_project_dir, _repo_root) if r is not None]
    for root in roots:
        root_text = str(root)
        if value == root_text:
            return "<checkout>"
        if value.startswith(root_text + os.sep):
            return "<checkout>/" + value[len(root_text) + 1 :]
    return value


def _default_text(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, Path):
        return f"`{_shown_path(str(value))}`"
    if isinstance(value, str):
        return f'`"{_shown_path(value)}"`' if value else '`""`'
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (list, tuple, dict)):
        import json

        return f"`{json.dumps(value, default=str)}`"
    return f"`{value!r}`"


def _field_default(field: Any) -> Any:
    from pydantic_core import PydanticUndefined

    if field.default_factory is not None:
        try:
            return field.default_factory()
        except TypeError:  # factories that take the validated data
            return PydanticUndefined
    return field.default


def _model_class(annotation: Any) -> type | None:
    """The pydantic model a field holds (``Group`` or ``Group | None``), else None."""
    from pydantic import BaseModel

    candidates = [annotation, *typing.get_args(annotation)]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _env_name(field_name: str, field: Any, prefix: str) -> str:
    alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
    return (alias or f"{prefix}{field_name}").upper()


def _group_env(parent_prefix: str, parent_delimiter: str | None, name: str, group: type) -> tuple[str, str | None, str]:
    """How a nested group's settings are read: (variable prefix, nested delimiter, a sentence saying so).

    A group that is itself a ``BaseSettings`` reads its fields from its own ``env_prefix`` (as Prefect's setting groups
    do); a plain model's fields are ``<PREFIX><GROUP><delimiter><NAME>`` when the parent has a nested delimiter; the
    prefix is empty when a field has no variable of its own (only the whole group, as JSON).
    """
    from pydantic_settings import BaseSettings

    whole = f"`{(parent_prefix + name).upper()}`" if parent_prefix else None
    as_json = f" The whole group can also be given as JSON in {whole}." if whole else ""
    if issubclass(group, BaseSettings):
        config = group.model_config
        prefix = config.get("env_prefix", "") or ""
        delimiter = config.get("env_nested_delimiter") or None
        return prefix, delimiter, f"Each setting of this group reads its own variable, below.{as_json}"
    if parent_delimiter and parent_prefix:
        prefix = f"{parent_prefix}{name}{parent_delimiter}"
        return prefix, parent_delimiter, f"Variables `{prefix.upper()}<NAME>`.{as_json}"
    return "", None, f"These settings have no variables of their own.{as_json}"


def _settings_rows(model: type, prefix: str, delimiter: str | None, level: int) -> list[str]:
    from pydantic_core import PydanticUndefined

    rows = [f"| {'Variable' if prefix else 'Key'} | Type | Default | Description |", "|---|---|---|---|"]
    groups: list[str] = []
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        if field.exclude:
            continue
        group = _model_class(field.annotation)
        if group is not None:
            heading = "#" * level + f" {field.title or name.replace('_', ' ').capitalize()}"
            description = field.description or (group.__doc__ or "").strip().split("\n\n")[0]
            sub_prefix, sub_delimiter, how = _group_env(prefix, delimiter, name, group)
            body = _settings_rows(group, sub_prefix, sub_delimiter, level + 1)
            groups.extend(["", heading, "", _cell(description), "", how, "", *body])
            continue
        env = _env_name(name, field, prefix) if prefix else name
        default = _field_default(field)
        shown_default = "required" if default is PydanticUndefined else _default_text(default)
        rows.append(
            f"| `{env}` | {_cell(f'`{_type_name(field.annotation)}`')} | {_cell(shown_default)} "
            f"| {_cell(field.description or '')} |"
        )
    if len(rows) == 2:
        rows = []
    return [*rows, *groups]


def settings_reference() -> str:
    """Every setting, grouped as the settings model nests them."""
    global _project_dir
    settings = _load(SETTINGS_MODULE, SETTINGS_CLASS)
    project_dir = getattr(sys.modules.get(SETTINGS_MODULE), "PROJECT_DIR", None)
    _project_dir = Path(project_dir) if project_dir else None
    config = settings.model_config
    prefix = config.get("env_prefix", "") or ""
    delimiter = config.get("env_nested_delimiter") or None
    lines = [
        f"<!-- generated from {SETTINGS_MODULE}.{SETTINGS_CLASS} by docs/hooks/reference.py -->",
        "",
        f"Environment prefix: `{prefix}`"
        + (f"; nested delimiter: `{delimiter}`" if delimiter else "")
        + f"; names are {'case-sensitive' if config.get('case_sensitive') else 'case-insensitive'}.",
        "",
        *_settings_rows(settings, prefix, delimiter, 3),
        "",
    ]
    return "\n".join(lines)


def env_variable(path: str, where: str = "") -> str:
    """The environment variable of a setting, by its dotted path in the settings model (``stores.landing_dir``)."""
    model: Any = _load(SETTINGS_MODULE, SETTINGS_CLASS)
    prefix = model.model_config.get("env_prefix", "") or ""
    delimiter = model.model_config.get("env_nested_delimiter") or None
    parts = path.split(".")
    for index, part in enumerate(parts):
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            raise GeneratedReferenceError(
                f"docs/{where}: env({path!r}) names no setting of {SETTINGS_MODULE}.{SETTINGS_CLASS} "
                f"({part!r} is not one of {', '.join(fields) or 'no fields'})."
            )
        field = fields[part]
        group = _model_class(field.annotation)
        if index == len(parts) - 1:
            if group is not None:
                raise GeneratedReferenceError(f"docs/{where}: env({path!r}) is a group of settings, not a setting.")
            if not prefix:
                raise GeneratedReferenceError(f"docs/{where}: env({path!r}): this setting has no variable of its own.")
            return _env_name(part, field, prefix)
        if group is None:
            raise GeneratedReferenceError(f"docs/{where}: env({path!r}): {part!r} is not a group of settings.")
        prefix, delimiter, _ = _group_env(prefix, delimiter, part, group)
        model = group
    raise GeneratedReferenceError(f"docs/{where}: env({path!r}) is empty.")


# --------------------------------------------------------------------------------------------------- CLI


# Typer builds click objects, but recent Typer releases vendor their own copy of click: everything below is
# duck-typed on click's attributes instead of isinstance checks against one click module.


def _is_group(command: Any) -> bool:
    return callable(getattr(command, "list_commands", None)) and callable(getattr(command, "get_command", None))


def _context(command: Any, name: str, parent: Any = None) -> Any:
    return command.context_class(command, info_name=name, parent=parent)


def _help_record(param: Any, ctx: Any) -> tuple[str, str]:
    """What ``--help`` prints for a parameter: its names with metavar, and its help with default, range, required."""
    record = param.get_help_record(ctx) if callable(getattr(param, "get_help_record", None)) else None
    if record:
        return str(record[0]), str(record[1] or "")
    names = " / ".join(getattr(param, "opts", None) or [param.name])  # a plain click Argument has no help record
    help_text = getattr(param, "help", None) or ""
    if getattr(param, "required", False):
        help_text = f"{help_text}  [required]".strip()
    return names, help_text


def _command_help(command: Any) -> str:
    text = command.help or command.short_help or ""
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def _subcommands(command: Any, ctx: Any) -> list[tuple[str, Any]]:
    found = []
    for name in command.list_commands(ctx):
        sub = command.get_command(ctx, name)
        if sub is not None and not getattr(sub, "hidden", False):
            found.append((name, sub))
    return found


def _render_command(command: Any, ctx: Any, level: int) -> list[str]:
    lines = ["#" * level + f" `{ctx.command_path}`", ""]
    help_text = _command_help(command)
    if help_text:
        lines += [help_text, ""]
    lines += ["```text", command.get_usage(ctx).strip(), "```", ""]
    params = [
        p
        for p in command.get_params(ctx)
        if not getattr(p, "hidden", False) and "--help" not in (getattr(p, "opts", None) or [])
    ]
    arguments = [p for p in params if p.param_type_name == "argument"]
    options = [p for p in params if p.param_type_name != "argument"]
    for title, group in (("Argument", arguments), ("Option", options)):
        if not group:
            continue
        lines += [f"| {title} | Help |", "|---|---|"]
        for param in group:
            names, help_text = _help_record(param, ctx)
            if getattr(param, "multiple", False) and "repeatable" not in help_text:
                help_text += " (repeatable)"
            lines.append(f"| {_cell(f'`{names}`')} | {_cell(help_text)} |")
        lines.append("")
    if _is_group(command):
        for name, sub in _subcommands(command, ctx):
            lines += _render_command(sub, _context(sub, name, ctx), level + 1)
    return lines


def cli_reference() -> str:
    """Every command of the Typer app, from the click objects it builds."""
    app = _load(CLI_MODULE, CLI_OBJECT)
    if isinstance(app, types.ModuleType):  # conveyor.cli does not re-export the app: take it from conveyor.cli.app
        app = getattr(app, CLI_OBJECT, None)
    import typer.main

    if not isinstance(app, typer.Typer):
        raise GeneratedReferenceError(
            f"docs/hooks/reference.py: {CLI_MODULE}.{CLI_OBJECT} is a {type(app).__name__}, not a typer.Typer."
        )
    root = typer.main.get_command(app)
    ctx = _context(root, CLI_NAME)
    lines = [f"<!-- generated from {CLI_MODULE}.{CLI_OBJECT} by docs/hooks/reference.py -->", ""]
    help_text = _command_help(root)
    if help_text:
        lines += [help_text, ""]
    lines += ["```text", root.get_usage(ctx).strip(), "```", ""]
    if not _is_group(root):
        return "\n".join(lines + _render_command(root, ctx, 3))
    subcommands = _subcommands(root, ctx)
    lines += ["| Command | What it does |", "|---|---|"]
    for name, sub in subcommands:
        summary = sub.get_short_help_str(limit=200) if hasattr(sub, "get_short_help_str") else _command_help(sub)
        lines.append(f"| [`{name}`](#{CLI_NAME}-{name}) | {_cell(summary)} |")
    lines.append("")
    for name, sub in subcommands:
        lines += _render_command(sub, _context(sub, name, ctx), 3)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- events


def events_reference() -> str:
    """The docstring of the events module, read from its source (importing it would import Prefect)."""
    try:
        with _quiet_import():
            spec = importlib.util.find_spec(EVENTS_MODULE)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(f"no module named {EVENTS_MODULE!r}")
        docstring = ast.get_docstring(ast.parse(Path(spec.origin).read_text(encoding="utf-8")))
    except Exception as error:
        raise GeneratedReferenceError(
            f"docs/hooks/reference.py: cannot read the docstring of {EVENTS_MODULE} ({type(error).__name__}: {error})."
        ) from error
    if not docstring:
        raise GeneratedReferenceError(f"docs/hooks/reference.py: {EVENTS_MODULE} has no docstring.")
    return "\n".join(
        [
            f"<!-- generated from the docstring of {EVENTS_MODULE} by docs/hooks/reference.py -->",
            "",
            "```text",
            docstring,
            "```",
            "",
        ]
    )

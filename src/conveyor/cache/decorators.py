"""``@cached_task`` and ``@uncached_task``: Prefect tasks with Conveyor's cache policies, and their output folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from prefect import Task
from prefect.context import TaskRunContext

from conveyor.cache.policy import ContentHash, NotCached, run_key, seal_cache_entry
from conveyor.settings import get_settings

P = ParamSpec("P")
R = TypeVar("R")


def cached_task(name: str, *, ignore: tuple[str, ...] = (), **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]:
    """``@task`` with the content-hash cache policy, verified JSON result records, and the sealing hook."""

    def decorate(function: Callable[P, R]) -> Task[P, R]:
        return Task(
            fn=function,
            name=name,
            cache_policy=ContentHash(ignore=ignore),
            result_serializer="json",
            persist_result=True,
            on_commit=[seal_cache_entry],
            **options,
        )

    return decorate


def uncached_task(name: str, *, why: str, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]:
    """``@task`` that is never cached (it reads current state or acts on the world), listed with ``why``."""

    def decorate(function: Callable[P, R]) -> Task[P, R]:
        return Task(fn=function, name=name, cache_policy=NotCached(why=why), **options)

    return decorate


def task_output_dir() -> Path:
    """A fresh folder for the running task's files, under its cache key: results point here, hits find them here."""
    context = TaskRunContext.get()
    if context is None:
        raise RuntimeError("task_output_dir() is only available inside a task run.")
    run_id = str(context.task_run.id)
    key = run_key(run_id) or "uncached"
    folder = get_settings().task_cache_dir / "outputs" / key / run_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder

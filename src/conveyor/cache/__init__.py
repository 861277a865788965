"""The task cache: every task keyed by what it depends on (data bytes, parameters, code, dependencies), hits verified.

A key is built from four components (``keys``). Hits are verified before Prefect reads them (``records``): the
record's JSON envelope, its MAC (keyed outside the cache, ``mac``) and its output files. A task whose data inputs
changed while it ran writes no entry (``policy``); every decision is kept in a ledger (``ledger``) so a run can say,
per task, why it hit or missed (``report``).
"""

from conveyor.cache.decorators import cached_task, task_output_dir, uncached_task
from conveyor.cache.keys import Content, Descriptive, Location

__all__ = ["Content", "Descriptive", "Location", "cached_task", "task_output_dir", "uncached_task"]

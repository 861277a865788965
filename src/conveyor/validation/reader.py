"""Reading a batch: parquet bytes into arrow once, shared with polars without a copy."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa_arrow
import pyarrow.parquet as pq


class UnreadableBatchError(ValueError):
    """A batch's bytes are not a parquet table."""


def read_batch(path: Path) -> pa_arrow.Table:
    """A batch's rows as arrow; UnreadableBatchError with the reader's reason when its bytes are not a parquet table."""
    try:
        # Pages written with a CRC are checked against it: a flipped byte is refused, never read as data.
        return pq.read_table(path, page_checksum_verification=True)
    except (OSError, ValueError, pa_arrow.ArrowException) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UnreadableBatchError(f"{path.name} is not a readable parquet file ({reason}).") from None


def as_polars(table: pa_arrow.Table) -> pl.DataFrame:
    """The batch's columns for polars, sharing arrow's buffers; a pandas index stored in the file is not a column."""
    stored_index = [c for c in (table.schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)]
    frame = pl.from_arrow(table.drop_columns(stored_index))
    assert isinstance(frame, pl.DataFrame)  # a table, not a single column
    return frame

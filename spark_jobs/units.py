"""Work units: a table's Parquet row groups dealt to Spark tasks, and read back by a task in
batches. Python tasks read the files themselves (the page texts never cross into the JVM), so
what a task holds is what it reads: a stream of batches, never a whole row group decoded at once
(a row group can hold a whole file, and its size grows with the crawl)."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa


def plan_units(paths: list[str], n_tasks: int) -> list[list[tuple[str, int]]]:
    """Row groups dealt to ``n_tasks`` tasks, largest first, each to the least loaded task."""
    import pyarrow.parquet as pq

    groups = []
    for path in paths:
        md = pq.ParquetFile(path).metadata
        groups += [(md.row_group(i).total_byte_size, path, i) for i in range(md.num_row_groups)]
    n = max(1, min(n_tasks, len(groups)))
    tasks: list[list[tuple[str, int]]] = [[] for _ in range(n)]
    load = [0] * n
    for size, path, i in sorted(groups, reverse=True):
        j = load.index(min(load))
        tasks[j].append((path, i))
        load[j] += size
    return [t for t in tasks if t]


def row_group_batches(path: str, row_group: int, columns: list[str] | None = None, batch_size: int = 2048) -> Iterator[pa.RecordBatch]:
    """One row group of one file, ``batch_size`` rows at a time, decoded as it is consumed."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as f:
        yield from f.iter_batches(batch_size=batch_size, row_groups=[row_group], columns=columns, use_threads=False)

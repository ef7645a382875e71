"""Parquet files written by one Spark task straight into a transaction's staging folder.

Stages whose Python work produces two outputs (kept documents and rejections) write them from the
task instead of shipping rows back through the JVM. Each output file has a name derived from the
task's partition id and is renamed into place only when complete, so a retried or speculative
attempt replaces an earlier one rather than adding duplicate rows.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


class TaskOutputs:
    def __init__(self, targets: dict[str, tuple[str, pa.Schema]], part: int, plain: tuple[str, ...] = ()) -> None:
        self._targets = {name: (self.file_of(d, part), schema) for name, (d, schema) in targets.items()}
        # Columns written without dictionary encoding or statistics: page bodies, where both are
        # pure cost (a hash and a comparison of every body, for a dictionary Parquet abandons and
        # min/max nobody reads); half the write time of raw_crawl.
        self._plain = set(plain)
        self._suffix = f".tmp-{uuid.uuid4().hex[:8]}"
        self._writers: dict[str, pq.ParquetWriter] = {}
        self.rows: dict[str, int] = {name: 0 for name in targets}

    @staticmethod
    def file_of(directory: str | Path, part: int) -> Path:
        """The file a task with this partition id writes (and replaces on a retry) in ``directory``."""
        return Path(directory) / f"part-{part:06d}.parquet"

    def schema(self, name: str) -> pa.Schema:
        return self._targets[name][1]

    def write(self, name: str, batch: pa.RecordBatch | pa.Table) -> None:
        if not batch.num_rows:
            return
        path, schema = self._targets[name]
        if name not in self._writers:
            path.parent.mkdir(parents=True, exist_ok=True)
            rest = [n for n in schema.names if n not in self._plain]
            kw = {"use_dictionary": rest, "write_statistics": rest} if self._plain & set(schema.names) else {}
            self._writers[name] = pq.ParquetWriter(str(path) + self._suffix, schema, compression="zstd", **kw)
        if isinstance(batch, pa.Table):
            self._writers[name].write_table(batch)
        else:
            self._writers[name].write_batch(batch)
        self.rows[name] += batch.num_rows

    def close(self) -> None:
        for name, w in self._writers.items():
            w.close()
            path = self._targets[name][0]
            os.replace(str(path) + self._suffix, path)
        self._writers.clear()

    def abort(self) -> None:
        for name, w in self._writers.items():
            w.close()
            Path(str(self._targets[name][0]) + self._suffix).unlink(missing_ok=True)
        self._writers.clear()

    def __enter__(self) -> TaskOutputs:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

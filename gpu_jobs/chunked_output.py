"""Resumable output: one Parquet file per finished chunk of input rows, published to Delta once.

The folder is keyed by what determines the result (input table version and partition, models,
options), so a restarted job finds the chunks it already finished and does not redo them; a job
with other inputs or options starts a fresh folder. Each chunk file is written under a temporary
name and renamed when complete, so a kill never leaves half a chunk. The job reports the finished
files; the asset stages them, gates them and publishes them in one Delta commit per table (its stage
runner), then deletes the folder: rows are never duplicated, whatever was killed when.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from storage.tables import RESUME

RESUME_DIR = RESUME


def work_key(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


class ChunkedOutput:
    def __init__(self, table_uri: str, key: str, schema: pa.Schema) -> None:
        self.table_uri = table_uri
        self.dir = Path(table_uri) / RESUME_DIR / key
        self.schema = schema
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob("*.tmp"):  # a chunk cut by a kill
            stale.unlink(missing_ok=True)

    def _path(self, chunk: int, name: str) -> Path:
        return self.dir / f"{name}-{chunk:06d}.parquet"

    def done(self, name: str = "part") -> set[int]:
        return {int(p.stem.rsplit("-", 1)[1]) for p in self.dir.glob(f"{name}-*.parquet")}

    def write(self, chunk: int, table: pa.Table, name: str = "part", schema: pa.Schema | None = None) -> None:
        final = self._path(chunk, name)
        tmp = final.with_suffix(".tmp")
        pq.write_table(table.cast(schema or self.schema), tmp, compression="zstd")
        os.replace(tmp, final)

    def read(self, name: str = "part") -> pa.Table:
        files = sorted(self.dir.glob(f"{name}-*.parquet"))
        return pa.concat_tables([pq.read_table(f) for f in files]) if files else self.schema.empty_table()

    def files(self, name: str = "part") -> list[str]:
        """The finished chunk files of ``name`` that hold rows, in chunk order."""
        return [str(f) for f in sorted(self.dir.glob(f"{name}-*.parquet")) if pq.ParquetFile(f).metadata.num_rows]

    def finish(self) -> None:
        discard(self.dir)


def discard(folder: str | Path) -> None:
    """Delete a job's chunk folder (``resume_dir`` in its report) once its rows are published."""
    shutil.rmtree(folder, ignore_errors=True)

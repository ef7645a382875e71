"""What every GPU program shares: the device, the Pipes session (or a plain CLI when launched by
hand), and reading a pinned Delta version in a stable order."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Iterator


def pick_device(requested: str = "auto"):
    import torch

    if requested != "auto":
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def inference_dtype(device):
    """bf16 on CUDA (halves memory traffic, same range as fp32), fp32 on CPU."""
    import torch

    return torch.bfloat16 if device.type == "cuda" else torch.float32


class _StdLog:
    def __init__(self, name: str) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
        self._log = logging.getLogger(name)

    def info(self, msg: str) -> None:
        self._log.info(msg)

    def warning(self, msg: str) -> None:
        self._log.warning(msg)


@contextlib.contextmanager
def job_session(name: str) -> Iterator[tuple[dict[str, Any], Any, Callable[[dict], None]]]:
    """(params, log, report): from Dagster Pipes when launched by an asset; from ``--params FILE``
    (JSON) when run by hand, then the report is printed as JSON on stdout."""
    import os

    from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, open_dagster_pipes

    if os.environ.get(DAGSTER_PIPES_CONTEXT_ENV_VAR):  # launched by a Pipes client
        with open_dagster_pipes() as pipes:
            yield pipes.extras["params"], pipes.log, pipes.report_custom_message
        return
    ap = argparse.ArgumentParser(prog=f"python -m gpu_jobs.{name}")
    ap.add_argument("--params", required=True, help="JSON file with the job's parameters")
    args = ap.parse_args()
    params = json.loads(Path(args.params).read_text())
    yield params, _StdLog(name), lambda msg: print(json.dumps(msg))


def iter_rows(files: list[str], columns: list[str], chunk_rows: int) -> Iterator[tuple[int, Any]]:
    """(chunk index, Arrow table of up to ``chunk_rows`` rows) over the files in the given order:
    the same chunks on every run, which is what makes a restart skip exactly the finished ones."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf: list[pa.RecordBatch] = []
    n = 0
    chunk = 0
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=columns):
            while batch.num_rows:
                take = min(chunk_rows - n, batch.num_rows)
                buf.append(batch.slice(0, take))
                n += take
                batch = batch.slice(take)
                if n == chunk_rows:
                    yield chunk, pa.Table.from_batches(buf)
                    buf, n, chunk = [], 0, chunk + 1
    if n:
        yield chunk, pa.Table.from_batches(buf)

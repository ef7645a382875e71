"""Spark's side of the lakehouse: read a pinned Delta snapshot or a transaction's staged files,
stage a DataFrame for a commit.

This is the seam DESIGN.md keeps small: on a cluster with Delta's JARs, ``read_table`` becomes
``spark.read.format("delta").option("versionAsOf", v)`` and the write a ``format("delta")`` save.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from storage.delta_table import Transaction, open_table, snapshot_files


def read_table(spark: SparkSession, uri: str | Path, version: int | None = None, partition: dict[str, str] | None = None) -> DataFrame:
    """The rows of one table version (one partition optionally), with partition columns as values."""
    dt = open_table(uri, version)
    schema = dt.schema().to_arrow()
    part_cols = list(dt.metadata().partition_columns)
    arrow_schema = pa.schema(schema)
    data_fields = [f for f in arrow_schema if f.name not in part_cols]
    data_schema = from_arrow_schema(pa.schema(data_fields))
    groups: dict[tuple, list[str]] = defaultdict(list)
    for f in snapshot_files(uri, version, partition):
        groups[tuple(f.partition.get(c) for c in part_cols)].append(f.path)
    frames = []
    for values, paths in sorted(groups.items(), key=lambda kv: [str(v) for v in kv[0]]):
        df = spark.read.schema(data_schema).parquet(*paths)
        for c, v in zip(part_cols, values):
            df = df.withColumn(c, F.lit(v).cast("string"))
        frames.append(df)
    if not frames:
        return spark.createDataFrame([], from_arrow_schema(arrow_schema))
    out = frames[0]
    for df in frames[1:]:
        out = out.unionByName(df)
    return out.select(*[f.name for f in arrow_schema])


def checkpoint(df: DataFrame) -> DataFrame:
    """``df`` computed once and kept on the executors' local disk, its plan cut: the dedup passes
    reuse intermediate results several times and iterate (connected components). Disk, not
    Spark's default memory-and-disk: cached blocks held on the heap left too little of a 1g driver
    to build a broadcast join at 200k documents, and the heap then has to be sized to the cache."""
    from pyspark import StorageLevel

    return df.localCheckpoint(eager=True, storageLevel=StorageLevel.DISK_ONLY)


def stage_dataframe(df: DataFrame, txn: Transaction) -> None:
    """Write a DataFrame's Parquet files into the transaction's staging area (no commit)."""
    df.drop(*txn.partition_by).write.mode("overwrite").parquet(txn.staging_uri)


def read_staged(spark: SparkSession, txn: Transaction, schema: pa.Schema) -> DataFrame:
    """The rows a transaction has staged (what its commit would publish), with the partition
    values as columns: the data a write-audit-publish gate checks. ``schema`` is the table's."""
    data_schema = from_arrow_schema(pa.schema([f for f in schema if f.name not in txn.partition_by]))
    files = [str(p) for p in txn.staged_files()]
    if not files:
        return spark.createDataFrame([], from_arrow_schema(schema))
    df = spark.read.schema(data_schema).parquet(*files)
    for c in txn.partition_by:
        df = df.withColumn(c, F.lit(txn.partition[c]).cast("string"))
    return df.select(*schema.names)

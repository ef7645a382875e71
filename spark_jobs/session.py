"""Spark session: local by default, a cluster by configuration (``master`` and ``conf``)."""

from __future__ import annotations

import os
import sys
from typing import Any

from pydantic import BaseModel, Field


class SparkSettings(BaseModel):
    master: str = "local[*]"
    app_name: str = "sluice"
    driver_memory: str = "4g"
    shuffle_partitions: int = 8
    # Console progress bars ([Stage 3:====>  (12 + 2) / 40]) while a job runs.
    show_progress: bool = True
    ui_enabled: bool = False
    # Any other Spark setting, e.g. {"spark.executor.memory": "8g"} on a cluster.
    conf: dict[str, str] = Field(default_factory=dict)


def build_spark(settings: SparkSettings | None = None, **extra_conf: Any):
    """Return the process's SparkSession, creating it on first use.

    Executors run this project's Python (PYSPARK_PYTHON = the current interpreter), so the job
    modules they import are the same installed code as the driver's.
    """
    from pyspark.sql import SparkSession

    s = settings or SparkSettings()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if s.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = (
        SparkSession.builder.master(s.master)
        .appName(s.app_name)
        .config("spark.driver.memory", s.driver_memory)
        .config("spark.sql.shuffle.partitions", str(s.shuffle_partitions))
        .config("spark.ui.enabled", str(s.ui_enabled).lower())
        .config("spark.ui.showConsoleProgress", str(s.show_progress).lower())
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        # Parquet files are committed by delta-rs, not by Spark's output committer.
        .config("spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
        .config("spark.sql.parquet.compression.codec", "zstd")
        # Delta's timestamp type is microseconds; Spark's default INT96 is not readable as such.
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.python.worker.reuse", "true")
    )
    for k, v in {**s.conf, **{k: str(v) for k, v in extra_conf.items()}}.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark

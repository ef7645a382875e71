"""Spark session: local by default, a cluster by configuration (``master`` and ``conf``)."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field


class SparkSettings(BaseModel):
    master: str = "local[*]"
    app_name: str = "sluice"
    # Sized to the work: the stages keep bulk data off the JVM heap (Python tasks read and write
    # Parquet; the JVM shuffles signatures and ids; intermediate results are checkpointed to disk,
    # spark_io.checkpoint), and G1 is told to keep the heap near its live data (java_options). 1g
    # (Spark's own default) runs a 200k-page crawl and dedups 200k documents at 0.6x the resident
    # memory of 2g (benchmarks/scaling_curve.py, dedup_throughput.py); the test suite runs at the
    # default. A bigger heap is for a cluster's driver or much larger crawls.
    driver_memory: str = "1g"
    # G1 grows the heap whenever GC takes over 1/13 of the time (its GCTimeRatio of 12), so the JVM
    # settled at its limit whatever the work. Allowing 1/5 and returning free heap keeps it near the
    # live data: dedup of 100k documents, JVM peak PSS 1,590 -> 1,100 MB, no measurable time cost
    # (benchmarks/dedup_throughput.py, #26). Applied to the driver and, on a cluster, the executors.
    java_options: str = "-XX:GCTimeRatio=4 -XX:MinHeapFreeRatio=10 -XX:MaxHeapFreeRatio=30"
    shuffle_partitions: int = 8
    # Console progress bars ([Stage 3:====>  (12 + 2) / 40]) while a job runs.
    show_progress: bool = True
    ui_enabled: bool = False
    # Start the driver JVM from the machine's class-data-sharing archive when there is one (made by
    # `make install`, or `python -m spark_jobs.jvm_archive`): a cold session and its first job about
    # 7 s sooner on 2 cores (spark_jobs/jvm_archive.py). An archive the JVM cannot use is ignored.
    class_archive: bool = True
    # Any other Spark setting, e.g. {"spark.executor.memory": "8g"} on a cluster.
    conf: dict[str, str] = Field(default_factory=dict)


# The packages executors import (all of the project's, so that any job's imports resolve).
PACKAGES = ("orchestration", "assets", "audit", "spark_jobs", "sample_crawl", "gpu_jobs", "quality", "storage", "documents")


def code_archive(dest_dir: str | Path | None = None) -> Path:
    """The project's packages as one zip for the executors, named by a hash of its contents (the
    same code gives the same file; a change gives a new one, never a stale cached copy)."""
    root = Path(__file__).resolve().parents[1]
    files = sorted(
        p
        for pkg in PACKAGES
        for p in (root / pkg).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    out = Path(dest_dir or tempfile.gettempdir()) / f"sluice-code-{digest.hexdigest()[:16]}.zip"
    if not out.exists():
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for p in files:
                z.write(p, str(p.relative_to(root)))
        os.replace(tmp, out)
    return out


def ship_code(spark) -> str:
    """Add the code archive to the job and check that executors import from it, not from a
    copy of the driver's working tree they may happen to see (on one machine they would)."""
    archive = code_archive()
    sc = spark.sparkContext
    sc.addPyFile(str(archive))
    n = max(2, sc.defaultParallelism)
    seen = set(sc.parallelize(range(n), n).map(lambda _: __import__("spark_jobs.session", fromlist=["_"]).__file__).collect())
    if not all(archive.name in f for f in seen):
        raise RuntimeError(f"executors import Sluice from {sorted(seen)}, not from the shipped {archive.name}")
    return archive.name


def build_spark(settings: SparkSettings | None = None, **extra_conf: Any):
    """Return the process's SparkSession, creating it on first use.

    Executors run this project's Python environment (PYSPARK_PYTHON = the current interpreter:
    its dependencies), and on a cluster the project's own code is shipped with the job as a zip
    (:func:`ship_code`): a cluster's executors never see the driver's working tree.
    """
    from pyspark.sql import SparkSession

    s = settings or SparkSettings()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if s.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    driver_options = s.java_options
    if s.class_archive:
        from spark_jobs.jvm_archive import driver_options as archive_options

        driver_options = f"{driver_options} {archive_options()}".strip()
    builder = (
        SparkSession.builder.master(s.master)
        .appName(s.app_name)
        .config("spark.driver.memory", s.driver_memory)
        .config("spark.driver.extraJavaOptions", driver_options)
        .config("spark.executor.extraJavaOptions", s.java_options)
        .config("spark.sql.shuffle.partitions", str(s.shuffle_partitions))
        .config("spark.ui.enabled", str(s.ui_enabled).lower())
        .config("spark.ui.showConsoleProgress", str(s.show_progress).lower())
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        # Rows per Arrow batch sent to a Python task (Spark's default is 10,000). The batches that
        # carry texts (dedup's verified pairs, two texts a row; the mixture's token counts) are held
        # by the JVM off-heap and by the Python worker at once: at 2,000, dedup of 100k documents
        # peaked about 150 MB lower, in the same time (benchmarks/dedup_throughput.py, #26).
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "2000")
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
    if not s.master.startswith("local") and not getattr(spark, "_sluice_code", None):
        spark._sluice_code = ship_code(spark)
        print(f"Spark {s.master}: executors run Sluice from {spark._sluice_code}", file=sys.stderr)
    return spark

"""A class-data-sharing (AppCDS) archive of the Spark driver JVM: the classes Spark loads at start
and on a first job, parsed and verified once per machine instead of once per run.

Every ``sluice run``, every run ``sluice serve`` launches, and every Pipes-free test process starts
its own JVM. On 2 cores a cold session took 10.3-11.2 s and its first Arrow job 6.5-7.0 s; with
this archive 5.1-5.9 s and 3.1-4.0 s (``python -m spark_jobs.jvm_archive --measure``, #26). Java 17
has no ``-XX:+AutoCreateSharedArchive`` (JDK 19+), so the archive is made by a warm-up JVM that
dumps what it loaded at exit (``-XX:ArchiveClassesAtExit``), here or by ``make install``.

The JVM checks an archive against its own build and class path and, when they differ, ignores it
and starts as usual (``-Xshare:auto``, Java's default): a stale or foreign archive costs the speed,
never a run. Its name carries a key of the JVM and Spark's jars, so an upgrade makes a new one.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Unified-logging tags CDS warns on (a mismatched archive, classes it cannot store): the fallback is
# silent, as the JVM's own default archive is.
QUIET = "-Xlog:cds=off,cds+dynamic=off"


def archive_dir() -> Path:
    """``$SLUICE_JVM_ARCHIVE_DIR``, else ~/.cache/sluice/jvm."""
    return Path(os.environ.get("SLUICE_JVM_ARCHIVE_DIR") or Path.home() / ".cache" / "sluice" / "jvm").expanduser()


def _java() -> Path | None:
    """The java binary spark-submit runs: $JAVA_HOME/bin/java, else the first on PATH."""
    home = os.environ.get("JAVA_HOME")
    exe = Path(home) / "bin" / "java" if home else (Path(w) if (w := shutil.which("java")) else None)
    return exe.resolve() if exe and exe.exists() else None


def archive_path() -> Path | None:
    """Where this JVM and Spark's archive lives (it may not exist yet); None without a java."""
    import pyspark

    java = _java()
    if java is None:
        return None
    jdk = java.parents[1]
    ident = [str(java)]
    for f in [*sorted((jdk / "lib").glob("server/libjvm.so")), *sorted((Path(pyspark.__file__).parent / "jars").glob("*.jar"))]:
        st = f.stat()
        ident.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    key = hashlib.sha256("\n".join(ident).encode()).hexdigest()[:16]
    return archive_dir() / f"spark-driver-{key}.jsa"


def driver_options() -> str:
    """The driver's JVM options that map the archive, or "" where there is none yet."""
    p = archive_path()
    return f"-XX:SharedArchiveFile={p} {QUIET}" if p is not None and p.is_file() else ""


def build_archive(dest: Path | None = None, timeout: float = 900) -> Path:
    """Make the archive (about 25 s on 2 cores) unless it exists: a warm-up process writes its own
    temporary file, renamed into place once its JVM has exited, so a reader never maps half a file."""
    out = dest or archive_path()
    if out is None:
        raise RuntimeError("no java found (JAVA_HOME or PATH): Spark cannot start either")
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        r = subprocess.run(
            [sys.executable, "-m", "spark_jobs.jvm_archive", "--dump", str(tmp)], capture_output=True, text=True, timeout=timeout
        )
        if r.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            raise RuntimeError(f"the warm-up JVM wrote no archive (exit {r.returncode}):\n{(r.stdout + r.stderr)[-2000:]}")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _warm_up(spark, scratch: str) -> None:
    """The kinds of work a run's first minute does: Arrow tasks in Python, a shuffle, Parquet
    written and read back, a join, a window and an Arrow collect."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    df = spark.range(4000, numPartitions=2).selectExpr("id", "cast(id % 7 as string) AS k", "repeat('ab ', 20) AS text")
    df = df.mapInArrow(lambda batches: (b for b in batches), df.schema)
    df.write.mode("overwrite").parquet(f"{scratch}/p")
    back = spark.read.parquet(f"{scratch}/p")
    back.groupBy("k").agg(F.count("*"), F.sum("id"), F.collect_list("id")).collect()
    back.join(back.select("id", F.col("k").alias("k2")), "id").withColumn("r", F.rank().over(Window.partitionBy("k").orderBy("id"))).where(
        F.col("r") < 3
    ).toArrow()
    back.dropDuplicates(["k"]).count()


def _dump(tmp: Path) -> None:
    from pyspark import SparkContext

    from spark_jobs.session import SparkSettings, build_spark

    s = SparkSettings(show_progress=False, class_archive=False)
    spark = build_spark(s, **{"spark.driver.extraJavaOptions": f"{s.java_options} -XX:ArchiveClassesAtExit={tmp} {QUIET}"})
    with tempfile.TemporaryDirectory() as scratch:
        _warm_up(spark, scratch)
        spark.stop()
    proc = SparkContext._gateway.proc
    try:  # the archive is written as the JVM exits: end it now and wait, rather than at interpreter exit
        SparkContext._gateway.jvm.java.lang.System.exit(0)
    except Exception:  # noqa: BLE001 - the connection closes under the call
        pass
    proc.wait(timeout=300)


def _measure(runs: int) -> None:
    """Cold session and first Arrow job, without and with the archive, alternating (one process each)."""
    probe = (
        "import time,sys; t=time.time(); from spark_jobs.session import SparkSettings, build_spark; "
        "s=build_spark(SparkSettings(show_progress=False, class_archive=sys.argv[1]=='1')); a=time.time(); "
        "df=s.range(4,numPartitions=2); df.mapInArrow(lambda it:(b for b in it), df.schema).collect(); "
        "print(f'{a-t:.2f} {time.time()-a:.2f}')"
    )
    rows = {"0": [], "1": []}
    for _ in range(runs):
        for flag in ("0", "1"):
            out = subprocess.run([sys.executable, "-c", probe, flag], capture_output=True, text=True, timeout=600).stdout.split()
            rows[flag].append(tuple(float(x) for x in out[-2:]))
    for flag, label in (("0", "without archive"), ("1", "with archive")):
        print(
            f"{label:16s} session "
            + " ".join(f"{a:5.2f}" for a, _ in rows[flag])
            + " s; first Arrow job "
            + " ".join(f"{b:5.2f}" for _, b in rows[flag])
            + " s"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m spark_jobs.jvm_archive", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--measure", type=int, metavar="N", help="time N cold starts with and without the archive")
    args = ap.parse_args(argv)
    if args.dump:
        _dump(args.dump)
        return 0
    path = archive_path()
    if path is None:
        print("no java found (JAVA_HOME or PATH): no JVM class archive made", file=sys.stderr)
        return 1
    if path.is_file():
        print(f"JVM class archive: {path} (already made)")
    else:
        t = time.time()
        build_archive(path)
        print(f"JVM class archive: {path} ({path.stat().st_size / 2**20:.0f} MB, made in {time.time() - t:.0f} s)")
    if args.measure:
        _measure(args.measure)
    return 0


if __name__ == "__main__":
    sys.exit(main())

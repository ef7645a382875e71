"""What `sluice run` shows on the terminal: a progress bar fed by the Dagster event log, the run's
outcome in plain words, and the tables at the end. Everything else a run prints goes to a log file."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from orchestration.config import SluiceConfig, redact_uri


@contextlib.contextmanager
def quiet_console(log_path: Path, verbose: bool) -> Iterator[TextIO]:
    """The terminal, for the progress display; everything else a run prints (Dagster's log lines,
    the JVM's stage bars, transformers and MLflow messages) goes to ``log_path``. Redirected at file
    descriptor 2, so that the JVM and child processes started meanwhile write there too."""
    if verbose:
        yield sys.stderr
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    terminal = os.fdopen(os.dup(saved), "w", buffering=1)
    with open(log_path, "a") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield terminal
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            terminal.close()


def spark_tasks() -> str | None:
    """Tasks done of the Spark stages running now in this process (the in-process run's jobs)."""
    from pyspark import SparkContext

    sc = SparkContext._active_spark_context
    if sc is None:
        return None
    try:
        tracker = sc.statusTracker()
        stages = [s for s in (tracker.getStageInfo(i) for i in tracker.getActiveStageIds()) if s is not None]
    except Exception:  # noqa: BLE001 - a context starting or stopping: no detail this time
        return None
    if not stages:
        return None
    return f"Spark tasks {sum(s.numCompletedTasks for s in stages)}/{sum(s.numTasks for s in stages)}"


def follow_progress(instance, token: str, total: int, done: threading.Event, out: TextIO) -> None:
    """A progress bar over the run's assets, fed by the Dagster event log; within the running asset,
    its Spark tasks (done/total) or else its last log line (a GPU job's chunks, a model's training).
    Where ``out`` is not a terminal (a file, a CI log) a bar redrawn with carriage returns would be
    unreadable: one plain line per finished asset instead."""
    from dagster import DagsterEventType, RunsFilter
    from tqdm import tqdm

    tty = bool(getattr(out, "isatty", lambda: False)())
    bar = tqdm(total=total, desc="assets", unit="asset", file=out, leave=True, dynamic_ncols=True, disable=not tty)
    finished_steps, started = 0, time.time()
    cursor = None
    run_id = None
    step, last_line = None, ""
    while True:
        finished = done.is_set()
        if run_id is None:
            runs = instance.get_runs(filters=RunsFilter(tags={"sluice/cli": token}), limit=1)
            run_id = runs[0].run_id if runs else None
        if run_id is not None:
            conn = instance.get_records_for_run(run_id, cursor=cursor)
            cursor = conn.cursor
            for rec in conn.records:
                entry = rec.event_log_entry
                ev = entry.dagster_event
                if ev is None:
                    if entry.user_message and entry.level >= logging.WARNING:
                        # A warning gets a line of its own, said once, not the progress line for seconds.
                        bar.write(f"   note from {entry.step_key or 'the run'}: {entry.user_message.splitlines()[0][:300]}", file=out)
                    elif entry.step_key == step and entry.user_message:
                        last_line = entry.user_message.splitlines()[0][:70]
                elif ev.event_type == DagsterEventType.STEP_START:
                    step, last_line, started = ev.step_key, "", entry.timestamp
                elif ev.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE, DagsterEventType.STEP_SKIPPED):
                    outcome = ev.event_type.value.split("_")[-1].lower()
                    finished_steps += 1
                    bar.update(1)
                    bar.set_postfix_str(f"{ev.step_key}: {outcome}")
                    if not tty:
                        print(f"assets {finished_steps}/{total}: {ev.step_key} {outcome} ({entry.timestamp - started:.0f} s)", file=out)
                    step = None
        if step is not None and tty:
            detail = spark_tasks() or last_line
            bar.set_postfix_str(f"running {step}" + (f": {detail}" if detail else ""))
        if finished:
            break
        time.sleep(0.5)
    bar.close()


def report_run(result, out: TextIO, log_path: Path) -> None:
    """The run's outcome in plain words: checks, skipped stages, warnings; on failure the stage, its
    error and where to read the rest."""
    from dagster import DagsterEventType

    for ev in result.get_asset_check_evaluations():
        if ev.passed:
            status = "passed"
        elif ev.severity.value == "ERROR":
            status = "FAILED"
        elif ev.check_name == "gate":  # a model's gate
            status = "failed (a warning: the model is not promoted)"
        else:  # e.g. `ran` of a skipped stage
            status = f"a warning ({ev.description})"
        print(f"   check {ev.asset_key.to_user_string()}.{ev.check_name}: {status}", file=out)
    for ev in result.get_asset_materialization_events():
        md = ev.materialization.metadata
        name = ev.asset_key.to_user_string()
        if "skipped" in md:
            print(f"   {name}: skipped (expected: {md['skipped'].value})", file=out)
        if "verdict" in md:  # a model's gate: why it is used, or not, in one line
            print(f"   {name}: {md['verdict'].value}", file=out)
        if "post_commit_warnings" in md:
            print(f"   {name}: published, with warnings after the commit (not retried):", file=out)
            for line in md["post_commit_warnings"].value.splitlines():
                print(f"     {line}", file=out)
    if result.success:
        return
    for ev in result.all_events:
        if ev.event_type == DagsterEventType.STEP_FAILURE:
            err = ev.step_failure_data.error if ev.step_failure_data else None
            lines = [line for line in (err.message.strip().splitlines() if err else []) if line.strip()] or ["(no message)"]
            lines[0] = re.sub(r"^[\w.]+\.(\w*(Error|Exception|Failure)): ", "", lines[0])  # the class is said once, below
            kind = err.cls_name if err and err.cls_name else "error"
            print(f"   FAILED {ev.step_key} ({kind}): {lines[0][:300]}", file=out)
            for line in lines[1:6]:
                print(f"     {line[:300]}", file=out)
    sys.stderr.flush()
    where = str(log_path)
    if log_path.is_file():
        with open(log_path, errors="replace") as fh:
            hit = next((i for i, line in enumerate(fh, 1) if result.run_id in line and "STEP_FAILURE" in line), None)
        where = f"{log_path}:{hit}" if hit else where
    print(
        f"   run {result.run_id} did not succeed. Read the error and the stage's log at {where}, or the run's page in `sluice ui`", file=out
    )


def print_summary(cfg: SluiceConfig) -> None:
    print()
    print_tables(cfg)
    print(f"\nMLflow experiment '{cfg.mlflow.experiment}' at {redact_uri(cfg.mlflow_tracking_uri)}")
    print(f"Dagster instance at {cfg.dagster_home}")
    print("Open the UIs:")
    print(f"  .venv/bin/sluice ui --lakehouse {cfg.lakehouse_dir}          # Dagster on http://127.0.0.1:{cfg.dagster.ui_port}")
    print(f"  .venv/bin/sluice mlflow-ui --lakehouse {cfg.lakehouse_dir}   # MLflow on http://127.0.0.1:{cfg.mlflow.ui_port}")


def print_tables(cfg: SluiceConfig) -> None:
    from storage.delta_table import last_commit_info, open_table, row_count, table_exists

    root = cfg.lakehouse_path
    tables = sorted(p for p in root.iterdir() if p.is_dir() and table_exists(p)) if root.is_dir() else []
    if not tables:
        print(f"no tables in {root}")
        return
    rows = [("table", "version", "rows", "last commit (UTC)", "asset / partition / dagster run")]
    for t in tables:
        v = open_table(t).version()
        info = last_commit_info(t)
        meta = info.get("sluice") or {}
        when = datetime.fromtimestamp(info.get("timestamp", 0) / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        who = f"{meta.get('asset', '-')} / {meta.get('dagster_partition', '-')} / {str(meta.get('dagster_run_id', '-'))[:8]}"
        rows.append((t.name, str(v), str(row_count(t)), when, who))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))

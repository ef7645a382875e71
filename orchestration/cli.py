"""``sluice``: run the pipeline, make a sample crawl, list tables, open the UIs."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shutil
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, TextIO

from orchestration.config import SluiceConfig, load_config, redact_uri

DAGSTER_YAML = """# Written by sluice: a local instance with its storage in this folder.
telemetry:
  enabled: false
# No first-visit "Join the Dagster community" dialog in the UI.
nux:
  enabled: false
"""


def _config(args: argparse.Namespace, **extra) -> SluiceConfig:
    overrides = {"lakehouse_dir": getattr(args, "lakehouse", None), **extra}
    cfg = load_config(getattr(args, "config", None), **overrides)
    # Child processes (webserver, Spark workers) read the same settings from the environment.
    os.environ["SLUICE_LAKEHOUSE_DIR"] = str(cfg.lakehouse_path)
    os.environ["SLUICE_LANDING_DIR"] = str(Path(cfg.landing_dir).resolve())
    return cfg


def prepare_dagster_home(cfg: SluiceConfig) -> Path:
    home = cfg.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    yaml = home / "dagster.yaml"
    if not yaml.exists():
        yaml.write_text(DAGSTER_YAML)
    elif yaml.read_text().startswith("# Written by sluice") and "nux:" not in yaml.read_text():
        yaml.write_text(DAGSTER_YAML)  # an instance made by an earlier version: same settings, plus nux
    os.environ["DAGSTER_HOME"] = str(home)
    return home


# ---- sluice run ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_console(log_path: Path, verbose: bool) -> Iterator[TextIO]:
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


def _spark_tasks() -> str | None:
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


def _follow(instance, token: str, total: int, done: threading.Event, out: TextIO) -> None:
    """A progress bar over the run's assets, fed by the Dagster event log; within the running asset,
    its Spark tasks (done/total) or else its last log line (a GPU job's chunks, a model's training)."""
    from dagster import DagsterEventType, RunsFilter
    from tqdm import tqdm

    bar = tqdm(total=total, desc="assets", unit="asset", file=out, leave=True, dynamic_ncols=True)
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
                    step, last_line = ev.step_key, ""
                elif ev.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE, DagsterEventType.STEP_SKIPPED):
                    bar.update(1)
                    bar.set_postfix_str(f"{ev.step_key}: {ev.event_type.value.split('_')[-1].lower()}")
                    step = None
        if step is not None:
            detail = _spark_tasks() or last_line
            bar.set_postfix_str(f"running {step}" + (f": {detail}" if detail else ""))
        if finished:
            break
        time.sleep(0.5)
    bar.close()


def cmd_run(args: argparse.Namespace) -> int:
    extra = {}
    crawl_ids: list[str] = []
    if args.crawl:
        # Several crawls (a backfill from the CLI) must sit in one landing folder: it is where
        # ingest finds each crawl's files by its id.
        crawls = [Path(c).resolve() for c in args.crawl]
        for crawl in crawls:
            if not crawl.is_dir():
                print(f"sluice run: crawl folder {crawl} does not exist", file=sys.stderr)
                return 2
        if len({c.parent for c in crawls}) > 1:
            print("sluice run: the crawl folders given with --crawl must share one parent folder (the landing folder)", file=sys.stderr)
            return 2
        extra["landing_dir"] = crawls[0].parent
        crawl_ids = [c.name for c in crawls]
    cfg = _config(args, **extra)
    if not args.crawl:
        from orchestration.sensors import landed_crawls

        crawl_ids = landed_crawls(Path(cfg.landing_dir).resolve(), cfg.ingest.file_globs, 0)
        if not crawl_ids:
            print(f"sluice run: no crawl folder with WARC files in {Path(cfg.landing_dir).resolve()}", file=sys.stderr)
            return 2
    prepare_dagster_home(cfg)

    from dagster import AssetKey, DagsterInstance

    from assets.partitions import crawl_partitions
    from orchestration.definitions import CRAWL_JOB, MIXTURE_JOB, build_definitions
    from orchestration.resources import build_resources
    from orchestration.sensors import run_tags
    from storage.tables import LOGS

    instance = DagsterInstance.get()
    instance.add_dynamic_partitions(crawl_partitions.name, [c for c in crawl_ids if not instance.has_dynamic_partition(crawl_partitions.name, c)])
    defs = build_definitions(cfg)
    # Crawl stages run once per crawl; mixtures (partitioned by mixture name) after every crawl.
    jobs = {n: defs.resolve_job_def(n) for n in (CRAWL_JOB, MIXTURE_JOB) if n in {j.name for j in defs.jobs or []}}
    selected = set(args.select.split(",")) if args.select else None
    lineage = build_resources(cfg)["lineage"]
    order = [a.key for a in defs.assets or []]  # pipeline order
    ok = True
    log_path = cfg.lakehouse_path / LOGS / f"sluice-run-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}.log"
    with _quiet_console(log_path, args.verbose) as out:
        def one_run(job_name: str, key: str, label: str) -> bool:
            job = jobs.get(job_name)
            in_job = set(job.asset_layer.selected_asset_keys) if job is not None else set()
            keys = [k.to_user_string() for k in order if k in in_job]
            names = [n for n in keys if selected is None or n in selected]
            if not names:
                return True
            print(f"== {label}: {job_name} materializing {', '.join(names)} into {cfg.lakehouse_path}", file=out)
            token = uuid.uuid4().hex
            done = threading.Event()
            follower = threading.Thread(target=_follow, args=(instance, token, len(names), done, out), daemon=True)
            follower.start()
            try:
                with _runs_of_the_code_location(instance, job_name):
                    result = job.execute_in_process(instance=instance, partition_key=key, asset_selection=[AssetKey(n) for n in names],
                                                    tags={"sluice/cli": token, **run_tags(cfg)}, raise_on_error=False)
            finally:
                done.set()
                follower.join()
            lineage.finish_parent(result.run_id, "FINISHED" if result.success else "FAILED")
            _report_run(result, out, log_path)
            return result.success

        for crawl_id in crawl_ids:
            ok &= one_run(CRAWL_JOB, crawl_id, f"crawl {crawl_id}")
        if ok:
            for m in cfg.mixing.mixtures:
                ok &= one_run(MIXTURE_JOB, m.name, f"mixture {m.name}")
    _print_summary(cfg)
    if not args.verbose:
        print(f"Log of the run (Dagster, Spark, models): {log_path}")
    return 0 if ok else 1


@contextlib.contextmanager
def _runs_of_the_code_location(instance, job_name: str) -> Iterator[None]:
    """Runs created meanwhile carry the origin of the job in the code location the UIs load
    (``-m orchestration.definitions``), as a run launched from the UI would: the Overview timeline
    only lists runs with an origin, and the run page then links to the job."""
    from dagster._core.remote_origin import ManagedGrpcPythonEnvCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    module = "orchestration.definitions"
    location = ManagedGrpcPythonEnvCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, module_name=module, working_directory=os.getcwd()), location_name=module)
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), job_name)
    create = instance.create_run_for_job

    def with_origin(*args, **kwargs):
        kwargs.setdefault("remote_job_origin", origin)
        return create(*args, **kwargs)

    instance.create_run_for_job = with_origin
    try:
        yield
    finally:
        del instance.create_run_for_job


def _report_run(result, out: TextIO, log_path: Path) -> None:
    """The run's outcome in plain words: checks, skipped stages, warnings; on failure the stage, its
    error and where to read the rest."""
    from dagster import DagsterEventType

    for ev in result.get_asset_check_evaluations():
        status = "passed" if ev.passed else "FAILED" if ev.severity.value == "ERROR" else "failed (a warning: the model is not promoted)"
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
    print(f"   run {result.run_id} did not succeed. Read the error and the stage's log at {where}, or the run's page "
          f"in `sluice ui`", file=out)


def _print_summary(cfg: SluiceConfig) -> None:
    print()
    print_tables(cfg)
    print(f"\nMLflow experiment '{cfg.mlflow.experiment}' at {redact_uri(cfg.mlflow_tracking_uri)}")
    print(f"Dagster instance at {cfg.dagster_home}")
    print("Open the UIs:")
    print(f"  .venv/bin/sluice ui --lakehouse {cfg.lakehouse_dir}          # Dagster on http://127.0.0.1:{cfg.dagster.ui_port}")
    print(f"  .venv/bin/sluice mlflow-ui --lakehouse {cfg.lakehouse_dir}   # MLflow on http://127.0.0.1:{cfg.mlflow.ui_port}")


# ---- sluice tables ---------------------------------------------------------------------------------


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
        when = datetime.fromtimestamp(info.get("timestamp", 0) / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        who = f"{meta.get('asset', '-')} / {meta.get('dagster_partition', '-')} / {str(meta.get('dagster_run_id', '-'))[:8]}"
        rows.append((t.name, str(v), str(row_count(t)), when, who))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def cmd_tables(args: argparse.Namespace) -> int:
    cfg = _config(args)
    if args.history:
        import json

        from audit.history import history, render_history
        from storage.delta_table import LakehouseError

        try:
            rows = history(cfg.lakehouse_path, args.history)
        except LakehouseError as e:
            print(f"sluice tables: {e}", file=sys.stderr)
            return 2
        print(json.dumps(rows, indent=1) if args.json else render_history(args.history, rows))
        return 0
    print_tables(cfg)
    return 0


# ---- audits: trace, read, diff, takedown, audit ------------------------------------------------------


def cmd_trace(args: argparse.Namespace) -> int:
    """Everything the lakehouse knows about one document (or every document fetched from a URL)."""
    from audit.trace import render, to_json, trace

    if bool(args.doc_id) == bool(args.url):
        print("sluice trace: give a DOC_ID or --url URL", file=sys.stderr)
        return 2
    cfg = _config(args)
    t0 = time.time()
    result = trace(cfg.lakehouse_path, doc_id=args.doc_id, url=args.url)
    result["seconds"] = round(time.time() - t0, 3)
    print(to_json(result) if args.json else render(result))
    return 0 if any(d["found"] for d in result["documents"]) else 1


def cmd_read(args: argparse.Namespace) -> int:
    """A table at a version or a time (Delta time travel), as JSON lines."""
    import json

    from audit.history import read_version
    from storage.delta_table import LakehouseError

    cfg = _config(args)
    when = datetime.fromisoformat(args.as_of).astimezone(timezone.utc) if args.as_of else None
    where = dict(w.split("=", 1) for w in args.where or [])
    try:
        t, version = read_version(cfg.lakehouse_path, args.table, args.version, when, args.columns.split(",") if args.columns else None,
                                  where, args.limit)
    except LakehouseError as e:
        print(f"sluice read: {e}", file=sys.stderr)
        return 2
    for r in t.to_pylist():
        print(json.dumps(r, default=str, ensure_ascii=False))
    print(f"{t.num_rows} rows of {args.table}@v{version}", file=sys.stderr)
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    import json

    from audit.history import diff, render_diff
    from storage.delta_table import LakehouseError

    cfg = _config(args)
    try:
        d = diff(cfg.lakehouse_path, args.table, args.v1, args.v2)
    except LakehouseError as e:
        print(f"sluice diff: {e}", file=sys.stderr)
        return 2
    print(json.dumps(d, indent=1, default=str) if args.json else render_diff(d))
    return 0


def cmd_takedown(args: argparse.Namespace) -> int:
    """Remove a URL, domain or document and everything derived from it, everywhere; then block it."""
    import json

    from audit.takedown import Request, takedown

    cfg = _config(args)
    kind, value = next((k, v) for k, v in (("url", args.url), ("domain", args.domain), ("doc_id", args.doc_id)) if v)
    try:
        req = Request(kind, value, args.reason, args.ticket)
    except ValueError as e:
        print(f"sluice takedown: {e}", file=sys.stderr)
        return 2
    t0 = time.time()
    # Dagster's home and a SQLite MLflow store may sit outside the lakehouse: scrubbed too.
    extra = [cfg.dagster_home] + ([Path(cfg.mlflow_tracking_uri[len("sqlite:///"):]).parent] if cfg.mlflow_tracking_uri.startswith("sqlite:///") else [])
    result = takedown(cfg.lakehouse_path, req, cfg.dedup, extra_roots=extra, progress=lambda m: print(m, file=sys.stderr))
    result["seconds"] = round(time.time() - t0, 2)
    _record_takedown_in_dagster(cfg, result)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        print(f"takedown {result['takedown_id']}: {result['documents']} documents removed in {result['seconds']:.1f}s")
        for table, r in sorted(result["rows_removed"].items()):
            print(f"  {table:<18} -{r['rows']} rows, now v{r['version']}, {r['files_purged']} old files purged")
        for pr in result["promotions"]:
            print(f"  dedup: {pr['promoted']} promoted to kept copy of the cluster of {pr['cluster_of']} ({pr['crawl_id']})")
        for e in result["exports"]:
            print(f"  export {e['export']}: -{e['documents_removed']} documents, -{e['tokens_removed']} tokens (manifest flagged rebuild_required)")
        print(f"  other files scrubbed: {result['scrub']['files_scrubbed']}, deleted: {result['scrub']['files_deleted']}")
        v = result["verification"]
        print("  verified: no table's current version holds the documents, and no file holds their text" if v["clean"] else
              f"  NOT CLEAN: rows left {v['rows_left']}; files still holding text: {v['files_holding_text'][:10]}")
        print(f"  recorded in takedowns@v{result['takedowns_version']}; later crawls reject the URLs at ingest (reason `takedown`)")
    return 0 if result["verification"]["clean"] else 1


def cmd_audit(args: argparse.Namespace) -> int:
    """The funnel report of each crawl (or one), as HTML with plots, logged to an MLflow run."""
    import json

    from audit.report import render, write_report
    from storage import tables as T
    from storage.delta_table import read_arrow, table_exists

    cfg = _config(args)
    root = cfg.lakehouse_path
    if not table_exists(root / T.RAW_CRAWL.name):
        print(f"sluice audit: no {T.RAW_CRAWL.name} table in {root}: run the pipeline first", file=sys.stderr)
        return 2
    crawls = [args.crawl] if args.crawl else sorted(set(read_arrow(root / T.RAW_CRAWL.name, columns=["crawl_id"]).column("crawl_id").to_pylist()))
    ok = True
    from mlflow.tracking import MlflowClient

    client = MlflowClient(cfg.mlflow_tracking_uri)
    exp = client.get_experiment_by_name(cfg.mlflow.experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(cfg.mlflow.experiment, artifact_location=cfg.mlflow_artifact_root)
    for crawl in crawls:
        summary = write_report(root, crawl, root / T.REPORTS / "audit" / crawl, cfg.mlflow_tracking_uri)
        run = client.create_run(exp_id, run_name=f"audit[{crawl}]", tags={"sluice.level": "audit", "sluice.crawl": crawl})
        for f in (summary["report"], *summary["plots"]):
            client.log_artifact(run.info.run_id, f, "audit")
        client.log_metric(run.info.run_id, "conserved", float(summary["conserved"]))
        client.set_terminated(run.info.run_id)
        summary["mlflow_run_id"] = run.info.run_id
        print(json.dumps(summary, indent=1, default=str) if args.json else render(summary) + f"\nMLflow run {run.info.run_id}\n")
        ok &= summary["conserved"] and summary["gates_passed"]
    return 0 if ok else 1


def _record_takedown_in_dagster(cfg: SluiceConfig, result: dict) -> None:
    """Each changed asset partition gets a materialization saying what the takedown removed, so the
    UI shows it and downstream stages pin the version without the documents."""
    if not cfg.dagster_home.is_dir():
        return
    prepare_dagster_home(cfg)
    from dagster import AssetMaterialization, DagsterInstance

    from storage import tables as T

    instance = DagsterInstance.get()
    for table, parts in result["partitions_changed"].items():
        spec = T.TABLES[table]
        if spec.stage != table:  # only an asset's own table is what its materialization pins
            continue
        for part in parts:
            instance.report_runless_asset_event(AssetMaterialization(
                asset_key=table, partition=part, description=f"takedown {result['takedown_id']}: {result['reason']}",
                metadata={"status": "takedown", "delta_version": result["rows_removed"][table]["version"], "gate_passed": True,
                          "takedown_id": result["takedown_id"], "reason": result["reason"], "ticket": result["ticket"] or "",
                          "rows_removed": result["rows_removed"][table]["rows"],
                          "gate": "not re-run: a takedown only removes rows from a version whose gate passed"},
            ))


# ---- sluice sample-crawl ---------------------------------------------------------------------------


def cmd_sample_crawl(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from spark_jobs.sample_crawl import generate_crawl

    with tqdm(total=args.pages, desc="pages", unit="page", file=sys.stderr) as bar:
        summary = generate_crawl(args.out, args.pages, seed=args.seed, pages_per_file=args.pages_per_file, progress=bar.update,
                                 recrawl=args.recrawl)
    print(f"wrote {summary['files']} WARC files ({summary['warc_records']} records) to {Path(args.out).resolve()}")
    print("page kinds: " + ", ".join(f"{k}={v}" for k, v in summary["kinds"].items()))
    return 0


# ---- UIs -------------------------------------------------------------------------------------------


def cmd_ui(args: argparse.Namespace) -> int:
    cfg = _config(args)
    prepare_dagster_home(cfg)
    exe = shutil.which("dagster-webserver", path=str(Path(sys.executable).parent)) or "dagster-webserver"
    port = str(args.port or cfg.dagster.ui_port)
    os.environ["SLUICE_DAGSTER__DAEMON"] = "false"  # the sensors show as stopped, and say why
    print(f"Dagster UI on http://127.0.0.1:{port} (instance {cfg.dagster_home}). This is the webserver alone: sensors and "
          "automation do not run here; `sluice serve` runs them (webserver and daemon).", file=sys.stderr)
    os.execv(exe, [exe, "-h", "127.0.0.1", "-p", port, "-m", "orchestration.definitions"])
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The Dagster webserver and daemon together (``dagster dev``) on the project's instance: leave it
    running, drop crawl folders into the landing folder, watch them flow through the UI."""
    cfg = _config(args, **({"landing_dir": Path(args.landing).resolve()} if args.landing else {}))
    os.environ["SLUICE_LANDING_DIR"] = str(Path(cfg.landing_dir).resolve())
    Path(cfg.landing_dir).mkdir(parents=True, exist_ok=True)
    home = prepare_dagster_home(cfg)
    os.environ["SLUICE_DAGSTER__DAEMON"] = "true"
    exe = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
    port = str(args.port or cfg.dagster.ui_port)
    print(f"Dagster webserver and daemon on http://127.0.0.1:{port} (instance {home}); watching {Path(cfg.landing_dir).resolve()} "
          f"for crawl folders", file=sys.stderr)
    os.execv(exe, [exe, "dev", "-h", "127.0.0.1", "-p", port, "-m", "orchestration.definitions"])
    return 0


def cmd_mlflow_ui(args: argparse.Namespace) -> int:
    cfg = _config(args)
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    port = str(args.port or cfg.mlflow.ui_port)
    print(f"MLflow UI on http://127.0.0.1:{port} ({redact_uri(cfg.mlflow_tracking_uri)})", file=sys.stderr)
    os.environ["MLFLOW_BACKEND_STORE_URI"] = cfg.mlflow_tracking_uri  # not in argv, where `ps` would show a password
    os.execv(exe, [exe, "ui", "--default-artifact-root", cfg.mlflow_artifact_root, "-h", "127.0.0.1", "-p", port])
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """Score a JSONL of documents (field ``text``) outside the pipeline, e.g. to check a page or to
    evaluate a scorer against labels: each line comes back with ``score`` and ``score_label``."""
    import json

    from tqdm import tqdm

    from gpu_jobs.scorers import load_scorer

    scorer = load_scorer(args.kind, args.model, args.max_length, args.label, "auto")
    src = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")
    dst = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")
    rows = [json.loads(line) for line in src if line.strip()]
    with tqdm(total=len(rows), desc="scoring", unit="doc", file=sys.stderr) as bar:
        for i in range(0, len(rows), 256):
            batch = rows[i : i + 256]
            r = scorer.score([str(x.get("text") or "") for x in batch])
            for x, v, lab in zip(batch, r.score, r.label):
                x["score"], x["score_label"] = float(v), lab
                dst.write(json.dumps(x, ensure_ascii=False) + "\n")
            bar.update(len(batch))
    sys.stdout.flush()
    for fh in (src, dst):
        if fh not in (sys.stdin, sys.stdout):
            fh.close()
    return 0


# ---- sluice export / rebuild -----------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    """Shards, index and manifest of a mixture at a pinned version of ``mixed``."""
    from storage import tables as T
    from storage.delta_table import LakehouseError, commit_info, current_version
    from storage.export import export_mixture

    cfg = _config(args)
    spec = next((m for m in cfg.mixing.mixtures if m.name == args.mixture), None)
    if spec is None:
        names = [m.name for m in cfg.mixing.mixtures] or ["(none configured: see mixing.mixtures in the README)"]
        print(f"sluice export: no mixture {args.mixture!r}; configured: {', '.join(names)}", file=sys.stderr)
        return 2
    root = cfg.lakehouse_path
    version = args.version if args.version is not None else current_version(root / T.MIXED.name)
    if version is None:
        print(f"sluice export: no {T.MIXED.name} table in {root}: materialize the mixture first (sluice run)", file=sys.stderr)
        return 2
    plan = {}
    run_id = commit_info(root / T.MIXED.name, version).get("mlflow_run_id")
    if run_id:  # what the mixture's run planned: epochs per source
        from mlflow.tracking import MlflowClient

        metrics = MlflowClient(cfg.mlflow_tracking_uri).get_run(run_id).data.metrics
        plan = {s.name: {"target_tokens": s.weight * spec.token_budget, "epochs": metrics.get(f"epochs.{s.name}")} for s in spec.sources}
    out = Path(args.out) if args.out else root / T.EXPORTS / spec.name / f"v{version}"
    try:
        m = export_mixture(root, spec, out, version, plan)
    except LakehouseError as e:
        print(f"sluice export: {e}", file=sys.stderr)
        return 2
    print(f"mixture {spec.name} from mixed@v{version}: {m['documents']} documents, {m['tokens']} tokens in {len(m['shards'])} shards")
    for name, src in m["sources"].items():
        print(f"  {name:16s} requested {src['requested_tokens']:>12.0f}  delivered {src['delivered_tokens']:>12d} tokens")
    print(f"manifest: {out / 'manifest.json'}")
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    from storage.export import rebuild

    cfg = _config(args)
    bad = rebuild(args.manifest, cfg.lakehouse_path, args.out)
    if bad:
        print(f"rebuilt into {args.out}: {len(bad)} files differ from the manifest: {', '.join(bad)}", file=sys.stderr)
        return 1
    print(f"rebuilt into {args.out}: every shard has the manifest's sha256")
    return 0


def cmd_mixture_search(args: argparse.Namespace) -> int:
    """Fit proxy-run results (weights → metric) and propose weights under the mixture's constraints."""
    import json
    import tempfile

    from documents.mixture import file_sha256
    from documents.mixture_search import propose, read_runs
    from storage import tables as T
    from storage.delta_table import commit_info, current_version

    cfg = _config(args)
    spec = next((m for m in cfg.mixing.mixtures if m.name == args.mixture), None)
    if spec is None:
        print(f"sluice mixture-search: no mixture {args.mixture!r} in mixing.mixtures", file=sys.stderr)
        return 2
    sources = [s.name for s in spec.sources]
    try:
        w, y = read_runs(args.runs, sources, args.metric)
    except (OSError, ValueError) as e:
        print(f"sluice mixture-search: {e}", file=sys.stderr)
        return 2
    from mlflow.tracking import MlflowClient

    client = MlflowClient(cfg.mlflow_tracking_uri)
    # Tokens each source has: given, or from the mixture's last build (target / epochs).
    available = {k: float(v) for k, v in (a.split("=", 1) for a in args.available or [])}
    version = current_version(cfg.lakehouse_path / T.MIXED.name)
    run_id = commit_info(cfg.lakehouse_path / T.MIXED.name, version).get("mlflow_run_id") if version is not None else None
    if run_id and not available:
        metrics = client.get_run(run_id).data.metrics
        available = {s.name: s.weight * spec.token_budget / metrics[f"epochs.{s.name}"] for s in spec.sources if metrics.get(f"epochs.{s.name}")}
    bounds = {s.name: min(1.0, (s.max_epochs or spec.max_epochs) * available[s.name] / spec.token_budget) for s in spec.sources if s.name in available}
    try:
        p = propose(w, y, sources, bounds, [s.name for s in spec.sources if s.synthetic], spec.synthetic_cap,
                    lower_is_better=not args.higher_is_better, samples=args.samples, seed=spec.seed)
    except ValueError as e:
        print(f"sluice mixture-search: {e}", file=sys.stderr)
        return 2
    exp = client.get_experiment_by_name(cfg.mlflow.experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(cfg.mlflow.experiment, artifact_location=cfg.mlflow_artifact_root)
    run = client.create_run(exp_id, run_name=f"mixture-search[{spec.name}]", tags={"sluice.level": "mixture_search", "sluice.mixture": spec.name})
    rid = run.info.run_id
    for k, v in {"mixture": spec.name, "metric": args.metric, "lower_is_better": not args.higher_is_better, "runs_file": str(args.runs),
                 "runs_sha256": file_sha256(args.runs), "model": "ridge on weights and pairwise products", "samples": args.samples,
                 **{f"bound.{n}": round(b, 6) for n, b in p.bounds.items()}}.items():
        client.log_param(rid, k, str(v))
    for k, v in {"runs": p.runs, "cv_r2": p.cv_r2, "predicted": p.predicted, "best_run_metric": p.best_run["metric"],
                 **{f"weight.{n}": v for n, v in p.weights.items()}}.items():
        client.log_metric(rid, k, float(v))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "proposal.json"
        out.write_text(json.dumps(p.__dict__, indent=1))
        client.log_artifact(rid, str(out), "mixture_search")
        client.log_artifact(rid, str(args.runs), "mixture_search")
    client.set_terminated(rid)
    print(f"{p.runs} proxy runs, fit leave-one-out R² {p.cv_r2:.3f}; best run: {args.metric} {p.best_run['metric']:.4g}; "
          f"predicted for the proposal: {p.predicted:.4g}")
    print(f"proposed weights for mixture {spec.name} (MLflow run {rid}):")
    for s in spec.sources:
        print(f"  - {{name: {s.name}, where: \"{s.where}\", weight: {p.weights[s.name]:.4f}}}   # bound {p.bounds.get(s.name, 1.0):.3f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sluice", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", help="YAML config file (see README)")
        sp.add_argument("--lakehouse", help="lakehouse folder (default ./lakehouse)")

    r = sub.add_parser("run", help="materialize the pipeline for one crawl folder, or every crawl in the landing folder")
    common(r)
    r.add_argument("--crawl", action="append", help="a folder of WARC files; its name is the crawl id (repeat it to run several "
                   "crawls, one run each; default: every crawl folder of the landing folder)")
    r.add_argument("--select", help="comma-separated assets to materialize (default: all)")
    r.add_argument("--verbose", action="store_true", help="Dagster, Spark and model logs on the terminal too (default: a log file)")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("sample-crawl", help="write a deterministic synthetic crawl with ground truth")
    s.add_argument("--pages", type=int, default=2000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    s.add_argument("--pages-per-file", type=int, default=1000)
    s.add_argument("--recrawl", type=int, default=0, help="N > 0: the same pages fetched again (new record ids and dates)")
    s.set_defaults(func=cmd_sample_crawl)

    sc = sub.add_parser("score", help="score a JSONL of documents (field text) with a quality scorer, outside the pipeline")
    sc.add_argument("--input", required=True, help="JSONL file, or - for standard input")
    sc.add_argument("--output", default="-", help="JSONL file (default: standard output)")
    sc.add_argument("--model", default="builtin:signals-v1", help="builtin:signals-v1 (default), a model folder or hub id, a fastText file")
    sc.add_argument("--kind", choices=["signals", "hf", "fasttext"], default="signals")
    sc.add_argument("--label", help="hf/fastText: the label whose probability is the score")
    sc.add_argument("--max-length", type=int, default=512)
    sc.set_defaults(func=cmd_score)

    t = sub.add_parser("tables", help="each table with its Delta version, rows and last commit; --history TABLE: its versions")
    common(t)
    t.add_argument("--history", metavar="TABLE", help="every version of TABLE: operation, asset, partition, runs, code, rows")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_tables)

    tr = sub.add_parser("trace", help="one document's history across every table: decisions, clusters, scores, rewrites, mixtures, runs")
    common(tr)
    tr.add_argument("doc_id", nargs="?")
    tr.add_argument("--url", help="every document fetched from this URL")
    tr.add_argument("--json", action="store_true")
    tr.set_defaults(func=cmd_trace)

    rd = sub.add_parser("read", help="a table at a version or a time (time travel), as JSON lines")
    common(rd)
    rd.add_argument("table")
    rd.add_argument("--version", type=int)
    rd.add_argument("--as-of", help="an ISO time: the version current then")
    rd.add_argument("--where", action="append", help="column=value (repeatable)")
    rd.add_argument("--columns", help="comma-separated")
    rd.add_argument("--limit", type=int, default=20)
    rd.set_defaults(func=cmd_read)

    df = sub.add_parser("diff", help="rows added and removed between two versions of a table, by partition and reason")
    common(df)
    df.add_argument("table")
    df.add_argument("v1", type=int)
    df.add_argument("v2", type=int)
    df.add_argument("--json", action="store_true")
    df.set_defaults(func=cmd_diff)

    au = sub.add_parser("audit", help="each crawl's funnel per stage and reason, conservation, gates, versions: HTML report")
    common(au)
    au.add_argument("--crawl", help="one crawl id (default: every crawl)")
    au.add_argument("--json", action="store_true")
    au.set_defaults(func=cmd_audit)

    tk = sub.add_parser("takedown", help="remove a URL, domain or document and all derived from it everywhere; block it at ingest")
    common(tk)
    target = tk.add_mutually_exclusive_group(required=True)
    target.add_argument("--url")
    target.add_argument("--domain")
    target.add_argument("--doc-id")
    tk.add_argument("--reason", required=True)
    tk.add_argument("--ticket")
    tk.add_argument("--json", action="store_true")
    tk.set_defaults(func=cmd_takedown)

    e = sub.add_parser("export", help="write a mixture's shards (JSONL.zst and Parquet), index and manifest")
    common(e)
    e.add_argument("--mixture", required=True)
    e.add_argument("--out", help="default: <lakehouse>/_exports/<mixture>/v<version>")
    e.add_argument("--version", type=int, help="the Delta version of mixed to export (default: the current one)")
    e.set_defaults(func=cmd_export)

    rb = sub.add_parser("rebuild", help="rebuild a manifest's shards from its pinned table version and check their sha256")
    common(rb)
    rb.add_argument("manifest")
    rb.add_argument("--out", required=True)
    rb.set_defaults(func=cmd_rebuild)

    ms = sub.add_parser("mixture-search", help="propose mixture weights from proxy-run results (RegMix-style), under the mixture's caps")
    common(ms)
    ms.add_argument("--mixture", required=True)
    ms.add_argument("--runs", required=True, help="CSV: one column per source (its weight) and the metric column")
    ms.add_argument("--metric", required=True)
    ms.add_argument("--higher-is-better", action="store_true", help="default: lower is better (a loss)")
    ms.add_argument("--available", nargs="*", help="source=tokens (default: from the mixture's last build)")
    ms.add_argument("--samples", type=int, default=200_000)
    ms.set_defaults(func=cmd_mixture_search)

    u = sub.add_parser("ui", help="the Dagster webserver on 127.0.0.1")
    common(u)
    u.add_argument("--port", type=int)
    u.set_defaults(func=cmd_ui)

    sv = sub.add_parser("serve", help="the Dagster webserver and daemon: sensors and automation run crawls as they land")
    common(sv)
    sv.add_argument("--landing", help="the landing folder to watch (default: landing_dir of the config)")
    sv.add_argument("--port", type=int)
    sv.set_defaults(func=cmd_serve)

    m = sub.add_parser("mlflow-ui", help="the MLflow UI on 127.0.0.1")
    common(m)
    m.add_argument("--port", type=int)
    m.set_defaults(func=cmd_mlflow_ui)
    return p


# Commands that read tables through PyArrow datasets and have nothing left to do at exit. PyArrow's
# scanner threads can outlive a table read into interpreter teardown and abort it ("terminate called
# without an active exception", exit 134; apache/arrow#34314, delta-rs#2184): seen here about one run
# in ten. These commands end the process once their output is flushed, before that teardown.
_EXIT_AT_ONCE = {"trace", "read", "diff", "tables", "audit", "takedown", "export", "rebuild"}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code = int(args.func(args) or 0)
    if argv is None and args.command in _EXIT_AT_ONCE:  # the console script, not an in-process call
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())

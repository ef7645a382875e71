"""The audit commands: tables and their history, trace, time travel (read, diff), takedown, the
funnel report. They read the lakehouse; only takedown changes it."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from orchestration.cli.common import config_from_args, prepare_dagster_home
from orchestration.cli.console import print_tables
from orchestration.config import SluiceConfig


def cmd_tables(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
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
    cfg = config_from_args(args)
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

    cfg = config_from_args(args)
    when = datetime.fromisoformat(args.as_of).astimezone(UTC) if args.as_of else None
    where = dict(w.split("=", 1) for w in args.where or [])
    try:
        t, version = read_version(
            cfg.lakehouse_path, args.table, args.version, when, args.columns.split(",") if args.columns else None, where, args.limit
        )
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

    cfg = config_from_args(args)
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

    cfg = config_from_args(args)
    kind, value = next((k, v) for k, v in (("url", args.url), ("domain", args.domain), ("doc_id", args.doc_id)) if v)
    try:
        req = Request(kind, value, args.reason, args.ticket)
    except ValueError as e:
        print(f"sluice takedown: {e}", file=sys.stderr)
        return 2
    t0 = time.time()
    # Dagster's home and a SQLite MLflow store may sit outside the lakehouse: scrubbed too.
    extra = [cfg.dagster_home] + (
        [Path(cfg.mlflow_tracking_uri[len("sqlite:///") :]).parent] if cfg.mlflow_tracking_uri.startswith("sqlite:///") else []
    )
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
            print(
                f"  export {e['export']}: -{e['documents_removed']} documents, -{e['tokens_removed']} tokens (manifest flagged rebuild_required)"
            )
        print(f"  other files scrubbed: {result['scrub']['files_scrubbed']}, deleted: {result['scrub']['files_deleted']}")
        v = result["verification"]
        print(
            "  verified: no table's current version holds the documents, and no file holds their text"
            if v["clean"]
            else f"  NOT CLEAN: rows left {v['rows_left']}; files still holding text: {v['files_holding_text'][:10]}"
        )
        print(f"  recorded in takedowns@v{result['takedowns_version']}; later crawls reject the URLs at ingest (reason `takedown`)")
    return 0 if result["verification"]["clean"] else 1


def cmd_audit(args: argparse.Namespace) -> int:
    """The funnel report of each crawl (or one), as HTML with plots, logged to an MLflow run."""
    import json

    from audit.report import render, write_report
    from storage import tables as T
    from storage.delta_table import read_arrow, table_exists

    cfg = config_from_args(args)
    root = cfg.lakehouse_path
    if not table_exists(root / T.RAW_CRAWL.name):
        print(f"sluice audit: no {T.RAW_CRAWL.name} table in {root}: run the pipeline first", file=sys.stderr)
        return 2
    crawls = (
        [args.crawl]
        if args.crawl
        else sorted(set(read_arrow(root / T.RAW_CRAWL.name, columns=["crawl_id"]).column("crawl_id").to_pylist()))
    )
    ok = True
    from orchestration.resources import lineage_resource

    lineage = lineage_resource(cfg)
    client, exp_id = lineage.client, lineage.experiment_id
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
            instance.report_runless_asset_event(
                AssetMaterialization(
                    asset_key=table,
                    partition=part,
                    description=f"takedown {result['takedown_id']}: {result['reason']}",
                    metadata={
                        "status": "takedown",
                        "delta_version": result["rows_removed"][table]["version"],
                        "gate_passed": True,
                        "takedown_id": result["takedown_id"],
                        "reason": result["reason"],
                        "ticket": result["ticket"] or "",
                        "rows_removed": result["rows_removed"][table]["rows"],
                        "gate": "not re-run: a takedown only removes rows from a version whose gate passed",
                    },
                )
            )

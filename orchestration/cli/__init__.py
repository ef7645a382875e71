"""``sluice``: run the pipeline, make a sample crawl, list tables, open the UIs."""

from __future__ import annotations

import argparse
import os
import sys

from orchestration.cli.audits import cmd_audit, cmd_diff, cmd_read, cmd_tables, cmd_takedown, cmd_trace
from orchestration.cli.mixtures import cmd_export, cmd_mixture_search, cmd_rebuild
from orchestration.cli.run import cmd_run
from orchestration.cli.servers import cmd_mlflow_ui, cmd_serve, cmd_ui
from orchestration.cli.tools import cmd_sample_crawl, cmd_score


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sluice", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", help="YAML config file (see README)")
        sp.add_argument("--lakehouse", help="lakehouse folder (default ./lakehouse)")

    r = sub.add_parser("run", help="materialize the pipeline for one crawl folder, or every crawl in the landing folder")
    common(r)
    r.add_argument(
        "--crawl",
        action="append",
        help="a folder of WARC files; its name is the crawl id (repeat it to run several "
        "crawls, one run each; default: every crawl folder of the landing folder)",
    )
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

"""Every crawl shape runs clean through `sluice run`: no duplicates, all duplicates, all rejected at
ingest / at the filters / at decontamination, one page, and no page at all (a WARC holding only its
warcinfo record). Each exits 0 with empty-where-empty tables, conservation holds in the audit, the
mixture over all of them is built, and every stage commits once per crawl (a post-commit step that
fails must not retry the step into a second commit).

The shapes are built from real pages of ``../shared/data`` when present, else from generated pages
(``tests/crawl_shapes.py``); the counts asserted below hold for either."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from tests.crawl_shapes import build_shapes, write_eval_set

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def shapes_run(spark, tmp_path_factory):
    """One `sluice run` (in this process, on the test run's Spark session) over every shape."""
    from orchestration import cli

    tmp = tmp_path_factory.mktemp("shapes")
    landing = tmp / "landing"
    shapes = build_shapes(landing)
    evals = write_eval_set(tmp / "evals.jsonl")
    conf = tmp / "sluice.yaml"
    conf.write_text(
        json.dumps(
            {  # JSON is YAML
                "lakehouse_dir": str(tmp / "lake"),
                "landing_dir": str(landing),
                "dagster": {"retries": 0},
                "spark": {"master": "local[2]", "shuffle_partitions": 2, "show_progress": False},
                "decontamination": {"benchmarks": [{"name": "shape-evals", "path": str(evals), "fields": ["question"]}]},
                "mixing": {
                    "mixtures": [
                        {"name": "shapes", "token_budget": 20000, "seed": 1, "sources": [{"name": "all", "where": "true", "weight": 1.0}]}
                    ]
                },
            }
        )
    )
    # `sluice run` exports its config, lakehouse and Dagster home to the environment (for its child
    # processes): restored afterwards, or every later test of this run would read this config.
    saved = dict(os.environ)
    try:
        for k in ("SLUICE_CONFIG", "SLUICE_LAKEHOUSE_DIR", "SLUICE_LANDING_DIR", "DAGSTER_HOME"):
            os.environ.pop(k, None)
        rc = cli.main(["run", "--config", str(conf), *[a for s in shapes.values() for a in ("--crawl", str(s))]])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return rc, tmp / "lake", shapes


def _rows(lake: Path, table: str, crawl: str, **where) -> list[dict]:
    from storage.delta_table import read_arrow

    if not (lake / table / "_delta_log").exists():
        return []
    return [r for r in read_arrow(str(lake / table), partition={"crawl_id": crawl, **where}).to_pylist()]


def test_every_shape_exits_0_with_empty_where_empty_tables(shapes_run):
    rc, lake, shapes = shapes_run
    log = sorted((lake / "_logs").glob("*.log"))
    assert rc == 0, log[-1].read_text()[-5000:] if log else "no log"
    n = {
        name: {t: len(_rows(lake, t, name)) for t in ("raw_crawl", "filtered", "deduplicated", "quality_scored", "decontaminated")}
        for name in shapes
    }
    reasons = {name: Counter((r["stage"], r["reason"]) for r in _rows(lake, "rejections", name)) for name in shapes}
    # nothing at all: one warcinfo record, which is WARC bookkeeping
    assert n["empty"] == dict.fromkeys(n["empty"], 0) and reasons["empty"] == {("ingest", "not_response"): 1}
    # only non-HTML responses: each rejected at ingest with its reason
    assert n["non-html"]["raw_crawl"] == 0 and reasons["non-html"][("ingest", "not_html")] == 3
    # every page dropped by the quality rules
    assert n["all-rejected"]["raw_crawl"] == 20 and n["all-rejected"]["filtered"] == 0 and n["all-rejected"]["decontaminated"] == 0
    # one page: one document all the way
    assert n["one-page"]["filtered"] == n["one-page"]["deduplicated"] == n["one-page"]["quality_scored"] == 1
    # one page under twelve URLs: dedup keeps one
    assert n["all-dups"]["filtered"] == 12 and n["all-dups"]["deduplicated"] == 1
    assert sum(v for (stage, _), v in reasons["all-dups"].items() if stage == "dedup") == 11
    # no duplicates: dedup removes nothing
    assert n["no-dups"]["filtered"] >= 20 and n["no-dups"]["deduplicated"] == n["no-dups"]["filtered"]
    assert not any(stage == "dedup" for stage, _ in reasons["no-dups"])
    # every page quotes a benchmark item: decontamination removes them all
    dec = n["all-contaminated"]
    assert dec["deduplicated"] == 4 and dec["decontaminated"] == 0
    assert sum(v for (stage, _), v in reasons["all-contaminated"].items() if stage == "decontam") >= 4


def test_every_shape_conserves_documents_in_its_audit(shapes_run):
    from audit.report import write_report

    rc, lake, shapes = shapes_run
    for name in shapes:
        summary = write_report(lake, name, lake / "_reports" / "audit-check" / name)
        assert summary["conserved"], (name, summary["stages"])
        assert summary["gates_passed"], (name, summary["stages"])
        ingest = summary["stages"][0]
        # the funnel starts at HTTP responses: the warcinfo record is listed apart, not as a rejection
        assert "not_response" not in ingest["reasons"] and summary["warc_structure_records"] == {"warcinfo": 1}


def test_one_commit_per_stage_and_crawl(shapes_run):
    """A stage that publishes twice for one crawl in one run (a retry after its commit) shows here."""
    from deltalake import DeltaTable

    rc, lake, shapes = shapes_run
    from storage.tables import TABLES

    for table in [t for t in TABLES if (lake / t / "_delta_log").is_dir()]:  # every table of the contract this run wrote
        commits = Counter()
        for h in DeltaTable(str(lake / table)).history():
            info = h.get("sluice") or {}
            if info.get("asset"):
                commits[(info["asset"], info.get("dagster_partition"))] += 1
        assert commits and max(commits.values()) == 1, (table, commits)


def test_the_mixture_over_every_shape_is_built(shapes_run):
    from storage.delta_table import read_arrow

    rc, lake, shapes = shapes_run
    rows = read_arrow(str(lake / "mixed"), partition={"mixture_name": "shapes"}).to_pylist()
    assert rows and {r["crawl_id"] for r in rows} <= set(shapes)

"""Audits on a real two-crawl lakehouse built by `sluice run` (real Spark, Delta, GX, MLflow,
Dagster): trace a document dropped at each stage, a near-duplicate, a mixed and exported one;
table history and diffs; the crawl audit report; and a domain takedown that leaves no byte of a
planted token under the lakehouse, refuses time travel to the versions that held it, promotes
the surviving duplicate, and is applied at ingest to a later crawl."""

from __future__ import annotations

import io
import json
import random
import uuid
from pathlib import Path

import pytest

from tests.conftest import clean_cli_environment

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "zqxvplantedtoken4711"
PLANTED = "planted-example.org"


def _warc(path: Path, pages: list[tuple[str, bytes]]) -> None:
    """A WARC file of HTTP 200 responses (url, HTML body)."""
    from warcio.warcwriter import WARCWriter

    with path.open("wb") as fh:
        w = WARCWriter(fh, gzip=True)
        for url, body in pages:
            http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: %d\r\n\r\n" % len(body) + body
            w.write_record(
                w.create_warc_record(
                    url,
                    "response",
                    payload=io.BytesIO(http),
                    length=len(http),
                    warc_content_type="application/http; msgtype=response",
                    warc_headers_dict={"WARC-Record-ID": f"<urn:uuid:{uuid.uuid4()}>", "WARC-Date": "2026-03-01T00:00:00Z"},
                )
            )


def _page(seed: int, site: str, extra: list[str] | None = None) -> bytes:
    from sample_crawl import text as T
    from sample_crawl.generator import _render

    rng = random.Random(seed)
    title, paras = T.article(rng)
    return _render(site, title, paras[:2] + (extra or []) + paras[2:], rng)


SECRET = [
    f"The archive note for this page records the phrase {TOKEN} next to the opening hours of the reading room.",
    f"Visitors who mention {TOKEN} at the desk are given the annotated map of the old harbour district.",
]


@pytest.fixture(scope="module")
def lake(sample_landing, tmp_path_factory):
    """Two crawls through `sluice run` (in process, as a user runs it), a mixture and its export.
    crawl-a holds three pages of planted-example.org (two carry the token; one is the kept copy
    of a text that crawl-b has again on another site)."""
    from orchestration.cli import main
    from sample_crawl import generate_crawl

    # The CLI, run in process, exports its settings to the environment (for its child processes):
    # registered here so that they are put back for the tests after this module.
    mp = pytest.MonkeyPatch()
    clean_cli_environment(mp)
    tmp = tmp_path_factory.mktemp("audit")
    landing = tmp / "landing"
    generate_crawl(landing / "crawl-a", 150, seed=31, pages_per_file=150)
    _warc(
        landing / "crawl-a" / "planted-00000.warc.gz",
        [
            (f"https://{PLANTED}/secret-1.html", _page(1, PLANTED, SECRET[:1])),
            (f"https://{PLANTED}/notes-2.html", _page(2, PLANTED, SECRET[1:])),
            (f"https://{PLANTED}/shared-4.html", _page(4, PLANTED)),
        ],
    )
    generate_crawl(landing / "crawl-b", 120, seed=32, pages_per_file=120)
    _warc(landing / "crawl-b" / "mirror-00000.warc.gz", [("https://mirror-site.net/copy-4.html", _page(4, "mirror-site.net"))])
    lakehouse = tmp / "lake"
    conf = tmp / "sluice.yaml"
    conf.write_text(
        json.dumps(
            {
                "lakehouse_dir": str(lakehouse),
                "landing_dir": str(landing),
                "spark": {"master": "local[2]", "shuffle_partitions": 2, "show_progress": False},
                "scoring": {"scorers": [{"name": "quality", "kind": "signals", "model": "builtin:signals-v1"}]},
                "decontamination": {
                    "benchmarks": [{"name": "evals", "path": str(landing / "crawl-a" / "eval_set.jsonl"), "fields": ["question"]}]
                },
                "mixing": {
                    "mixtures": [
                        {
                            "name": "mix",
                            "token_budget": 40000,
                            "seed": 1,
                            "shard_docs": 50,
                            "sources": [{"name": "all", "where": "true", "weight": 1.0}],
                        }
                    ]
                },
            }
        )
    )
    select = "raw_crawl,filtered,deduplicated,quality_scored,rewritten,decontaminated,mixed"
    assert (
        main(["run", "--config", str(conf), "--crawl", str(landing / "crawl-a"), "--crawl", str(landing / "crawl-b"), "--select", select])
        == 0
    )
    assert main(["export", "--config", str(conf), "--mixture", "mix"]) == 0
    yield {"conf": conf, "root": lakehouse, "landing": landing, "main": main}
    mp.undo()


def _rejection(root: Path, stage: str, reason_prefix: str = "") -> dict:
    from storage.delta_table import read_arrow

    rows = read_arrow(
        root / "rejections", columns=["doc_id", "reason", "related_doc_id", "stage", "crawl_id", "value", "detail"]
    ).to_pylist()
    found = [r for r in rows if r["stage"] == stage and r["reason"].startswith(reason_prefix)]
    assert found, (stage, reason_prefix)
    return sorted(found, key=lambda r: r["doc_id"])[0]


def _trace(root: Path, doc_id: str | None = None, url: str | None = None) -> dict:
    from audit.trace import trace

    return trace(root, doc_id=doc_id, url=url)


def test_trace_names_each_stage_decision_with_its_runs(lake, capsys):
    root = lake["root"]
    ing = _rejection(root, "ingest", "http_status")
    [doc] = _trace(root, ing["doc_id"])["documents"]
    assert [s["step"] for s in doc["steps"]] == ["ingest"] and doc["steps"][0]["says"].startswith("rejected at ingest: http_status")

    flt = _rejection(root, "filter", "gopher_quality")
    [doc] = _trace(root, flt["doc_id"])["documents"]
    ingest, dropped = doc["steps"]
    assert ingest["says"].startswith("ingested from ") and ingest["commit"]["table"] == "raw_crawl"
    # the rule, the measured value and the bound it crossed
    assert dropped["says"] == f"dropped at {flt['reason']}: {flt['value']:g} {flt['detail']}" and flt["detail"][0] in "<>"
    assert dropped["commit"]["dagster_run_id"] and dropped["commit"]["mlflow_run_id"] and dropped["commit"]["code_version"]

    near = _rejection(root, "dedup", "dedup.near")
    [doc] = _trace(root, near["doc_id"])["documents"]
    dedup = next(s for s in doc["steps"] if s["step"] == "dedup")
    assert dedup["kept_doc_id"] == near["related_doc_id"] and near["related_doc_id"] in dedup["says"]
    [kept] = _trace(root, near["related_doc_id"])["documents"]
    kept_step = next(s for s in kept["steps"] if s["step"] == "dedup")
    assert near["doc_id"] in {a["doc_id"] for a in kept_step["absorbed"]}

    dc = _rejection(root, "decontam")
    [doc] = _trace(root, dc["doc_id"])["documents"]
    assert next(s for s in doc["steps"] if s["step"] == "decontam")["says"].startswith("removed: decontam.evals")

    # A mixed document names its mixture, and the exported shard and row it sits in.
    import pyarrow.parquet as pq

    [index] = list((root / "_exports" / "mix").glob("v*/index.parquet"))
    first = pq.read_table(index).to_pylist()[0]
    [doc] = _trace(root, first["doc_id"])["documents"]
    steps = {s["step"]: s for s in doc["steps"]}
    assert {"ingest", "filter", "dedup", "quality", "decontam", "mixture", "export"} <= set(steps)
    assert "mixture 'mix'" in steps["mixture"]["says"]
    exported = [s for s in doc["steps"] if s["step"] == "export"]
    assert (first["shard"], first["row"]) in {(s["shard"], s["row"]) for s in exported}
    assert "quality" in steps["quality"]["says"] and "builtin:signals-v1" in steps["quality"]["says"]

    # The CLI, as a person uses it: by URL, and as JSON.
    assert lake["main"](["trace", "--config", str(lake["conf"]), "--url", f"https://{PLANTED}/secret-1.html"]) == 0
    out = capsys.readouterr().out
    assert f"https://{PLANTED}/secret-1.html" in out and "kept by every filter" in out and "tables read:" in out
    assert lake["main"](["trace", "--config", str(lake["conf"]), first["doc_id"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["documents"][0]["doc_id"] == first["doc_id"]
    assert lake["main"](["trace", "--config", str(lake["conf"]), "no-such-doc"]) == 1


def test_crawl_audit_report_conserves_every_stage(lake, capsys):
    from audit.report import write_report

    s = write_report(lake["root"], "crawl-a", lake["root"] / "_reports" / "audit" / "crawl-a")
    assert s["conserved"] and s["gates_passed"]
    by = {x["stage"]: x for x in s["stages"]}
    assert by["filter"]["in"] == by["ingest"]["kept"] and by["dedup"]["in"] == by["filter"]["kept"]
    assert by["dedup"]["kept"] + by["dedup"]["rejected"] == by["dedup"]["in"] and by["dedup"]["words_rejected"] > 0
    # the filters' words are those of the text they extracted: what they kept plus what they rejected after extraction
    assert by["filter"]["words_rejected"] > 0 and by["filter"]["words_in"] == by["filter"]["words_kept"] + by["filter"]["words_rejected"]
    assert by["ingest"]["words_rejected"] is None  # no text before extraction
    assert Path(s["report"]).exists() and all(Path(p).stat().st_size > 1000 for p in s["plots"])
    # the last stage of each crawl attached the same report to its materialization
    assert (lake["root"] / "_reports" / "audit" / "crawl-b" / "audit.html").exists()
    assert lake["main"](["audit", "--config", str(lake["conf"]), "--crawl", "crawl-b"]) == 0
    assert "conserved" in capsys.readouterr().out


def test_domain_takedown_leaves_nothing_and_blocks_the_recrawl(lake, capsys):
    from storage.delta_table import LakehouseError, current_version, read_arrow

    root, main, conf = lake["root"], lake["main"], lake["conf"]
    planted = [r["doc_id"] for r in read_arrow(root / "raw_crawl", columns=["doc_id", "url"]).to_pylist() if PLANTED in r["url"]]
    assert len(planted) == 3
    shared = next(r for r in read_arrow(root / "raw_crawl", columns=["doc_id", "url"]).to_pylist() if r["url"].endswith("shared-4.html"))
    mirror = next(
        r
        for r in read_arrow(root / "rejections", columns=["doc_id", "url", "related_doc_id"]).to_pylist()
        if (r["url"] or "").startswith("https://mirror-site.net")
    )
    assert mirror["related_doc_id"] == shared["doc_id"]  # crawl-b's copy was dropped for crawl-a's
    before = current_version(root / "filtered")
    texts = read_arrow(root / "decontaminated", columns=["text"]).column("text").to_pylist()
    assert sum(TOKEN in t for t in texts) == 2  # both token pages made it through every stage

    assert (
        main(["takedown", "--config", str(conf), "--domain", PLANTED, "--reason", "subject access request", "--ticket", "PRIV-9", "--json"])
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["verification"]["clean"] and result["documents"] >= 3
    assert {p["promoted"] for p in result["promotions"]} == {mirror["doc_id"]}

    # No byte of the token anywhere under the lakehouse: tables, old versions, SQLite databases,
    # MLflow artifacts, reports, logs, exports (read raw, and decoded where compressed).
    import gzip

    import pyarrow as pa

    for p in root.rglob("*"):
        if not p.is_file():
            continue
        data = p.read_bytes()
        assert TOKEN.encode() not in data, p
        if p.suffix == ".zst":
            with pa.input_stream(str(p), compression="zstd") as fh:
                assert TOKEN.encode() not in fh.read(), p
        if p.suffix == ".gz":
            assert TOKEN.encode() not in gzip.decompress(data), p
        if p.suffix == ".parquet":
            import pyarrow.parquet as pq

            assert TOKEN not in json.dumps(pq.read_table(p).to_pylist(), default=str), p
    from storage import tables as T

    # Every table that holds documents (the contract's id columns), in every column that names one.
    for t in T.TABLES.values():
        for column in t.id_columns if (root / t.name).exists() else ():
            ids = set(read_arrow(root / t.name, columns=[column]).column(column).to_pylist())
            assert not ids & set(planted), (t.name, column)

    # Time travel to a version that held them fails, naming the takedown; the current one reads.
    with pytest.raises(LakehouseError, match=f"takedown {result['takedown_id']}.*subject access request.*PRIV-9"):
        read_arrow(root / "filtered", version=before)
    assert main(["read", "--config", str(conf), "filtered", "--version", str(before)]) == 2
    capsys.readouterr()

    # The surviving copy took the removed one's place, and the trace says so.
    [doc] = _trace(root, mirror["doc_id"])["documents"]
    dedup = next(s for s in doc["steps"] if s["step"] == "dedup")
    assert "promoted" in dedup["says"] and result["takedown_id"] in dedup["says"]
    sig = read_arrow(root / "dedup_signatures", columns=["doc_id"]).column("doc_id").to_pylist()
    assert mirror["doc_id"] in sig
    [gone] = _trace(root, url=f"https://{PLANTED}/secret-1.html")["documents"]
    assert gone["steps"][0]["step"] == "takedown" and "subject access request" in gone["steps"][0]["says"]
    [gone] = _trace(root, planted[0])["documents"]  # by id, after the rows are gone
    assert [st["step"] for st in gone["steps"]] == ["takedown"] and result["takedown_id"] in gone["steps"][0]["says"]

    # History shows the takedown's commits; a diff that needs a purged version refuses like a read.
    from audit.history import diff, history

    hist = history(root, "filtered")
    assert hist[-1]["takedown_id"] == result["takedown_id"] and hist[-1]["rows_removed"] - hist[-1]["rows_added"] == 3
    with pytest.raises(LakehouseError, match=result["takedown_id"]):
        diff(root, "filtered", hist[-2]["version"], hist[-1]["version"])
    # The export was flagged, with what it lost.
    [manifest] = list((root / "_exports" / "mix").glob("v*/manifest.json"))
    m = json.loads(manifest.read_text())
    assert result["rows_removed"]["mixed"]["rows"] >= 1 and result["exports"][0]["documents_removed"] >= 1  # the mixture held one
    assert m["rebuild_required"] and m["takedowns"][0]["takedown_id"] == result["takedown_id"]
    assert m["takedowns"][0]["documents_removed"] == result["exports"][0]["documents_removed"]

    # A later crawl that fetches the page again: rejected at ingest with reason `takedown`.
    recrawl = lake["landing"] / "crawl-c"
    recrawl.mkdir()
    _warc(
        recrawl / "c-00000.warc.gz",
        [
            (f"https://{PLANTED}/secret-1.html", _page(1, PLANTED, SECRET[:1])),
            ("https://fresh-site.com/a.html", _page(9, "fresh-site.com")),
        ],
    )
    assert main(["run", "--config", str(conf), "--crawl", str(recrawl), "--select", "raw_crawl"]) == 0
    rej = [r for r in read_arrow(root / "rejections", partition={"crawl_id": "crawl-c", "stage": "ingest"}).to_pylist()]
    assert [(r["url"], r["reason"]) for r in rej] == [(f"https://{PLANTED}/secret-1.html", "takedown")]
    assert read_arrow(root / "raw_crawl", partition={"crawl_id": "crawl-c"}).column("url").to_pylist() == ["https://fresh-site.com/a.html"]
    # ... and the diff of the two versions says what the re-crawl added, and why one record left.
    d = diff(root, "rejections", history(root, "rejections")[-2]["version"], history(root, "rejections")[-1]["version"])
    assert d["added"] == {"crawl_id=crawl-c/stage=ingest": {"takedown": 1}} and d["rows_removed"] == 0
    assert d["commits"][-1]["asset"] == "raw_crawl" and d["commits"][-1]["dagster_run_id"]

"""WARC reading without Spark: every record is either a document or an explained rejection."""

import collections
import gzip
import os

import pyarrow as pa
import pytest

from storage.warc import HttpResponse, IngestOptions, discover_warc_files, make_doc_id, read_warc_file
from tests.conftest import ground_truth, shared_data


def read_all(path, rel="f.warc.gz", opts=None):
    batches = list(read_warc_file(str(path), rel, os.path.getsize(path), opts or IngestOptions()))
    return pa.Table.from_batches(batches).to_pylist()


def test_every_response_matches_its_ground_truth(sample_landing):
    crawl = sample_landing / "crawl-t1"
    truth = {t["warc_record_id"]: t["expected"] for t in ground_truth(crawl)}
    seen = {}
    files = discover_warc_files(crawl, IngestOptions().file_globs)
    summaries = []
    for f in files:
        for row in read_all(f.path, f.rel):
            if row["kind"] == "doc":
                seen[row["warc_record_id"]] = "doc"
            elif row["kind"] == "reject" and row["warc_record_id"] in truth:
                seen[row["warc_record_id"]] = row["reason"]
            elif row["kind"] == "file":
                summaries.append(row)
    assert seen == truth
    # The generator cut the last file's final gzip member: reported, not fatal.
    assert [s["reason"] for s in summaries].count("unreadable") == 1


def test_rows_carry_provenance(sample_landing):
    f = discover_warc_files(sample_landing / "crawl-t1", IngestOptions().file_globs)[0]
    docs = [r for r in read_all(f.path, f.rel) if r["kind"] == "doc"]
    d = docs[0]
    assert d["doc_id"] == make_doc_id(d["warc_record_id"], f.rel, d["warc_offset"])
    assert d["url"].startswith("https://") and d["host"] in d["url"]
    assert d["warc_file"] == f.rel and d["warc_offset"] > 0 and d["warc_date"] is not None
    assert d["html"].startswith(b"<!DOCTYPE html>") and d["content_length"] == len(d["html"])
    assert d["charset"] == "utf-8" and d["http_status"] == 200
    assert len({r["doc_id"] for r in docs}) == len(docs)


def test_record_reader_survives_empty_and_garbage_files(tmp_path):
    empty = tmp_path / "empty.warc.gz"
    empty.write_bytes(b"")
    rows = read_all(empty)
    assert [(r["kind"], r["records"]) for r in rows] == [("file", 0)]

    garbage = tmp_path / "garbage.warc.gz"
    garbage.write_bytes(gzip.compress(b"this is not a WARC file at all\r\n" * 50))
    rows = read_all(garbage)
    rejects = [r for r in rows if r["kind"] == "reject"]
    assert len(rejects) == 1 and rejects[0]["reason"] == "unreadable"
    assert rows[-1]["kind"] == "file" and rows[-1]["records"] == 1


def test_http_parser_accepts_lf_only_headers_and_reads_charset():
    r = HttpResponse(b"HTTP/1.0 200 OK\nContent-Type: text/html; charset=EUC-JP\nContent-Encoding: gzip\n\n<html>x</html>")
    assert (r.status, r.mime, r.charset, r.body) == (200, "text/html", "euc-jp", b"<html>x</html>")
    with pytest.raises(ValueError):
        HttpResponse(b"HTPT/1.1 two-hundred OK\r\n\r\nx")


def test_gzip_and_chunked_bodies_are_decoded(tmp_path):
    import io

    from warcio.warcwriter import WARCWriter

    html = b"<html><body>" + b"hello world " * 50 + b"</body></html>"
    gz = gzip.compress(html)
    chunked = b"%x\r\n" % len(html[:100]) + html[:100] + b"\r\n" + b"%x\r\n" % len(html[100:]) + html[100:] + b"\r\n0\r\n\r\n"
    path = tmp_path / "enc.warc.gz"
    with path.open("wb") as fh:
        w = WARCWriter(fh, gzip=True)
        for name, hdr, body in [("gz", "Content-Encoding: gzip", gz), ("ch", "Transfer-Encoding: chunked", chunked)]:
            http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n" + hdr.encode() + b"\r\n\r\n" + body
            w.write_record(
                w.create_warc_record(
                    f"http://x/{name}",
                    "response",
                    payload=io.BytesIO(http),
                    length=len(http),
                    warc_content_type="application/http; msgtype=response",
                )
            )
    docs = [r for r in read_all(path) if r["kind"] == "doc"]
    assert [d["html"] for d in docs] == [html, html]


# Expected documents per real WARC file (HTTP 200 HTML responses), and records read.
SHARED_EXPECTED = {
    "cc-2020-34/warcfile.warc.gz": (16, 50),
    "cc-2024-22/whirlwind.warc.gz": (1, 4),
    "cc-2024-22/whirlwind.warc.wat.gz": (0, 2),
    "cc-2024-22/whirlwind.warc.wet.gz": (0, 2),
    "clueweb09-quirk/clueweb-quirk.warc.gz": (29, 30),
    "dolma-wget/sample-0000.warc.gz": (22, 48),
    "dolma-wget/sample-0001.warc.gz": (15, 34),
    "ukwa/IAH-20080430204825-00000-blackbook-truncated.warc.gz": (2, 23),
    "ukwa/IAH-urls-wget.warc.gz": (2, 36),
    "ukwa/main-page.warc.gz": (1, 151),
    "ukwa/post-blackout.warc.gz": (1, 117),
    "ukwa/sopa-wikipedia-homepage.warc.gz": (1, 164),
}


@pytest.mark.shared_data
def test_real_warc_files_ingest_with_odd_records_counted():
    root = shared_data("warc")
    files = discover_warc_files(root, ["*.gz"])
    assert {f.rel for f in files} >= set(SHARED_EXPECTED)
    for f in files:
        rows = read_all(f.path, f.rel)
        kinds = collections.Counter(r["kind"] for r in rows)
        summary = rows[-1]
        assert summary["kind"] == "file" and summary["records"] == kinds["doc"] + kinds["reject"]
        if f.rel in SHARED_EXPECTED:
            assert (kinds["doc"], summary["records"]) == SHARED_EXPECTED[f.rel], f.rel
        docs = [r for r in rows if r["kind"] == "doc"]
        assert all(r["html"] and r["url"] for r in docs)
    # ClueWeb09 keeps its EUC-JP charset and its LF-only HTTP headers are parsed.
    clue = [r for r in read_all(root / "clueweb09-quirk/clueweb-quirk.warc.gz") if r["kind"] == "doc"]
    assert {r["charset"] for r in clue} == {"euc-jp"}


def test_a_retried_task_replaces_its_output_instead_of_duplicating_it(sample_landing, tmp_path):
    from spark_jobs.warc_ingest import write_file_outputs

    f = discover_warc_files(sample_landing / "crawl-t1", IngestOptions().file_globs)[0]
    first = write_file_outputs(f, 7, IngestOptions(), str(tmp_path / "d"), str(tmp_path / "r"), "run")
    again = write_file_outputs(f, 7, IngestOptions(), str(tmp_path / "d"), str(tmp_path / "r"), "run")
    assert first == again
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["part-000007.parquet"]
    assert [p.name for p in (tmp_path / "r").iterdir()] == ["part-000007.parquet"]
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "d").num_rows == first["documents"]
    assert first["records"] == first["documents"] + first["rejected"]

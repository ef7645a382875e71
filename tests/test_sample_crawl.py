import collections
import json

from warcio.archiveiterator import ArchiveIterator

from sample_crawl import generate_crawl
from tests.conftest import ground_truth


def test_same_seed_same_crawl_whatever_the_file_split(tmp_path):
    a = generate_crawl(tmp_path / "a", 300, seed=5, pages_per_file=100)
    b = generate_crawl(tmp_path / "b", 300, seed=5, pages_per_file=300)
    generate_crawl(tmp_path / "c", 300, seed=6, pages_per_file=100)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "warc_file"} for r in rows]  # noqa: E731
    assert strip(ground_truth(tmp_path / "a")) == strip(ground_truth(tmp_path / "b"))
    assert strip(ground_truth(tmp_path / "a")) != strip(ground_truth(tmp_path / "c"))
    assert a["kinds"] == b["kinds"] and (a["files"], b["files"]) == (3, 1)


def test_writes_valid_warc_with_every_kind_of_page(tmp_path):
    summary = generate_crawl(tmp_path / "x", 1200, seed=2, pages_per_file=400, unreadable_tail=False)
    assert set(summary["kinds"]) == {
        "article",
        "exact_dup",
        "near_dup",
        "spam",
        "short",
        "non_english",
        "pii",
        "benchmark",
        "empty",
        "non_html",
        "redirect",
        "not_found",
        "malformed",
    }
    types = collections.Counter()
    per_member = 0
    for f in sorted((tmp_path / "x").glob("*.warc.gz")):
        with f.open("rb") as fh:
            it = ArchiveIterator(fh)
            for i, rec in enumerate(it):
                if i == 0:
                    assert rec.rec_type == "warcinfo"
                types[rec.rec_type] += 1
                per_member += 1
    # An independent reader (warcio) sees every page as request + response + metadata.
    assert types["response"] == 1200 and types["request"] == 1200 and types["metadata"] == 1200
    truth = ground_truth(tmp_path / "x")
    dups = [t for t in truth if t["kind"] == "exact_dup"]
    originals = {t["url"]: t for t in truth}
    assert all(originals[d["duplicate_of"]]["sha1"] == d["sha1"] for d in dups)
    assert all(t["pii"]["email"] for t in truth if t["kind"] == "pii")
    assert json.loads((tmp_path / "x" / "crawl.json").read_text())["pages"] == 1200

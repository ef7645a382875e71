"""Benchmark decontamination: the matcher on its own, and the Spark job on pages with planted
benchmark items (verbatim, inside a longer page, across line breaks, with changed case and
punctuation, short items matched whole) against hard negatives (shared common phrases, and a
benchmark sentence that recurs across the web and is suppressed). The GSM8K/MMLU variant uses
../shared/data/benchmarks and skips without it."""

import csv
import json
import random
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from documents.decontam import BenchmarkSpec, DecontamOptions, build_index, match_batch, normalised_words, read_benchmark
from sample_crawl import text as T
from spark_jobs.decontam_job import decontaminate
from storage.tables import DECONTAMINATED_COLUMNS, FILTERED_COLUMNS, REJECTION_COLUMNS
from tests.conftest import shared_data

ITEMS = [
    {
        "question": "A bakery sells muffins for three dollars each and cookies for one dollar each. If Maria buys four muffins and six cookies, how much does she spend?",
        "answer": "18",
    },
    {
        "question": "Tom reads twelve pages of his book every evening and twice as many pages on Saturday. How many pages does he read in one week?",
        "answer": "96",
    },
    {
        "question": "The train leaves the station at nine in the morning and travels for three hours at sixty miles per hour. How far does it go?",
        "answer": "180",
    },
    {"question": "Which gas do plants absorb from the air during photosynthesis?", "answer": "carbon dioxide"},  # 10 words: matched whole
    {
        "question": "To be or not to be, that is the question whether tis nobler in the mind to suffer",
        "answer": "Hamlet",
    },  # recurs on the web
]


def article(rng: random.Random) -> str:
    title, paras = T.article(rng)
    return title + "\n\n" + "\n\n".join(paras)


def corpus(tmp_path, n_plain: int = 60) -> tuple[list[str], dict[str, str], set[str], set[str]]:
    """(parquet files, doc_id → text, contaminated ids, clean ids)."""
    rng = random.Random(3)
    q = [i["question"] for i in ITEMS]
    docs: dict[str, str] = {}
    dirty = set()
    docs["verbatim"] = q[0] + " " + ITEMS[0]["answer"]
    docs["inside"] = article(rng) + "\n\nHomework help: " + q[1] + "\n\n" + article(rng)
    docs["line_breaks"] = article(rng) + "\n" + "\n".join(re.findall(r"(?:\S+\s*){1,5}", q[2])) + "\n" + article(rng)
    docs["case_punct"] = article(rng) + " " + q[0].upper().replace(",", " ;").replace(".", "!!") + " " + article(rng)
    docs["short_item"] = article(rng) + " Quiz: " + q[3] + " " + article(rng)
    dirty = set(docs)
    # Hard negatives: common phrases shared with the items, never 13 words of one item, nor a whole short item.
    docs["phrases"] = article(rng) + " How much does she spend on food each month? The train leaves the station at nine. " + article(rng)
    docs["near_short"] = article(rng) + " Which gas do plants absorb from the soil? " + article(rng)
    for i in range(15):  # the famous quote, on many ordinary pages
        docs[f"quote-{i:02d}"] = article(rng) + f"\n\n{q[4]}.\n\n" + article(rng)
    for i in range(n_plain):
        docs[f"plain-{i:03d}"] = article(rng)
    clean = set(docs) - dirty
    out = tmp_path / "docs"
    out.mkdir()
    ids = sorted(docs)
    cols = {n: pa.nulls(len(ids), t) for n, t in FILTERED_COLUMNS}
    cols.update(
        doc_id=pa.array(ids),
        text=pa.array([docs[i] for i in ids]),
        url=pa.array([f"https://x.org/{i}" for i in ids]),
        language=pa.array(["en"] * len(ids)),
        word_count=pa.array([len(docs[i].split()) for i in ids], pa.int64()),
    )
    t = pa.table(cols, schema=pa.schema(FILTERED_COLUMNS))
    pq.write_table(t.slice(0, len(ids) // 2), out / "a.parquet", row_group_size=17)
    pq.write_table(t.slice(len(ids) // 2), out / "b.parquet", row_group_size=17)
    return [str(out / "a.parquet"), str(out / "b.parquet")], docs, dirty, clean


def bench_file(tmp_path) -> str:
    p = tmp_path / "evals.jsonl"
    p.write_text("".join(json.dumps(i) + "\n" for i in ITEMS))
    return str(p)


def test_normalisation_folds_case_punctuation_and_line_breaks():
    a, b = normalised_words(pa.array(["Hello, World!\nIt's 3.5 km — far.", "hello world it s 3 5 km far"])).to_pylist()
    assert a == b == ["hello", "world", "it", "s", "3", "5", "km", "far"]


def test_benchmark_formats_and_item_ids(tmp_path):
    with (tmp_path / "mc.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(
            [
                ["What is two plus two in base ten arithmetic", "3", "4", "5", "B"],
                ["Name the capital city of France please now", "Paris", "Rome", "Oslo", "A"],
            ]
        )
    ids, texts = read_benchmark(BenchmarkSpec(name="mc", path=str(tmp_path / "mc.csv"), header=False, fields=[0, 1, 2, 3]))
    assert ids == ["1", "2"] and texts[1] == "Name the capital city of France please now Paris Rome Oslo"
    ids, texts = read_benchmark(BenchmarkSpec(name="q", path=bench_file(tmp_path), template="Q: {question} A: {answer}"))
    assert len(ids) == 5 and texts[3].endswith("A: carbon dioxide")
    with pytest.raises(ValueError, match="not in its rows"):
        read_benchmark(BenchmarkSpec(name="bad", path=bench_file(tmp_path), fields=["prompt"]))
    with pytest.raises(FileNotFoundError):
        read_benchmark(BenchmarkSpec(name="gone", path=str(tmp_path / "nope.jsonl"), fields=["q"]))


def test_matcher_finds_each_planting_and_no_hard_negative(tmp_path):
    files, docs, dirty, clean = corpus(tmp_path)
    index = build_index(DecontamOptions(benchmarks=[BenchmarkSpec(name="evals", path=bench_file(tmp_path), fields=["question"])]))
    assert index.sizes == [10, 13] and index.items == {"evals": 5}
    ids = sorted(docs)
    m = match_batch(pa.array([docs[i] for i in ids]), index)
    hit = {ids[r] for r in m.row}
    assert hit == dirty | {i for i in docs if i.startswith("quote-")}  # the quote is suppressed later, by frequency


@pytest.mark.integration
def test_job_removes_contamination_with_evidence_and_suppresses_frequent_ngrams(spark, tmp_path):
    files, docs, dirty, clean = corpus(tmp_path)
    o = DecontamOptions(benchmarks=[BenchmarkSpec(name="evals", path=bench_file(tmp_path), fields=["question"])])
    index = build_index(o)
    kept_dir, rej_dir = tmp_path / "kept", tmp_path / "rej"
    stats = decontaminate(
        spark, {"deduplicated": files}, index, o, str(tmp_path / "scratch"), str(kept_dir), str(rej_dir), "run-1", tasks=3
    )
    kept = pq.read_table(kept_dir, schema=pa.schema(DECONTAMINATED_COLUMNS)).to_pylist()
    rej = pq.read_table(rej_dir, schema=pa.schema(REJECTION_COLUMNS)).to_pylist()
    assert {r["doc_id"] for r in rej} == dirty and {r["doc_id"] for r in kept} == clean  # recall 1, no false positive
    assert len(kept) + len(rej) == len(docs) and stats.docs_in == {"deduplicated": len(docs)}
    assert all(r["source"] == "deduplicated" and r["source_doc_id"] == r["doc_id"] for r in kept)
    # The famous quote is in 15 documents (> the threshold of 10): suppressed and reported.
    assert stats.threshold == 10 and stats.suppressed and {s["item"] for s in stats.suppressed} == {"5"}
    assert all(s["documents"] == 15 and s["benchmark"] == "evals" for s in stats.suppressed)
    for r in rej:
        ev = json.loads(r["detail"])
        assert r["reason"] == "decontam.evals" and ev["benchmark"] == "evals" and r["value"] == ev["matches"] >= 1
        text = docs[r["doc_id"]]
        found = text[ev["offset"] : ev["offset"] + ev["length"]]
        assert normalised_words(pa.array([found]))[0].as_py() == ev["ngram"].split()  # the offset points at the n-gram
        item = ITEMS[int(ev["item"]) - 1]["question"]
        assert " ".join(ev["ngram"].split()) in " ".join(normalised_words(pa.array([item]))[0].as_py())
    short = json.loads(next(r for r in rej if r["doc_id"] == "short_item")["detail"])
    assert short["item"] == "4" and len(short["ngram"].split()) == 10 and short["matches"] == 1


@pytest.mark.integration
@pytest.mark.shared_data
def test_real_benchmarks_planted_into_pages(spark, tmp_path):
    """GSM8K and MMLU items planted four ways into generated pages; hard negatives share their
    common phrases ("Which of the following", "How many ... does"), never an item."""
    root = shared_data("benchmarks")
    o = DecontamOptions(
        benchmarks=[
            BenchmarkSpec(name="gsm8k", path=str(root / "gsm8k" / "test.jsonl"), fields=["question", "answer"]),
            BenchmarkSpec(name="mmlu", path=str(root / "mmlu" / "test"), format="csv", header=False, fields=[0, 1, 2, 3, 4]),
        ]
    )
    index = build_index(o)
    assert index.items["gsm8k"] == 1319 and index.items["mmlu"] > 13000
    rng = random.Random(7)
    gsm = [json.loads(l) for l in (root / "gsm8k" / "test.jsonl").read_text().splitlines()]
    mmlu = [row for f in sorted((root / "mmlu" / "test").glob("*.csv")) for row in csv.reader(f.open(encoding="utf-8"))]
    docs, dirty = {}, set()
    for k in range(40):
        g = rng.choice(gsm)["question"]
        m = " ".join(rng.choice([r for r in mmlu if len(" ".join(r[:5]).split()) >= 13])[:5])
        for name, item in (("gsm", g), ("mmlu", m)):
            way = k % 4
            body = (
                item
                if way == 0
                else item.upper().replace(",", " ;").replace("?", " ?!")
                if way == 3
                else "\n".join(re.findall(r"(?:\S+\s*){1,4}", item))
                if way == 2
                else item
            )
            doc = body if way == 0 else article(rng) + "\n\n" + body + "\n\n" + article(rng)
            docs[f"{name}-{k:02d}-{way}"] = doc
            dirty.add(f"{name}-{k:02d}-{way}")
    for k in range(60):  # hard negatives
        docs[f"neg-{k:02d}"] = (
            article(rng) + " Which of the following is true about the new library? How many users does it have"
            " now? The answer is in the release notes. " + article(rng)
        )
    ids = sorted(docs)
    out = tmp_path / "d.parquet"
    cols = {n: pa.nulls(len(ids), t) for n, t in FILTERED_COLUMNS}
    cols.update(doc_id=pa.array(ids), text=pa.array([docs[i] for i in ids]), url=pa.array(ids))
    pq.write_table(pa.table(cols, schema=pa.schema(FILTERED_COLUMNS)), out, row_group_size=25)
    stats = decontaminate(spark, {"deduplicated": [str(out)]}, index, o, str(tmp_path / "s"), str(tmp_path / "k"), str(tmp_path / "r"), "r")
    rej = pq.read_table(tmp_path / "r", schema=pa.schema(REJECTION_COLUMNS)).to_pylist()
    assert {r["doc_id"] for r in rej} == dirty, (dirty - {r["doc_id"] for r in rej}, {r["doc_id"] for r in rej} - dirty)
    assert {json.loads(r["detail"])["benchmark"] for r in rej} == {"gsm8k", "mmlu"}
    assert sum(stats.removed.values()) == len(dirty)

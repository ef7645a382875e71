"""The dedup job's two clustering paths (the driver's NumPy arrays up to ``LOCAL_MAX_DOCS``, Spark
DataFrames above) decide every document the same way, on crawls built to hit each rule: exact and
near copies within the crawl and of earlier crawls, a record ingested again, buckets above
``max_bucket_pairs``, texts too short to shingle, and ties, nulls and NaN in the keep policy."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from documents.minhash import DedupOptions
from spark_jobs import components, dedup_clusters
from spark_jobs.dedup_clusters import DedupStats, cluster_documents
from spark_jobs.dedup_signatures import signature_batch
from storage.task_output import TaskOutputs

pytestmark = pytest.mark.integration

WORDS = [f"w{i}" for i in range(400)]


def _text(rng: random.Random, n: int = 60) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _edit(rng: random.Random, text: str, k: int) -> str:
    words = text.split()
    for _ in range(k):
        words[rng.randrange(len(words))] = rng.choice(WORDS)
    return " ".join(words)


def _crawl(rng: random.Random, prefix: str, bases: list[str], n: int) -> list[dict]:
    day = datetime(2024, 1, 1, tzinfo=UTC)
    docs = []
    for i in range(n):
        kind = rng.random()
        if kind < 0.3:
            text = _text(rng)
        elif kind < 0.55:
            text = _edit(rng, rng.choice(bases), rng.choice([1, 2, 4, 12]))  # near copies, some below the threshold
        elif kind < 0.7:
            text = rng.choice(bases).upper() + "  "  # an exact copy once normalised
        elif kind < 0.8:
            text = _edit(rng, bases[0], 1)  # one big bucket (above max_bucket_pairs)
        elif kind < 0.85:
            text = "too short"  # no 5-word shingle: no band keys
        else:
            text = rng.choice(bases)
        docs.append(
            {
                "doc_id": f"{prefix}{i:04d}",
                "text": text,
                "quality": rng.choice([None, float("nan"), 0.5, 0.5, -0.0, 0.0, rng.random()]),
                "warc_date": rng.choice([None, day, day + timedelta(days=rng.randrange(3))]),
            }
        )
    return docs


def _signatures(docs: list[dict], o: DedupOptions, unit_of) -> pa.Table:
    n = len(docs)
    batch = pa.RecordBatch.from_pydict(
        {
            "doc_id": [d["doc_id"] for d in docs],
            "url": [f"https://x.example/{d['doc_id']}" for d in docs],
            "warc_file": ["f.warc.gz"] * n,
            "warc_offset": list(range(n)),
            "warc_date": pa.array([d["warc_date"] for d in docs], pa.timestamp("us", tz="UTC")),
            "text": [d["text"] for d in docs],
            "q": pa.array([d["quality"] for d in docs], pa.float64()),
        }
    )
    sigs = pa.Table.from_batches([signature_batch(batch, 0, o, "q")])
    return sigs.set_column(0, "unit", pa.array([unit_of(i) for i in range(n)], pa.int32()))


def _decide(spark, tmp_path, name, sigs, earlier, texts, earlier_texts, o) -> tuple[list[dict], DedupStats]:
    stats = DedupStats(earlier_docs=earlier.count() if earlier is not None else 0)
    out = str(tmp_path / name)
    cluster_documents(spark, sigs, earlier, texts, earlier_texts, o, out, stats)
    rows = ds.dataset(out, format="parquet", partitioning="hive").to_table().to_pylist()
    return sorted(rows, key=lambda r: r["doc_id"]), stats


@pytest.mark.parametrize(
    "opts",
    [{}, {"max_bucket_pairs": 3}, {"verify": False}, {"exact": False}],
    ids=["defaults", "star-buckets", "no-verify", "no-exact"],
)
def test_driver_and_spark_paths_decide_alike(spark, tmp_path, monkeypatch, opts):
    o = DedupOptions(**opts)
    rng = random.Random(7)
    bases = [_text(rng) for _ in range(12)]
    earlier_docs = _crawl(rng, "e", bases, 60)
    current = _crawl(rng, "c", bases, 240) + [dict(earlier_docs[3]), dict(earlier_docs[10])]  # ingested again
    prev_sigs = _signatures(earlier_docs, o, lambda i: 0)
    # The earlier crawls' index rows are the documents they kept: here every other one.
    prev = prev_sigs.filter(pa.array([i % 2 == 0 or i in (3, 10) for i in range(prev_sigs.num_rows)]))
    earlier = spark.createDataFrame(prev.select(["doc_id", "exact_hash", "quality", "warc_date", "minhash", "band_keys"]))
    sigs = str(tmp_path / "signatures")  # one file per work unit, as pass 1's tasks write it
    all_sigs = _signatures(current, o, lambda i: i % 5)
    for unit in range(5):
        TaskOutputs.file_of(sigs, unit).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(all_sigs.filter(pc.equal(all_sigs.column("unit"), unit)), TaskOutputs.file_of(sigs, unit))
    texts = [str(tmp_path / "texts.parquet")]  # the crawl's files, as the job passes them
    pq.write_table(pa.table({"doc_id": [d["doc_id"] for d in current], "text": [d["text"] for d in current]}), texts[0])
    earlier_texts = spark.createDataFrame(
        pa.table({"doc_id": [d["doc_id"] for d in earlier_docs], "text": [d["text"] for d in earlier_docs]})
    )

    driver, d_stats = _decide(spark, tmp_path, "driver", sigs, earlier, texts, earlier_texts, o)
    assert len(driver) == len(current) and d_stats.cc_rounds == 0
    monkeypatch.setattr(dedup_clusters, "LOCAL_MAX_DOCS", 0)
    # The DataFrame path verifies short candidate lists and finds small graphs' components on the
    # driver too (defaults only: once is enough for those helpers); then with neither.
    for helpers in [True, False] if not opts else [False]:
        monkeypatch.setattr(dedup_clusters, "LOCAL_MAX_PAIRS", 10_000 if helpers else 0)
        monkeypatch.setattr(components, "LOCAL_MAX_EDGES", 500_000 if helpers else 0)
        in_spark, s_stats = _decide(spark, tmp_path, f"spark-{helpers}", sigs, earlier, texts, earlier_texts, o)
        assert driver == in_spark
        for field in ("docs_in", "kept", "exact_removed", "near_removed", "missing_kept", "candidate_pairs", "verified_pairs", "clusters"):
            assert getattr(d_stats, field) == getattr(s_stats, field), field
        assert d_stats.cluster_sizes == s_stats.cluster_sizes and d_stats.hash_clashes == s_stats.hash_clashes == 0
        assert (s_stats.cc_rounds == 0) == helpers or not s_stats.verified_pairs

    # The crawl exercises what it is meant to: both reasons, earlier documents as kept, big buckets.
    reasons = {r["reason"] for r in driver}
    assert {f"{dedup_clusters.STAGE}.near", f"{dedup_clusters.STAGE}.exact", None} <= reasons
    assert d_stats.exact_removed > 2 and d_stats.near_removed > 2  # more than the 2 records ingested again
    assert any(r["cluster_id"].startswith("e") for r in driver if not r["kept"])
    assert {r["doc_id"] for r in driver if r["doc_id"].startswith("e")} == {"e0003", "e0010"}
    assert max(r["cluster_size"] for r in driver) > o.max_bucket_pairs

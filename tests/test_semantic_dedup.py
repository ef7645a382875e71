"""Semantic dedup (the third pass of `deduplicated`): an edited republication that MinHash misses is
removed with its kept partner and the cosine, unrelated pages stay, the result does not depend on
input order or partitioning, earlier crawls' kept documents win, and `sluice trace` shows it.

A tiny static model (random token vectors over all-MiniLM-L6-v2's tokenizer, built here) stands in
for the distilled one, so no test distils or downloads anything; with random vectors a document's
embedding is a bag of its tokens, so the tests' threshold (0.97) is set for that model: the planted
copy scores 0.99 against its original, the unrelated generated articles at most 0.96 (0.82 through the
pipeline, which subtracts the background).
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from documents.embeddings import ModelSpec, embed
from documents.semantic import SemanticOptions, semantic_duplicates

TINY_THRESHOLD = 0.97


def build_tiny_static_model(out: Path, dim: int = 64, seed: int = 0) -> Path:
    from model2vec import StaticModel
    from tokenizers import Tokenizer

    from documents.embeddings import resolve_folder
    from documents.semantic import FULL_MODEL

    tok = Tokenizer.from_file(str(resolve_folder(FULL_MODEL) / "tokenizer.json"))
    vectors = np.random.default_rng(seed).standard_normal((tok.get_vocab_size(), dim)).astype(np.float32)
    StaticModel(vectors=vectors, tokenizer=tok, config={"normalize": True}, normalize=True).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> ModelSpec:
    path = build_tiny_static_model(tmp_path_factory.mktemp("tiny-static"))
    return ModelSpec("static", str(path), "tiny-static", TINY_THRESHOLD)


def articles(n: int, seed0: int = 0) -> list[str]:
    from sample_crawl import text as T

    out = []
    for i in range(n):
        title, paras = T.article(random.Random(seed0 + i))
        out.append(title + "\n\n" + "\n\n".join(paras))
    return out


def republish(text: str, seed: int = 1) -> str:
    from benchmarks.semantic_dedup import republish as edit

    return edit(text, random.Random(seed))


def corpus():
    """12 generated articles (a-00..a-11) and a republication of a-00 (b-copy)."""
    texts = articles(12)
    ids = [f"a-{i:02d}" for i in range(12)] + ["b-copy"]
    return ids, texts + [republish(texts[0])]


def ranks(ids, quality=None):
    quality = quality or {}
    return [(-quality.get(d, 0.5), 0, d) for d in ids]


def test_planted_republication_removed_unrelated_kept(tiny_model):
    from documents.minhash import exact_jaccard

    ids, texts = corpus()
    assert exact_jaccard(texts[0], texts[-1], 5) < 0.72  # below MinHash's threshold
    v = embed(texts, tiny_model)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    r = semantic_duplicates(ids, ranks(ids), v, threshold=TINY_THRESHOLD)
    assert set(r.removed) == {"b-copy"}
    partner, cos = r.removed["b-copy"]
    assert partner == "a-00" and TINY_THRESHOLD <= cos <= 1.0
    # The keep rule is MinHash's: the better-quality copy stays.
    r = semantic_duplicates(ids, ranks(ids, {"b-copy": 0.9}), v, threshold=TINY_THRESHOLD)
    assert set(r.removed) == {"a-00"} and r.removed["a-00"][0] == "b-copy"


def test_deterministic_and_independent_of_order_and_cluster_count(tiny_model):
    ids, texts = corpus()
    texts += articles(20, seed0=100)
    ids += [f"c-{i:02d}" for i in range(20)]
    v = embed(texts, tiny_model)
    results = []
    for seed in range(3):
        order = list(range(len(ids)))
        random.Random(seed).shuffle(order)
        for size in (1000, 4):  # one cluster; k-means with 9 clusters
            o = SemanticOptions(cluster_size=size)
            r = semantic_duplicates([ids[i] for i in order], ranks([ids[i] for i in order]), v[order], threshold=TINY_THRESHOLD, o=o)
            results.append(r.removed)
    assert all(r == results[0] for r in results) and set(results[0]) == {"b-copy"}


def test_empty_one_and_two_documents(tiny_model):
    assert embed([], tiny_model).shape == (0, 64)
    e = embed(["", None, "some words here"], tiny_model)
    assert not e[0].any() and not e[1].any()  # no tokens: similar to nothing
    assert semantic_duplicates([], [], np.zeros((0, 64), np.float32)).removed == {}
    one = embed(["a single page of text"], tiny_model)
    assert semantic_duplicates(["x"], ranks(["x"]), one).removed == {}
    two = embed(["the same page of text", "the same page of text"], tiny_model)
    assert semantic_duplicates(["y", "x"], ranks(["y", "x"]), two).removed == {"y": ("x", pytest.approx(1.0, abs=1e-5))}
    empty_pair = embed(["", ""], tiny_model)
    assert semantic_duplicates(["x", "y"], ranks(["x", "y"]), empty_pair).removed == {}


def test_earlier_crawl_keeps_its_document(tiny_model):
    ids, texts = corpus()
    v = embed(texts, tiny_model)
    # a-00 was kept by an earlier crawl; this crawl has its republication (of better quality) and a-01.
    r = semantic_duplicates(
        ["b-copy", "a-01"],
        ranks(["b-copy", "a-01"], {"b-copy": 0.99}),
        v[[12, 1]],
        earlier_ids=["a-00"],
        earlier_ranks=ranks(["a-00"]),
        earlier_vectors=v[[0]],
        threshold=TINY_THRESHOLD,
    )
    assert r.removed == {"b-copy": ("a-00", pytest.approx(float(v[12] @ v[0]), abs=1e-5))}
    # Two earlier documents are never compared with each other again (or removed).
    r = semantic_duplicates(
        ["a-05"],
        ranks(["a-05"]),
        v[[5]],
        earlier_ids=["a-00", "b-copy"],
        earlier_ranks=ranks(["a-00", "b-copy"]),
        earlier_vectors=v[[0, 12]],
        threshold=TINY_THRESHOLD,
    )
    assert r.removed == {}


def test_static_vectors_equal_model2vec_encode(tiny_model):
    """Tokenizing each distinct word once gives StaticModel.encode's mean vectors, for any batching."""
    from documents.embeddings import _load, static_mean

    model = _load("static", tiny_model.path)
    texts = articles(3) + ["", "héllo wörld ... «quoted» 東京 text!!", "end. end.end  tabs\tand\nlines"]
    ref = np.asarray(model.encode(texts, max_length=None, use_multiprocessing=False, normalize=False), np.float32)
    ours = static_mean(model, texts)
    assert np.allclose(ours, ref, atol=1e-3 * np.abs(ref).max())
    again = np.concatenate([static_mean(model, texts[:2]), static_mean(model, texts[2:])])
    assert np.allclose(again, ours, atol=1e-6)


def test_thresholds_default_by_model():
    o = SemanticOptions()
    assert o.threshold_for("static") != o.threshold_for("full")
    assert SemanticOptions(threshold=0.9).threshold_for("full") == 0.9
    assert SemanticOptions(model="static").resolved_model() == "static"


def test_auto_model_follows_cuda_without_importing_a_cpu_torch():
    """``auto`` picks the full encoder exactly where torch sees CUDA; on a CPU-only torch build the
    answer comes from its version file, and torch is not imported (2.4 s of each run's start)."""
    import subprocess
    import sys

    probe = (
        "import sys; from documents.semantic import SemanticOptions; "
        "print(SemanticOptions().resolved_model(), 'torch' in sys.modules); "
        "import torch; print(torch.cuda.is_available(), torch.version.cuda is None)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True).stdout.split()
    model, imported, cuda, cpu_build = out[0], out[1] == "True", out[2] == "True", out[3] == "True"
    assert model == ("full" if cuda else "static")
    if cpu_build:
        assert not imported


@pytest.mark.shared_data
def test_distilled_model_is_faithful_on_real_pages():
    """The default model (distilled at first use) on planted republications of real pages: found
    above the default threshold, while unrelated real pages stay below it. Runs only where the
    distilled model is already cached (distilling takes minutes) and ../shared/data is present."""
    from documents.embeddings import DISTILL_PCA_DIMS
    from documents.model_cache import model_cache_dir
    from documents.semantic import STATIC_THRESHOLD
    from spark_jobs.dedup_semantic import embedding_model
    from tests.conftest import shared_data

    pages = shared_data("html/trafilatura-eval/pages")
    if not any(model_cache_dir().glob(f"m2v-*-pca{DISTILL_PCA_DIMS}-*/config.json")):
        pytest.skip("the distilled static model is not cached on this machine (made at the pipeline's first semantic pass)")
    from benchmarks.semantic_dedup import planted_corpus

    ids, texts, truth = planted_corpus(25, pages=pages, max_files=300)  # about 50 English articles
    spec = embedding_model(SemanticOptions(model="static"))
    assert spec.threshold == STATIC_THRESHOLD
    v = embed(texts, spec)
    rank = ranks(ids)
    removed = semantic_duplicates(ids, rank, v, threshold=spec.threshold).removed
    found = sum(1 for c, o in truth.items() if removed.get(c, ("",))[0] == o or removed.get(o, ("",))[0] == c)
    assert found >= 0.9 * len(truth)


# ---- through Spark and the pipeline --------------------------------------------------------------


def _files(tmp_path, ids, texts):
    import pyarrow.parquet as pq

    from spark_jobs.dedup_job import documents_table

    pq.write_table(documents_table(ids[:7], texts[:7]), tmp_path / "part-0.parquet")
    pq.write_table(documents_table(ids[7:], texts[7:]), tmp_path / "part-1.parquet")
    return [str(tmp_path / "part-0.parquet"), str(tmp_path / "part-1.parquet")]


@pytest.mark.integration
def test_dedup_job_removes_what_minhash_misses(spark, tiny_model, tmp_path):
    import pyarrow.dataset as ds

    from documents.minhash import DedupOptions
    from spark_jobs.dedup_job import OutputDirs, deduplicate

    ids, texts = corpus()
    paths = _files(tmp_path, ids, texts)

    def run(name, semantic, tasks):
        o = DedupOptions(semantic={"enabled": semantic, "threshold": TINY_THRESHOLD})
        dirs = {k: str(tmp_path / name / k) for k in ("documents", "rejected", "clusters", "index")}
        stats = deduplicate(
            spark,
            paths,
            o,
            str(tmp_path / name / "scratch"),
            OutputDirs(**dirs),
            0,
            "test",
            tasks=tasks,
            model=tiny_model if semantic else None,
        )
        read = {k: ds.dataset(d, format="parquet").to_table() if Path(d).is_dir() else None for k, d in dirs.items()}
        return stats, read

    stats, out = run("minhash", False, 2)
    assert stats.near_removed == 0 and (out["rejected"] is None or out["rejected"].num_rows == 0)
    assert out["index"].column("embedding").null_count == out["index"].num_rows
    results = []
    for tasks in (1, 5):
        stats, out = run(f"semantic-{tasks}", True, tasks)
        rej = out["rejected"].to_pylist()
        assert [(r["doc_id"], r["reason"], r["related_doc_id"]) for r in rej] == [("b-copy", "dedup.semantic", "a-00")]
        assert TINY_THRESHOLD <= rej[0]["value"] <= 1.0 and "tiny-static" in rej[0]["detail"]
        assert stats.semantic_removed == 1 and stats.kept == 12 and out["documents"].num_rows == 12
        index = out["index"]
        assert index.num_rows == 12 and set(index.column("embedding_model").to_pylist()) == {"tiny-static"}
        assert all(len(e) == 64 for e in index.column("embedding").to_pylist())
        clusters = {r["doc_id"]: r for r in out["clusters"].to_pylist()}
        assert clusters["b-copy"]["cluster_id"] == "a-00" and clusters["a-00"]["kept"] and clusters["a-00"]["cluster_size"] == 2
        results.append((rej, sorted(out["documents"].column("doc_id").to_pylist())))
    assert results[0] == results[1]  # independent of partitioning


def _write_crawl(folder: Path, texts: list[str], urls: list[str]) -> None:
    from sample_crawl.generator import _render
    from tests.crawl_shapes import _warc

    records = []
    for i, (url, text) in enumerate(zip(urls, texts)):
        sents = text.replace("\n\n", " ").split(". ")
        paras = [". ".join(sents[k : k + 3]) + "." for k in range(1, len(sents), 3)]
        records.append((url, _render(url.split("/")[2], sents[0][:60], paras, random.Random(i)), "text/html; charset=utf-8"))
    _warc(folder / "pages.warc.gz", records)


@pytest.mark.integration
def test_pipeline_and_trace_show_semantic_removal(spark, make_config, tiny_model, tmp_path):
    """raw_crawl → filtered → deduplicated with the semantic pass, then `sluice trace` on the removed
    republication: its kept partner and the cosine similarity."""
    import yaml
    from dagster import DagsterInstance, materialize

    from assets.partitions import crawl_partitions
    from orchestration.resources import build_resources
    from storage.delta_table import read_arrow
    from tests.conftest import pipeline

    ids, texts = corpus()
    urls = [f"https://site{i}.example/story-{i}.html" for i in range(12)] + ["https://mirror.example/republished.html"]
    landing = tmp_path / "landing"
    _write_crawl(landing / "crawl-s", texts, urls)
    # Through the asset the model gets its generic-English background (spark_jobs.dedup_semantic.embedding_model),
    # which lowers the tiny model's cosines: the copy 0.885, unrelated generated articles at most 0.74.
    semantic = {"static_model": tiny_model.path, "threshold": 0.82, "model": "static"}
    cfg = make_config(landing, dedup={"semantic": semantic})
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_partitions.name, ["crawl-s"])
    res = materialize(
        pipeline(cfg, "raw_crawl", "filtered", "deduplicated"),
        instance=instance,
        resources=build_resources(cfg),
        partition_key="crawl-s",
        raise_on_error=False,
    )
    assert res.success
    filtered = read_arrow(cfg.table_uri("filtered"), partition={"crawl_id": "crawl-s"}, columns=["doc_id", "url"]).to_pylist()
    assert len(filtered) == 13, "every generated page should pass the filters"
    doc_of = {r["url"]: r["doc_id"] for r in filtered}
    rej = read_arrow(cfg.table_uri("rejections"), partition={"crawl_id": "crawl-s", "stage": "dedup"}).to_pylist()
    # One of the pair goes (which one: the keep policy, here the language score), the other is its partner.
    assert [r["reason"] for r in rej] == ["dedup.semantic"]
    url_of = {d: u for u, d in doc_of.items()}
    assert {rej[0]["url"], url_of[rej[0]["related_doc_id"]]} == {urls[0], urls[-1]}
    index = read_arrow(cfg.table_uri("dedup_signatures"), partition={"crawl_id": "crawl-s"}, columns=["embedding_model"])
    (model,) = set(index.column("embedding_model").to_pylist())
    assert model.startswith(f"model2vec:{Path(tiny_model.path).name}+bg")

    conf = tmp_path / "trace.yaml"
    conf.write_text(yaml.safe_dump({"lakehouse_dir": str(cfg.lakehouse_path), "landing_dir": str(landing)}))
    out = subprocess.run(
        [sys.executable, "-m", "orchestration.cli", "trace", "--config", str(conf), rej[0]["doc_id"]],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    line = next(ln for ln in out.stdout.splitlines() if ln.strip().startswith("dedup"))
    assert "semantic duplicate" in line and rej[0]["related_doc_id"] in line and f"cosine similarity {rej[0]['value']:.3f}" in line

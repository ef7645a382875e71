"""The GPU programs on tiny models built here (CPU): batching, scoring, kill-and-resume, training,
rewriting through the in-process and the OpenAI-compatible HTTP backends, the rewrite gate."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpu_jobs.options import RewriteOptions, ScoringOptions
from gpu_jobs.scorers.base import length_batches
from gpu_jobs.scorers.hf import HFClassifier
from storage.delta_table import Transaction, read_arrow, table_exists
from tests import tiny_models
from tests.local_openai_server import LocalOpenAIServer

# The GPU programs run as the pipeline runs them: processes with real (tiny) models, files and servers.
pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "classifier": tiny_models.bert_classifier(root / "bert"),
        "regressor": tiny_models.bert_classifier(root / "bert-reg", num_labels=1),
        "llama": tiny_models.llama(root / "llama"),
    }


def docs_files(out: Path, n: int, files: int = 2) -> list[str]:
    texts = tiny_models.corpus(n, seed=5)
    out.mkdir(parents=True, exist_ok=True)
    per = -(-n // files)
    paths = []
    for f in range(files):
        lo, hi = f * per, min(n, (f + 1) * per)
        t = pa.table(
            {
                "doc_id": [f"d{i:05d}" for i in range(lo, hi)],
                "url": [f"https://x.org/{i}" for i in range(lo, hi)],
                "text": texts[lo:hi],
                "warc_file": ["f.warc.gz"] * (hi - lo),
                "warc_offset": list(range(lo, hi)),
            }
        )
        pq.write_table(t, out / f"part-{f}.parquet", row_group_size=50)
        paths.append(str(out / f"part-{f}.parquet"))
    return paths


def job(module: str, params: dict, tmp: Path) -> subprocess.Popen:
    p = tmp / f"{module}-params.json"
    p.write_text(json.dumps(params))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", f"gpu_jobs.{module}", "--params", str(p)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_length_batches_respect_the_token_budget():
    lengths = np.array([5, 100, 7, 64, 64, 3, 512, 20])
    batches = length_batches(lengths, batch_tokens=256, max_batch_size=3)
    assert sorted(np.concatenate(batches).tolist()) == list(range(8))
    for b in batches:
        assert len(b) <= 3 and (len(b) == 1 or lengths[b].max() * len(b) <= 256)
    assert [lengths[b].max() for b in batches] == sorted(lengths[b].max() for b in batches)  # sorted by length


def test_scores_do_not_depend_on_the_batch(models):
    texts = tiny_models.corpus(40, seed=3)
    c = HFClassifier(str(models["classifier"]), max_length=128)
    together = c.score(texts, batch_tokens=600)
    alone = [c.score([t]).score[0] for t in texts[:5]]
    assert np.allclose(together.score[:5], alone, atol=1e-5)
    assert set(together.label) <= {"low", "high"} and ((together.score > 0) & (together.score < 1)).all()
    r = HFClassifier(str(models["regressor"]), max_length=128).score(texts[:4])
    assert r.label == [None] * 4 and np.isfinite(r.score).all()


def score_params(models, files, out_uri, chunk):
    return {
        "input_files": files,
        "input_uri": "docs",
        "input_version": 0,
        "output_uri": out_uri,
        "partition": {"crawl_id": "c1"},
        "scorers": [
            {
                "name": "quality",
                "kind": "hf",
                "label": "high",
                "max_length": 128,
                "path": str(models["classifier"]),
                "uri": "tiny-bert",
                "version": "1",
            },
            {
                "name": "edu",
                "kind": "hf",
                "label": None,
                "max_length": 128,
                "path": str(models["regressor"]),
                "uri": "tiny-reg",
                "version": None,
            },
        ],
        "options": ScoringOptions(rows_per_chunk=chunk).model_dump(),
    }


def test_score_job_killed_mid_run_resumes_without_redoing_or_duplicating(models, tmp_path):
    files = docs_files(tmp_path / "docs", 3000)
    out_uri = str(tmp_path / "quality_scored")
    proc = job("score", score_params(models, files, out_uri, chunk=100), tmp_path)
    resume = None
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        dirs = list((Path(out_uri) / ".resume").glob("*"))
        if dirs and len(list(dirs[0].glob("part-*.parquet"))) >= 3:
            resume = dirs[0]
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert resume is not None, "the job finished before it could be killed"
    done_before = sorted(p.name for p in resume.glob("part-*.parquet"))
    assert 3 <= len(done_before) < 30 and not table_exists(out_uri)  # nothing committed by the killed run

    summary = finish(job("score", score_params(models, files, out_uri, chunk=100), tmp_path))
    assert summary["chunks_skipped"] == len(done_before)
    assert summary["scored_this_run"] == 3000 - 100 * len(done_before)
    assert summary["resume_dir"] == str(resume) and not table_exists(out_uri)  # the asset publishes, not the job
    # What the asset does next: stage the finished chunks in one transaction and commit them.
    with Transaction(out_uri, partition={"crawl_id": "c1"}) as txn:
        txn.add_files(summary["files"]["part"])
        txn.commit(mode="replace")
    shutil.rmtree(summary["resume_dir"])
    table = read_arrow(out_uri).to_pylist()
    assert len(table) == 3000 and len({r["doc_id"] for r in table}) == 3000
    assert {json.loads(r["model_version"])["quality"] for r in table} == {"1"}
    assert all(0 < r["quality"] < 1 and r["quality_label"] in ("low", "high") and r["edu_label"] is None for r in table)


def test_train_classifier_separates_reference_from_crawl(tmp_path):
    """The default backbone (all-MiniLM-L6-v2 from its PyPI package) on the sample crawl's kind of
    data: reference (textbook-like) texts vs article text."""
    import random

    from gpu_jobs.train_classifier import run
    from sample_crawl import text as T

    ref = tmp_path / "ref.jsonl"
    ref.write_text("".join(json.dumps({"text": T.reference(random.Random(i))}) + "\n" for i in range(60)))
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    arts = [" ".join(T.article(random.Random(1000 + i))[1]) for i in range(80)]
    pq.write_table(pa.table({"doc_id": [str(i) for i in range(80)], "text": arts}), crawl / "p.parquet")
    from gpu_jobs.options import ClassifierTraining

    reports = []
    summary = run(
        {
            "backbone": ClassifierTraining().backbone,
            "options": ClassifierTraining(max_length=128, model_kind="hf").model_dump(),
            "positives_path": str(ref),
            "negative_files": [str(crawl / "p.parquet")],
            "output_dir": str(tmp_path / "model"),
        },
        log=type("L", (), {"info": staticmethod(lambda m: None)})(),
        report=reports.append,
    )
    m = summary["metrics"]
    assert m["roc_auc"] >= 0.9 and m["examples"] == 120 and reports == [summary]
    # The saved model is an ordinary sequence classifier whose "high" probability matches the fit.
    c = HFClassifier(str(tmp_path / "model"), max_length=128, label="high")
    s = c.score([T.reference(random.Random(999)), " ".join(T.article(random.Random(5000))[1])])
    assert s.score[0] > s.score[1]


def test_fasttext_classifier_is_the_cpu_default_and_scores_through_its_model_card(tmp_path):
    """On a CPU, quality_classifier trains fastText: separable data is separated, the folder carries a
    model card that quality_scored reads it by, and one core scores thousands of documents a second."""
    import random
    import time

    from gpu_jobs.options import ClassifierTraining
    from gpu_jobs.scorers import load_scorer
    from gpu_jobs.scorers.base import read_model_card
    from gpu_jobs.train_classifier import model_kind, run
    from sample_crawl import text as T

    assert model_kind(ClassifierTraining()) == "fasttext"  # no CUDA here
    ref = tmp_path / "ref.jsonl"
    ref.write_text("".join(json.dumps({"text": T.reference(random.Random(i))}) + "\n" for i in range(150)))
    arts = [" ".join(T.article(random.Random(1000 + i))[1]) for i in range(200)]
    pq.write_table(pa.table({"doc_id": [str(i) for i in range(200)], "text": arts}), tmp_path / "p.parquet")
    summary = run(
        {
            "backbone": "unused",
            "options": ClassifierTraining().model_dump(),
            "positives_path": str(ref),
            "negative_files": [str(tmp_path / "p.parquet")],
            "output_dir": str(tmp_path / "model"),
        },
        log=type("L", (), {"info": staticmethod(lambda m: None)})(),
        report=lambda s: None,
    )
    assert summary["kind"] == "fasttext" and summary["metrics"]["roc_auc"] >= 0.95 and summary["metrics"]["seconds"] < 60
    card = read_model_card(str(tmp_path / "model"))
    assert card == {"kind": "fasttext", "file": "model.bin", "label": "__label__high", "lowercase": True, "max_words": 1000}
    scorer = load_scorer(card["kind"], str(tmp_path / "model" / card["file"]))
    s = scorer.score([T.reference(random.Random(999)), " ".join(T.article(random.Random(5000))[1])])
    assert s.score[0] > 0.5 > s.score[1] and s.label == ["high", "low"]
    docs = arts * 10
    t0 = time.perf_counter()
    scorer.score(docs)
    assert len(docs) / (time.perf_counter() - t0) > 1000  # a loose floor; benchmarks/scorer_quality.py measures it


def test_ensemble_column_is_the_mean_logit_of_the_members_that_scored():
    import math

    from gpu_jobs.options import ScoringOptions
    from gpu_jobs.score import ensemble

    score, label = ensemble([pa.array([0.9, 0.5, None]), pa.array([0.5, None, None])], 3)
    lg = lambda p: math.log(p / (1 - p))  # noqa: E731
    assert score[0].as_py() == pytest.approx(1 / (1 + math.exp(-(lg(0.9) + lg(0.5)) / 2)))
    assert score[1].as_py() == pytest.approx(0.5) and score[2].as_py() is None
    assert label.to_pylist() == ["high", "high", None]
    with pytest.raises(ValueError, match="not scorers"):
        ScoringOptions.model_validate({"ensembles": [{"name": "e", "of": ["quality", "nope"]}]})


def rewrite_params(models, files, score_file, tmp, **opts):
    o = RewriteOptions(
        model=str(models["llama"]),
        prompt_version="rewire-v1",
        cpu_max_documents=None,
        threshold=0.99,
        max_new_tokens=24,
        rows_per_chunk=8,
        min_length_ratio=0.0,
        max_length_ratio=100.0,
        max_dup_4gram_frac=1.0,
        check_language=False,
        **opts,
    )
    return {
        "doc_files": files,
        "score_files": [score_file],
        "output_uri": str(tmp / "rewritten"),
        "options": o.model_dump(),
        "scorer": {"kind": "hf", "path": str(models["classifier"]), "label": "high", "max_length": 128},
        "run_id": "r1",
    }


def scores_for(files, tmp: Path) -> str:
    ids = [d for f in files for d in pq.read_table(f, columns=["doc_id"]).column("doc_id").to_pylist()]
    # Every third document scores high and is not rewritten.
    pq.write_table(pa.table({"doc_id": ids, "quality": [0.995 if i % 3 == 0 else 0.2 for i in range(len(ids))]}), tmp / "scores.parquet")
    return str(tmp / "scores.parquet")


def test_rewrite_in_process_and_over_http_with_retries_and_resume(models, tmp_path, monkeypatch):
    api_key = "sk-test-Planted-0c9e"  # read from the environment variable the config names; written nowhere
    monkeypatch.setenv("OPENAI_API_KEY", api_key)
    files = docs_files(tmp_path / "docs", 60, files=1)
    scores = scores_for(files, tmp_path)
    candidates = {f"d{i:05d}" for i in range(60) if i % 3}
    for tmp, backend in ((tmp_path / "hf", "hf"), (tmp_path / "http", "openai")):
        tmp.mkdir()
        if backend == "hf":
            summary = finish(job("rewrite", rewrite_params(models, files, scores, tmp, backend="hf"), tmp))
        else:
            # 2 failing requests (retried), then slow answers so the job can be killed mid-run.
            with LocalOpenAIServer(str(models["llama"]), delay_s=0.05, fail_first=2) as server:
                params = rewrite_params(models, files, scores, tmp, backend="openai", endpoint=server.endpoint, concurrency=4, retries=3)
                proc = job("rewrite", params, tmp)
                deadline = time.time() + 120
                while time.time() < deadline and proc.poll() is None:
                    dirs = list((tmp / "rewritten" / ".resume").glob("*"))
                    if dirs and list(dirs[0].glob("part-*.parquet")):
                        proc.send_signal(signal.SIGKILL)
                        break
                    time.sleep(0.005)
                proc.wait()
                summary = finish(job("rewrite", params, tmp))
                assert summary["chunks_skipped"] >= 1
                assert server.authorizations == {f"Bearer {api_key}"}
            assert api_key not in json.dumps(summary) + json.dumps(params)
            assert not [p for p in tmp.rglob("*") if p.is_file() and api_key.encode() in p.read_bytes()]
        # The job leaves finished chunks (the asset stages, gates and publishes them).
        rows = [r for f in summary["files"]["part"] for r in pq.read_table(f).to_pylist()]
        rej = [r for f in summary["files"]["rej"] for r in pq.read_table(f).to_pylist()]
        assert summary["candidates"] == len(candidates) == len(rows) + len(rej)
        assert {r["source_doc_id"] for r in rows} | {r["related_doc_id"] for r in rej} == candidates
        assert len({r["doc_id"] for r in rows}) == len(rows)
        for r in rows:
            assert r["prompt_version"] == "rewire-v1" and r["rewriter_model"] == f"{backend}:{models['llama']}"
            assert json.loads(r["generation_params"])["max_new_tokens"] == 24 and r["score_before"] == 0.2
            assert r["text"] and 0 <= r["score_after"] <= 1
        assert all(r["reason"].startswith("rewrite.") for r in rej)


def test_fasttext_scorer(tmp_path):
    """A fastText quality model (the DCLM kind) trained here: the score is P(__label__hq)."""
    fasttext = pytest.importorskip("fasttext")
    import random

    from gpu_jobs.scorers import load_scorer
    from sample_crawl import text as T

    lines = [f"__label__hq {' '.join(T.reference(random.Random(i)).split())}" for i in range(80)]
    lines += [f"__label__lq {' '.join(T.spam(random.Random(i))[1])}" for i in range(80)]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    fasttext.train_supervised(str(tmp_path / "train.txt"), epoch=10, wordNgrams=1, verbose=0).save_model(str(tmp_path / "q.bin"))
    s = load_scorer("fasttext", str(tmp_path / "q.bin"))
    r = s.score([T.reference(random.Random(500)), " ".join(T.spam(random.Random(500))[1])])
    assert r.score[0] > 0.5 > r.score[1] and r.label == ["hq", "lq"]
    with pytest.raises(ValueError):
        load_scorer("fasttext", str(tmp_path / "q.bin"), label="__label__nope")


def test_an_unavailable_scorer_leaves_its_column_null(models, tmp_path):
    """A registry reference with no approved version: the job scores the others and writes nulls."""
    files = docs_files(tmp_path / "docs", 120)
    params = score_params(models, files, str(tmp_path / "quality_scored"), chunk=100)
    params["scorers"][1] = {**params["scorers"][1], "path": None, "unavailable": "no registered version"}
    summary = finish(job("score", params, tmp_path))
    t = pa.concat_tables([pq.read_table(f) for f in summary["files"]["part"]]).to_pylist()
    assert len(t) == 120 and all(r["edu"] is None and r["edu_label"] is None and 0 < r["quality"] < 1 for r in t)

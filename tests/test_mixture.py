"""Training mixtures: specification checks before compute, token-budgeted sampling that does not
depend on the partitioning, epochs and shares as asked, and export shards that a manifest rebuilds
byte for byte."""

import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from documents.mixture import MixtureSpec, plan, static_problems
from sample_crawl import text as T
from spark_jobs.mix_job import MixtureInfeasible, build_mixture
from storage.delta_table import Transaction
from storage.export import export_mixture, rebuild
from storage.tables import MIXED


def spec(**kw) -> MixtureSpec:
    base = dict(
        name="m1",
        token_budget=60000,
        seed=3,
        sources=[
            {"name": "high", "where": "quality >= 0.5 and source = 'deduplicated'", "weight": 0.6},
            {"name": "syn", "where": "source = 'rewritten'", "weight": 0.15, "synthetic": True},
            {"name": "rest", "where": "true", "weight": 0.25},
        ],
        shard_docs=50,
    )
    base.update(kw)
    return MixtureSpec.model_validate(base)


def test_specification_problems_are_found_before_any_compute():
    assert static_problems(spec()) == []
    bad = spec(sources=[{"name": "a", "weight": 0.5}, {"name": "a", "weight": 0.2, "synthetic": True}])
    problems = static_problems(bad)
    assert any("sum to 0.7" in p for p in problems) and any("repeat" in p for p in problems)
    assert any("above the cap" in p for p in static_problems(spec(synthetic_cap=0.1)))
    targets, epochs, problems = plan(spec(), {"high": 10000, "syn": 1000, "rest": 30000})
    assert targets["high"] == 36000 and epochs["high"] == 3.6
    assert len(problems) == 1 and "'syn' needs 9.00 epochs" in problems[0] and "at most 4" in problems[0]


def docs_frame(spark, n_files: int, tmp_path):
    """300 scored documents (one in five a rewrite) split over ``n_files`` Parquet files."""
    rows = []
    for i in range(300):
        title, paras = T.article(random.Random(i))
        rewrite = i % 5 == 0
        rows.append(
            {
                "doc_id": f"d{i:04d}",
                "source": "rewritten" if rewrite else "deduplicated",
                "source_doc_id": f"s{i:04d}",
                "crawl_id": "c1" if i % 2 else "c2",
                "url": f"https://x.org/{i}",
                "text": title + "\n" + " ".join(paras[:2]),
                "quality": (i * 37 % 100) / 100,
            }
        )
    out = tmp_path / f"docs-{n_files}"
    out.mkdir()
    per = -(-len(rows) // n_files)
    for f in range(n_files):
        pq.write_table(pa.Table.from_pylist(rows[f * per : (f + 1) * per]), out / f"p{f}.parquet")
    return spark.read.parquet(str(out)).repartition(n_files)


@pytest.mark.integration
def test_sampling_hits_the_targets_and_does_not_depend_on_the_partitioning(spark, tmp_path):
    results = []
    for n_files in (1, 7):
        out = tmp_path / f"mix-{n_files}"
        stats = build_mixture(spark, docs_frame(spark, n_files, tmp_path), spec(), str(tmp_path / f"scratch-{n_files}"), str(out))
        t = pq.read_table(out)
        results.append(sorted(zip(t.column("doc_id").to_pylist(), t.column("repeat").to_pylist())))
    assert results[0] == results[1]  # the same rows whatever the partitioning
    t = pq.read_table(tmp_path / "mix-7")
    by_source = {}
    for r in t.to_pylist():
        by_source.setdefault(r["source"], []).append(r)
    s = spec()
    for src in s.sources:
        got = sum(r["token_count"] for r in by_source[src.name])
        biggest = max(r["token_count"] for r in by_source[src.name])
        assert abs(got - src.weight * s.token_budget) <= biggest, (src.name, got)  # within one document of the target
        assert stats.epochs[src.name] == pytest.approx(src.weight * s.token_budget / stats.available[src.name])
    # a source over 1 epoch repeats whole documents; the first matching rule wins (rewrites go to syn)
    assert stats.epochs["syn"] > 1 and {r["repeat"] for r in by_source["syn"]} >= {0, 1}
    assert all(r["origin"] == "rewritten" for r in by_source["syn"]) and all(r["origin"] == "deduplicated" for r in by_source["high"])
    assert len({(r["doc_id"], r["repeat"]) for r in t.to_pylist()}) == t.num_rows


@pytest.mark.integration
def test_infeasible_mixture_stops_before_writing(spark, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(MixtureInfeasible, match="'syn' needs .* epochs"):
        build_mixture(spark, docs_frame(spark, 2, tmp_path), spec(token_budget=2_000_000), str(tmp_path / "s"), str(out))
    assert not out.exists()


@pytest.mark.integration
def test_export_shards_and_a_manifest_that_rebuilds_them_byte_for_byte(spark, tmp_path):
    s = spec()
    lake = tmp_path / "lake"
    with Transaction(lake / MIXED.name, partition={"mixture_name": s.name}) as txn:
        build_mixture(spark, docs_frame(spark, 3, tmp_path), s, str(tmp_path / "scratch"), txn.staging_uri)
        txn.commit(
            mode="replace",
            commit_info={"code_version": "abc", "inputs": {"decontaminated": 4, "quality_scored": 2}},
            empty_schema=MIXED.schema(),
        )
    m = export_mixture(lake, s, tmp_path / "out")
    assert (
        m["tables"]
        == {
            "mixed": {"version": 0, "partition": {"mixture_name": "m1"}},
            "decontaminated": {"version": 4},
            "quality_scored": {"version": 2},
        }
        and m["code_version"] == "abc"
    )
    assert len(m["shards"]) == -(-m["documents"] // 50) and sum(x["documents"] for x in m["shards"]) == m["documents"]
    assert sum(x["delivered_tokens"] for x in m["sources"].values()) == m["tokens"] == sum(x["tokens"] for x in m["shards"])
    assert m["tokenizer"]["name"] == s.tokenizer and len(m["tokenizer"]["sha256"]) == 64
    # The index points at each document's row in its shard.
    index = pq.read_table(tmp_path / "out" / "index.parquet").to_pylist()
    probe = index[123]
    shard = pq.read_table(tmp_path / "out" / f"shard-{probe['shard']:05d}.parquet").to_pylist()
    assert (shard[probe["row"]]["doc_id"], shard[probe["row"]]["repeat"]) == (probe["doc_id"], probe["repeat"])
    with pa.CompressedInputStream(str(tmp_path / "out" / "shard-00000.jsonl.zst"), "zstd") as fh:
        first = json.loads(fh.read().decode().splitlines()[0])
    assert set(first) == {"id", "text", "source", "token_count"}
    # Rebuilt from the manifest's pinned version: the same bytes.
    assert rebuild(tmp_path / "out" / "manifest.json", lake, tmp_path / "again") == []
    # A different seed is a different mixture: its shards differ.
    other = export_mixture(lake, s.model_copy(update={"seed": 4}), tmp_path / "other")
    assert other["shards"][0]["files"]["shard-00000.parquet"]["sha256"] != m["shards"][0]["files"]["shard-00000.parquet"]["sha256"]


def test_mixture_search_recovers_a_known_optimum_under_the_caps(tmp_path, monkeypatch):
    """Proxy runs of a synthetic 'loss' with its optimum at high=0.5, mid=0.3, syn=0.2, but the
    synthetic cap is 0.15: the proposal must respect the cap and land near the constrained optimum."""
    from documents.mixture_search import propose, read_runs

    rng = np.random.default_rng(0)
    best = np.array([0.5, 0.3, 0.2])
    w = rng.dirichlet(np.ones(3), 40)
    y = ((w - best) ** 2).sum(axis=1) * 4 + 2.0 + rng.normal(0, 0.003, 40)
    runs = tmp_path / "runs.csv"
    runs.write_text("high,mid,syn,loss\n" + "".join(f"{a:.5f},{b:.5f},{1 - a - b:.5f},{l:.5f}\n" for (a, b, _), l in zip(w, y)))
    W, Y = read_runs(runs, ["high", "mid", "syn"], "loss")
    p = propose(W, Y, ["high", "mid", "syn"], {"high": 1.0, "mid": 0.9, "syn": 1.0}, ["syn"], 0.15, samples=50_000)
    assert p.cv_r2 > 0.9 and p.weights["syn"] <= 0.15 + 1e-9 and abs(sum(p.weights.values()) - 1) < 1e-9
    assert abs(p.weights["syn"] - 0.15) < 0.03 and abs(p.weights["high"] - 0.525) < 0.06 and abs(p.weights["mid"] - 0.325) < 0.06
    assert p.predicted < p.best_run["metric"]  # better than every proxy run tried
    with pytest.raises(ValueError, match="columns"):
        read_runs(runs, ["high", "web"], "loss")

    # Through the CLI: the proposal is printed and recorded in MLflow.
    from mlflow.tracking import MlflowClient

    from orchestration.cli import main

    for var in ("SLUICE_CONFIG", "SLUICE_LAKEHOUSE_DIR", "SLUICE_LANDING_DIR"):
        monkeypatch.setenv(var, "-")
        monkeypatch.delenv(var)
    conf = tmp_path / "s.yaml"
    conf.write_text(
        json.dumps(
            {
                "lakehouse_dir": str(tmp_path / "lake"),
                "mixing": {
                    "mixtures": [
                        spec(
                            sources=[
                                {"name": "high", "weight": 0.5},
                                {"name": "mid", "weight": 0.35},
                                {"name": "syn", "weight": 0.15, "synthetic": True},
                            ],
                            synthetic_cap=0.15,
                        ).model_dump(mode="json")
                    ]
                },
            }
        )
    )
    assert (
        main(["mixture-search", "--config", str(conf), "--mixture", "m1", "--runs", str(runs), "--metric", "loss", "--samples", "20000"])
        == 0
    )
    client = MlflowClient(f"sqlite:///{tmp_path / 'lake' / '_mlflow' / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("sluice").experiment_id], "tags.`sluice.level` = 'mixture_search'")
    assert run.data.metrics["weight.syn"] <= 0.15 + 1e-9 and run.data.params["metric"] == "loss"
    assert {a.path for a in client.list_artifacts(run.info.run_id, "mixture_search")} == {
        "mixture_search/proposal.json",
        "mixture_search/runs.csv",
    }

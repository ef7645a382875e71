"""deduplicated → quality_classifier → quality_scored → rewritten through Dagster and Pipes: the
demo's default path (classifier trained on the sample crawl's reference corpus, registered, scoring
with the latest version next to the built-in signals score; rewriting skipped) and rewriting with a
configured (tiny) model."""

import json

import pytest
from dagster import AssetKey, DagsterInstance, materialize
from mlflow.tracking import MlflowClient

from assets.partitions import crawl_partitions
from gpu_jobs.options import RewriteOptions
from orchestration.resources import build_resources
from lakehouse.delta_table import read_arrow, row_count, table_exists
from tests import tiny_models
from tests.conftest import pipeline

pytestmark = pytest.mark.integration


def test_classifier_scores_and_rewrites(spark, make_config, sample_landing, tmp_path):
    cfg = make_config(sample_landing)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_partitions.name, ["crawl-t1"])
    res = materialize(pipeline(cfg), instance=instance, resources=build_resources(cfg), partition_key="crawl-t1", raise_on_error=False)
    assert res.success
    assert all(c.passed for c in res.get_asset_check_evaluations())

    clf = res.asset_materializations_for_node("quality_classifier")[0].metadata
    assert clf["model_uri"].value == "models:/sluice-quality/1" and clf["roc_auc"].value >= 0.85
    docs = row_count(cfg.table_uri("deduplicated"))
    scored = read_arrow(cfg.table_uri("quality_scored")).to_pylist()
    assert len(scored) == docs and len({r["doc_id"] for r in scored}) == docs
    for col in ("quality", "classifier"):
        assert all(0.0 <= r[col] <= 1.0 and r[f"{col}_label"] in ("low", "high") for r in scored)
    assert {r["model_uri"] for r in scored} == {json.dumps({"classifier": "models:/sluice-quality/1", "quality": "builtin:signals-v1"}, sort_keys=True)}
    assert {r["model_version"] for r in scored} == {json.dumps({"classifier": "1", "quality": None}, sort_keys=True)}

    client = MlflowClient(cfg.mlflow_tracking_uri)
    mv = client.get_model_version("sluice-quality", "1")
    assert mv.tags["scored.crawl-t1"] == "quality_scored@v0" and mv.tags["trained_on"] == "deduplicated@v0"
    md = res.asset_materializations_for_node("quality_scored")[0].metadata
    run = client.get_run(md["mlflow_run_id"].value)
    assert run.data.params["model.classifier"] == "models:/sluice-quality/1"
    assert run.data.params["model.quality"] == "builtin:signals-v1"
    assert "deduplicated@v0" in {i.dataset.name for i in run.inputs.dataset_inputs}

    rw = res.asset_materializations_for_node("rewritten")[0].metadata
    assert rw["skipped"].value == "skipped: no rewriter model configured"
    assert not table_exists(cfg.table_uri("rewritten"))

    # With a (tiny, random) model configured, low-scoring documents are rewritten or rejected. The
    # sample crawl's templated pages all score high on the signals, so the classifier's column
    # (crawl pages vs reference texts) picks the candidates here.
    llama = tiny_models.llama(tmp_path / "llama")
    cfg2 = make_config(sample_landing, rewrite=RewriteOptions(
        backend="hf", model=str(llama), score_column="classifier", threshold=0.5, max_new_tokens=16, rows_per_chunk=64, min_length_ratio=0.0,
        max_length_ratio=50.0, max_dup_4gram_frac=1.0, check_language=False))
    res2 = materialize(pipeline(cfg2), instance=instance, resources=build_resources(cfg2), partition_key="crawl-t1",
                       selection=[AssetKey("rewritten")], raise_on_error=False)
    assert res2.success and all(c.passed for c in res2.get_asset_check_evaluations())
    low = {r["doc_id"] for r in scored if r["classifier"] < 0.5}
    out = read_arrow(cfg.table_uri("rewritten")).to_pylist()
    rej = read_arrow(cfg.table_uri("rejections"), partition={"crawl_id": "crawl-t1", "stage": "rewrite"}).to_pylist()
    assert low and {r["source_doc_id"] for r in out} | {r["related_doc_id"] for r in rej} == low
    assert len(out) + len(rej) == len(low)
    md2 = res2.asset_materializations_for_node("rewritten")[0].metadata
    assert md2["candidates"].value == len(low) and md2["prompt_version"].value == "rewire-v1"

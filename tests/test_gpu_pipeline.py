"""deduplicated → quality_classifier → quality_scored → rewritten through Dagster and Pipes: the
demo's default path (classifier trained on the sample crawl's reference corpus, registered, scoring
with the latest version next to the built-in signals score; rewriting skipped) and rewriting with a
configured (tiny) model."""

import json

import pyarrow as pa
import pytest
from dagster import AssetKey, DagsterInstance, materialize
from mlflow.tracking import MlflowClient

from assets.partitions import crawl_partitions
from gpu_jobs.options import ClassifierTraining, RewriteOptions
from orchestration.resources import build_resources
from storage.delta_table import open_table, read_arrow, row_count, table_exists
from tests import tiny_models
from tests.conftest import pipeline

pytestmark = pytest.mark.integration


def test_classifier_scores_and_rewrites(spark, make_config, sample_landing, tmp_path, monkeypatch):
    evals = {"benchmarks": [{"name": "sample-evals", "path": str(sample_landing / "crawl-t1" / "eval_set.jsonl"), "fields": ["question"]}]}
    cfg = make_config(sample_landing, decontamination=evals)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_partitions.name, ["crawl-t1"])
    res = materialize(pipeline(cfg), instance=instance, resources=build_resources(cfg), partition_key="crawl-t1", raise_on_error=False)
    assert res.success
    assert all(c.passed for c in res.get_asset_check_evaluations())

    # Every table asset's materialization describes the table it published: its actual Delta schema.
    for name in ("raw_crawl", "filtered", "deduplicated", "quality_scored", "decontaminated"):
        md = res.asset_materializations_for_node(name)[0].metadata
        actual = pa.schema(open_table(cfg.table_uri(name)).schema().to_arrow())
        assert [(c.name, c.type) for c in md["dagster/column_schema"].value.columns] == [(f.name, str(f.type)) for f in actual], name
        assert md["dagster/row_count"].value == row_count(cfg.table_uri(name), partition={"crawl_id": "crawl-t1"}), name
        assert md["dagster/table_name"].value == name and md["status"].value == "published"

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

    # A classifier trained on noise fails its gate: registered as rejected (visible, with its AUC),
    # never resolved, so `models:/sluice-quality/latest` still resolves to the one that passed.
    import random

    rng = random.Random(0)
    noise = tmp_path / "noise.jsonl"
    texts = [r["text"] for r in read_arrow(cfg.table_uri("deduplicated"), columns=["text"]).to_pylist()[:120]]
    noise.write_text("".join(json.dumps({"text": t, "label": rng.randint(0, 1)}) + "\n" for t in texts))
    cfg_noise = make_config(sample_landing, classifier=ClassifierTraining(source="labelled", labelled_path=str(noise), max_length=64))
    bad = materialize(pipeline(cfg_noise), instance=instance, resources=build_resources(cfg_noise), partition_key="crawl-t1",
                      selection=[AssetKey("quality_classifier")], raise_on_error=False)
    assert bad.success  # a model's gate warns: only data gates fail a run
    [bad_check] = bad.get_asset_check_evaluations()
    assert not bad_check.passed and bad_check.severity.value == "WARN"
    bad_md = bad.asset_materializations_for_node("quality_classifier")[0].metadata
    assert bad_md["gate_passed"].value is False and bad_md["model_verdict"].value == "rejected" and bad_md["roc_auc"].value < 0.7
    verdicts = {str(v.version): (v.tags["sluice.gate"], v.tags["roc_auc"]) for v in client.search_model_versions("name = 'sluice-quality'")}
    assert verdicts["1"][0] == "approved" and verdicts["2"] == ("rejected", f"{bad_md['roc_auc'].value:.4f}"), verdicts
    assert str(client.get_model_version_by_alias("sluice-quality", "approved").version) == "1"
    lineage = build_resources(cfg)["lineage"]
    assert lineage.resolve_model("models:/sluice-quality/latest", tmp_path / "cache")[1:] == ("models:/sluice-quality/1", "1")
    with pytest.raises(LookupError, match="failed its gate"):
        lineage.resolve_model("models:/sluice-quality/2", tmp_path / "cache")
    assert "model" in {a.path for a in client.list_artifacts(bad_md["mlflow_run_id"].value)}

    # decontaminated: the pages quoting an eval-set item are removed, with evidence; nothing else.
    truth = [json.loads(l) for l in (sample_landing / "crawl-t1" / "ground_truth.jsonl").read_text().splitlines()]
    quoting = {t["url"] for t in truth if t.get("benchmark_items")}
    dedup_docs = read_arrow(cfg.table_uri("deduplicated"), columns=["doc_id", "url"]).to_pylist()
    expected = {d["doc_id"] for d in dedup_docs if d["url"] in quoting}
    dec = read_arrow(cfg.table_uri("decontaminated"), columns=["doc_id", "source"]).to_pylist()
    dec_rej = read_arrow(cfg.table_uri("rejections"), partition={"crawl_id": "crawl-t1", "stage": "decontam"}).to_pylist()
    assert expected and {r["doc_id"] for r in dec_rej} == expected
    assert len(dec) + len(dec_rej) == len(dedup_docs) and {r["source"] for r in dec} == {"deduplicated"}
    for r in dec_rej:
        ev = json.loads(r["detail"])
        assert r["reason"] == "decontam.sample-evals" and ev["benchmark"] == "sample-evals" and int(ev["item"]) >= 1
        assert len(ev["ngram"].split()) == 13 and ev["offset"] >= 0 and ev["matches"] == r["value"] >= 1
    dmd = res.asset_materializations_for_node("decontaminated")[0].metadata
    assert dmd["benchmarks"].value["sample-evals"]["items"] > 0 and dmd["rejected"].value == len(expected)

    # A mixture over the crawl: split at the median quality, half the tokens each, then export and rebuild.
    qualities = sorted(r["quality"] for r in scored)
    words = sum(r["word_count"] for r in read_arrow(cfg.table_uri("decontaminated"), columns=["word_count"]).to_pylist())
    mixing = {"mixtures": [{"name": "demo", "token_budget": int(words * 0.4), "seed": 1, "shard_docs": 40, "sources": [
        {"name": "high", "where": f"quality >= {qualities[len(qualities) // 2]}", "weight": 0.5}, {"name": "rest", "weight": 0.5}]}]}
    cfg_mix = make_config(sample_landing, decontamination=evals, mixing=mixing)
    mixed_asset = [a for a in pipeline(cfg_mix) if a.key == AssetKey("mixed")]
    mix = materialize(mixed_asset, instance=instance, resources=build_resources(cfg_mix), partition_key="demo", raise_on_error=False)
    assert mix.success and all(c.passed for c in mix.get_asset_check_evaluations())
    mmd = mix.asset_materializations_for_node("mixed")[0].metadata
    assert set(mmd["upstream"].value) == {"decontaminated", "quality_scored", "rejections"} and "high" in [r.data["source"] for r in mmd["plan"].records]
    rows = read_arrow(cfg.table_uri("mixed"), partition={"mixture_name": "demo"}).to_pylist()
    assert {r["source"] for r in rows} == {"high", "rest"} and {r["doc_id"] for r in rows} <= {r["doc_id"] for r in dec}
    for var in ("SLUICE_CONFIG", "SLUICE_LAKEHOUSE_DIR", "SLUICE_LANDING_DIR"):  # the CLI exports these: restored after the test
        monkeypatch.setenv(var, "-")
        monkeypatch.delenv(var)
    conf = tmp_path / "mix.yaml"
    conf.write_text(json.dumps({"lakehouse_dir": str(cfg.lakehouse_path), "mixing": mixing}))  # JSON is YAML
    from orchestration.cli import main

    assert main(["export", "--config", str(conf), "--mixture", "demo", "--out", str(tmp_path / "export")]) == 0
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["tables"]["mixed"]["version"] == 0 and manifest["tables"]["decontaminated"]["version"] == 0
    assert manifest["documents"] == len(rows) and manifest["sources"]["high"]["epochs"] is not None
    assert main(["rebuild", "--config", str(conf), str(tmp_path / "export" / "manifest.json"), "--out", str(tmp_path / "again")]) == 0
    assert main(["export", "--config", str(conf), "--mixture", "nope"]) == 2

    rw = res.asset_materializations_for_node("rewritten")[0].metadata
    assert rw["skipped"].value == "skipped: no rewriter model configured"
    assert not table_exists(cfg.table_uri("rewritten"))

    # With a (tiny, random) model configured, low-scoring documents are rewritten or rejected. The
    # sample crawl's templated pages all score high on the signals, so the classifier's column
    # (crawl pages vs reference texts) picks the candidates here.
    llama = tiny_models.llama(tmp_path / "llama")
    cfg2 = make_config(sample_landing, decontamination=evals, rewrite=RewriteOptions(
        backend="hf", model=str(llama), score_column="classifier", threshold=0.5, max_new_tokens=16, rows_per_chunk=64, min_length_ratio=0.0,
        max_length_ratio=50.0, max_dup_4gram_frac=1.0, check_language=False))
    res2 = materialize(pipeline(cfg2), instance=instance, resources=build_resources(cfg2), partition_key="crawl-t1",
                       selection=[AssetKey("rewritten"), AssetKey("decontaminated")], raise_on_error=False)
    assert res2.success and all(c.passed for c in res2.get_asset_check_evaluations())
    low = {r["doc_id"] for r in scored if r["classifier"] < 0.5}
    out = read_arrow(cfg.table_uri("rewritten")).to_pylist()
    rej = read_arrow(cfg.table_uri("rejections"), partition={"crawl_id": "crawl-t1", "stage": "rewrite"}).to_pylist()
    assert low and {r["source_doc_id"] for r in out} | {r["related_doc_id"] for r in rej} == low
    assert len(out) + len(rej) == len(low)
    md2 = res2.asset_materializations_for_node("rewritten")[0].metadata
    actual = pa.schema(open_table(cfg.table_uri("rewritten")).schema().to_arrow())
    assert [(c.name, c.type) for c in md2["dagster/column_schema"].value.columns] == [(f.name, str(f.type)) for f in actual]
    assert not list((cfg.lakehouse_path / "rewritten" / ".resume").glob("*"))  # the job's chunks were published, then removed
    assert md2["candidates"].value == len(low) and md2["prompt_version"].value == "rewire-v1"
    # decontaminated now checks the rewrites too: every one is there (a random model quotes no benchmark).
    dec2 = read_arrow(cfg.table_uri("decontaminated"), columns=["doc_id", "source", "source_doc_id"]).to_pylist()
    assert {(r["doc_id"], r["source_doc_id"]) for r in dec2 if r["source"] == "rewritten"} == {(r["doc_id"], r["source_doc_id"]) for r in out}
    assert res2.asset_materializations_for_node("decontaminated")[0].metadata["upstream"].value.keys() == {"deduplicated", "rewritten"}

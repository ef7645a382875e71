"""raw_crawl → filtered through Dagster, on a generated crawl and on the real shared WARC files."""

import shutil

import pytest
from dagster import AssetKey, DagsterInstance, materialize
from mlflow.tracking import MlflowClient

from assets.partitions import crawl_partitions
from orchestration.resources import build_resources
from storage.delta_table import open_table, read_arrow, row_count
from tests.conftest import ground_truth, pipeline, shared_data

raw_crawl, filtered = "raw_crawl", "filtered"

pytestmark = pytest.mark.integration


def run(cfg, crawl_id, assets, instance, selection=None):
    instance.add_dynamic_partitions(crawl_partitions.name, [crawl_id])
    return materialize(
        pipeline(cfg, *assets),
        instance=instance,
        resources=build_resources(cfg),
        partition_key=crawl_id,
        raise_on_error=False,
        selection=selection,
    )


def test_filtered_on_the_sample_crawl(spark, make_config, sample_landing):
    cfg = make_config(sample_landing)
    instance = DagsterInstance.ephemeral()
    result = run(cfg, "crawl-t1", [raw_crawl, filtered], instance)
    assert result.success
    assert {(c.asset_key.to_user_string(), c.passed) for c in result.get_asset_check_evaluations()} == {
        ("raw_crawl", True),
        ("filtered", True),
    }

    uri = cfg.table_uri("filtered")
    raw_n = row_count(cfg.table_uri("raw_crawl"))
    rej = read_arrow(cfg.table_uri("rejections"), partition={"crawl_id": "crawl-t1", "stage": "filter"}).to_pylist()
    kept = read_arrow(uri).to_pylist()
    assert raw_n == len(kept) + len(rej)  # conservation

    truth = {t["warc_record_id"]: t for t in ground_truth(sample_landing / "crawl-t1")}
    kind_kept = {}
    for d in kept:
        k = truth[d["warc_record_id"]]["kind"]
        kind_kept[k] = kind_kept.get(k, 0) + 1
    raw_ids = read_arrow(cfg.table_uri("raw_crawl"), columns=["doc_id", "warc_record_id"]).to_pylist()
    kind_of = {r["doc_id"]: truth[r["warc_record_id"]]["kind"] for r in raw_ids}
    rejected_kinds = {}
    for r in rej:
        rejected_kinds.setdefault(kind_of[r["doc_id"]], set()).add(r["reason"].split(".")[0])
    articles = sum(1 for t in truth.values() if t["kind"] == "article")
    assert kind_kept.get("article", 0) >= 0.95 * articles
    assert "non_english" not in kind_kept and rejected_kinds["non_english"] == {"language"}
    assert "short" not in kind_kept and "spam" not in kind_kept
    for d in kept:
        t = truth[d["warc_record_id"]]
        if t["kind"] == "pii":
            assert d["pii_emails"] >= 1 and t["pii"]["email"][0] not in d["text"] and t["pii"]["ipv4"][0] not in d["text"]
    assert all(r["reason"] and r["run_id"] == result.run_id for r in rej)
    assert any(r["value"] is not None for r in rej)  # measured values are kept

    md = result.asset_materializations_for_node("filtered")[0].metadata
    assert md["upstream"].value == {"raw_crawl": 0} and md["gate_passed"].value is True
    assert "data:image/png;base64," in md["funnel"].value
    assert md["language_share"].value == {"en": 1.0}

    client = MlflowClient(cfg.mlflow_tracking_uri)
    stage = client.get_run(open_table(uri).history(1)[0]["sluice"]["mlflow_run_id"])
    datasets = {(d.dataset.name, t.value) for d in stage.inputs.dataset_inputs for t in d.tags if t.key == "mlflow.data.context"}
    assert ("raw_crawl@v0", "input") in datasets and ("filtered@v0", "output") in datasets
    assert stage.data.params["filter.language.min_score"] == "0.65"

    # Re-materializing filtered alone replaces its partition and its rejections.
    again = run(cfg, "crawl-t1", [raw_crawl, filtered], instance, selection=["filtered"])
    assert again.success
    assert row_count(uri) == len(kept) and open_table(uri).version() == 1
    assert row_count(cfg.table_uri("rejections"), partition={"crawl_id": "crawl-t1", "stage": "filter"}) == len(rej)


def test_filtered_refuses_an_upstream_that_failed_its_gate(spark, make_config, sample_landing, tmp_path):
    landing = tmp_path / "landing"
    (landing / "crawl-bad").mkdir(parents=True)
    src = sorted((sample_landing / "crawl-t1").glob("*.warc.gz"))[0]
    shutil.copy(src, landing / "crawl-bad" / "a.warc.gz")
    shutil.copy(src, landing / "crawl-bad" / "a-copy.warc.gz")
    cfg = make_config(landing)
    instance = DagsterInstance.ephemeral()
    first = run(cfg, "crawl-bad", [raw_crawl, filtered], instance)
    assert not first.success
    assert "filtered" not in {e.step_key for e in first.get_step_success_events()}
    # Run on its own later, it still does not consume the failed version.
    alone = run(cfg, "crawl-bad", [raw_crawl, filtered], instance, selection=["filtered"])
    assert not alone.success
    failure = [e for e in alone.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "failed its gate" in failure.event_specific_data.error.message
    assert AssetKey("filtered") not in {e.asset_key for e in alone.get_asset_materialization_events()}


@pytest.mark.shared_data
def test_real_warc_files_through_raw_crawl_and_filtered(spark, make_config, tmp_path):
    src = shared_data("warc")
    crawl = tmp_path / "landing" / "shared"
    for f in src.rglob("*.gz"):
        dest = crawl / f.relative_to(src)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest)
    cfg = make_config(tmp_path / "landing", ingest={"file_globs": ["*.gz"]})
    result = run(cfg, "shared", [raw_crawl, filtered], DagsterInstance.ephemeral())
    assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert all(c.passed for c in result.get_asset_check_evaluations())
    raw_n = row_count(cfg.table_uri("raw_crawl"))
    assert raw_n == 90  # the HTTP 200 HTML responses of all shared files (see test_warc_ingest)
    kept = row_count(cfg.table_uri("filtered"))
    rejected = row_count(cfg.table_uri("rejections"), partition={"crawl_id": "shared", "stage": "filter"})
    assert kept + rejected == raw_n and kept > 0

"""The real pipeline in-process: Spark, Delta, Great Expectations, MLflow, Dagster."""

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, DagsterInstance, Definitions, asset, materialize
from mlflow.tracking import MlflowClient

from assets import stages
from assets.partitions import crawl_partitions
from orchestration.definitions import build_definitions
from orchestration.resources import build_resources
from storage.delta_table import open_table, read_arrow, row_count
from tests.conftest import ground_truth, pipeline

raw_crawl = "raw_crawl"

pytestmark = pytest.mark.integration


@asset(partitions_def=crawl_partitions, deps=["raw_crawl"], group_name="test")
def downstream_of_raw_crawl() -> None:
    """Stands for `filtered`: it must never run on a table whose gate failed."""


def run(cfg, crawl_id, assets=(raw_crawl,), instance=None):
    instance = instance or DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_partitions.name, [crawl_id])
    return materialize(
        pipeline(cfg, *assets), instance=instance, resources=build_resources(cfg), partition_key=crawl_id, raise_on_error=False
    )


def test_definitions_load(make_config, sample_landing):
    cfg = make_config(sample_landing)
    defs = build_definitions(cfg)
    graph = defs.resolve_asset_graph()
    # every stage of the registry that this configuration enables (no mixture configured: no `mixed`), wired as declared
    enabled = [spec for spec, _ in stages() if spec.enabled is None or spec.enabled(cfg)]
    assert graph.get_all_asset_keys() == {AssetKey(spec.name) for spec in enabled}
    assert "mixed" not in {spec.name for spec in enabled} and {"raw_crawl", "decontaminated"} <= {spec.name for spec in enabled}
    for spec in enabled:
        assert graph.get(AssetKey(spec.name)).parent_keys == {AssetKey(u) for u in spec.upstreams}, spec.name
    assert graph.get(AssetKey("quality_scored")).parent_keys == {AssetKey("deduplicated"), AssetKey("quality_classifier")}
    assert {s.name for s in defs.sensors} == {
        "crawl_landing_sensor",
        "sluice_automation",
        "close_mlflow_run_on_success",
        "close_mlflow_run_on_failure",
        "close_mlflow_run_on_canceled",
    }
    assert all(s.default_status.value == "RUNNING" for s in defs.sensors)  # on by default
    # every crawl stage but the entry one follows its upstreams on its own
    assert {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).automation_condition is None} == {"raw_crawl"}
    assert isinstance(defs, Definitions)


def test_raw_crawl_materializes_gated_and_traced(spark, make_config, sample_landing):
    cfg = make_config(sample_landing)
    truth = ground_truth(sample_landing / "crawl-t1")
    expected_docs = sum(t["expected"] == "doc" for t in truth)

    result = run(cfg, "crawl-t1")
    assert result.success
    [check] = result.get_asset_check_evaluations()
    assert check.passed and check.check_name == "gate"

    uri = cfg.table_uri("raw_crawl")
    assert row_count(uri) == expected_docs
    got = set(read_arrow(uri, columns=["warc_record_id"])["warc_record_id"].to_pylist())
    assert got == {t["warc_record_id"] for t in truth if t["expected"] == "doc"}
    rej = read_arrow(cfg.table_uri("rejections"), columns=["reason", "stage", "crawl_id"]).to_pylist()
    by_reason = {}
    for r in rej:
        by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + 1
    for reason in ("http_status", "not_html", "truncated", "unparseable", "unreadable", "not_response"):
        assert by_reason.get(reason), reason
    assert {(r["stage"], r["crawl_id"]) for r in rej} == {("ingest", "crawl-t1")}

    # Dagster metadata: version, row count, preview, MLflow link, gate report.
    mat = result.asset_materializations_for_node("raw_crawl")[0]
    md = mat.metadata
    assert md["delta_version"].value == 0 and md["dagster/row_count"].value == expected_docs
    assert md["status"].value == "published" and md["dagster/table_name"].value == "raw_crawl"
    delta_schema = open_table(uri).schema().to_arrow()
    assert [(c.name, c.type) for c in md["dagster/column_schema"].value.columns] == [(f.name, str(f.type)) for f in pa.schema(delta_schema)]
    assert "doc_id" in [c.name for c in md["preview"].schema.columns] and md["mlflow_run"].value.startswith("http://127.0.0.1")

    # Delta commit info points to the Dagster and MLflow runs.
    commit = open_table(uri).history(1)[0]["sluice"]
    assert commit["dagster_run_id"] == result.run_id and commit["dagster_partition"] == "crawl-t1"

    # MLflow: a stage run nested under the Dagster run's, with params, metrics and datasets.
    client = MlflowClient(cfg.mlflow_tracking_uri)
    stage = client.get_run(commit["mlflow_run_id"])
    parent = client.get_run(stage.data.tags["mlflow.parentRunId"])
    assert parent.data.tags["dagster.run_id"] == result.run_id
    assert stage.data.tags["dagster.partition"] == "crawl-t1" and stage.data.tags["sluice.git_sha"]
    assert stage.data.params["ingest.keep_truncated"] == "False"
    assert stage.data.metrics["documents"] == expected_docs
    assert stage.data.metrics["records_read"] == stage.data.metrics["documents"] + stage.data.metrics["rejected"]
    outputs = {(d.dataset.name, t.value) for d in stage.inputs.dataset_inputs for t in d.tags if t.key == "mlflow.data.context"}
    assert outputs == {("raw_crawl@v0", "output"), ("rejections@v0", "output")}

    # Re-materializing the partition replaces it: a new version, no duplicated rows.
    again = run(cfg, "crawl-t1")
    assert again.success
    assert open_table(uri).version() == 1 and row_count(uri) == expected_docs
    assert row_count(cfg.table_uri("rejections")) == len(rej)


def test_failed_gate_publishes_nothing_keeps_the_candidate_and_blocks_downstream(spark, make_config, sample_landing, tmp_path):
    landing = tmp_path / "landing"
    crawl = landing / "crawl-bad"
    crawl.mkdir(parents=True)
    src = sorted((sample_landing / "crawl-t1").glob("*.warc.gz"))[0]
    shutil.copy(src, crawl / "part-a.warc.gz")
    cfg = make_config(landing)
    instance = DagsterInstance.ephemeral()
    assert run(cfg, "crawl-bad", instance=instance).success
    uri, rej_uri = cfg.table_uri("raw_crawl"), cfg.table_uri("rejections")
    published = (open_table(uri).version(), row_count(uri), open_table(rej_uri).version(), row_count(rej_uri))

    # The same WARC file uploaded again under another name: every record id appears twice.
    shutil.copy(src, crawl / "part-a-retry.warc.gz")
    result = run(cfg, "crawl-bad", assets=(raw_crawl, downstream_of_raw_crawl), instance=instance)
    assert not result.success
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and "expect_column_values_to_be_unique" in check.description
    assert check.metadata["result_json"].value.endswith(".json")

    # Nothing was published: any reader of the Delta tables still gets the version that passed.
    assert (open_table(uri).version(), row_count(uri), open_table(rej_uri).version(), row_count(rej_uri)) == published
    md = result.asset_materializations_for_node("raw_crawl")[0].metadata
    assert md["status"].value == "quarantined" and md["gate_passed"].value is False
    assert md["delta_version"].value == published[0] and "dagster/row_count" not in md
    assert md["candidate_rows"].value == 2 * published[1]

    # The candidate is kept for audit, with why, and recorded in MLflow.
    kept = {name: Path(path) for name, path in md["quarantine"].value.items()}
    assert set(kept) == {"raw_crawl", "rejections"} and all(
        str(p).startswith(str(cfg.lakehouse_path / "_quarantine")) for p in kept.values()
    )
    note = json.loads((kept["raw_crawl"] / "candidate.json").read_text())
    assert note["gate"] == "raw_crawl" and note["partition"] == {"crawl_id": "crawl-bad"} and note["dagster_run_id"] == result.run_id
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in kept["raw_crawl"].glob("*.parquet")) == 2 * published[1]
    tags = MlflowClient(cfg.mlflow_tracking_uri).get_run(md["mlflow_run_id"].value).data.tags
    assert tags["sluice.quarantine.raw_crawl"] == str(kept["raw_crawl"])
    assert not list((cfg.lakehouse_path / "raw_crawl" / ".staging").glob("*/*"))  # nothing left half-written

    # Downstream did not run.
    assert {e.asset_key for e in result.get_asset_materialization_events()} == {AssetKey("raw_crawl")}
    assert "downstream_of_raw_crawl" not in {e.step_key for e in result.get_step_success_events()}


def test_missing_crawl_folder_is_a_clear_failure(make_config, tmp_path):
    cfg = make_config(tmp_path / "empty-landing")
    result = run(cfg, "no-such-crawl")
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "no WARC files" in str(failure.event_specific_data.error.message)

"""Work after a stage's commit (reports, audit, model registration, MLflow logging) cannot re-commit
it: every stage's post-commit step is made to fail, with a retry allowed, and the run must still
succeed with one commit per stage and table, and the failure recorded as a warning (Dagster
metadata, the run's log, an MLflow tag)."""

import json

import pytest

import assets
from orchestration.cli import main
from tests.conftest import clean_cli_environment

pytestmark = pytest.mark.integration


def _failing_after_commit(work):
    def wrapped(ctx):
        out = work(ctx)

        def injected_failure(_commits):
            raise RuntimeError(f"injected post-commit failure in {ctx.spec.name}")

        out.on_publish.insert(0, injected_failure)
        return out

    return wrapped


def test_a_failing_post_commit_step_is_a_warning_not_a_second_commit(spark, tmp_path, monkeypatch, capfd):
    from dagster import AssetKey, AssetRecordsFilter, DagsterInstance
    from mlflow.tracking import MlflowClient

    from storage.delta_table import open_table

    real = assets.stages
    monkeypatch.setattr(assets, "stages", lambda: [(spec, _failing_after_commit(work)) for spec, work in real()])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLUICE_SPARK__MASTER", "local[2]")
    monkeypatch.setenv("SLUICE_SPARK__SHOW_PROGRESS", "false")
    monkeypatch.setenv("SLUICE_DAGSTER__RETRIES", "1")  # a retry would be allowed: it must not happen
    monkeypatch.setenv("SLUICE_DAGSTER__RETRY_DELAY_SECONDS", "0")
    clean_cli_environment(monkeypatch)
    assert main(["sample-crawl", "--pages", "120", "--seed", "5", "--out", "landing/c1"]) == 0
    assert main(["run", "--crawl", "landing/c1", "--lakehouse", "lh"]) == 0
    out = capfd.readouterr()
    assert "published, with warnings after the commit" in out.err + out.out

    lh = tmp_path / "lh"
    committed: dict[tuple[str, str], int] = {}
    from storage.tables import TABLES

    for table in [t for t in TABLES if (lh / t / "_delta_log").is_dir()]:  # every table of the contract this run wrote
        for c in open_table(lh / table).history():
            meta = c.get("sluice") or {}
            meta = json.loads(meta) if isinstance(meta, str) else meta
            if meta.get("asset"):
                committed[(table, meta["asset"])] = committed.get((table, meta["asset"]), 0) + 1
    assert committed and all(n == 1 for n in committed.values()), committed
    assert committed[("decontaminated", "decontaminated")] == 1 and committed[("raw_crawl", "raw_crawl")] == 1

    instance = DagsterInstance.from_config(str(lh / "_dagster"))
    client = MlflowClient(f"sqlite:///{lh / '_mlflow' / 'mlflow.db'}")
    for asset in ("raw_crawl", "filtered", "deduplicated", "quality_scored", "decontaminated"):
        [rec] = instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=["c1"]), limit=5).records
        md = rec.asset_materialization.metadata
        assert "injected post-commit failure" in md["post_commit_warnings"].value, asset
        assert md["gate_passed"].value is True
        tags = client.get_run(md["mlflow_run_id"].value).data.tags
        assert "injected post-commit failure" in tags["sluice.post_commit_warnings"], asset
        assert tags.get("mlflow.note.content"), asset  # the stage run is described

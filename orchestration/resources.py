"""The resources of a Dagster run, built from the one configuration: the lakehouse and landing
folders, the Spark session, MLflow lineage, the GPU job launcher (typed resources of ``assets``)."""

from __future__ import annotations

from pathlib import Path

from assets.lineage import LineageResource
from assets.resources import GpuLauncher, LakehouseResource, SparkResource
from orchestration.config import SluiceConfig


def build_resources(config: SluiceConfig) -> dict[str, object]:
    return {
        "lakehouse": LakehouseResource(
            root=str(config.lakehouse_path),
            landing=str(Path(config.landing_dir).resolve()),
            stray_grace_seconds=config.lakehouse.stray_grace_seconds,
            preview_rows=config.quality.preview_rows,
        ),
        "spark": SparkResource(**config.spark.model_dump()),
        "lineage": lineage_resource(config),
        "gpu": GpuLauncher(**config.gpu.model_dump()),
    }


def lineage_resource(config: SluiceConfig) -> LineageResource:
    """MLflow lineage for the configuration: runs, CLI commands included, open the store through it, so
    that schema and experiment creation are serialised (see ``LineageResource._store_lock``)."""
    return LineageResource(
        tracking_uri=config.mlflow_tracking_uri,
        experiment=config.mlflow.experiment,
        artifact_root=config.mlflow_artifact_root,
        ui_url=f"http://127.0.0.1:{config.mlflow.ui_port}",
    )

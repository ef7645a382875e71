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
        "lineage": LineageResource(
            tracking_uri=config.mlflow_tracking_uri,
            experiment=config.mlflow.experiment,
            artifact_root=config.mlflow_artifact_root,
            ui_url=f"http://127.0.0.1:{config.mlflow.ui_port}",
        ),
        "gpu": GpuLauncher(**config.gpu.model_dump()),
    }

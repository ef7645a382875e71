"""Resources handed to assets: settings, the Spark session, the lakehouse folder, MLflow lineage.

They are plain objects (Dagster wraps them); assets reach them through ``context.resources`` so the
asset layer does not import this package (dependencies point orchestration → assets → jobs).
"""

from __future__ import annotations

import threading

from orchestration.config import SluiceConfig
from orchestration.lineage import Lineage


class SparkProvider:
    """Creates the process's SparkSession on first use, so loading definitions starts no JVM."""

    def __init__(self, config: SluiceConfig) -> None:
        self._settings = config.spark
        self._lock = threading.Lock()
        self._spark = None

    def get(self):
        with self._lock:
            if self._spark is None:
                from spark_jobs.session import build_spark

                self._spark = build_spark(self._settings)
            return self._spark


class Lakehouse:
    """Where tables live. Table names are the public contract of DESIGN.md and the README."""

    def __init__(self, config: SluiceConfig) -> None:
        self.root = config.lakehouse_path
        self.grace_seconds = config.lakehouse.stray_grace_seconds
        self.quality_dir = config.quality_dir

    def uri(self, table: str) -> str:
        return str(self.root / table)


def build_resources(config: SluiceConfig) -> dict[str, object]:
    return {
        "settings": config,
        "spark": SparkProvider(config),
        "lakehouse": Lakehouse(config),
        "lineage": Lineage(
            config.mlflow_tracking_uri,
            config.mlflow.experiment,
            config.mlflow_artifact_root,
            ui_url=f"http://127.0.0.1:{config.mlflow.ui_port}",
        ),
    }

"""The resources stages are given, as typed Dagster resources: where tables live, the Spark
session, the GPU job launcher (MLflow lineage is in ``assets.lineage``). Orchestration builds them
from the configuration; they live here because the assets declare them as parameters, and
dependencies point orchestration → assets."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource

from gpu_jobs.launch import GpuLaunchSettings
from spark_jobs.session import SparkSettings
from storage import tables as T
from storage.delta_table import Transaction

REPO = Path(__file__).resolve().parents[1]


class LakehouseResource(ConfigurableResource):
    """Where crawls land and where tables live; the table contract (``storage.tables``) names them."""

    root: str
    landing: str = "landing"
    # A stray file left by a killed writer is deleted only when no live writer holds its lock;
    # the grace period is a second guard for shared file systems where locks are unreliable.
    stray_grace_seconds: float = 0.0
    preview_rows: int = 5

    @property
    def path(self) -> Path:
        return Path(self.root)

    def uri(self, table: str) -> str:
        return str(self.path / table)

    def folder(self, name: str, *parts: str) -> Path:
        """A lakehouse sub-folder named in the contract (``T.REPORTS``, ``T.MODELS``, ...)."""
        return self.path.joinpath(name, *parts)

    @property
    def quality_dir(self) -> Path:
        return self.folder(T.QUALITY)

    def crawl_dir(self, crawl_id: str) -> Path:
        return Path(self.landing).resolve() / crawl_id

    def transaction(self, table: T.TableSpec, partition: dict[str, str]) -> Transaction:
        """A write replacing one partition of ``table`` (enter it with ``with``)."""
        return Transaction(
            self.uri(table.name), partition=partition, partition_by=list(table.partition_by), grace_seconds=self.stray_grace_seconds
        )


_SPARK_LOCK = threading.Lock()
_SPARK: dict[str, Any] = {}


class SparkResource(ConfigurableResource, SparkSettings):
    """The process's SparkSession, created on first use (loading definitions starts no JVM): local
    by default, a cluster by ``master`` and ``conf``. Its fields are ``spark_jobs.session.SparkSettings``
    (which cannot import Dagster), inherited, so they are declared once."""

    def session(self):
        from spark_jobs.session import build_spark

        with _SPARK_LOCK:
            if "session" not in _SPARK:
                import pyspark.sql  # noqa: F401  (before the preload starts: the two threads never import it together)

                from quality.gate import preload

                # The gate library takes seconds to import and every stage's gate needs it; the JVM's
                # start is mostly waiting. Overlapped: about 3 s less per run process on 2 cores.
                threading.Thread(target=preload, name="sluice-preload-gates", daemon=True).start()
                _SPARK["session"] = build_spark(SparkSettings(**self.model_dump()))
            return _SPARK["session"]


class GpuLauncher(ConfigurableResource, GpuLaunchSettings):
    """Starts a GPU program through Dagster Pipes: a local subprocess by default, a Kubernetes pod on
    a GPU node with ``launcher: k8s`` (infra/gpu-jobs.md). The program reports one custom message,
    its summary, which is returned; its logs stream into the Dagster run. Its fields are
    ``gpu_jobs.launch.GpuLaunchSettings``, inherited."""

    def pod_spec(self) -> dict[str, Any]:
        """The base pod spec of a GPU job: the GPU limit, on the selected GPU nodes, tolerating their taints."""
        spec: dict[str, Any] = {"containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": self.gpus}}}]}
        if self.node_selector:
            spec["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            spec["tolerations"] = [dict(t) for t in self.tolerations]
        return spec

    def run(self, context, module: str, params: dict[str, Any]) -> dict[str, Any]:
        from dagster import Failure

        if self.launcher == "k8s":
            try:
                from dagster_k8s import PipesK8sClient
            except ImportError as e:
                raise Failure("gpu.launcher is k8s but dagster-k8s is not installed (pip install dagster-k8s)", allow_retries=False) from e
            if not self.image:
                raise Failure("gpu.launcher is k8s: set gpu.image to an image with Sluice installed", allow_retries=False)
            invocation = PipesK8sClient().run(
                context=context,
                image=self.image,
                command=["python", "-m", module],
                namespace=self.namespace,
                extras={"params": params},
                env=dict(self.env),
                base_pod_spec=self.pod_spec(),
            )
        elif self.launcher == "subprocess":
            from dagster import PipesSubprocessClient

            env = {**os.environ, **self.env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
            invocation = PipesSubprocessClient(env=env, cwd=str(REPO)).run(
                command=[sys.executable, "-m", module],
                context=context,
                extras={"params": params},
            )
        else:
            raise Failure(f"gpu.launcher must be subprocess or k8s, not {self.launcher!r}", allow_retries=False)
        messages = invocation.get_custom_messages()
        if not messages:
            raise Failure(f"{module} finished without reporting its summary", allow_retries=False)
        return messages[-1]

"""Starting a GPU program through Dagster Pipes: a local subprocess by default, a Kubernetes pod on a
GPU node when ``gpu.launcher: k8s`` (infra/gpu-jobs.md). The program reports one custom message,
its summary, which the asset returns to its caller; logs stream into the Dagster run."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def run_gpu_job(context, module: str, params: dict[str, Any]) -> dict[str, Any]:
    from dagster import Failure

    gpu = context.resources.settings.gpu
    if gpu.launcher == "k8s":
        try:
            from dagster_k8s import PipesK8sClient
        except ImportError as e:
            raise Failure("gpu.launcher is k8s but dagster-k8s is not installed (pip install dagster-k8s)") from e
        if not gpu.image:
            raise Failure("gpu.launcher is k8s: set gpu.image to an image with Sluice installed")
        invocation = PipesK8sClient().run(
            context=context, image=gpu.image, command=["python", "-m", module], namespace=gpu.namespace,
            extras={"params": params}, env=dict(gpu.env),
            base_pod_spec={"containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": gpu.gpus}}}]},
        )
    else:
        from dagster import PipesSubprocessClient

        env = {**os.environ, **gpu.env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        invocation = PipesSubprocessClient(env=env, cwd=str(REPO)).run(
            command=[sys.executable, "-m", module], context=context, extras={"params": params},
        )
    messages = invocation.get_custom_messages()
    if not messages:
        raise Failure(f"{module} finished without reporting its summary")
    return messages[-1]


def commit_info(context, mlflow_run_id: str) -> dict[str, Any]:
    return {
        "dagster_run_id": context.run_id,
        "asset": context.asset_key.to_user_string(),
        "dagster_partition": context.partition_key if context.has_partition_key else None,
        "mlflow_run_id": mlflow_run_id,
        "git_sha": context.resources.lineage.git_sha,
    }

"""How the GPU programs are started: settings shared by the configuration (``gpu:``) and the Dagster
resource that launches them (``assets.resources.GpuLauncher`` inherits these fields, so they are
declared once)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class GpuLaunchSettings(BaseModel):
    """How assets start the GPU programs (Dagster Pipes): a local subprocess, or a Kubernetes pod
    on a GPU node (needs dagster-k8s; see infra/gpu-jobs.md)."""

    launcher: Literal["subprocess", "k8s"] = "subprocess"
    image: str = ""  # k8s: an image with this project installed
    namespace: str = "default"
    gpus: int = 1
    env: dict[str, str] = Field(default_factory=dict)
    # k8s: where the pods may run, e.g. {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, and
    # the taints of GPU nodes they tolerate (the usual one: nvidia.com/gpu, NoSchedule).
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, str]] = Field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    )

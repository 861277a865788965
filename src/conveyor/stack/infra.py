"""Base job templates for Conveyor's cpu, gpu and edge pools on Docker and Kubernetes, built from Prefect's defaults.

Each template starts from the FULL default of its worker type (vendored in infra/<type>/default-base-job-template.json,
from `prefect work-pool get-default-base-job-template --type <type>`; a custom template replaces the default
entirely) and adds what the pool's hardware needs. `python -m conveyor.stack.infra` rewrites infra/<type>/<pool>.json;
infra/README.md has the `prefect work-pool create` commands.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

from conveyor.io.files import write_text_atomically
from conveyor.settings import PROJECT_DIR

INFRA_DIR = PROJECT_DIR / "infra"
POOLS = ("cpu", "gpu", "edge")
WORKER_TYPES = ("kubernetes", "docker")
IMAGE = "conveyor:latest"
GPU_RESOURCE = "nvidia.com/gpu"
# NVIDIA's device plugin and GPU operator label GPU nodes with this, and GPU node pools are usually tainted with it.
GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
GPU_TOLERATIONS = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
EDGE_NODE_SELECTOR = {"kubernetes.io/arch": "arm64"}
# Kubernetes requests per pool; the gpu pool adds one GPU, the edge pool targets small arm64 gateways.
K8S_RESOURCES = {
    "cpu": {"cpu_request": "1", "cpu_limit": "2", "memory_request": "2Gi", "memory_limit": "4Gi"},
    "gpu": {"cpu_request": "2", "cpu_limit": "4", "memory_request": "8Gi", "memory_limit": "16Gi"},
    "edge": {"cpu_request": "500m", "cpu_limit": "1", "memory_request": "512Mi", "memory_limit": "1Gi"},
}
DOCKER_GPU_REQUEST = {"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]}


def default_template(worker_type: str) -> dict[str, Any]:
    """Prefect's default base job template for a worker type, as vendored in infra/."""
    return dict(json.loads((INFRA_DIR / worker_type / "default-base-job-template.json").read_text()))


def _set_defaults(template: dict[str, Any], defaults: dict[str, Any]) -> None:
    for name, value in defaults.items():
        template["variables"]["properties"][name]["default"] = value


def kubernetes_template(pool: str) -> dict[str, Any]:
    """The Kubernetes template of a pool: resources, and for gpu a GPU limit, node selector and tolerations."""
    template = copy.deepcopy(default_template("kubernetes"))
    properties = template["variables"]["properties"]
    job = template["job_configuration"]["job_manifest"]
    pod = job["spec"]["template"]["spec"]
    # The default puts these Job fields into the pod spec, where the Kubernetes API schema rejects them.
    job["spec"]["completions"] = pod.pop("completions")
    job["spec"]["parallelism"] = pod.pop("parallelism")
    properties["image"]["default"] = IMAGE
    _set_defaults(template, K8S_RESOURCES[pool])
    properties["node_selector"] = {
        "title": "Node selector",
        "description": "Labels a node must carry to run this pool's flow runs.",
        "type": "object",
        "additionalProperties": {"type": "string"},
        "default": {"gpu": GPU_NODE_SELECTOR, "edge": EDGE_NODE_SELECTOR}.get(pool, {}),
    }
    properties["tolerations"] = {
        "title": "Tolerations",
        "description": "Taints this pool's pods tolerate (GPU nodes are usually tainted).",
        "type": "array",
        "items": {"type": "object"},
        "default": GPU_TOLERATIONS if pool == "gpu" else [],
    }
    pod["nodeSelector"] = "{{ node_selector }}"
    pod["tolerations"] = "{{ tolerations }}"
    if pool == "gpu":
        properties["gpu_limit"] = {
            "title": "GPUs",
            "description": f"{GPU_RESOURCE} per flow run (Kubernetes requires the request to equal the limit).",
            "type": "integer",
            "minimum": 1,
            "default": 1,
        }
        pod["containers"][0]["resources"]["limits"][GPU_RESOURCE] = "{{ gpu_limit }}"
    return template


def docker_template(pool: str) -> dict[str, Any]:
    """The Docker template of a pool: the image, GPU device requests for gpu, the arm64 platform for edge."""
    template = copy.deepcopy(default_template("docker"))
    template["variables"]["properties"]["image"]["default"] = IMAGE
    per_pool: dict[str, dict[str, Any]] = {
        "gpu": {"device_requests": [DOCKER_GPU_REQUEST]},
        "edge": {"platform": "linux/arm64"},
    }
    extra = per_pool.get(pool, {})
    template["variables"]["properties"]["container_create_kwargs"]["default"] = extra
    return template


def build_template(worker_type: str, pool: str) -> dict[str, Any]:
    """The base job template of a pool for a worker type."""
    if worker_type not in WORKER_TYPES or pool not in POOLS:
        raise ValueError(f"Templates exist for {', '.join(WORKER_TYPES)} and pools {', '.join(POOLS)}.")
    return kubernetes_template(pool) if worker_type == "kubernetes" else docker_template(pool)


def template_path(worker_type: str, pool: str) -> Path:
    """Where the template of a pool for a worker type is kept."""
    return INFRA_DIR / worker_type / f"{pool}.json"


def write_templates() -> list[Path]:
    """Rewrite every infra/<type>/<pool>.json from the vendored defaults."""
    return [
        write_text_atomically(template_path(kind, pool), json.dumps(build_template(kind, pool), indent=2) + "\n")
        for kind in WORKER_TYPES
        for pool in POOLS
    ]


if __name__ == "__main__":
    sys.stdout.write("\n".join(str(path) for path in write_templates()) + "\n")

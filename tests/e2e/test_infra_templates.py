"""Work-pool templates in infra/: rendered by the real Prefect workers' code, checked against the real APIs' schemas.

No cluster and no Docker engine exist here: Kubernetes manifests are checked with kubernetes-validate (the
Kubernetes OpenAPI schema, strict), Docker settings with docker-py's own create_container argument handling.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import uuid
from typing import Any

import docker
import kubernetes_validate
import pytest
from docker.models.containers import _create_container_args
from prefect.client.schemas.objects import Flow, FlowRun
from prefect_docker.worker import DockerWorker, DockerWorkerJobConfiguration
from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

from conveyor.stack.infra import GPU_RESOURCE, POOLS, WORKER_TYPES, build_template, default_template, template_path

K8S_VERSION = kubernetes_validate.latest_version()
DOCKER_API_VERSION = "1.45"
QUERY_PARAMETERS = {"name", "platform"}  # create_container sends these in the URL, the rest as the body


def _flow_run() -> tuple[FlowRun, Flow]:
    flow = Flow(id=uuid.uuid4(), name="refit", labels={})
    return FlowRun(id=uuid.uuid4(), flow_id=flow.id, name="brisk-otter"), flow


def render_kubernetes(pool: str, job_variables: dict[str, Any]) -> dict[str, Any]:
    config = asyncio.run(
        KubernetesWorkerJobConfiguration.from_template_and_values(build_template("kubernetes", pool), job_variables)
    )
    flow_run, flow = _flow_run()
    config.prepare_for_flow_run(flow_run, flow=flow)
    return dict(config.job_manifest)


class _EngineVersion:
    """Stands in for the Docker engine, which cannot run here; the worker asks it only for its version."""

    def version(self) -> dict[str, str]:
        return {"Version": "27.3.1", "ApiVersion": DOCKER_API_VERSION}


def render_docker(pool: str, job_variables: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """create_container's arguments from the worker's settings, and the POST /containers/create body they make."""
    config = asyncio.run(
        DockerWorkerJobConfiguration.from_template_and_values(build_template("docker", pool), job_variables)
    )
    flow_run, flow = _flow_run()
    config.prepare_for_flow_run(flow_run, flow=flow)
    settings = DockerWorker(work_pool_name=pool)._build_container_settings(_EngineVersion(), config)
    create_args = _create_container_args({**settings, "version": DOCKER_API_VERSION})  # TypeError on unknown keys
    api = docker.APIClient(base_url="unix:///nonexistent.sock", version=DOCKER_API_VERSION)  # never connects
    inspect.signature(api.create_container).bind(**create_args)  # TypeError unless create_container takes them all
    body = api.create_container_config(**{k: v for k, v in create_args.items() if k not in QUERY_PARAMETERS})
    return create_args, dict(body)


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
@pytest.mark.parametrize("pool", POOLS)
def test_committed_templates_are_the_built_ones_and_keep_every_default_variable(worker_type: str, pool: str) -> None:
    committed = json.loads(template_path(worker_type, pool).read_text())
    assert committed == build_template(worker_type, pool), "run `python -m conveyor.stack.infra` and commit infra/"
    assert set(committed["variables"]["properties"]) >= set(default_template(worker_type)["variables"]["properties"])


@pytest.mark.parametrize("pool", POOLS)
def test_kubernetes_jobs_of_every_pool_pass_the_strict_kubernetes_schema(pool: str) -> None:
    manifest = render_kubernetes(pool, {"image": "registry.example/conveyor:1.2.3", "env": {"CONVEYOR_X": "1"}})
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    assert manifest["kind"] == "Job"
    assert manifest["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/conveyor:1.2.3"


def test_gpu_jobs_ask_for_a_gpu_on_gpu_nodes_and_tolerate_their_taint() -> None:
    manifest = render_kubernetes("gpu", {"gpu_limit": 2})
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    pod = manifest["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"][GPU_RESOURCE] == 2
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]


def test_edge_jobs_land_on_arm64_nodes_and_cpu_jobs_anywhere_without_gpus() -> None:
    edge = render_kubernetes("edge", {})["spec"]["template"]["spec"]
    cpu = render_kubernetes("cpu", {})["spec"]["template"]["spec"]
    assert edge["nodeSelector"] == {"kubernetes.io/arch": "arm64"}
    assert cpu["nodeSelector"] == {}
    for pod in (edge, cpu):
        assert GPU_RESOURCE not in pod["containers"][0]["resources"]["limits"]


def test_a_bad_job_variable_is_caught_by_the_schema() -> None:
    manifest = render_kubernetes("gpu", {"tolerations": [{"key": GPU_RESOURCE, "tolerationSeconds": "soon"}]})
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_docker_gpu_containers_request_every_nvidia_gpu() -> None:
    _, body = render_docker("gpu", {"image": "registry.example/conveyor:1.2.3"})
    assert body["Image"] == "registry.example/conveyor:1.2.3"
    assert body["HostConfig"]["DeviceRequests"] == [
        {"Driver": "nvidia", "Count": -1, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}
    ]


def test_docker_cpu_and_edge_containers_get_no_gpu_and_edge_is_arm64() -> None:
    edge_args, edge_body = render_docker("edge", {})
    assert edge_args["platform"] == "linux/arm64"
    assert "DeviceRequests" not in edge_body["HostConfig"]
    assert "DeviceRequests" not in render_docker("cpu", {})[1]["HostConfig"]


def test_docker_rejects_a_parameter_create_container_does_not_take() -> None:
    with pytest.raises(TypeError):
        render_docker("cpu", {"container_create_kwargs": {"gpus": "all"}})

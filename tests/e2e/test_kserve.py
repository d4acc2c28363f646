"""The KServe manifests (deploy/kubernetes/kserve): they render; what is plain Kubernetes in
them (the runtime's container and volumes, the predictor's pod fields, metadata) is valid
against the bundled API schemas; the KServe fields agree with each other, with the base
registry PVC and with the service (settings, port, probe paths, the v2 protocol), read
from the code and a running server, never from a second copy. No cluster runs here."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest

from service.api.oip.tensors import IMAGE_INPUT
from service.settings import Settings
from tests.e2e.test_kubernetes import K8S_VERSIONS, KUBE, Manifest, kustomize, one, serves_get
from tests.server_process import serving

KSERVE = KUBE / "kserve"
MODEL_MOUNT = "/mnt/models"  # where KServe mounts a predictor's storageUri


@pytest.fixture(scope="module")
def docs() -> list[Manifest]:
    return kustomize(KSERVE)


def runtime_container(docs: list[Manifest]) -> Manifest:
    (found,) = one(docs, "ServingRuntime")["spec"]["containers"]
    return found


def runtime_env(docs: list[Manifest]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in runtime_container(docs)["env"]}


def test_renders_a_runtime_and_an_inference_service(docs: list[Manifest]) -> None:
    kinds = {(doc["apiVersion"], doc["kind"]) for doc in docs}
    assert kinds == {
        ("serving.kserve.io/v1alpha1", "ServingRuntime"),
        ("serving.kserve.io/v1beta1", "InferenceService"),
    }


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_kubernetes_parts_are_valid_against_the_bundled_schemas(
    docs: list[Manifest], version: str
) -> None:
    runtime, service = one(docs, "ServingRuntime"), one(docs, "InferenceService")
    predictor = service["spec"]["predictor"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": runtime["metadata"],
        "spec": {
            "containers": runtime["spec"]["containers"],
            "volumes": runtime["spec"]["volumes"],
            "terminationGracePeriodSeconds": predictor["terminationGracePeriodSeconds"],
        },
    }
    kubernetes_validate.validate(pod, version, strict=True)
    # The model's resources are a container's: validate them as such.
    resources = {"name": "model", "image": "x", "resources": predictor["model"]["resources"]}
    as_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": service["metadata"],
              "spec": {"containers": [resources]}}  # fmt: skip
    kubernetes_validate.validate(as_pod, version, strict=True)


def test_the_predictor_speaks_v2_on_this_runtime_from_the_registry_pvc(
    docs: list[Manifest],
) -> None:
    runtime, service = one(docs, "ServingRuntime"), one(docs, "InferenceService")
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats
    assert model["protocolVersion"] == "v2" and "v2" in runtime["spec"]["protocolVersions"]
    # The registry's claim of the default tree: KServe mounts it at MODEL_MOUNT.
    claims = [
        d["metadata"]["name"] for d in kustomize(KUBE) if d["kind"] == "PersistentVolumeClaim"
    ]
    assert model["storageUri"].removeprefix("pvc://").strip("/") in claims
    assert runtime_env(docs)["OCLIP_MODEL_STORE"] == MODEL_MOUNT
    replicas = service["spec"]["predictor"]
    assert 1 < replicas["minReplicas"] <= replicas["maxReplicas"]


def test_port_probes_and_variables_are_the_service_s(docs: list[Manifest]) -> None:
    env = runtime_env(docs)
    names = {f"OCLIP_{name.upper()}" for name in Settings.model_fields}
    assert not set(env) - names, "the service would silently ignore these"
    settings = Settings(**{k[len("OCLIP_") :].lower(): v for k, v in env.items()})
    spec = runtime_container(docs)
    assert [p["containerPort"] for p in spec["ports"]] == [settings.port]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert spec[probe]["httpGet"]["port"] == settings.port
        path = spec[probe]["httpGet"]["path"]
        assert path.startswith("/v2/health/") and serves_get(path)
    assert spec["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in spec["volumeMounts"]}
    assert "/tmp" in mounts
    delay, grace = float(env["OCLIP_SHUTDOWN_DELAY_S"]), float(env["OCLIP_SHUTDOWN_GRACE_S"])
    assert (
        one(docs, "InferenceService")["spec"]["predictor"]["terminationGracePeriodSeconds"]
        > delay + grace
    )


@pytest.mark.slow
def test_a_server_with_the_runtime_env_answers_the_probes_and_v2(
    docs: list[Manifest], tiny_store: Path, tmp_path: Path
) -> None:
    spec = runtime_container(docs)
    env = {**runtime_env(docs), "OCLIP_HOST": "127.0.0.1", "OCLIP_SHUTDOWN_DELAY_S": "0"}
    with serving(tiny_store, tmp_path / "server.log", env) as server, server.client() as client:
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert client.get(spec[probe]["httpGet"]["path"]).status_code == 200
        metadata = client.get("/v2/models/age").json()
    assert [tensor["name"] for tensor in metadata["inputs"]] == [IMAGE_INPUT]

"""The Kubernetes manifests (deploy/kubernetes): each overlay renders, every object is valid
offline against the API schemas, and the manifests point at what the service really serves
and exports — probe paths, port, environment variables, the autoscaling metric — read from
the code and from a running server, never from a second copy. No cluster runs here."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Match

from service import metrics
from service.api import create_app
from service.settings import Settings
from tests.server_process import ROOT, serving

KUBE = ROOT / "deploy/kubernetes"
VENV_BIN = Path(sys.executable).parent
OVERLAYS = {"default": KUBE, "cpu": KUBE / "overlays/cpu", "gpu": KUBE / "overlays/gpu"}
SERVICE_MONITOR = KUBE / "components/servicemonitor"
ADAPTER = yaml.safe_load((KUBE / "prometheus-adapter/values.yaml").read_text())
# Oldest Kubernetes the manifests claim (docs/deployment.md) and the newest schemas bundled.
K8S_VERSIONS = ("1.25", kubernetes_validate.latest_version())
WORKLOAD_KINDS = {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
# Custom resources: no bundled schema; checked field by field below instead.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
APP = create_app(Settings())
ADMISSION_WAIT = metrics.ADMISSION_WAIT_SECONDS.describe()[0].name

Manifest = dict[str, Any]


def kustomize(directory: Path, *flags: str) -> list[Manifest]:
    kubectl = shutil.which("kubectl") or shutil.which("kubectl", path=str(VENV_BIN))
    if kubectl is None:
        pytest.skip(
            "kubectl not installed, manifests not rendered: install kubectl >= 1.24 (its "
            "kustomize knows `labels` and components; Debian's kubernetes-client 1.20 does not)"
        )
    done = subprocess.run(
        [kubectl, "kustomize", str(directory), *flags], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def with_service_monitor(overlay: Path, tmp_path: Path) -> list[Manifest]:
    """The overlay plus the opt-in component, as a user's kustomization would add it."""
    # kustomize takes relative paths only; leaving the kustomization's folder needs the flag.
    paths = {"resources": [overlay], "components": [SERVICE_MONITOR]}
    kustomization = {key: [os.path.relpath(p, tmp_path) for p in ps] for key, ps in paths.items()}
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return kustomize(tmp_path, "--load-restrictor", "LoadRestrictionsNone")


def one(docs: list[Manifest], kind: str) -> Manifest:
    (found,) = [doc for doc in docs if doc["kind"] == kind]
    return found


def container(docs: list[Manifest]) -> Manifest:
    (found,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return found


def env_of(docs: list[Manifest]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(docs).get("env", [])}


def settings_of(docs: list[Manifest]) -> Settings:
    """The service's settings as the manifest's environment sets them."""
    return Settings(**{k[len("OCLIP_") :].lower(): v for k, v in env_of(docs).items()})


def serves_get(path: str) -> bool:
    """Whether the service's own app routes ``GET path`` (its routing, not a copy of it)."""
    scope = {"type": "http", "method": "GET", "path": path, "root_path": ""}
    return any(route.matches(scope)[0] == Match.FULL for route in APP.routes)


def quantity(text: str | int) -> float:
    """A Kubernetes decimal quantity such as ``500m`` or ``2``."""
    text = str(text)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def rendered(request: pytest.FixtureRequest) -> list[Manifest]:
    return kustomize(OVERLAYS[request.param])


def test_the_default_is_the_cpu_overlay_and_each_overlay_renders_the_workload() -> None:
    assert kustomize(KUBE) == kustomize(OVERLAYS["cpu"])
    for overlay in OVERLAYS.values():
        kinds = {doc["kind"] for doc in kustomize(overlay)}
        assert kinds == WORKLOAD_KINDS | {"PersistentVolumeClaim"}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_is_valid_against_the_bundled_schemas(
    rendered: list[Manifest], version: str
) -> None:
    for doc in rendered:  # strict: an unknown (misspelt) field fails too
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_service_monitor_component_points_at_the_service(tmp_path: Path) -> None:
    docs = with_service_monitor(OVERLAYS["cpu"], tmp_path)
    custom = [doc for doc in docs if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS]
    for doc in docs:
        if doc not in custom:
            kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)
    (monitor,) = custom
    # Its metadata is ordinary object metadata: validate it as such.
    as_core = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": monitor["metadata"]}
    kubernetes_validate.validate(as_core, K8S_VERSIONS[-1], strict=True)
    service = one(docs, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert serves_get(endpoint["path"])


def test_probes_port_and_scrape_target_are_what_the_service_serves(
    rendered: list[Manifest],
) -> None:
    spec = container(rendered)
    ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
    settings = settings_of(rendered)
    assert ports == {"http": settings.port}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert spec[probe]["httpGet"]["port"] in ports
        assert serves_get(spec[probe]["httpGet"]["path"])
    assert container(rendered)["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container(rendered)["readinessProbe"]["httpGet"]["path"] == "/readyz"
    annotations = one(rendered, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == settings.port
    assert serves_get(annotations["prometheus.io/path"])
    service_port = one(rendered, "Service")["spec"]["ports"][0]
    assert service_port["targetPort"] in ports


def test_every_oclip_variable_is_a_setting_of_the_service(rendered: list[Manifest]) -> None:
    fields = {f"OCLIP_{name.upper()}" for name in Settings.model_fields}
    names = {name for name in env_of(rendered) if name.startswith("OCLIP_")}
    assert not names - fields, "the service would silently ignore these"
    settings_of(rendered)  # and their values parse


def test_the_pod_is_hardened_and_drains_within_its_grace(rendered: list[Manifest]) -> None:
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]
    spec, env = container(rendered), env_of(rendered)
    user = re.search(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert user and pod["securityContext"]["runAsUser"] == int(user.group(1))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["allowPrivilegeEscalation"] is False
    delay, grace = float(env["OCLIP_SHUTDOWN_DELAY_S"]), float(env["OCLIP_SHUTDOWN_GRACE_S"])
    assert delay > 0 and pod["terminationGracePeriodSeconds"] > delay + grace
    assert {"cpu", "memory"} <= spec["resources"]["requests"].keys()
    assert {"cpu", "memory"} <= spec["resources"]["limits"].keys()
    assert int(env["OCLIP_TORCH_THREADS"]) <= quantity(spec["resources"]["limits"]["cpu"])
    mounts = {mount["mountPath"]: mount for mount in spec["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    store = mounts[env["OCLIP_MODEL_STORE"]]
    assert store["readOnly"] is True
    assert volumes[store["name"]]["persistentVolumeClaim"]["readOnly"] is True
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    terms = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert terms[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    startup = spec["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120  # model load
    pdb, hpa = one(rendered, "PodDisruptionBudget"), one(rendered, "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["maxUnavailable"]


def test_the_gpu_overlay_asks_for_one_gpu_and_the_cuda_image() -> None:
    docs = kustomize(OVERLAYS["gpu"])
    spec = container(docs)
    assert spec["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["image"].endswith("-cuda")
    assert Settings(device=env_of(docs)["OCLIP_DEVICE"]).device == "cuda"
    assert "TORCH_VARIANT" in (ROOT / "Dockerfile").read_text()  # the build argument named


def adapter_rule() -> Manifest:
    (rule,) = ADAPTER["rules"]["custom"]
    return rule


def test_the_autoscaler_reads_the_admission_wait_below_the_admission_target(
    rendered: list[Manifest],
) -> None:
    hpa = one(rendered, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == one(rendered, "Deployment")["metadata"]["name"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"  # a service metric, not CPU
    rule = adapter_rule()
    assert metric["pods"]["metric"]["name"] == rule["name"]["as"]
    assert re.match(rule["name"]["matches"], ADMISSION_WAIT)
    assert rule["seriesQuery"].startswith(ADMISSION_WAIT + "{")
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    target = quantity(metric["pods"]["target"]["averageValue"])
    admission = settings_of(rendered).target_wait_s
    assert 0 < target <= admission / 2, "scale out well before admission refuses"


def test_the_adapter_query_gives_each_pod_its_worst_backbone(tmp_path: Path) -> None:
    """The rule's query, filled in as prometheus-adapter fills it, on a real PromQL engine."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool missing: run scripts/system-deps.sh")
    query = (
        adapter_rule()["metricsQuery"]
        .replace("<<.Series>>", ADMISSION_WAIT)
        .replace("<<.LabelMatchers>>", 'namespace="shop",pod=~"a|b|c"')
        .replace("<<.GroupBy>>", "pod")
    )
    series = {  # (pod, backbone, namespace) -> one sample every 15 s for 3 minutes
        ("a", "vit-b", "shop"): "0.2x12",
        ("a", "vit-l", "shop"): "1x12",
        ("b", "vit-b", "shop"): "0x4 0.4x8",
        ("c", "vit-b", "shop"): "0x11 2",  # a single spike, averaged over the minute
        ("a", "vit-b", "other"): "9x12",  # another namespace's pod of the same name
    }
    test = {
        "tests": [
            {
                "interval": "15s",
                "input_series": [
                    {
                        "series": ADMISSION_WAIT
                        + f'{{namespace="{ns}",pod="{pod}",backbone="{bb}"}}',
                        "values": values,
                    }
                    for (pod, bb, ns), values in series.items()
                ],
                "promql_expr_test": [
                    {
                        "expr": query,
                        "eval_time": "3m",
                        "exp_samples": [
                            {"labels": '{pod="a"}', "value": 1},
                            {"labels": '{pod="b"}', "value": 0.4},
                            {"labels": '{pod="c"}', "value": 0.4},
                        ],
                    }
                ],
            }
        ]
    }
    path = tmp_path / "adapter_test.yml"
    path.write_text(yaml.safe_dump(test))
    done = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_a_server_with_the_manifest_env_serves_the_probes_and_the_metric(
    tiny_store: Path, tmp_path: Path
) -> None:
    docs = kustomize(OVERLAYS["cpu"])
    spec = container(docs)
    # The manifest's settings, except: the test's store and port (flags), loopback only, and
    # no drain delay (it only slows the test's shutdown).
    env = {**env_of(docs), "OCLIP_HOST": "127.0.0.1", "OCLIP_SHUTDOWN_DELAY_S": "0"}
    with serving(tiny_store, tmp_path / "server.log", env) as server, server.client() as client:
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert client.get(spec[probe]["httpGet"]["path"]).status_code == 200
        path = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
        exposition = client.get(path["prometheus.io/path"]).text
    families = {family.name: family for family in text_string_to_metric_families(exposition)}
    assert ADMISSION_WAIT in families
    samples = families[ADMISSION_WAIT].samples
    assert samples, "the gauge is declared but never set"
    assert all(sample.labels.get("backbone") for sample in samples)  # the adapter's series
    assert all(sample.value >= 0 for sample in samples)

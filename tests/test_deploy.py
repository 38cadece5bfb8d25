"""The Dockerfile, docker-compose.yml and deploy/k8s agree with the schemas and the code."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from config import Settings
from tasks.channels import CHANNELS
from tasks.keys import CONSUMER_GROUP, Keys

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
BIN = Path(sys.executable).parent
DEFAULTS = Settings()


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def drain_bound_s(env: dict[str, str]) -> float:
    """The longest a worker may take to stop after SIGTERM: flush, then one batch's retries."""
    settings = Settings.model_validate({k.lower(): v for k, v in env.items()})
    return settings.shutdown_grace_s + settings.retry_max_seconds + settings.send_timeout_s


def validates(tool: str, *args: str | Path) -> None:
    """Run a schema validator installed in the venv; fail with its report."""
    done = subprocess.run(
        [str(BIN / tool), *map(str, args)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_file_is_valid_compose() -> None:
    validates(
        "check-jsonschema", "--builtin-schema", "vendor.compose-spec", ROOT / "docker-compose.yml"
    )


def test_compose_services_and_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "sandbox", "worker", "flower", "demo"}
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command
    assert "--maxmemory-policy noeviction" in redis_command
    assert services["demo"]["profiles"] == ["demo"]
    for name in ("redis", "sandbox"):
        assert "healthcheck" in services[name]
    assert services["worker"]["depends_on"]["sandbox"]["condition"] == "service_healthy"
    grace = int(services["worker"]["stop_grace_period"].rstrip("s"))
    assert grace > drain_bound_s({})
    for variable in services["worker"]["environment"]:
        assert variable.lower() in Settings.model_fields, variable


def test_kubernetes_objects_are_valid() -> None:
    files = [p for p in sorted(K8S.glob("*.yaml")) if p.name != "scaledobject.yaml"]
    validates("kubernetes-validate", "--strict", *files)


def test_scaled_object_matches_the_keda_schema() -> None:
    validates(
        "check-jsonschema",
        "--schemafile",
        K8S / "schemas" / "keda-scaledobject.json",
        K8S / "scaledobject.yaml",
    )


def test_scaled_object_watches_every_channel_stream() -> None:
    [config] = documents(K8S / "configmap.yaml")
    keys = Keys(config["data"]["DISPATCH_KEY_PREFIX"])
    [scaled] = documents(K8S / "scaledobject.yaml")
    triggers = scaled["spec"]["triggers"]
    assert sorted(t["metadata"]["stream"] for t in triggers) == sorted(
        keys.jobs(c) for c in CHANNELS
    )
    assert {t["metadata"]["consumerGroup"] for t in triggers} == {CONSUMER_GROUP}
    assert scaled["spec"]["minReplicaCount"] >= 1  # a floor: codes never wait for a cold start
    [worker] = documents(K8S / "worker.yaml")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]


def test_worker_deployment_drains_and_reads_its_secret() -> None:
    [config] = documents(K8S / "configmap.yaml")
    for variable in config["data"]:
        assert variable.lower() in Settings.model_fields, variable
    [worker] = documents(K8S / "worker.yaml")
    pod = worker["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > drain_bound_s(config["data"])
    [container] = pod["containers"]
    sources = container["envFrom"]
    assert {"secretRef": {"name": "revicom-dispatch"}} in sources
    [secret] = documents(K8S / "secret.yaml")
    assert set(secret["stringData"]) == {"REVICOM_API_TOKEN"}
    assert container["ports"][0]["containerPort"] == DEFAULTS.metrics_port


@pytest.mark.parametrize("path", ["Dockerfile"])
def test_the_image_holds_every_package(path: str) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    dockerfile = (ROOT / path).read_text()
    copied = set(re.findall(r"^COPY (\w+) \1$", dockerfile, re.MULTILINE))
    assert copied == packages
    assert "USER dispatch" in dockerfile
    assert "[dev]" not in dockerfile

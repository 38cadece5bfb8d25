"""The Dockerfile, docker-compose.yml and deploy/k8s agree with the schemas and the code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from config import Settings
from devenv.processes import answers_http, free_port
from devenv.processes import service as running
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


def secret_keys(container: dict[str, Any]) -> set[str]:
    """The keys of our Secret a container reads; each one only by name (no envFrom secretRef)."""
    assert not [s for s in container.get("envFrom", []) if "secretRef" in s]
    keys = set()
    for variable in container.get("env", []):
        ref = variable.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["name"] == "revicom-dispatch"
            assert ref["key"] == variable["name"]
            keys.add(ref["key"])
    return keys


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
    assert secret_keys(container) == {"REVICOM_API_TOKEN"}  # not Flower's password
    [secret] = documents(K8S / "secret.yaml")
    assert set(secret["stringData"]) == {"REVICOM_API_TOKEN", "FLOWER_BASIC_AUTH"}
    assert container["ports"][0]["containerPort"] == DEFAULTS.metrics_port


def test_compose_flower_requires_basic_auth() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    flower = services["flower"]
    environment = flower["environment"]
    # `:?`: compose refuses to run without a non-empty value; Flower reads the variable itself.
    assert re.fullmatch(r"\$\{FLOWER_BASIC_AUTH:\?[^}]+\}", environment["FLOWER_BASIC_AUTH"])
    assert "REVICOM_API_TOKEN" not in environment  # Flower sends nothing
    command = " ".join(flower["entrypoint"] + flower["command"])
    assert "--basic-auth" not in command  # kept off the command line (ps, inspect)
    assert "/healthcheck" in " ".join(flower["healthcheck"]["test"])
    for service in services.values():
        assert "FLOWER_UNAUTHENTICATED_API" not in service.get("environment", {})


def published_on_loopback(port: str | int | dict[str, Any]) -> bool:
    """A compose `ports` entry publishes on 127.0.0.1 only (short or long syntax)."""
    if isinstance(port, dict):
        return port.get("host_ip") == "127.0.0.1" and "published" in port
    parts = str(port).split(":")
    return len(parts) == 3 and parts[0] == "127.0.0.1"


def test_compose_publishes_ports_on_loopback_only() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert {"sandbox", "flower"} <= set(published)
    for name, ports in published.items():
        for port in ports:
            assert published_on_loopback(port), (name, port)
    for name, service in services.items():
        assert service.get("network_mode") != "host", name


def k8s_objects() -> list[dict[str, Any]]:
    return [d for p in sorted(K8S.glob("*.yaml")) for d in documents(p)]


def test_kubernetes_flower_reads_its_auth_from_the_secret() -> None:
    deployment, service = documents(K8S / "flower.yaml")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert secret_keys(container) == {"FLOWER_BASIC_AUTH"}  # and not the API token
    assert "--basic-auth" not in " ".join(container["command"])
    [secret] = documents(K8S / "secret.yaml")
    assert "FLOWER_BASIC_AUTH" in secret["stringData"]
    assert re.fullmatch(r"[^:,]+:[^,]+", secret["stringData"]["FLOWER_BASIC_AUTH"])
    # /healthcheck is the one page Flower serves without credentials.
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthcheck", "port": "http"}
    assert service["spec"]["type"] == "ClusterIP"


def test_kubernetes_exposes_nothing_outside_the_cluster() -> None:
    objects = k8s_objects()
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"Ingress", "Route", "Gateway", "HTTPRoute", "IngressRoute"}
    for service in (o for o in objects if o["kind"] == "Service"):
        spec = service["spec"]
        assert spec.get("type") == "ClusterIP", service["metadata"]["name"]
        assert not {"externalIPs", "loadBalancerIP", "externalName"} & set(spec)
        assert all("nodePort" not in port for port in spec["ports"])
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert not pod.get("hostNetwork"), deployment["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            assert all("hostPort" not in port for port in container.get("ports", []))
            names = {v["name"] for v in container.get("env", [])}
            assert "FLOWER_UNAUTHENTICATED_API" not in names
    for config in (o for o in objects if o["kind"] == "ConfigMap"):
        assert not any(k.startswith("FLOWER_") for k in config["data"])


def make_target(name: str) -> list[str]:
    """The recipe lines of a Makefile target."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line[1:])
    return recipe


def test_make_flower_binds_loopback_and_says_when_it_has_no_auth() -> None:
    recipe = make_target("flower")
    [run] = [line for line in recipe if "flower --port" in line]
    assert "--address=127.0.0.1" in run
    assert "--basic-auth" not in run  # Flower takes FLOWER_BASIC_AUTH from the environment
    [hint] = [line for line in recipe if "FLOWER_BASIC_AUTH" in line]
    script = hint.lstrip("@").replace("$$", "$")
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}

    def says(env: dict[str, str]) -> str:
        done = subprocess.run(
            ["sh", "-c", script], env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "no auth" in says(base)
    assert says({**base, "FLOWER_BASIC_AUTH": "u:p"}) == ""


@pytest.mark.parametrize("via", ["option", "environment"])
def test_flower_asks_for_basic_auth_but_not_on_healthcheck(
    via: str, redis_url: str, keys: Keys, tmp_path: Path
) -> None:
    """A real Flower on 127.0.0.1 with `--basic-auth=u:p` or FLOWER_BASIC_AUTH=u:p."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    env |= {"REDIS_URL": redis_url, "DISPATCH_KEY_PREFIX": keys.prefix}
    command = [str(BIN / "celery"), "-A", "worker.app", "flower", f"--port={port}"]
    command.append("--address=127.0.0.1")
    if via == "option":
        command.append("--basic-auth=u:p")
    else:
        env["FLOWER_BASIC_AUTH"] = "u:p"
    log = tmp_path / "flower.log"
    with (
        running(command, answers_http(f"{url}/healthcheck"), env=env, log=log, timeout_s=10),
        httpx.Client(base_url=url, timeout=5) as client,
    ):
        assert client.get("/healthcheck").status_code == 200
        assert client.get("/").headers["WWW-Authenticate"].startswith("Basic")
        for path in ("/", "/tasks", "/api/tasks"):
            denied = client.get(path)
            assert denied.status_code == 401, path
            assert client.get(path, auth=("u", "wrong")).status_code == 401, path
        assert client.get("/", auth=("u", "p")).status_code == 200
        assert client.get("/api/tasks", auth=("u", "p")).status_code == 200


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

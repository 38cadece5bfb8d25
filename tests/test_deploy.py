"""The Dockerfile, docker-compose.yml and deploy/k8s agree with the schemas and the code."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import typer.main
import yaml
from pydantic import SecretStr
from starlette.routing import Route

from cli.main import app as cli_app
from config import Settings
from devenv.processes import answers_http, free_port
from devenv.processes import service as running
from receiver.access import Access
from receiver.app import CALLBACKS_PATH, create_app
from tasks.channels import CHANNELS
from tasks.keys import CONSUMER_GROUP, Keys

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
EXAMPLES = K8S / "examples"  # applied on purpose only: what takes a Service out of the cluster
BIN = Path(sys.executable).parent
DEFAULTS = Settings()
# Settings whose values are secrets: they belong in the Secret, never in the ConfigMap.
SECRET_FIELDS = {
    name
    for name, field in Settings.model_fields.items()
    if field.annotation is SecretStr or SecretStr in typing.get_args(field.annotation)
}
# What the worker pods and the receiver read about delivery tracking, at their defaults.
TRACKING_SETTINGS = {
    "CALLBACK_EVENTS",
    "STATUS_POLL_AFTER_S",
    "STATUS_POLL_MAX_INTERVAL_S",
    "STATUS_GIVE_UP_S",
    "STATUS_POLL_RPS",
    "STATUSES_RETENTION_S",
    "CALLBACK_ALLOW_FROM",
    "CALLBACK_TRUSTED_PROXIES",
    "CALLBACK_MAX_BODY_BYTES",
    "CALLBACK_MAX_EVENTS",
    "CALLBACK_PARK_S",
}


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


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return services


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` (LookupError when unset)."""

    def value(match: re.Match[str]) -> str:
        given = env.get(match["name"], "")
        if match["op"] == ":-":
            return given or match["arg"]
        if match["op"] == ":?" and not given:
            raise LookupError(match["arg"])
        return given

    pattern = r"\$\{(?P<name>\w+)(?:(?P<op>:[-?])(?P<arg>[^}]*))?\}"
    return re.sub(pattern, value, text)


def callbacks_options(args: list[str]) -> dict[str, Any]:
    """`revicom-dispatch callbacks ...` parsed by the real CLI (host, port, access_log)."""
    assert args[0] == "callbacks"
    group = typer.main.get_command(cli_app)
    command = group.commands["callbacks"]  # type: ignore[attr-defined]
    params: dict[str, Any] = command.make_context("callbacks", args[1:]).params
    return params


def callbacks_default_port() -> int:
    group = typer.main.get_command(cli_app)
    command = group.commands["callbacks"]  # type: ignore[attr-defined]
    [port] = [p.default for p in command.params if p.name == "port"]
    return int(port)


def receiver_routes() -> dict[str, set[str]]:
    """The receiver app's paths and their methods (building it connects to nothing)."""
    app = create_app(DEFAULTS)
    return {r.path: set(r.methods or ()) for r in app.routes if isinstance(r, Route)}


def test_compose_file_is_valid_compose() -> None:
    validates(
        "check-jsonschema", "--builtin-schema", "vendor.compose-spec", ROOT / "docker-compose.yml"
    )


def test_compose_services_and_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "sandbox", "worker", "receiver", "flower", "demo"}
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command
    assert "--maxmemory-policy noeviction" in redis_command
    assert services["demo"]["profiles"] == ["demo"]
    for name in ("redis", "sandbox", "receiver"):
        assert "healthcheck" in services[name]
    assert services["worker"]["depends_on"]["sandbox"]["condition"] == "service_healthy"
    grace = int(services["worker"]["stop_grace_period"].rstrip("s"))
    assert grace > drain_bound_s({})
    for name in ("worker", "receiver"):
        for variable in services[name]["environment"]:
            assert variable.lower() in Settings.model_fields, (name, variable)


def test_compose_receiver_serves_the_app_on_loopback_after_redis() -> None:
    services = compose_services()
    receiver = services["receiver"]
    assert receiver["image"] == services["worker"]["image"]  # the same image
    options = callbacks_options(receiver["command"])
    assert options["host"] == "0.0.0.0"  # inside its container; published on loopback only
    port = options["port"]
    [published] = receiver["ports"]
    assert published_on_loopback(published)
    assert str(published).rsplit(":", 1)[-1] == str(port)
    # The health check asks /readyz (Redis answers) on the port the app listens on.
    check = " ".join(receiver["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/readyz" in check
    assert "GET" in receiver_routes()["/readyz"]
    assert receiver["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["receiver"]["condition"] == "service_healthy"


def test_compose_receiver_requires_its_password_and_no_api_token() -> None:
    services = compose_services()
    environment = services["receiver"]["environment"]
    # `:?` as for Flower: compose refuses to run without a password; the username may default.
    assert re.fullmatch(r"\$\{CALLBACK_PASSWORD:\?[^}]+\}", environment["CALLBACK_PASSWORD"])
    assert re.fullmatch(r"\$\{CALLBACK_USERNAME(:-\w+)?\}", environment["CALLBACK_USERNAME"])
    assert not {"REVICOM_API_TOKEN", "REVICOM_API_URL", "CALLBACK_URL"} & set(environment)
    worker = services["worker"]["environment"]
    assert not {"CALLBACK_USERNAME", "CALLBACK_PASSWORD"} & set(worker)  # its URL carries them
    for text in (environment["CALLBACK_PASSWORD"], worker["CALLBACK_URL"]):
        with pytest.raises(LookupError):
            interpolate(text, {})


@pytest.mark.parametrize("username", [None, "ops"])
def test_compose_worker_asks_callbacks_of_the_receiver_with_its_credentials(
    username: str | None,
) -> None:
    """The sandbox POSTs each message's callbackUrl: the worker's CALLBACK_URL must name the
    receiver service, its port and path, with the credentials the receiver demands."""
    services = compose_services()
    shell = {"CALLBACK_PASSWORD": "0123456789abcdef"} | (
        {"CALLBACK_USERNAME": username} if username else {}
    )
    receiver_env = {
        k: interpolate(str(v), shell) for k, v in services["receiver"]["environment"].items()
    }
    url = interpolate(services["worker"]["environment"]["CALLBACK_URL"], shell)
    parts = urlsplit(url)
    assert parts.hostname == "receiver"
    assert parts.hostname in services
    assert parts.port == callbacks_options(services["receiver"]["command"])["port"]
    assert parts.path == CALLBACKS_PATH
    assert (parts.username, parts.password) == (
        receiver_env["CALLBACK_USERNAME"],
        receiver_env["CALLBACK_PASSWORD"],
    )
    if username:
        assert parts.username == username
    worker = Settings.model_validate({"callback_url": url})  # the API would take it
    assert worker.callback_url is not None
    receiver = Settings.model_validate({k.lower(): v for k, v in receiver_env.items()})
    access = Access.from_settings(receiver)
    sent = base64.b64encode(f"{parts.username}:{parts.password}".encode()).decode()
    assert access.authorized(f"Basic {sent}")
    assert not access.authorized(None)


def test_kubernetes_objects_are_valid() -> None:
    files = [p for p in sorted(K8S.glob("*.yaml")) if p.name != "scaledobject.yaml"]
    examples = sorted(EXAMPLES.glob("*.yaml"))
    assert examples  # the Ingress example is checked as strictly as the rest
    validates("kubernetes-validate", "--strict", *files, *examples)


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
    # Not Flower's password, nor the receiver's credentials (its CALLBACK_URL carries them).
    assert secret_keys(container) == {"REVICOM_API_TOKEN", "CALLBACK_URL"}
    [secret] = documents(K8S / "secret.yaml")
    assert set(secret["stringData"]) == {
        "REVICOM_API_TOKEN",
        "FLOWER_BASIC_AUTH",
        "CALLBACK_URL",
        "CALLBACK_USERNAME",
        "CALLBACK_PASSWORD",
    }
    assert container["ports"][0]["containerPort"] == DEFAULTS.metrics_port


def test_config_map_holds_real_settings_and_no_secret() -> None:
    [config] = documents(K8S / "configmap.yaml")
    data = config["data"]
    assert all(isinstance(v, str) for v in data.values())  # quoted: a ConfigMap holds strings
    for variable in data:
        assert variable.lower() in Settings.model_fields, variable
    [secret] = documents(K8S / "secret.yaml")
    assert not set(data) & set(secret["stringData"])
    assert not {k.lower() for k in data} & SECRET_FIELDS
    assert {"callback_url", "callback_password", "revicom_api_token"} <= SECRET_FIELDS
    for variable, value in data.items():
        assert not re.search(r"://[^/]*@", value), variable  # no credentials in a URL
    # The values are valid together, and the tracking settings are the documented defaults.
    settings = Settings.model_validate({k.lower(): v for k, v in data.items()})
    assert set(data) >= TRACKING_SETTINGS
    for variable in TRACKING_SETTINGS:
        name = variable.lower()
        assert getattr(settings, name) == getattr(DEFAULTS, name), variable


def test_secret_callback_url_names_the_receiver_behind_the_ingress() -> None:
    """The worker's CALLBACK_URL (what the API will call) carries the receiver's credentials,
    goes over TLS (it carries them) to the Ingress example's host, and reaches /callbacks."""
    [secret] = documents(K8S / "secret.yaml")
    values = secret["stringData"]
    url = urlsplit(values["CALLBACK_URL"])
    assert url.scheme == "https"
    assert (url.username, url.password) == (
        values["CALLBACK_USERNAME"],
        values["CALLBACK_PASSWORD"],
    )
    assert url.path == CALLBACKS_PATH
    [ingress] = documents(EXAMPLES / "ingress-receiver.yaml")
    assert url.hostname in {rule["host"] for rule in ingress["spec"]["rules"]}
    Settings.model_validate({"callback_url": values["CALLBACK_URL"]})


def test_every_secret_key_a_container_reads_is_in_the_secret_and_read() -> None:
    [secret] = documents(K8S / "secret.yaml")
    read: set[str] = set()
    for deployment in (o for o in k8s_objects() if o["kind"] == "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            read |= secret_keys(container)
    assert read == set(secret["stringData"])


def receiver_objects() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    objects = {o["kind"]: o for o in documents(K8S / "receiver.yaml")}
    assert set(objects) == {"Deployment", "Service", "PodDisruptionBudget"}
    return objects["Deployment"], objects["Service"], objects["PodDisruptionBudget"]


def test_kubernetes_receiver_deployment() -> None:
    deployment, _, _ = receiver_objects()
    assert deployment["spec"]["replicas"] == 2
    template = deployment["spec"]["template"]
    pod = template["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's `dispatch` user
    [container] = pod["containers"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    [worker] = documents(K8S / "worker.yaml")
    [worker_container] = worker["spec"]["template"]["spec"]["containers"]
    assert container["image"] == worker_container["image"]
    # The command the real CLI parses, on the port it declares.
    options = callbacks_options(container["args"])
    assert options["host"] == "0.0.0.0"
    assert options["port"] == callbacks_default_port()
    [port] = container["ports"]
    assert port["containerPort"] == options["port"]
    # Settings from the ConfigMap, and only its own keys of the Secret: no API token.
    assert container["envFrom"] == [{"configMapRef": {"name": "revicom-dispatch"}}]
    assert secret_keys(container) == {"CALLBACK_USERNAME", "CALLBACK_PASSWORD"}
    assert all(
        not v.get("valueFrom", {}).get("secretKeyRef", {}).get("optional") for v in container["env"]
    )
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    # Probes and metrics on real routes of the app, by GET, on the container's port.
    routes = receiver_routes()
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(options["port"])
    for path in ("/readyz", "/healthz", annotations["prometheus.io/path"]):
        assert "GET" in routes[path], path
    assert "POST" in routes[CALLBACKS_PATH]


def test_kubernetes_receiver_service_and_disruption_budget() -> None:
    deployment, service, budget = receiver_objects()
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == labels  # its own pods: the component label too
    assert labels["app.kubernetes.io/component"] == "receiver"
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    [port] = service["spec"]["ports"]
    assert port["targetPort"] == container["ports"][0]["name"]
    assert budget["spec"]["selector"]["matchLabels"] == labels
    # One receiver may go at a time; never all (a budget of 2 of 2 would block every drain).
    assert 1 <= budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_ingress_example_routes_only_callbacks_over_tls() -> None:
    [ingress] = documents(EXAMPLES / "ingress-receiver.yaml")
    assert ingress["kind"] == "Ingress"
    _, service, _ = receiver_objects()
    annotations = ingress["metadata"]["annotations"]
    assert annotations.get("cert-manager.io/cluster-issuer") or annotations.get(
        "cert-manager.io/issuer"
    )
    spec = ingress["spec"]
    assert "defaultBackend" not in spec  # nothing but the rules below
    hosts = {rule.get("host") for rule in spec["rules"]}  # no rule for any host
    assert hosts
    assert None not in hosts
    covered = {host for tls in spec["tls"] for host in tls["hosts"]}
    assert hosts <= covered
    assert all(tls["secretName"] for tls in spec["tls"])
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    for rule in spec["rules"]:
        [path] = rule["http"]["paths"]  # /callbacks alone: not /metrics, nor the probes
        assert (path["path"], path["pathType"]) == (CALLBACKS_PATH, "Exact")
        backend = path["backend"]["service"]
        assert backend["name"] == service["metadata"]["name"]
        assert backend["port"]["name"] in service_ports


def test_examples_are_kept_apart_from_what_is_applied() -> None:
    """deploy/k8s/*.yaml (what `kubectl apply -f deploy/k8s/` applies, and what
    test_kubernetes_exposes_nothing_outside_the_cluster reads) holds no example; examples/
    holds only the Ingress."""
    assert all(p.parent == K8S for p in K8S.glob("*.yaml"))
    kinds = {d["kind"] for p in EXAMPLES.glob("*.yaml") for d in documents(p)}
    assert kinds == {"Ingress"}
    assert "Ingress" not in {o["kind"] for o in k8s_objects()}


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
    assert {"sandbox", "flower", "receiver"} <= set(published)
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

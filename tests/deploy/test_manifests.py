"""Static checks of deploy/: the image, Docker Compose and the Kubernetes manifests.

No Docker daemon, cluster or network is used. Kubernetes objects are validated against the OpenAPI schemas
that `kubernetes-validate` ships (strict: unknown fields fail), the compose files against the Compose
Specification schema vendored by `check-jsonschema`; the rest are exact checks of what the deployment relies on.
The parsed files are cached and shared between tests: a test that alters one works on a deep copy.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import http.server
import importlib.resources
import json
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import jsonschema
import kubernetes_validate
import pytest
import yaml

from vigil import ci
from vigil.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
K8S_INGRESS = DEPLOY / "kubernetes-ingress"
COMPOSE = DEPLOY / "docker-compose.yml"
COMPOSE_PUBLISH = DEPLOY / "docker-compose.publish.yml"
DOCKERFILE = DEPLOY / "Dockerfile"

# The oldest Kubernetes release still supported upstream when these manifests were written, and the newest
# whose schemas kubernetes-validate ships: a field missing from either fails.
K8S_VERSIONS = ("1.30", "1.37")

ROLE_COMMANDS = {
    "vigil-collector": ["vigil", "collector"],
    "vigil-api": ["vigil", "api"],
    "vigil-detect": ["vigil", "detect"],
}
SECRET_NAME = "vigil-secrets"
CONFIGMAP_NAME = "vigil-config"
# What the Secret holds; a Vigil container may take these only through a secretKeyRef.
SECRET_KEYS = {
    "CLICKHOUSE_PASSWORD",
    "VIGIL_SLACK_TOKEN",
    "VIGIL_SLACK_WEBHOOK_URL",
    "VIGIL_TOKENS",
    "VIGIL_SESSION_SECRET",
}
# The CI commands' own variables (`vigil deploy mark` and friends read them as a client): not Settings.
CLIENT_VARIABLES = {get_args(option)[1].envvar for option in (ci.UrlOption, ci.TokenOption)}

_DEFAULTS = {name: field.default for name, field in Settings.model_fields.items()}
HTTP_PORT: int = _DEFAULTS["http_port"]
# (port, protocol) of every receiver, from Settings' defaults: the deploy files must agree with them.
RECEIVER_PORTS = {
    (_DEFAULTS["otlp_grpc_port"], "TCP"),
    (_DEFAULTS["otlp_http_port"], "TCP"),
    (_DEFAULTS["statsd_port"], "UDP"),
    (_DEFAULTS["statsd_port"], "TCP"),
    (_DEFAULTS["netflow_port"], "UDP"),
    (_DEFAULTS["ipfix_port"], "UDP"),
}


def _yaml_files() -> list[Path]:
    return sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])


def _load_all(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as stream:
        return list(yaml.safe_load_all(stream))


def _objects_in(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) for every Kubernetes object, the kustomization aside (it is kustomize's config)."""
    objects = []
    for path in sorted(folder.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        objects.extend((path.name, doc) for doc in _load_all(path))
    return objects


@functools.cache
def _k8s_objects() -> list[tuple[str, dict[str, Any]]]:
    return _objects_in(K8S)


@functools.cache
def _ingress_objects() -> list[tuple[str, dict[str, Any]]]:
    """What the kubernetes-ingress overlay adds to the base."""
    return _objects_in(K8S_INGRESS)


def _find(kind: str, name: str) -> dict[str, Any]:
    matches = [obj for _, obj in _k8s_objects() if obj["kind"] == kind and obj["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} objects"
    return matches[0]


def _vigil_container(deployment: str) -> dict[str, Any]:
    containers = _find("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


@functools.cache
def _compose() -> dict[str, Any]:
    (doc,) = _load_all(COMPOSE)
    return doc


@functools.cache
def _compose_schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendor.joinpath("compose-spec.json").read_text(encoding="utf-8"))


def _compose_errors(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(_compose_schema())
    return sorted(f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(doc))


# ---------------------------------------------------------------------------------------------- every file


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses_into_mappings(path: Path) -> None:
    docs = _load_all(path)
    assert docs, f"{path} is empty"
    assert all(isinstance(doc, dict) for doc in docs)


def test_the_yaml_files_are_the_documented_set() -> None:
    # A new file must be added here knowingly, so that it is also covered by the checks below.
    assert [str(p.relative_to(DEPLOY)) for p in _yaml_files()] == [
        "docker-compose.publish.yml",
        "docker-compose.yml",
        "kubernetes/api.yaml",
        "kubernetes/clickhouse.yaml",
        "kubernetes/collector.yaml",
        "kubernetes/configmap.yaml",
        "kubernetes/detect.yaml",
        "kubernetes/kustomization.yaml",
        "kubernetes/namespace.yaml",
        "kubernetes/secret.yaml",
        "kubernetes-ingress/ingress.yaml",
        "kubernetes-ingress/kustomization.yaml",
    ]


def _vigil_env_names_in_deploy() -> set[str]:
    names: set[str] = set()
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file():
            names.update(re.findall(r"\bVIGIL_[A-Z0-9_]+\b", path.read_text(encoding="utf-8")))
    return names


def test_every_vigil_variable_in_deploy_is_a_setting() -> None:
    settings = {f"VIGIL_{name.upper()}" for name in Settings.model_fields}
    used = _vigil_env_names_in_deploy()
    # VIGIL_LEASE_TTL belongs to `vigil detect`'s leader lease, which another change is adding to Settings right
    # now; it is allowed only while Settings lacks it, so the exemption disappears by itself once it lands.
    pending = {"VIGIL_LEASE_TTL"} - settings
    assert sorted(CLIENT_VARIABLES) == ["VIGIL_TOKEN", "VIGIL_URL"]
    assert sorted(used - settings - pending - CLIENT_VARIABLES) == []
    # The scan itself must see the variables the deployment depends on, or it proves nothing.
    assert {
        "VIGIL_BIND",
        "VIGIL_AUTH",
        "VIGIL_TOKENS",
        "VIGIL_SESSION_SECRET",
        "VIGIL_CLICKHOUSE_URL",
        "VIGIL_SLACK_TOKEN",
        "VIGIL_WAL_DIR",
    } <= used


# ---------------------------------------------------------------------------------------------- Kubernetes


def test_kustomization_lists_every_manifest_once() -> None:
    (kustomization,) = _load_all(K8S / "kustomization.yaml")
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["namespace"] == "vigil"
    resources = kustomization["resources"]
    assert sorted(resources) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert len(resources) == len(set(resources))
    # The Namespace first, so a plain `kubectl apply` of the listed files in order also works.
    assert resources[0] == "namespace.yaml"
    assert kustomization["images"] == [{"name": "vigil", "newTag": "0.1.0"}]


def test_the_kubernetes_objects_are_the_documented_set() -> None:
    assert sorted((obj["kind"], obj["metadata"]["name"]) for _, obj in _k8s_objects()) == [
        ("ConfigMap", CONFIGMAP_NAME),
        ("Deployment", "vigil-api"),
        ("Deployment", "vigil-collector"),
        ("Deployment", "vigil-detect"),
        ("HorizontalPodAutoscaler", "vigil-collector"),
        ("Namespace", "vigil"),
        ("Secret", SECRET_NAME),
        ("Service", "clickhouse"),
        ("Service", "vigil-api"),
        ("Service", "vigil-collector"),
        ("StatefulSet", "clickhouse"),
    ]
    namespaced = [obj for _, obj in _k8s_objects() if obj["kind"] != "Namespace"]
    assert {obj["metadata"]["namespace"] for obj in namespaced} == {"vigil"}


def _object_ids() -> list[str]:
    return [
        f"{folder}/{name}:{obj['kind']}/{obj['metadata']['name']}"
        for folder, objects in (("kubernetes", _k8s_objects()), ("kubernetes-ingress", _ingress_objects()))
        for name, obj in objects
    ]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("obj", [obj for _, obj in [*_k8s_objects(), *_ingress_objects()]], ids=_object_ids())
def test_kubernetes_object_validates_against_the_openapi_schema(obj: dict[str, Any], version: str) -> None:
    assert kubernetes_validate.validate(obj, version, strict=True) == version


def test_the_schema_validation_rejects_a_misspelled_field() -> None:
    # Proves the validation above is strict: a typo'd probe would otherwise be dropped silently by the API server.
    deployment = copy.deepcopy(_find("Deployment", "vigil-collector"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("deployment", sorted(ROLE_COMMANDS))
def test_vigil_container_runs_its_role_as_non_root_with_a_read_only_root(deployment: str) -> None:
    pod = _find("Deployment", deployment)["spec"]["template"]["spec"]
    container = _vigil_container(deployment)
    assert container["command"] == ROLE_COMMANDS[deployment]
    assert container["image"] == "vigil:0.1.0"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's vigil user
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # A read-only root needs somewhere writable for temporary files.
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize("deployment", ["vigil-api", "vigil-collector", "vigil-detect"])
def test_vigil_container_probes_ready_and_live_on_the_http_port(deployment: str) -> None:
    container = _vigil_container(deployment)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    readiness = container["readinessProbe"]["httpGet"]
    liveness = container["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/readyz"
    assert liveness["path"] == "/healthz"
    assert ports[readiness["port"]] == HTTP_PORT
    assert ports[liveness["port"]] == HTTP_PORT
    configmap = _find("ConfigMap", CONFIGMAP_NAME)
    assert configmap["data"]["VIGIL_HTTP_PORT"] == str(HTTP_PORT)
    assert container["envFrom"] == [{"configMapRef": {"name": CONFIGMAP_NAME}}]


def test_compose_roles_use_the_images_healthz_check() -> None:
    services = _compose()["services"]
    assert [name for name in ("collector", "api", "detect") if "healthcheck" in services[name]] == []


@pytest.mark.parametrize("deployment", sorted(ROLE_COMMANDS))
def test_vigil_container_has_requests_and_limits(deployment: str) -> None:
    resources = _vigil_container(deployment)["resources"]
    assert set(resources) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert {"cpu", "memory"} <= set(resources["limits"])


def test_the_secret_holds_every_credential_and_ships_no_token_or_signing_key() -> None:
    data = _find("Secret", SECRET_NAME)["stringData"]
    assert set(data) == SECRET_KEYS
    # A token or session key written here would be the same in every installation: each fills in its own.
    assert (data["VIGIL_TOKENS"], data["VIGIL_SESSION_SECRET"]) == ("", "")


@pytest.mark.parametrize("deployment", sorted(ROLE_COMMANDS))
def test_every_vigil_deployment_gets_the_tokens_from_the_secret(deployment: str) -> None:
    # Each role checks tokens itself (OTLP, API routes, the probe port's /metrics).
    assert _env(_vigil_container(deployment))["VIGIL_TOKENS"] == {
        "name": "VIGIL_TOKENS",
        "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": "VIGIL_TOKENS"}},
    }


def test_only_the_api_gets_the_session_secret() -> None:
    # Shared by the api replicas, so a login made at one holds at the others; no other role signs cookies.
    assert _env(_vigil_container("vigil-api"))["VIGIL_SESSION_SECRET"] == {
        "name": "VIGIL_SESSION_SECRET",
        "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": "VIGIL_SESSION_SECRET"}},
    }
    for deployment in ("vigil-collector", "vigil-detect"):
        assert "VIGIL_SESSION_SECRET" not in _env(_vigil_container(deployment))


def test_slack_credentials_come_from_the_secret_and_only_detect_gets_them() -> None:
    detect = _env(_vigil_container("vigil-detect"))
    for name in ("VIGIL_SLACK_TOKEN", "VIGIL_SLACK_WEBHOOK_URL"):
        assert detect[name] == {"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": name}}}
    # Only the alerts (in `vigil detect`) use Slack: the other roles do not hold the credentials.
    for deployment in ("vigil-collector", "vigil-api"):
        assert not {"VIGIL_SLACK_TOKEN", "VIGIL_SLACK_WEBHOOK_URL"} & set(_env(_vigil_container(deployment)))
    assert not any(key.startswith("VIGIL_SLACK") for key in _find("ConfigMap", CONFIGMAP_NAME)["data"])


@pytest.mark.parametrize("deployment", sorted(ROLE_COMMANDS))
def test_clickhouse_password_reaches_the_url_only_through_the_secret(deployment: str) -> None:
    env = _vigil_container(deployment)["env"]
    names = [entry["name"] for entry in env]
    # The kubelet expands $(VAR) only from variables defined earlier in the list.
    assert names.index("CLICKHOUSE_PASSWORD") < names.index("VIGIL_CLICKHOUSE_URL")
    assert env[names.index("CLICKHOUSE_PASSWORD")]["valueFrom"] == {
        "secretKeyRef": {"name": SECRET_NAME, "key": "CLICKHOUSE_PASSWORD"}
    }
    assert env[names.index("VIGIL_CLICKHOUSE_URL")]["value"] == (
        "http://vigil:$(CLICKHOUSE_PASSWORD)@clickhouse:8123/vigil"
    )


def test_every_secret_and_configmap_reference_resolves() -> None:
    secret_keys = set(_find("Secret", SECRET_NAME)["stringData"])
    found = 0
    for _, obj in _k8s_objects():
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert (ref["name"], ref["key"]) in {(SECRET_NAME, key) for key in secret_keys}
                    found += 1
            for source in container.get("envFrom", []):
                assert source == {"configMapRef": {"name": CONFIGMAP_NAME}}
    # 3 roles x (CLICKHOUSE_PASSWORD, VIGIL_TOKENS), the api's session secret, detect's 2 Slack keys,
    # ClickHouse's own password.
    assert found == 10


def test_no_vigil_variable_holds_a_literal_secret() -> None:
    for deployment in ROLE_COMMANDS:
        for entry in _vigil_container(deployment)["env"]:
            if entry["name"] in SECRET_KEYS:
                assert entry["valueFrom"] == {"secretKeyRef": {"name": SECRET_NAME, "key": entry["name"]}}
                assert "value" not in entry
    assert not SECRET_KEYS & set(_find("ConfigMap", CONFIGMAP_NAME)["data"])
    # Compose takes each from the shell (or the ignored slack.env), never from a value in the file.
    for role in ("collector", "api", "detect"):
        environment = _compose()["services"][role]["environment"]
        for name in SECRET_KEYS & set(environment):
            assert _required_variable(environment[name])[0] == name


def test_the_collectors_write_ahead_log_is_on_an_empty_dir() -> None:
    pod = _find("Deployment", "vigil-collector")["spec"]["template"]["spec"]
    container = _vigil_container("vigil-collector")
    wal_dir = _env(container)["VIGIL_WAL_DIR"]["value"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volume = {volume["name"]: volume for volume in pod["volumes"]}[mounts[wal_dir]]
    assert volume["emptyDir"] == {"sizeLimit": "2Gi"}
    # The log's own bound stays under the volume's, so receivers push back before the kubelet evicts the pod.
    assert int(_env(container)["VIGIL_MAX_WAL_BYTES"]["value"]) == 1024**3


def test_the_collector_service_exposes_every_receiver_with_its_protocol() -> None:
    service = _find("Service", "vigil-collector")
    ports = {(port["port"], port["protocol"]) for port in service["spec"]["ports"]}
    assert ports == RECEIVER_PORTS
    udp = sorted(port["name"] for port in service["spec"]["ports"] if port["protocol"] == "UDP")
    assert udp == ["ipfix", "netflow", "statsd-udp"]
    container_ports = {port["name"]: port for port in _vigil_container("vigil-collector")["ports"]}
    for port in service["spec"]["ports"]:
        target = container_ports[port["targetPort"]]
        assert (target["containerPort"], target["protocol"]) == (port["port"], port["protocol"])


@pytest.mark.parametrize(
    ("service", "workload"),
    [
        (("Service", "vigil-collector"), ("Deployment", "vigil-collector")),
        (("Service", "vigil-api"), ("Deployment", "vigil-api")),
        (("Service", "clickhouse"), ("StatefulSet", "clickhouse")),
    ],
)
def test_each_service_selects_exactly_its_workload(service: tuple[str, str], workload: tuple[str, str]) -> None:
    selector = _find(*service)["spec"]["selector"]
    for _, obj in _k8s_objects():
        if obj["kind"] in ("Deployment", "StatefulSet"):
            labels = obj["spec"]["template"]["metadata"]["labels"]
            selected = selector.items() <= labels.items()
            assert selected == ((obj["kind"], obj["metadata"]["name"]) == workload), obj["metadata"]["name"]


def test_the_autoscaler_scales_the_collector_deployment_on_cpu() -> None:
    hpa = _find("HorizontalPodAutoscaler", "vigil-collector")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vigil-collector"}
    assert hpa["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
    ]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    # CPU utilisation is a share of the request: without one the autoscaler cannot compute it.
    assert _vigil_container("vigil-collector")["resources"]["requests"]["cpu"] == "500m"


def test_detect_runs_two_replicas_and_the_lease_is_configured() -> None:
    assert _find("Deployment", "vigil-detect")["spec"]["replicas"] == 2
    assert _find("ConfigMap", CONFIGMAP_NAME)["data"]["VIGIL_LEASE_TTL"] == "30s"


def test_the_configmap_binds_every_interface_with_auth_on_and_holds_no_credentials() -> None:
    data = _find("ConfigMap", CONFIGMAP_NAME)["data"]
    # "on", not "auto": a pod given no tokens refuses to start whatever VIGIL_BIND says.
    assert (data["VIGIL_BIND"], data["VIGIL_AUTH"]) == ("0.0.0.0", "on")
    assert "VIGIL_CLICKHOUSE_URL" not in data
    # StatsD and NetFlow carry no token: their allowlists are there to be filled in.
    assert {"VIGIL_STATSD_ALLOWED_SOURCES", "VIGIL_NETFLOW_ALLOWED_SOURCES"} <= set(data)
    # Every value is accepted by Settings itself (a bad one would stop every pod at start).
    settings = Settings(**{key.removeprefix("VIGIL_").lower(): value for key, value in data.items() if _known(key)})
    assert (settings.bind, settings.auth, settings.http_port) == ("0.0.0.0", "on", HTTP_PORT)


def _known(variable: str) -> bool:
    return variable.removeprefix("VIGIL_").lower() in Settings.model_fields


def test_clickhouse_is_a_stateful_set_behind_a_headless_service_with_a_volume_per_pod() -> None:
    statefulset = _find("StatefulSet", "clickhouse")
    service = _find("Service", "clickhouse")
    assert service["spec"]["clusterIP"] == "None"
    assert statefulset["spec"]["serviceName"] == "clickhouse"
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/var/lib/clickhouse"} in container["volumeMounts"]
    # The same pinned server as the compose file.
    assert (
        container["image"] == _compose()["services"]["clickhouse"]["image"] == "clickhouse/clickhouse-server:25.8.29.51"
    )
    assert statefulset["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_the_ingress_overlay_adds_one_ingress_to_the_base() -> None:
    (kustomization,) = _load_all(K8S_INGRESS / "kustomization.yaml")
    assert (kustomization["apiVersion"], kustomization["kind"]) == ("kustomize.config.k8s.io/v1beta1", "Kustomization")
    assert kustomization["resources"] == ["../kubernetes", "ingress.yaml"]
    assert (K8S_INGRESS / kustomization["resources"][0]).resolve() == K8S
    assert [(obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"]) for _, obj in _ingress_objects()] == [
        ("Ingress", "vigil-api", "vigil")
    ]


def test_the_ingress_sends_every_path_to_the_api_service_over_tls() -> None:
    ((_, ingress),) = _ingress_objects()
    (rule,) = ingress["spec"]["rules"]
    # Every host the Ingress answers for is in its TLS section, so none is left to plain HTTP.
    assert [tls["hosts"] for tls in ingress["spec"]["tls"]] == [[rule["host"]]]
    assert rule["http"]["paths"] == [
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "vigil-api", "port": {"name": "http"}}}}
    ]
    assert "http" in {port["name"] for port in _find("Service", "vigil-api")["spec"]["ports"]}


def test_the_ingress_overlay_points_the_public_url_at_the_ingress_host() -> None:
    # Links in alerts lead to the https address, and an https VIGIL_PUBLIC_URL marks login cookies Secure.
    (kustomization,) = _load_all(K8S_INGRESS / "kustomization.yaml")
    ((_, ingress),) = _ingress_objects()
    (host,) = (rule["host"] for rule in ingress["spec"]["rules"])
    (patch,) = kustomization["patches"]
    assert patch["target"] == {"kind": "ConfigMap", "name": CONFIGMAP_NAME}
    assert yaml.safe_load(patch["patch"]) == [
        {"op": "replace", "path": "/data/VIGIL_PUBLIC_URL", "value": f"https://{host}"}
    ]
    # A JSON patch "replace" needs the key to exist in the base.
    assert "VIGIL_PUBLIC_URL" in _find("ConfigMap", CONFIGMAP_NAME)["data"]


# ---------------------------------------------------------------------------------------------- Compose


def test_compose_files_validate_against_the_compose_specification() -> None:
    assert _compose_errors(_compose()) == []
    (publish,) = _load_all(COMPOSE_PUBLISH)
    assert _compose_errors(publish) == []


def test_the_compose_validation_rejects_a_misspelled_key() -> None:
    doc = copy.deepcopy(_compose())
    doc["services"]["api"]["depends_onn"] = doc["services"]["api"].pop("depends_on")
    assert _compose_errors(doc) == [
        "['services', 'api']: Unevaluated properties are not allowed ('depends_onn' was unexpected)"
    ]


def test_compose_runs_clickhouse_and_each_role_with_its_command() -> None:
    services = _compose()["services"]
    assert sorted(services) == ["api", "clickhouse", "collector", "detect"]
    assert {name: services[name]["command"] for name in ("collector", "api", "detect")} == {
        "collector": ["vigil", "collector"],
        "api": ["vigil", "api"],
        "detect": ["vigil", "detect"],
    }
    assert {service["restart"] for service in services.values()} == {"unless-stopped"}


@pytest.mark.parametrize("role", ["collector", "api", "detect"])
def test_compose_role_waits_for_a_healthy_clickhouse_and_binds_with_auth_on(role: str) -> None:
    service = _compose()["services"][role]
    assert service["depends_on"] == {"clickhouse": {"condition": "service_healthy"}}
    assert (service["environment"]["VIGIL_BIND"], service["environment"]["VIGIL_AUTH"]) == ("0.0.0.0", "on")
    assert service["environment"]["VIGIL_CLICKHOUSE_URL"] == (
        "http://vigil:${CLICKHOUSE_PASSWORD:?set CLICKHOUSE_PASSWORD}@clickhouse:8123/vigil"
    )
    assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert (COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == DOCKERFILE


_REQUIRED = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*):\?(?P<message>[^}]+)\}")


def _required_variable(value: str) -> tuple[str, str]:
    """(name, message) of a value that is exactly `${NAME:?message}`: compose stops when NAME is unset or empty."""
    match = _REQUIRED.fullmatch(value)
    assert match, f"{value!r} is not ${{NAME:?message}}"
    return match["name"], match["message"]


@pytest.mark.parametrize("role", ["collector", "api", "detect"])
def test_compose_role_requires_the_tokens_and_says_how_to_make_one(role: str) -> None:
    name, message = _required_variable(_compose()["services"][role]["environment"]["VIGIL_TOKENS"])
    assert name == "VIGIL_TOKENS"
    assert "name:scope+scope:secret" in message
    assert "vigil token new --name NAME --scopes SCOPES" in message


def test_compose_requires_a_session_secret_for_the_api_only() -> None:
    services = _compose()["services"]
    name, message = _required_variable(services["api"]["environment"]["VIGIL_SESSION_SECRET"])
    assert name == "VIGIL_SESSION_SECRET"
    assert "secrets.token_hex(32)" in message
    assert [role for role in ("collector", "detect") if "VIGIL_SESSION_SECRET" in services[role]["environment"]] == []


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_PUBLISH], ids=lambda p: p.name)
def test_compose_file_header_exports_every_variable_it_requires(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    required = {match["name"] for match in _REQUIRED.finditer(text)}
    exported = {
        name
        for line in re.findall(r"^#\s+export\s+(.*)$", text, re.MULTILINE)
        for name in re.findall(r"(?:^|\s)([A-Z_][A-Z0-9_]*)=", line)
    }
    assert exported == required


def test_compose_clickhouse_has_a_volume_and_a_healthcheck() -> None:
    clickhouse = _compose()["services"]["clickhouse"]
    assert clickhouse["volumes"] == ["clickhouse-data:/var/lib/clickhouse"]
    assert "clickhouse-data" in _compose()["volumes"]
    assert clickhouse["healthcheck"]["test"][-1] == "http://127.0.0.1:8123/ping"
    assert clickhouse["environment"]["CLICKHOUSE_USER"] == "vigil"


def _expose(entry: str) -> tuple[int, str]:
    port, _, protocol = entry.partition("/")
    return int(port), (protocol or "tcp").upper()


def test_compose_collector_scales_without_host_ports_and_with_a_log_per_replica() -> None:
    collector = _compose()["services"]["collector"]
    # Fixed host ports would make `--scale collector=N` fail at the second replica.
    assert "ports" not in collector
    assert {_expose(entry) for entry in collector["expose"]} == RECEIVER_PORTS | {(HTTP_PORT, "TCP")}
    # An anonymous volume (a container path alone): one write-ahead log per replica.
    assert collector["volumes"] == [collector["environment"]["VIGIL_WAL_DIR"]]
    assert collector["environment"]["VIGIL_WAL_DIR"] == "/var/lib/vigil/wal"


def _published(entry: str) -> tuple[int, int, str]:
    """(host port, container port, protocol) of a short-syntax `[IP:]HOST:CONTAINER[/PROTOCOL]` entry."""
    ports, _, protocol = entry.partition("/")
    host, container = ports.split(":")[-2:]
    return int(host), int(container), (protocol or "tcp").upper()


def test_compose_publish_override_publishes_one_collectors_receivers() -> None:
    (publish,) = _load_all(COMPOSE_PUBLISH)
    assert list(publish["services"]) == ["collector"]
    published = {_published(entry) for entry in publish["services"]["collector"]["ports"]}
    assert published == {(port, port, protocol) for port, protocol in RECEIVER_PORTS}


def test_compose_publish_override_requires_the_statsd_and_netflow_allowlists() -> None:
    # Published on the host, the token-less receivers must not take datagrams from anywhere by default.
    (publish,) = _load_all(COMPOSE_PUBLISH)
    environment = publish["services"]["collector"]["environment"]
    assert (
        {_required_variable(value)[0] for value in environment.values()}
        == set(environment)
        == {
            "VIGIL_STATSD_ALLOWED_SOURCES",
            "VIGIL_NETFLOW_ALLOWED_SOURCES",
        }
    )


def test_compose_api_is_published_on_the_hosts_loopback_only() -> None:
    # Vigil serves plain HTTP: tokens and login cookies must not cross other networks unless TLS is added in front.
    assert _compose()["services"]["api"]["ports"] == [f"127.0.0.1:{HTTP_PORT}:{HTTP_PORT}"]
    assert [service for service, spec in _compose()["services"].items() if "ports" in spec] == ["api"]


def test_compose_detect_runs_two_replicas_with_slack_from_an_ignored_env_file() -> None:
    detect = _compose()["services"]["detect"]
    assert detect["deploy"]["replicas"] == 2
    assert detect["environment"]["VIGIL_LEASE_TTL"] == "30s"
    assert detect["env_file"] == [{"path": "./slack.env", "required": False}]
    assert "slack.env" in (DEPLOY / ".gitignore").read_text(encoding="utf-8").splitlines()
    example = (DEPLOY / "slack.env.example").read_text(encoding="utf-8").splitlines()
    assert [line.split("=")[0] for line in example if line and not line.startswith("#")] == [
        "VIGIL_SLACK_TOKEN",
        "VIGIL_SLACK_WEBHOOK_URL",
    ]
    # The credentials never appear in the compose file itself.
    assert not {"VIGIL_SLACK_TOKEN", "VIGIL_SLACK_WEBHOOK_URL"} & set(detect["environment"])


# ---------------------------------------------------------------------------------------------- Dockerfile


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def _instructions(path: Path) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation"
    return instructions


def _stages() -> list[list[Instruction]]:
    stages: list[list[Instruction]] = []
    for instruction in _instructions(DOCKERFILE):
        if instruction.keyword == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


def _final(keyword: str) -> list[Instruction]:
    return [instruction for instruction in _stages()[-1] if instruction.keyword == keyword]


def test_dockerfile_has_a_build_stage_and_a_slim_final_stage() -> None:
    stages = _stages()
    assert [stage[0].args for stage in stages] == ["python:3.11-slim AS build", "python:3.11-slim"]
    final = " ".join(instruction.args for instruction in stages[-1] if instruction.keyword == "RUN")
    # Compilers and package installs stay in the build stage.
    for word in ("apt-get", "build-essential", "gcc", "pip "):
        assert word not in final
    assert [instruction.args for instruction in _final("COPY")] == ["--from=build /opt/vigil /opt/vigil"]


def test_dockerfile_final_stage_runs_as_the_non_root_vigil_user() -> None:
    (user,) = _final("USER")
    assert user.args == "10001:10001"
    (run,) = _final("RUN")
    assert "useradd --system --uid 10001 --gid 10001" in run.args
    # The write-ahead log's folder exists and belongs to that user, under the working directory.
    (workdir,) = _final("WORKDIR")
    assert workdir.args == "/var/lib/vigil"
    assert "mkdir -p /var/lib/vigil/wal" in run.args
    assert "chown -R 10001:10001 /var/lib/vigil" in run.args
    (env,) = _final("ENV")
    assert "VIGIL_WAL_DIR=/var/lib/vigil/wal" in env.args.split()
    assert "VIGIL_BIND=0.0.0.0" in env.args.split()
    # Auth is left at auto in the image: with the bind above, a container given no tokens refuses to start.
    assert "VIGIL_AUTH" not in env.args


def test_dockerfile_exposes_every_port_and_defaults_to_the_api_role() -> None:
    (expose,) = _final("EXPOSE")
    exposed = {(int(port), protocol.upper()) for port, protocol in (entry.split("/") for entry in expose.args.split())}
    assert exposed == RECEIVER_PORTS | {(HTTP_PORT, "TCP")}
    (cmd,) = _final("CMD")
    assert json.loads(cmd.args) == ["vigil", "api"]
    assert _final("ENTRYPOINT") == []


def _healthcheck_command() -> list[str]:
    (healthcheck,) = _final("HEALTHCHECK")
    options, _, command = healthcheck.args.partition(" CMD ")
    assert options == "--interval=15s --timeout=5s --start-period=30s --retries=3"
    return json.loads(command)


def _build_stage_copies() -> list[str]:
    """The sources of the build stage's COPY instructions (the last word of each is the destination)."""
    return [part.rstrip("/") for i in _stages()[0] if i.keyword == "COPY" for part in i.args.split()[:-1]]


def test_dockerfile_build_stage_copies_everything_the_wheel_is_built_from() -> None:
    with (ROOT / "pyproject.toml").open("rb") as stream:
        project = tomllib.load(stream)
    copied = _build_stage_copies()
    assert len(copied) == len(set(copied))
    package_dirs = set(project["tool"]["setuptools"]["package-dir"].values())
    assert set(copied) == package_dirs | {"pyproject.toml", project["project"]["readme"]}


def _dockerignore_patterns() -> list[str]:
    lines = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def test_dockerignore_keeps_what_the_build_copies_and_drops_the_venv() -> None:
    patterns = _dockerignore_patterns()
    for path in _build_stage_copies():
        assert not [p for p in patterns if fnmatch.fnmatch(path, p)], path
    for path in (".venv", ".git", "tests", "vigil-data"):
        assert [p for p in patterns if fnmatch.fnmatch(path, p)], path


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200
    paths: list[str] = []  # noqa: RUF012 - shared on purpose: the test reads what the server saw

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[int, type[_Health]]]:
    handler = type("Handler", (_Health,), {"status": 200, "paths": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _run_healthcheck(port: int) -> int:
    command = _healthcheck_command()
    assert command[0] == "python"  # slim has no curl or wget
    env = {"VIGIL_HTTP_PORT": str(port), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=30).returncode


def test_dockerfile_healthcheck_passes_when_healthz_answers_200(health_server: tuple[int, type[_Health]]) -> None:
    port, handler = health_server
    assert _run_healthcheck(port) == 0
    assert handler.paths == ["/healthz"]


def test_dockerfile_healthcheck_fails_when_healthz_answers_503(health_server: tuple[int, type[_Health]]) -> None:
    port, handler = health_server
    handler.status = 503
    assert _run_healthcheck(port) == 1
    assert handler.paths == ["/healthz"]


def test_dockerfile_healthcheck_fails_when_nothing_listens() -> None:
    # A port just released by a server of our own has nothing listening on it.
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    free_port = server.server_address[1]
    server.server_close()
    assert _run_healthcheck(free_port) == 1

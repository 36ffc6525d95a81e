"""The deployment files, offline: Kubernetes schemas, Dagster's instance schema, the chart's keys.

Nothing here can reach a cluster or download Dagster's chart, so each file is checked against what
can be had locally: kubernetes-validate's bundled OpenAPI schemas, Dagster's own config schema for
the instance and the K8sRunLauncher, the keys the chart's values schema documents, and the
cross-references between the files (names, ports, images, numbers that must agree).
"""

import copy
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config
from dagster_k8s import K8sRunLauncher
from dagster_k8s.job import get_common_labels

PROJECT = Path(__file__).resolve().parents[2]
DEPLOY = PROJECT / "deploy"
K8S = DEPLOY / "k8s"
HELM = DEPLOY / "helm"
KUBERNETES_VERSION = "1.32.0"
# The login in front of the UI (deploy/k8s/auth-proxy.yaml) and the policy that makes the
# webserver refuse everybody else (deploy/k8s/network-policy.yaml, deploy/helm/network-policy.yaml).
PROXY = "dagster-auth-proxy"
WEBSERVER_POLICY = "dagster-webserver-from-auth-proxy"
POSTGRES_ENV = {
    "DAGSTER_PG_HOST": "127.0.0.1",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USER": "dagster",
    "DAGSTER_PG_PASSWORD": "not-a-real-password",
    "DAGSTER_PG_DB": "dagster",
}


class StrictLoader(yaml.SafeLoader):
    """A loader that refuses a mapping with a repeated key.

    YAML tools disagree on a repeated key and PyYAML silently keeps the last one, so a duplicated
    setting would pass here and mean something else (or nothing) to Helm or kubectl.
    """


def _mapping_without_repeated_keys(loader: StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    keys = [loader.construct_object(key) for key, _ in node.value]
    repeated = sorted({str(key) for key in keys if keys.count(key) > 1})
    if repeated:
        raise yaml.constructor.ConstructorError(
            None, None, f"repeated keys {repeated}", node.start_mark
        )
    return loader.construct_mapping(node, deep=True)


StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_repeated_keys
)


def load(text: str) -> Any:
    return yaml.load(text, StrictLoader)


def manifests(directory: Path = K8S) -> Iterator[tuple[str, dict[str, Any]]]:
    """The Kubernetes objects of deploy/k8s/ (or of deploy/helm/, those applied beside the chart)."""
    for path in sorted(directory.glob("*.yaml")):
        if path.name in {"kustomization.yaml", "values.yaml"}:
            continue
        for document in yaml.load_all(path.read_text(), StrictLoader):
            if document:
                yield str(path.relative_to(DEPLOY)), document


def by_kind(kind: str, directory: Path = K8S) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in manifests(directory) if doc["kind"] == kind}


def k8s_instance() -> dict[str, Any]:
    return load(by_kind("ConfigMap")["dagster-instance"]["data"]["dagster.yaml"])


def postgres_instance() -> dict[str, Any]:
    return load((DEPLOY / "dagster-postgres.yaml").read_text())


def helm_values() -> dict[str, Any]:
    return load((HELM / "values.yaml").read_text())


def containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(deployment name, pod spec, container) for every container of every Deployment."""
    for name, deployment in by_kind("Deployment").items():
        spec = deployment["spec"]["template"]["spec"]
        for container in spec["containers"]:
            yield name, spec, container


@pytest.mark.parametrize(
    ("file", "document"),
    [
        pytest.param(file, doc, id=f"{file}:{doc['kind']}/{doc['metadata']['name']}")
        for directory in (K8S, HELM)
        for file, doc in manifests(directory)
    ],
)
def test_manifest_is_valid_kubernetes(file: str, document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    listed = set(load((K8S / "kustomization.yaml").read_text())["resources"])
    present = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present - {"secrets.example.yaml"}


def test_everything_referenced_exists() -> None:
    config_maps = set(by_kind("ConfigMap"))
    secrets = {name: set(doc["stringData"]) for name, doc in by_kind("Secret").items()}
    accounts = set(by_kind("ServiceAccount"))
    for name, spec, container in containers():
        assert spec["serviceAccountName"] in accounts, name
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in config_maps, name
            if "secretRef" in source:
                assert source["secretRef"]["name"] in secrets, name
        for variable in container.get("env", []):
            reference = variable.get("valueFrom", {}).get("secretKeyRef")
            if reference:
                assert reference["key"] in secrets[reference["name"]], (name, reference)
        for volume in spec.get("volumes", []):
            assert volume["configMap"]["name"] in config_maps, name

    launcher = k8s_instance()["run_launcher"]["config"]
    assert launcher["instance_config_map"] in config_maps
    assert launcher["service_account_name"] in accounts
    # The launcher hands this secret's `postgresql-password` to run pods as DAGSTER_PG_PASSWORD.
    assert "postgresql-password" in secrets[launcher["postgres_password_secret"]]
    assert set(launcher["env_config_maps"]) <= config_maps
    assert set(launcher["env_secrets"]) <= set(secrets)
    namespaces = {doc["metadata"].get("namespace") for _, doc in manifests()} - {None}
    assert namespaces == {launcher["job_namespace"]} == set(by_kind("Namespace"))


def test_run_launcher_can_manage_jobs_and_read_pods() -> None:
    [role] = by_kind("Role").values()
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    needed = {("batch", "jobs", verb) for verb in ("create", "delete", "get", "list", "watch")}
    needed |= {("", "pods", verb) for verb in ("get", "list", "watch")} | {("", "pods/log", "get")}
    assert needed <= granted
    [binding] = by_kind("RoleBinding").values()
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    launcher = k8s_instance()["run_launcher"]["config"]
    assert {subject["name"] for subject in binding["subjects"]} == {
        launcher["service_account_name"]
    }


def test_webserver_and_daemon_reach_the_code_location_and_share_its_image() -> None:
    workspace = load(by_kind("ConfigMap")["dagster-workspace"]["data"]["workspace.yaml"])
    [entry] = workspace["load_from"]
    server = entry["grpc_server"]
    service = by_kind("Service")[server["host"]]
    assert server["port"] in {port["port"] for port in service["spec"]["ports"]}
    user_code = by_kind("Deployment")[server["host"]]
    assert (
        service["spec"]["selector"].items()
        <= user_code["spec"]["template"]["metadata"]["labels"].items()
    )
    [container] = user_code["spec"]["template"]["spec"]["containers"]
    arguments = container["args"]
    assert arguments[arguments.index("-p") + 1] == str(server["port"])
    assert arguments[arguments.index("--location-name") + 1] == server["location_name"]
    assert arguments[arguments.index("-m") + 1] == "sync_assets.definitions"
    # Run pods are started from the image the code server reports.
    current = {var["name"]: var.get("value") for var in container["env"]}["DAGSTER_CURRENT_IMAGE"]
    assert current == container["image"]
    images = {container["image"] for name, _, container in containers() if name != PROXY}
    assert images == {current}
    assert not current.endswith(":latest") and ":" in current


def test_kubernetes_instance_is_the_postgres_instance_plus_kubernetes_settings() -> None:
    kubernetes = k8s_instance()
    assert kubernetes["run_launcher"]["class"] == "K8sRunLauncher"
    assert kubernetes["run_monitoring"]["max_resume_run_attempts"] > 0
    reduced = copy.deepcopy(kubernetes)
    del reduced["run_launcher"], reduced["compute_logs"]
    reduced["run_monitoring"]["max_resume_run_attempts"] = 0
    assert reduced == postgres_instance()


@pytest.mark.parametrize("variant", ["postgres", "kubernetes"])
def test_instance_validates_against_dagsters_schema(
    variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in POSTGRES_ENV.items():
        monkeypatch.setenv(name, value)
    config = postgres_instance() if variant == "postgres" else k8s_instance()
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    validated, _ = dagster_instance_config(str(tmp_path))
    assert validated["storage"]["postgres"]["postgres_db"]["db_name"] == {"env": "DAGSTER_PG_DB"}
    if variant == "kubernetes":
        launcher = validate_config(K8sRunLauncher.config_type(), config["run_launcher"]["config"])
        assert launcher.success, [error.message for error in launcher.errors]


# The keys Dagster's chart documents (its values.schema.json, generated from the pydantic models in
# helm/dagster/schema/schema/charts/ of the dagster repository, chart 1.13.x), for the sections
# these values use. `...` marks a Kubernetes object or free-form map the chart passes through.
CHART_KEYS: dict[str, Any] = {
    "global": {
        "postgresqlSecretName": None,
        "dagsterHome": None,
        "serviceAccountName": None,
        "celeryConfigSecretName": None,
        "dagsterInstanceConfigMap": None,
    },
    "dagsterWebserver": {
        "replicaCount": None,
        "image": {"repository": None, "tag": None, "pullPolicy": None},
        "nameOverride": None,
        "service": {"type": None, "port": None, "annotations": ...},
        "env": ...,
        "envConfigMaps": ...,
        "envSecrets": ...,
        "resources": ...,
    },
    "dagster-user-deployments": {
        "enabled": None,
        "enableSubchart": None,
        "imagePullSecrets": ...,
        "deployments": [
            {
                "name": None,
                "image": {"repository": None, "tag": None, "pullPolicy": None},
                "dagsterApiGrpcArgs": None,
                "codeServerArgs": None,
                "includeConfigInLaunchedRuns": {"enabled": None},
                "port": None,
                "env": ...,
                "envConfigMaps": ...,
                "envSecrets": ...,
                "annotations": ...,
                "nodeSelector": ...,
                "affinity": ...,
                "tolerations": ...,
                "podSecurityContext": ...,
                "securityContext": ...,
                "resources": ...,
                "livenessProbe": ...,
                "readinessProbe": ...,
                "startupProbe": ...,
                "labels": ...,
                "volumeMounts": ...,
                "volumes": ...,
                "schedulerName": None,
            }
        ],
    },
    "runLauncher": {
        "type": None,
        "config": {
            "k8sRunLauncher": {
                "image": ...,
                "imagePullPolicy": None,
                "jobNamespace": None,
                "loadInclusterConfig": None,
                "kubeconfigFile": None,
                "envConfigMaps": ...,
                "envSecrets": ...,
                "envVars": ...,
                "volumeMounts": ...,
                "volumes": ...,
                "labels": ...,
                "failPodOnRunFailure": None,
                "resources": ...,
                "schedulerName": None,
                "securityContext": ...,
                "runK8sConfig": {
                    "containerConfig": ...,
                    "podSpecConfig": ...,
                    "podTemplateSpecMetadata": ...,
                    "jobSpecConfig": ...,
                    "jobMetadata": ...,
                },
            }
        },
    },
    "generatePostgresqlPasswordSecret": None,
    "postgresql": {
        "image": ...,
        "enabled": None,
        "postgresqlHost": None,
        "postgresqlUsername": None,
        "postgresqlPassword": None,
        "postgresqlDatabase": None,
        "postgresqlParams": ...,
        "postgresqlScheme": None,
        "service": {"port": None},
    },
    "concurrency": {
        "enabled": None,
        "pools": {"defaultLimit": None, "granularity": None, "opGranularityRunBuffer": None},
        "runs": {"maxConcurrentRuns": None, "tagConcurrencyLimits": ...},
    },
    "dagsterDaemon": {
        "enabled": None,
        "image": ...,
        "heartbeatTolerance": None,
        "env": ...,
        "envConfigMaps": ...,
        "envSecrets": ...,
        "resources": ...,
        "runCoordinator": {
            "enabled": None,
            "type": None,
            "config": {
                "queuedRunCoordinator": {
                    "maxConcurrentRuns": None,
                    "tagConcurrencyLimits": ...,
                    "dequeueIntervalSeconds": None,
                    "dequeueNumWorkers": None,
                    "dequeueUseThreads": None,
                    "blockOpConcurrencyLimitedRuns": ...,
                }
            },
        },
        "runMonitoring": {
            "enabled": None,
            "startTimeoutSeconds": None,
            "pollIntervalSeconds": None,
            "maxResumeRunAttempts": None,
            "cancelTimeoutSeconds": None,
            "maxRuntimeSeconds": None,
            "freeSlotsAfterRunEndSeconds": None,
        },
        "runRetries": {"enabled": None, "maxRetries": None, "retryOnAssetOrOpFailure": None},
        "sensors": {"useThreads": None, "numWorkers": None, "numSubmitWorkers": None},
        "schedules": {"useThreads": None, "numWorkers": None, "numSubmitWorkers": None},
    },
    "telemetry": {"enabled": None},
}


def undocumented(values: Any, documented: Any, path: str = "") -> Iterator[str]:
    if documented is ... or documented is None:
        return
    if isinstance(documented, list):
        for index, item in enumerate(values):
            yield from undocumented(item, documented[0], f"{path}[{index}]")
        return
    for key, value in values.items():
        if key not in documented:
            yield f"{path}.{key}".lstrip(".")
        else:
            yield from undocumented(value, documented[key], f"{path}.{key}")


def test_helm_values_use_only_keys_the_chart_documents() -> None:
    assert list(undocumented(helm_values(), CHART_KEYS)) == []


def test_helm_values_agree_with_the_instance() -> None:
    values = helm_values()
    instance = k8s_instance()
    daemon = values["dagsterDaemon"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["concurrency"]["pools"] == {
        "defaultLimit": instance["concurrency"]["pools"]["default_limit"],
        "granularity": instance["concurrency"]["pools"]["granularity"],
    }
    assert (
        values["concurrency"]["runs"]["maxConcurrentRuns"]
        == (instance["concurrency"]["runs"]["max_concurrent_runs"])
    )
    queue = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queue == {
        "dequeueUseThreads": instance["run_coordinator"]["config"]["dequeue_use_threads"],
        "dequeueNumWorkers": instance["run_coordinator"]["config"]["dequeue_num_workers"],
        "dequeueIntervalSeconds": instance["run_coordinator"]["config"]["dequeue_interval_seconds"],
    }
    assert daemon["runRetries"] == {
        "enabled": instance["run_retries"]["enabled"],
        "maxRetries": instance["run_retries"]["max_retries"],
        "retryOnAssetOrOpFailure": instance["run_retries"]["retry_on_asset_or_op_failure"],
    }
    assert (
        daemon["runMonitoring"]["maxResumeRunAttempts"]
        == (instance["run_monitoring"]["max_resume_run_attempts"])
    )
    k8s = instance["run_launcher"]["config"]["run_k8s_config"]
    chart = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    assert chart["containerConfig"] == k8s["container_config"]
    assert chart["jobSpecConfig"] == {
        "backoffLimit": k8s["job_spec_config"]["backoff_limit"],
        "ttlSecondsAfterFinished": k8s["job_spec_config"]["ttl_seconds_after_finished"],
    }
    [deployment] = values["dagster-user-deployments"]["deployments"]
    secrets = {source["name"] for source in deployment["envSecrets"]}
    assert secrets == set(instance["run_launcher"]["config"]["env_secrets"])
    launcher = instance["run_launcher"]["config"]
    assert values["global"]["postgresqlSecretName"] == launcher["postgres_password_secret"]
    postgres = instance["storage"]["postgres"]["postgres_db"]
    assert values["postgresql"]["postgresqlScheme"] == postgres["scheme"]


def test_dockerfile_copies_files_that_exist_and_installs_declared_extras() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    copied = [
        source
        for line in dockerfile.splitlines()
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
    ]
    assert copied
    for source in copied:
        assert (PROJECT / source).exists(), source
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert {source.rstrip("/").removeprefix("./") for source in copied} <= allowed
    extras = set(re.findall(r"--extra (\w+)", dockerfile))
    declared = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert extras == {"postgres", "k8s", "s3"} and extras <= set(declared)
    needed = " ".join(declared["k8s"] + declared["postgres"])
    assert "dagster-k8s" in needed and "dagster-postgres" in needed
    assert '"-m", "sync_assets.definitions"' in dockerfile


# Who may use the UI: the webserver has no login and the UI can launch deletions of CRM records, so
# the auth proxy is the only way in. How Dagster's chart names and labels its pods, from its
# templates (helm/dagster/templates/helpers/_helpers.tpl, _deployment-webserver.tpl,
# deployment-daemon.yaml and charts/dagster-user-deployments/templates/deployment-user.yaml of
# dagster-io/dagster): the webserver Service is `<release>-<dagsterWebserver.nameOverride>` and the
# webserver listens on dagsterWebserver.service.port; every pod carries the selector labels
# app.kubernetes.io/name (the chart's name) and app.kubernetes.io/instance (the release) plus:
CHART_NAME = "dagster"
CHART_COMPONENTS = {
    "webserver": {"component": "dagster-webserver"},
    "daemon": {"component": "dagster-daemon", "deployment": "daemon"},
}
USER_DEPLOYMENTS_CHART_NAME = "dagster-user-deployments"


@dataclass(frozen=True)
class Webserver:
    """The webserver as one install path runs it, and the policy meant to guard it."""

    service: str
    service_port: int
    pod_port: int
    selector: dict[str, str]
    pod_labels: dict[str, str]
    other_pods: list[dict[str, str]]
    policy: dict[str, Any]


def helm_release() -> str:
    """The release name of the documented `helm upgrade --install` (values.yaml and DEPLOYMENT.md)."""
    command = r"helm upgrade --install (\S+) dagster/dagster"
    texts = [(HELM / "values.yaml").read_text(), (PROJECT / "docs" / "DEPLOYMENT.md").read_text()]
    [release] = {name for text in texts for name in re.findall(command, text)}
    return release


def run_pod_labels(configured: dict[str, str]) -> dict[str, str]:
    """The labels the K8sRunLauncher puts on a run pod: its own, then the configured ones on top."""
    own = get_common_labels() | {"app.kubernetes.io/component": "run_worker"}
    return own | {"dagster/job": "job", "dagster/run-id": "run"} | configured


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


def proxy_container() -> dict[str, Any]:
    [container] = by_kind("Deployment")[PROXY]["spec"]["template"]["spec"]["containers"]
    return container


def proxy_flags() -> dict[str, list[str]]:
    """The proxy's `--flag=value` arguments, by flag (a flag may be given more than once)."""
    flags: dict[str, list[str]] = {}
    for argument in proxy_container()["args"]:
        flag, _, value = argument.removeprefix("--").partition("=")
        flags.setdefault(flag, []).append(value)
    return flags


def webserver(variant: str) -> Webserver:
    proxy = pod_labels(by_kind("Deployment")[PROXY])
    if variant == "k8s":
        deployments = by_kind("Deployment")
        [port] = by_kind("Service")["dagster-webserver"]["spec"]["ports"]
        [container] = deployments["dagster-webserver"]["spec"]["template"]["spec"]["containers"]
        named = {entry["name"]: entry["containerPort"] for entry in container["ports"]}
        launcher = k8s_instance()["run_launcher"]["config"]
        return Webserver(
            service="dagster-webserver",
            service_port=port["port"],
            pod_port=named[port["targetPort"]],
            selector=deployments["dagster-webserver"]["spec"]["selector"]["matchLabels"],
            pod_labels=pod_labels(deployments["dagster-webserver"]),
            other_pods=[pod_labels(d) for n, d in deployments.items() if n != "dagster-webserver"]
            + [run_pod_labels(launcher["labels"])],
            policy=by_kind("NetworkPolicy")[WEBSERVER_POLICY],
        )
    values = helm_values()
    release = helm_release()
    chart = {"app.kubernetes.io/name": CHART_NAME, "app.kubernetes.io/instance": release}
    [user_code] = values["dagster-user-deployments"]["deployments"]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    settings = values["dagsterWebserver"]
    return Webserver(
        service=f"{release}-{settings['nameOverride']}",
        service_port=settings["service"]["port"],
        pod_port=settings["service"]["port"],
        # The chart selects its webserver pods by exactly the labels it gives them.
        selector=chart | CHART_COMPONENTS["webserver"],
        pod_labels=chart | CHART_COMPONENTS["webserver"],
        other_pods=[
            chart | CHART_COMPONENTS["daemon"],
            {
                "app.kubernetes.io/name": USER_DEPLOYMENTS_CHART_NAME,
                "app.kubernetes.io/instance": release,
                "component": "user-deployments",
                "deployment": user_code["name"],
            },
            run_pod_labels(launcher["labels"]),
            proxy,
        ],
        policy=by_kind("NetworkPolicy", HELM)[WEBSERVER_POLICY],
    )


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    # Only matchLabels, so that this check is the whole truth about what the selector selects.
    assert set(selector) == {"matchLabels"}, selector
    return selector["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize("variant", ["k8s", "helm"])
def test_webserver_admits_the_proxy_and_nobody_else(variant: str) -> None:
    server = webserver(variant)
    spec = server.policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    # The pods the webserver's Deployment manages: neither fewer nor other ones.
    assert spec["podSelector"] == {"matchLabels": server.selector}
    assert selects(spec["podSelector"], server.pod_labels)
    assert not any(selects(spec["podSelector"], other) for other in server.other_pods)
    [rule] = spec["ingress"]
    # One peer, a podSelector alone: pods of this namespace only, no namespace or IP block.
    [peer] = rule["from"]
    assert set(peer) == {"podSelector"}
    proxy = pod_labels(by_kind("Deployment")[PROXY])
    assert selects(peer["podSelector"], proxy)
    others = [labels for labels in server.other_pods if labels != proxy]
    assert not any(selects(peer["podSelector"], other) for other in others)
    assert rule["ports"] == [{"protocol": "TCP", "port": server.pod_port}]


@pytest.mark.parametrize("variant", ["k8s", "helm"])
def test_proxy_forwards_to_the_webserver_service(variant: str) -> None:
    server = webserver(variant)
    [upstream] = proxy_flags()["upstream"]
    url = urlsplit(upstream)
    assert (url.scheme, url.hostname, url.port) == ("http", server.service, server.service_port)
    # A trailing slash routes every path to the webserver, not only the exact one.
    assert url.path == "/"


def test_only_the_proxy_is_exposed() -> None:
    for name, service in by_kind("Service").items():
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", name
    settings = helm_values()["dagsterWebserver"]
    assert settings["service"]["type"] == "ClusterIP"
    assert "ingress" not in helm_values()
    proxy_ports = {port["name"] for port in by_kind("Service")[PROXY]["spec"]["ports"]}
    ingresses = by_kind("Ingress").values()
    backends = [
        path["backend"]["service"]
        for ingress in ingresses
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert backends
    assert all(backend["name"] == PROXY for backend in backends)
    assert all(backend["port"]["name"] in proxy_ports for backend in backends)
    # The IdP sends users back to the exposed host, over HTTPS.
    [redirect] = proxy_flags()["redirect-url"]
    url = urlsplit(redirect)
    assert (url.scheme, url.path) == ("https", "/oauth2/callback")
    hosts = {rule["host"] for ingress in ingresses for rule in ingress["spec"]["rules"]}
    tls = {
        host for ingress in ingresses for entry in ingress["spec"]["tls"] for host in entry["hosts"]
    }
    assert url.hostname in hosts & tls


def test_proxy_reads_its_credentials_from_the_example_secret() -> None:
    secrets = {name: set(doc["stringData"]) for name, doc in by_kind("Secret").items()}
    env = {variable["name"]: variable for variable in proxy_container()["env"]}
    for variable in (
        "OAUTH2_PROXY_CLIENT_ID",
        "OAUTH2_PROXY_CLIENT_SECRET",
        "OAUTH2_PROXY_COOKIE_SECRET",
    ):
        assert "value" not in env[variable], variable
        reference = env[variable]["valueFrom"]["secretKeyRef"]
        assert reference["key"] in secrets[reference["name"]], variable
    # Never on the command line, where `kubectl describe` and the process list show it.
    assert not {"client-id", "client-secret", "cookie-secret"} & set(proxy_flags())


def test_proxy_is_pinned_hardened_and_probed() -> None:
    deployment = by_kind("Deployment")[PROXY]
    pod = deployment["spec"]["template"]["spec"]
    container = proxy_container()
    repository, _, tag = container["image"].partition(":")
    assert repository == "quay.io/oauth2-proxy/oauth2-proxy"
    # v7.15.2 fixed authentication bypasses; a released version, never a moving tag.
    version = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", tag)
    assert version and tuple(map(int, version.groups())) >= (7, 15, 2), tag

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    # No Kubernetes API access: no token, no Role.
    assert pod["automountServiceAccountToken"] is False
    assert (
        by_kind("ServiceAccount")[pod["serviceAccountName"]]["automountServiceAccountToken"]
        is False
    )
    bound = {s["name"] for b in by_kind("RoleBinding").values() for s in b["subjects"]}
    assert pod["serviceAccountName"] not in bound

    flags = proxy_flags()
    [address] = flags["http-address"]
    [port] = container["ports"]
    assert address == f"0.0.0.0:{port['containerPort']}"
    assert container["livenessProbe"]["httpGet"] == {"path": "/ping", "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": port["name"]}

    assert flags["provider"] == ["oidc"] and flags["cookie-secure"] == ["true"]
    assert "*" not in flags["email-domain"] and flags["allowed-group"]
    # --reverse-proxy trusts X-Forwarded-* from whoever connects, so only the ingress controller
    # may connect: a policy admitting one namespace's pods on the proxy's port and nothing else.
    assert flags["reverse-proxy"] == ["true"]
    [policy] = [
        doc["spec"]
        for doc in by_kind("NetworkPolicy").values()
        if selects(doc["spec"]["podSelector"], pod_labels(deployment))
    ]
    [rule] = policy["ingress"]
    [peer] = rule["from"]
    assert set(peer) == {"namespaceSelector"}
    assert rule["ports"] == [{"protocol": "TCP", "port": port["containerPort"]}]

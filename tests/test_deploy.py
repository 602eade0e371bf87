"""The deployment files, checked offline: schemas, structure, and Redis accepting its config.

No container engine or cluster runs here. Kubernetes manifests are validated against
the Kubernetes OpenAPI schemas shipped in ``kubernetes-validate`` (strict: unknown
fields fail); the compose file against the Compose specification's JSON schema shipped
in ``check-jsonschema``; the KEDA ScaledObject against the fields KEDA requires.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import redis
import yaml

from motion.floor.embedded import free_port
from motion.tools import metrics
from tests.support import ROOT, server_binary, wait_for

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
K8S_VERSION = "1.37.0"
MOTION_SERVICES = {"worker", "beat", "flower", "metrics", "http"}


def manifests() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in manifests() if doc["kind"] == kind]


def containers() -> list[dict[str, Any]]:
    out = []
    for doc in by_kind("Deployment") + by_kind("StatefulSet"):
        out += doc["spec"]["template"]["spec"]["containers"]
    return out


#: manifests of Kubernetes' own kinds (not KEDA's, not kustomize's)
BUILTIN = [
    (name, doc)
    for name, doc in manifests()
    if doc["apiVersion"] in ("v1", "apps/v1", "batch/v1", "networking.k8s.io/v1")
]


@pytest.mark.parametrize(
    "name,doc", BUILTIN, ids=[f"{name}:{doc['kind']}" for name, doc in BUILTIN]
)
def test_manifest_matches_the_kubernetes_schema(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_schema_check_catches_mistakes() -> None:
    worker = copy.deepcopy(
        next(d for d in by_kind("Deployment") if "worker" in d["metadata"]["name"])
    )
    worker["spec"]["template"]["spec"]["containers"][0]["envFrm"] = []  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, K8S_VERSION, strict=True)
    worker = copy.deepcopy(worker)
    worker["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, K8S_VERSION, strict=True)


# The parts of KEDA's ScaledObject CRD (keda.sh/v1alpha1) this deployment relies on.
SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}},
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer"},
                "cooldownPeriod": {"type": "integer"},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_keda_scales_the_workers_on_a_backlog_the_exporter_serves() -> None:
    (scaled,) = by_kind("ScaledObject")
    jsonschema.validate(scaled, SCALED_OBJECT)
    spec = scaled["spec"]
    deployments = {d["metadata"]["name"]: d for d in by_kind("Deployment")}
    assert spec["scaleTargetRef"]["name"] == "motion-worker" in deployments
    assert spec["minReplicaCount"] >= 1  # a worker's timer sweeps; see keda.yaml
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "metrics-api"
    url = trigger["metadata"]["url"]
    service = {s["metadata"]["name"]: s for s in by_kind("Service")}["motion-metrics"]
    host, port, path = re.match(r"http://([^.:/]+)[^:]*:(\d+)(/\w+)$", url).groups()  # type: ignore[union-attr]
    assert host == service["metadata"]["name"]
    assert int(port) == service["spec"]["ports"][0]["port"]
    assert path == "/backlog"
    snapshot = metrics.Snapshot(0.0, 0, 0, 0, 0.0, 0.0)
    assert trigger["metadata"]["valueLocation"] in snapshot.backlog()
    worker = deployments["motion-worker"]["spec"]["template"]["spec"]["containers"][0]
    slots = worker["command"][worker["command"].index("-c") + 1]
    assert trigger["metadata"]["targetValue"] == slots  # one pending instance per slot


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present - {"secret.example.yaml"}
    images = {c["image"] for c in containers() if not c["image"].startswith("redis:")}
    assert images == {kustomization["images"][0]["name"]}


def test_motion_processes_share_the_redis_url_and_secrets_stay_in_the_secret() -> None:
    for container in containers():
        env = {e["name"]: e for e in container.get("env", [])}
        if container["name"] == "redis":
            assert "secretKeyRef" in env["REDIS_PASSWORD"]["valueFrom"]
            continue
        assert env["MOTION_REDIS_URL"]["value"].startswith("redis://:$(REDIS_PASSWORD)@")
        assert "secretKeyRef" in env["REDIS_PASSWORD"]["valueFrom"]
        command = container["command"]
        if command[0] == "celery":
            assert command[1:3] == ["-A", "workers"]
    secret = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    assert all("REPLACE_ME" in value for value in secret["stringData"].values())


def test_the_redis_configmap_is_deploy_redis_conf() -> None:
    (config,) = [c for c in by_kind("ConfigMap") if c["metadata"]["name"] == "motion-redis-config"]
    assert config["data"]["redis.conf"] == (DEPLOY / "redis.conf").read_text()


def test_redis_server_runs_with_deploy_redis_conf(tmp_path: Path) -> None:
    port = free_port()
    # the file first, then this machine's port, folder and address (later arguments win)
    args = [str(DEPLOY / "redis.conf"), "--port", str(port), "--bind", "127.0.0.1"]
    args += ["--dir", str(tmp_path), "--logfile", str(tmp_path / "redis.log")]
    proc = subprocess.Popen([server_binary(), *args])
    client = redis.Redis(port=port)

    def answers() -> bool:
        if proc.poll() is not None:
            raise AssertionError((tmp_path / "redis.log").read_text())
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_for(answers, 15, "redis-server with deploy/redis.conf")
        settings = client.config_get("*")
        assert settings["appendonly"] == "yes"
        assert settings["appendfsync"] == "everysec"
        assert settings["maxmemory-policy"] == "noeviction"
        assert int(settings["maxmemory"]) > 0
        assert settings["timeout"] == "0"
        client.config_set("maxmemory", 1)
        with pytest.raises(redis.exceptions.OutOfMemoryError):  # full: refuse, never evict
            client.set("x", "y" * 1000)
    finally:
        proc.terminate()
        proc.wait(10)


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_compose_file_matches_the_compose_specification() -> None:
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(compose())]
    assert errors == []
    broken = compose()
    broken["services"]["worker"]["stop_grace_period"] = ["2m"]
    assert list(validator.iter_errors(broken))  # the check can fail


def test_compose_runs_every_process_from_the_workers_app() -> None:
    services = compose()["services"]
    assert set(services) == {"redis"} | MOTION_SERVICES
    for name in ("worker", "beat", "flower"):
        assert shlex.split(services[name]["command"])[:3] == ["celery", "-A", "workers"], name
    assert "worker" in shlex.split(services["worker"]["command"])
    for name in MOTION_SERVICES:
        env = services[name]["environment"]
        assert env["MOTION_REDIS_URL"].startswith("redis://:${REDIS_PASSWORD"), name
        assert env["MOTION_INPROCESS_WORKER"] == "0"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    redis_service = services["redis"]
    assert "ports" not in redis_service  # Redis is reached only from the compose network
    mounted = {v.split(":")[0] for v in redis_service["volumes"]}
    assert "./redis.conf" in mounted and (DEPLOY / "redis.conf").exists()
    assert "/usr/local/etc/redis/redis.conf" in redis_service["command"]
    assert "--requirepass" in redis_service["command"]


def test_dockerfile_copies_files_that_exist() -> None:
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def test_procfile_names_worker_beat_flower_and_metrics() -> None:
    from honcho.environ import parse_procfile

    procfile = parse_procfile((ROOT / "Procfile").read_text())
    assert set(procfile.processes) == {"worker", "beat", "flower", "metrics"}
    for name in ("worker", "beat", "flower"):
        assert procfile.processes[name].startswith("celery -A workers "), name
    assert procfile.processes["metrics"].startswith("python -m motion.tools.metrics")


def test_the_http_app_the_deployments_run_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    code = (
        "import http_app\n"
        "print(sorted(r.path for r in http_app.app.routes if 'Assistant' in r.path))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": f"{DEPLOY}:{ROOT / 'examples'}:{ROOT}",
            "MOTION_API_KEY": "sk_test_0123456789abcdef0123456789abcdef",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "/Assistant/enqueue" in proc.stdout

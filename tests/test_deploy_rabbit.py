"""The RabbitMQ deployment files, checked offline: deploy/kubernetes-rabbitmq and rabbitmq.conf.

As for the base manifests (:mod:`tests.test_deploy`), no cluster runs here: the
overlay's own manifests and the motion Deployments as its patch leaves them are
validated against the Kubernetes schemas (strict), the broker URL the patch sets is
checked against the RabbitMQ StatefulSet and Service, and ``deploy/rabbitmq.conf``
(the ConfigMap's content, verbatim) is checked on the tests' real rabbitmq-server,
which runs with it.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.brokers import DEPLOY_CONF, RabbitServer
from tests.support import ROOT
from tests.test_deploy import K8S_VERSION, by_kind

OVERLAY = ROOT / "deploy" / "kubernetes-rabbitmq"


def overlay_docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((OVERLAY / "rabbitmq.yaml").read_text()) if d]


def kind(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == name]
    return doc


def patched(deployment: dict[str, Any]) -> dict[str, Any]:
    """``deployment`` with broker-env.yaml applied (JSON patch ``add`` ops, as kustomize does)."""
    out = copy.deepcopy(deployment)
    for op in yaml.safe_load((OVERLAY / "broker-env.yaml").read_text()):
        assert op["op"] == "add" and op["path"].endswith("/-"), op
        target: Any = out
        for part in op["path"].strip("/").split("/")[:-1]:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target.append(op["value"])
    return out


def targets() -> list[dict[str, Any]]:
    """The base Deployments the overlay's patch selects (its labelSelector)."""
    kustomization = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    (patch,) = kustomization["patches"]
    assert patch["target"]["kind"] == "Deployment"
    key, value = patch["target"]["labelSelector"].split("=")
    return [d for d in by_kind("Deployment") if d["metadata"]["labels"].get(key) == value]


@pytest.mark.parametrize("doc", overlay_docs(), ids=lambda d: d["kind"])
def test_rabbitmq_manifest_matches_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_overlay_lists_the_base_and_files_that_exist() -> None:
    kustomization = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    assert kustomization["resources"][0] == "../kubernetes"
    assert (OVERLAY / kustomization["resources"][0] / "kustomization.yaml").exists()
    present = {p.name for p in OVERLAY.glob("*.yaml")} - {"kustomization.yaml"}
    listed = set(kustomization["resources"][1:]) | {p["path"] for p in kustomization["patches"]}
    assert listed == present


def test_every_motion_deployment_gets_the_broker_url_from_the_secret() -> None:
    names = {d["metadata"]["name"] for d in targets()}
    assert names == {
        "motion-worker",
        "motion-sweeper",
        "motion-flower",
        "motion-metrics",
        "motion-http",
    }
    docs = overlay_docs()
    service, statefulset = kind(docs, "Service"), kind(docs, "StatefulSet")
    broker = statefulset["spec"]["template"]["spec"]["containers"][0]
    broker_env = {e["name"]: e for e in broker["env"]}
    for deployment in targets():
        after = patched(deployment)
        kubernetes_validate.validate(after, K8S_VERSION, strict=True)
        env = after["spec"]["template"]["spec"]["containers"][0]["env"]
        names_in_order = [e["name"] for e in env]
        url = env[names_in_order.index("MOTION_BROKER_URL")]["value"]
        # Kubernetes expands $(VAR) only from variables defined earlier in the list
        for var in re.findall(r"\$\((\w+)\)", url):
            assert names_in_order.index(var) < names_in_order.index("MOTION_BROKER_URL")
        password = env[names_in_order.index("RABBITMQ_PASSWORD")]["valueFrom"]["secretKeyRef"]
        assert password == broker_env["RABBITMQ_DEFAULT_PASS"]["valueFrom"]["secretKeyRef"]
        user, host, port, vhost = re.match(  # type: ignore[union-attr]
            r"amqp://(\w+):\$\(RABBITMQ_PASSWORD\)@([\w-]+):(\d+)/(\w+)$", url
        ).groups()
        assert user == broker_env["RABBITMQ_DEFAULT_USER"]["value"]
        assert vhost == broker_env["RABBITMQ_DEFAULT_VHOST"]["value"]
        assert host == service["metadata"]["name"] == statefulset["spec"]["serviceName"]
        assert int(port) == service["spec"]["ports"][0]["port"]
    secret = yaml.safe_load((ROOT / "deploy/kubernetes/secret.example.yaml").read_text())
    assert password["name"] == secret["metadata"]["name"]
    assert password["key"] in secret["stringData"]


def test_the_patch_check_catches_mistakes() -> None:
    worker = patched(next(d for d in targets() if d["metadata"]["name"] == "motion-worker"))
    env = worker["spec"]["template"]["spec"]["containers"][0]["env"]
    env[-1]["valueFrm"] = env[-1].pop("value")  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, K8S_VERSION, strict=True)


def test_the_rabbitmq_configmap_is_deploy_rabbitmq_conf() -> None:
    config = kind(overlay_docs(), "ConfigMap")
    assert config["data"]["rabbitmq.conf"] == DEPLOY_CONF.read_text()
    statefulset = kind(overlay_docs(), "StatefulSet")
    mounts = statefulset["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "config", "mountPath": "/etc/rabbitmq/conf.d"} in mounts
    assert "/var/lib/rabbitmq" in {m["mountPath"] for m in mounts}  # the durable queues


@pytest.mark.integration
def test_rabbitmq_server_runs_with_deploy_rabbitmq_conf(rabbit_server: RabbitServer) -> None:
    keys = ["consumer_timeout", "vm_memory_high_watermark", "loopback_users"]
    code = f"[application:get_env(rabbit, K) || K <- [{', '.join(keys)}]]."
    result = rabbit_server.ctl("eval", code)
    assert result.returncode == 0, result.stderr
    # consumer_timeout above the longest drain; publishers refused before an OOM kill
    expected = '[{ok,3600000},{ok,{absolute,"1200MiB"}},{ok,[<<"guest">>]}]'
    assert result.stdout.strip() == expected

"""The Redis Cluster deployment files, checked offline: deploy/kubernetes-cluster.

As for the base manifests (:mod:`tests.test_deploy`), no Kubernetes runs here: the
overlay's manifests and the motion Deployments as its patch leaves them are validated
against the Kubernetes schemas (strict), and the URLs the patch sets are checked
against the cluster's StatefulSet and Service and against motion's own URL checks.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

from motion.floor.urls import check_url, cluster_nodes
from tests.support import ROOT
from tests.test_deploy import K8S_VERSION, by_kind

OVERLAY = ROOT / "deploy" / "kubernetes-cluster"


def overlay_docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((OVERLAY / "redis-cluster.yaml").read_text()) if d]


def kind(name: str) -> dict[str, Any]:
    (doc,) = [d for d in overlay_docs() if d["kind"] == name]
    return doc


def patched(deployment: dict[str, Any]) -> dict[str, Any]:
    """``deployment`` with cluster-env.yaml applied (JSON patch ``add`` ops, as kustomize does)."""
    out = copy.deepcopy(deployment)
    for op in yaml.safe_load((OVERLAY / "cluster-env.yaml").read_text()):
        assert op["op"] == "add" and op["path"].endswith("/-"), op
        target: Any = out
        for part in op["path"].strip("/").split("/")[:-1]:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target.append(op["value"])
    return out


def targets() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    (patch,) = kustomization["patches"]
    key, value = patch["target"]["labelSelector"].split("=")
    return [d for d in by_kind("Deployment") if d["metadata"]["labels"].get(key) == value]


@pytest.mark.parametrize("doc", overlay_docs(), ids=lambda d: d["kind"])
def test_cluster_manifest_matches_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_overlay_lists_the_base_and_files_that_exist() -> None:
    kustomization = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    assert kustomization["resources"][0] == "../kubernetes"
    assert (OVERLAY / kustomization["resources"][0] / "kustomization.yaml").exists()
    present = {p.name for p in OVERLAY.glob("*.yaml")} - {"kustomization.yaml"}
    listed = set(kustomization["resources"][1:]) | {p["path"] for p in kustomization["patches"]}
    assert listed == present


def test_every_motion_deployment_keeps_state_on_the_cluster_and_wakes_through_the_broker() -> None:
    assert {d["metadata"]["name"] for d in targets()} == {
        "motion-worker", "motion-sweeper", "motion-flower", "motion-metrics", "motion-http",
    }  # fmt: skip
    service, nodes = kind("Service"), kind("StatefulSet")
    assert (
        nodes["spec"]["replicas"] == 6
        and nodes["spec"]["serviceName"] == service["metadata"]["name"]
    )
    (broker_service,) = [s for s in by_kind("Service") if s["metadata"]["name"] == "motion-redis"]
    for deployment in targets():
        after = patched(deployment)
        kubernetes_validate.validate(after, K8S_VERSION, strict=True)
        env = after["spec"]["template"]["spec"]["containers"][0]["env"]
        names = [e["name"] for e in env]
        last = {e["name"]: e for e in env}  # Kubernetes keeps the last of a name
        url = last["MOTION_REDIS_URL"]["value"]
        assert url.startswith("redis+cluster://"), deployment["metadata"]["name"]
        for value in (url, last["MOTION_BROKER_URL"]["value"]):
            for var in re.findall(r"\$\((\w+)\)", value):  # expanded only from earlier ones
                assert names.index(var) < len(names) - 3
        concrete = url.replace("$(REDIS_PASSWORD)", "0123abcd")
        assert check_url(concrete, "MOTION_REDIS_URL") == concrete  # motion accepts it
        for host, port in cluster_nodes(concrete):
            pod, _, domain = host.partition(".")
            assert domain == service["metadata"]["name"] and port == 6379
            assert int(pod.rsplit("-", 1)[1]) < nodes["spec"]["replicas"]
        broker = last["MOTION_BROKER_URL"]["value"]
        assert f"@{broker_service['metadata']['name']}:6379/" in broker
        assert last["MOTION_REDIS_MIN_REPLICAS"]["value"] == "1"


def test_the_nodes_run_deploy_redis_conf_in_cluster_mode() -> None:
    (container,) = kind("StatefulSet")["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[:2] == ["redis-server", "/etc/redis/redis.conf"]
    assert command[command.index("--cluster-enabled") + 1] == "yes"
    (volume,) = kind("StatefulSet")["spec"]["template"]["spec"]["volumes"]
    (config,) = [
        c for c in by_kind("ConfigMap") if c["metadata"]["name"] == volume["configMap"]["name"]
    ]
    assert (ROOT / "deploy" / "redis.conf").read_text() == config["data"]["redis.conf"]
    job = kind("Job")["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    assert "--cluster-replicas 1" in job and "for i in 0 1 2 3 4 5" in job

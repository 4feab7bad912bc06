"""resolve(): rule + raw Kubernetes JSON -> pod and container port, with no I/O.

Pods are built by small helpers; each test states only what matters for the rule it checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from trayapp.engine.forward.pods import container_port_by_name, newest_version, order_pods
from trayapp.engine.forward.resolve import (
    Target,
    Unresolved,
    kinds_needed,
    namespaces_to_decide,
    one_per_forward,
    resolve,
    service_port_numbers,
    target_key,
)
from trayapp.model import ResourceType, Rule

NS = "default"
T0 = "2026-11-26T10:00:00Z"


class Source:
    """An in-memory ObjectSource."""

    def __init__(self, *objects: tuple[str, Mapping]) -> None:
        self.objects: dict[str, list[Mapping]] = {}
        for kind, obj in objects:
            self.objects.setdefault(kind, []).append(obj)

    def get(self, kind: str, namespace: str, name: str) -> Mapping | None:
        for obj in self.objects.get(kind, []):
            meta = obj["metadata"]
            if meta["name"] == name and meta.get("namespace", NS) == namespace:
                return obj
        return None

    def list(self, kind: str, namespace: str) -> Sequence[Mapping]:
        return [
            o for o in self.objects.get(kind, []) if o["metadata"].get("namespace", NS) == namespace
        ]


def ts(minute: int) -> str:
    return f"2026-11-26T10:{minute:02d}:00Z"


def pod(
    name: str,
    *,
    labels: Mapping[str, str] | None = None,
    phase: str = "Running",
    ready: bool | None = True,
    ready_since: str | None = T0,
    node: str = "node-1",
    created: str | None = T0,
    restarts: Sequence[int] = (0,),
    ports: Sequence[tuple[str | None, int]] = (("http", 8080),),
    init_ports: Sequence[tuple[str | None, int]] = (),
    owner: str | None = None,
    deleting: bool = False,
    namespace: str = NS,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{name}",
        "labels": dict(labels or {"app": "web"}),
    }
    if created:
        meta["creationTimestamp"] = created
    if owner:
        meta["ownerReferences"] = [
            {"kind": "ReplicaSet", "name": owner, "uid": f"uid-{owner}", "controller": True}
        ]
    if deleting:
        meta["deletionTimestamp"] = ts(59)
    conditions = []
    if ready is not None:
        cond = {"type": "Ready", "status": "True" if ready else "False"}
        if ready_since:
            cond["lastTransitionTime"] = ready_since
        conditions.append(cond)

    def plist(pairs: Sequence[tuple[str | None, int]]) -> list[dict[str, Any]]:
        return [{"containerPort": n, **({"name": nm} if nm else {})} for nm, n in pairs]

    spec: dict[str, Any] = {"containers": [{"name": "main", "ports": plist(ports)}]}
    if init_ports:
        spec["initContainers"] = [
            {"name": "sidecar", "restartPolicy": "Always", "ports": plist(init_ports)}
        ]
    if node:
        spec["nodeName"] = node
    return {
        "metadata": meta,
        "spec": spec,
        "status": {
            "phase": phase,
            "conditions": conditions,
            "containerStatuses": [
                {"name": f"c{i}", "restartCount": r} for i, r in enumerate(restarts)
            ],
        },
    }


def service(
    name: str = "web",
    *,
    selector: Mapping[str, str] | None = None,
    ports: Sequence[Mapping[str, Any]] = ({"name": "http", "port": 80, "targetPort": 8080},),
    cluster_ip: str = "10.0.0.10",
) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": list(ports), "clusterIP": cluster_ip}
    spec["selector"] = {"app": "web"} if selector is None else dict(selector)
    return {"metadata": {"name": name, "namespace": NS, "uid": f"uid-svc-{name}"}, "spec": spec}


def workload(name: str = "web", selector: Any = None, **extra_meta: Any) -> dict[str, Any]:
    sel = {"matchLabels": {"app": "web"}} if selector is None else selector
    return {
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", **extra_meta},
        "spec": {"selector": sel},
    }


def rule(kind: ResourceType, name: str = "web", port: int | str = 8080) -> Rule:
    return Rule(kind, name, port, namespace=NS)


def target(name: str, port: int, restarts: int = 0) -> Target:
    return Target(NS, name, f"uid-{name}", port, restarts)


# ---- kinds_needed ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, kinds",
    [
        (ResourceType.POD, ("pods",)),
        (ResourceType.SERVICE, ("services", "pods", "replicasets")),
        (ResourceType.DEPLOYMENT, ("deployments", "pods", "replicasets")),
        (ResourceType.REPLICASET, ("replicasets", "pods")),
        (ResourceType.STATEFULSET, ("statefulsets", "pods")),
        (ResourceType.REPLICATIONCONTROLLER, ("replicationcontrollers", "pods")),
        (ResourceType.DAEMONSET, ("daemonsets", "pods")),
        (ResourceType.JOB, ("jobs", "pods")),
        (ResourceType.CRONJOB, ("cronjobs", "jobs", "pods")),
    ],
)
def test_kinds_needed(kind: ResourceType, kinds: tuple[str, ...]) -> None:
    assert kinds_needed(kind) == kinds


# ---- pod rules ------------------------------------------------------------------------------------


def test_pod_numeric_port_is_used_as_is() -> None:
    src = Source(("pods", pod("p", ports=())))
    assert resolve(rule(ResourceType.POD, "p", 9999), src) == target("p", 9999)


def test_pod_named_port_containers_then_init_containers() -> None:
    src = Source(
        (
            "pods",
            pod(
                "p",
                ports=(("http", 8080), (None, 7000)),
                init_ports=(("metrics", 9090), ("http", 1)),
            ),
        )
    )
    assert resolve(rule(ResourceType.POD, "p", "http"), src) == target("p", 8080)
    assert resolve(rule(ResourceType.POD, "p", "metrics"), src) == target("p", 9090)


def test_pod_digit_string_port_is_a_number() -> None:
    src = Source(("pods", pod("p")))
    assert resolve(rule(ResourceType.POD, "p", "8443"), src) == target("p", 8443)


def test_pod_missing_named_port_names_the_ports_it_has() -> None:
    src = Source(("pods", pod("x", ports=(("http", 8080), (None, 7000)))))
    result = resolve(rule(ResourceType.POD, "x", "grpc"), src)
    assert result == Unresolved(
        'pod "x" has no container port named "grpc"; its ports are 8080 (http), 7000.', True
    )


def test_pod_missing() -> None:
    assert resolve(rule(ResourceType.POD, "p"), Source()) == Unresolved(
        'pod "p" in namespace "default" does not exist yet.'
    )


def test_pod_need_not_be_ready_but_must_be_running() -> None:
    assert resolve(rule(ResourceType.POD, "p"), Source(("pods", pod("p", ready=False)))) == target(
        "p", 8080
    )
    pending = resolve(
        rule(ResourceType.POD, "p"), Source(("pods", pod("p", phase="Pending", ready=False)))
    )
    assert pending == Unresolved('pod "p" is not running yet (phase Pending).')


def test_pod_finished_is_permanent() -> None:
    result = resolve(
        rule(ResourceType.POD, "p"), Source(("pods", pod("p", phase="Succeeded", ready=False)))
    )
    assert isinstance(result, Unresolved) and result.permanent
    assert result.reason == 'pod "p" has finished (phase Succeeded) and will not run again.'


def test_pod_being_deleted_is_not_used() -> None:
    result = resolve(rule(ResourceType.POD, "p"), Source(("pods", pod("p", deleting=True))))
    assert result == Unresolved('pod "p" is being deleted.')


@pytest.mark.parametrize("port", [0, 70000, -1])
def test_invalid_port_numbers(port: int) -> None:
    result = resolve(rule(ResourceType.POD, "p", port), Source(("pods", pod("p"))))
    assert isinstance(result, Unresolved) and result.permanent
    assert "not a valid port number" in result.reason


# ---- ActivePods order (podutils.go), through order_pods ---------------------------------------


def names(pods: Sequence[Mapping]) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


def test_order_assigned_before_unassigned() -> None:
    pods = [pod("a", node=""), pod("b")]
    assert names(order_pods(pods)) == ["b", "a"]


def test_order_running_unknown_pending() -> None:
    pods = [
        pod("pending", phase="Pending"),
        pod("unknown", phase="Unknown"),
        pod("running", phase="Running"),
    ]
    assert names(order_pods(pods)) == ["running", "unknown", "pending"]


def test_order_ready_before_not_ready() -> None:
    assert names(order_pods([pod("a", ready=False), pod("b")])) == ["b", "a"]


def test_order_ready_longer_first_and_unknown_ready_time_last() -> None:
    pods = [
        pod("recent", ready_since=ts(30)),
        pod("long", ready_since=ts(1)),
        pod("unknown", ready_since=None),
    ]
    assert names(order_pods(pods)) == ["long", "recent", "unknown"]


def test_order_fewer_restarts_first_by_max_container_restarts() -> None:
    # kubectl compares the highest restartCount of any container, not the sum.
    pods = [
        pod("many", restarts=(5,)),
        pod("spread", restarts=(2, 2, 2)),
        pod("none", restarts=(0, 0)),
    ]
    assert names(order_pods(pods)) == ["none", "spread", "many"]


def test_order_older_first_and_unknown_creation_last() -> None:
    pods = [pod("new", created=ts(20)), pod("old", created=ts(5)), pod("unknown", created=None)]
    assert names(order_pods(pods)) == ["old", "new", "unknown"]


def test_order_tie_by_name() -> None:
    assert names(order_pods([pod("c"), pod("a"), pod("b")])) == ["a", "b", "c"]


def test_order_earlier_rule_wins_over_later() -> None:
    # ready for longer beats fewer restarts beats older creation
    pods = [
        pod("restarty-but-long-ready", ready_since=ts(1), restarts=(9,), created=ts(30)),
        pod("fresh", ready_since=ts(20), restarts=(0,), created=ts(0)),
    ]
    assert names(order_pods(pods)) == ["restarty-but-long-ready", "fresh"]


# ---- workloads ------------------------------------------------------------------------------------


def test_deployment_picks_best_ready_running_pod() -> None:
    src = Source(
        ("deployments", workload()),
        ("pods", pod("web-1", ready_since=ts(10))),
        ("pods", pod("web-2", ready_since=ts(2))),
        ("pods", pod("web-3", ready=False)),
        ("pods", pod("other", labels={"app": "api"}, ready_since=ts(0))),
    )
    assert resolve(rule(ResourceType.DEPLOYMENT), src) == target("web-2", 8080)


def test_workload_named_port() -> None:
    src = Source(("statefulsets", workload()), ("pods", pod("web-0", ports=(("grpc", 9000),))))
    assert resolve(rule(ResourceType.STATEFULSET, port="grpc"), src) == target("web-0", 9000)


def test_workload_named_port_missing_on_chosen_pod() -> None:
    src = Source(("daemonsets", workload()), ("pods", pod("web-x", ports=(("http", 8080),))))
    result = resolve(rule(ResourceType.DAEMONSET, port="grpc"), src)
    assert result == Unresolved(
        'pod "web-x" has no container port named "grpc"; its ports are 8080 (http).', True
    )


def test_no_ready_pod_gives_counts() -> None:
    src = Source(
        ("deployments", workload()),
        ("pods", pod("a", ready=False)),
        ("pods", pod("b", phase="Pending", ready=False)),
    )
    assert resolve(rule(ResourceType.DEPLOYMENT), src) == Unresolved(
        'deployment "web" has no ready pod yet (2 pods, 1 Running but not Ready, none Ready).'
    )


def test_no_pods_at_all() -> None:
    src = Source(("replicasets", workload()))
    assert resolve(rule(ResourceType.REPLICASET), src) == Unresolved(
        'replicaset "web" has no pods yet.'
    )


def test_deleting_pods_are_never_chosen() -> None:
    src = Source(("deployments", workload()), ("pods", pod("a", deleting=True)))
    assert resolve(rule(ResourceType.DEPLOYMENT), src) == Unresolved(
        'deployment "web" has no ready pod yet (1 pod, 1 being deleted, none Ready).'
    )
    src.objects["pods"].append(pod("b", ready_since=ts(50)))
    assert resolve(rule(ResourceType.DEPLOYMENT), src) == target("b", 8080)


def test_missing_workload() -> None:
    assert resolve(rule(ResourceType.JOB, "batch"), Source()) == Unresolved(
        'job "batch" in namespace "default" does not exist yet.'
    )


def test_match_expressions_selector() -> None:
    sel = {
        "matchExpressions": [
            {"key": "app", "operator": "In", "values": ["web", "www"]},
            {"key": "canary", "operator": "DoesNotExist"},
        ]
    }
    src = Source(
        ("deployments", workload(selector=sel)),
        ("pods", pod("canary", labels={"app": "web", "canary": "1"}, ready_since=ts(0))),
        ("pods", pod("www", labels={"app": "www"}, ready_since=ts(5))),
    )
    assert resolve(rule(ResourceType.DEPLOYMENT), src) == target("www", 8080)


def test_replicationcontroller_uses_a_plain_map() -> None:
    src = Source(
        ("replicationcontrollers", workload(selector={"app": "web"})), ("pods", pod("rc-1"))
    )
    assert resolve(rule(ResourceType.REPLICATIONCONTROLLER), src) == target("rc-1", 8080)


def test_invalid_selector_is_permanent() -> None:
    sel = {"matchExpressions": [{"key": "app", "operator": "Near", "values": ["x"]}]}
    result = resolve(rule(ResourceType.DEPLOYMENT), Source(("deployments", workload(selector=sel))))
    assert isinstance(result, Unresolved) and result.permanent
    assert result.reason.startswith('deployment "web" has an invalid selector: ')


@pytest.mark.parametrize("sel", [{}, {"matchLabels": {}}])
def test_empty_workload_selector_selects_nothing_we_can_use(sel: dict) -> None:
    src = Source(("deployments", workload(selector=sel)), ("pods", pod("anything")))
    result = resolve(rule(ResourceType.DEPLOYMENT), src)
    assert isinstance(result, Unresolved) and result.permanent


def test_other_namespace_pods_are_ignored() -> None:
    src = Source(("deployments", workload()), ("pods", pod("elsewhere", namespace="other")))
    assert resolve(rule(ResourceType.DEPLOYMENT), src) == Unresolved(
        'deployment "web" has no pods yet.'
    )


# ---- rollouts: newest version first (service and deployment) ----------------------------------


def rollout_pods() -> list[dict[str, Any]]:
    old = {"app": "web", "pod-template-hash": "old"}
    new = {"app": "web", "pod-template-hash": "new"}
    return [
        pod("web-old-1", labels=old, owner="rs-old", created=ts(0), ready_since=ts(1)),
        pod("web-old-2", labels=old, owner="rs-old", created=ts(0), ready_since=ts(1)),
        pod(
            "web-new-1",
            labels=new,
            owner="rs-new",
            created=ts(40),
            ready_since=ts(45),
            restarts=(1,),
        ),
        pod("web-new-2", labels=new, owner="rs-new", created=ts(41), ready_since=ts(42)),
        pod(
            "web-new-3", labels=new, owner="rs-new", created=ts(50), ready=False
        ),  # newest, not ready
    ]


def replicaset(name: str, revision: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}",
                         "annotations": {"deployment.kubernetes.io/revision": str(revision)}}}


def test_rollout_within_one_second_is_told_apart_by_the_replicaset_revision() -> None:
    # Creation times have one-second resolution: both versions were made in the same second,
    # and the old one's name sorts last, so only the ReplicaSet revision says which is new.
    pods = [
        pod("web-zz-old", labels={"app": "web", "pod-template-hash": "zz"}, owner="rs-zz", created=ts(0)),
        pod("web-aa-new", labels={"app": "web", "pod-template-hash": "aa"}, owner="rs-aa", created=ts(0)),
    ]
    without = Source(("deployments", workload()), *(("pods", p) for p in pods))
    assert resolve(rule(ResourceType.DEPLOYMENT), without).pod == "web-zz-old"  # type: ignore[union-attr]
    src = Source(("deployments", workload()), ("replicasets", replicaset("rs-zz", 1)),
                 ("replicasets", replicaset("rs-aa", 2)), *(("pods", p) for p in pods))
    assert resolve(rule(ResourceType.DEPLOYMENT), src) == target("web-aa-new", 8080)
    assert resolve(rule(ResourceType.SERVICE, port=80), Source(("services", service()), *((kind, obj) for kind, objs in src.objects.items() for obj in objs))) == target(
        "web-aa-new", 8080
    )


def test_deployment_rollout_prefers_newest_version() -> None:
    src = Source(("deployments", workload()), *(("pods", p) for p in rollout_pods()))
    # within the new version, ActivePods order: web-new-2 has fewer restarts and was ready sooner
    assert resolve(rule(ResourceType.DEPLOYMENT), src) == target("web-new-2", 8080)


def test_service_rollout_prefers_newest_version() -> None:
    src = Source(("services", service()), *(("pods", p) for p in rollout_pods()))
    assert resolve(rule(ResourceType.SERVICE, port=80), src) == target("web-new-2", 8080)


def test_replicaset_rule_keeps_kubectl_order_across_versions() -> None:
    src = Source(("replicasets", workload()), *(("pods", p) for p in rollout_pods()))
    assert resolve(rule(ResourceType.REPLICASET), src) == target("web-old-1", 8080)


def test_newest_version_groups_by_owner_even_without_hash_labels() -> None:
    pods = [
        pod("a", owner="one", created=ts(1)),
        pod("b", owner="two", created=ts(2)),
        pod("c", owner="one", created=ts(0)),
    ]
    assert names(newest_version(pods)) == ["b"]
    assert names(newest_version([pod("x"), pod("y")])) == ["x", "y"]  # one version: unchanged


def test_newest_version_by_revision_label_alone() -> None:
    pods = [
        pod("s-0", labels={"app": "web", "controller-revision-hash": "r1"}, created=ts(9)),
        pod("s-1", labels={"app": "web", "controller-revision-hash": "r2"}, created=ts(3)),
    ]
    assert names(newest_version(pods)) == ["s-0"]


# ---- sticky preference ----------------------------------------------------------------------------


def test_prefer_keeps_current_pod_when_still_valid() -> None:
    src = Source(
        ("deployments", workload()),
        ("pods", pod("a", ready_since=ts(1))),
        ("pods", pod("b", ready_since=ts(5))),
    )
    assert resolve(rule(ResourceType.DEPLOYMENT), src) == target("a", 8080)
    assert resolve(rule(ResourceType.DEPLOYMENT), src, prefer="b") == target("b", 8080)


def test_prefer_is_dropped_when_pod_is_no_longer_a_candidate() -> None:
    src = Source(("deployments", workload()), ("pods", pod("a")), ("pods", pod("b", ready=False)))
    assert resolve(rule(ResourceType.DEPLOYMENT), src, prefer="b") == target("a", 8080)
    assert resolve(rule(ResourceType.DEPLOYMENT), src, prefer="gone") == target("a", 8080)


def test_prefer_does_not_hold_an_old_version_during_a_rollout() -> None:
    src = Source(("services", service()), *(("pods", p) for p in rollout_pods()))
    assert resolve(rule(ResourceType.SERVICE, port=80), src, prefer="web-old-1") == target(
        "web-new-2", 8080
    )
    assert resolve(rule(ResourceType.SERVICE, port=80), src, prefer="web-new-1") == target(
        "web-new-1", 8080, restarts=1
    )


def test_prefer_applies_to_explicit_pods_trivially() -> None:
    src = Source(("pods", pod("p")))
    assert resolve(rule(ResourceType.POD, "p"), src, prefer="other") == target("p", 8080)


# ---- services (service_port.go) ------------------------------------------------------------------


def test_service_numeric_rule_port_matches_service_port_then_int_target_port() -> None:
    src = Source(("services", service()), ("pods", pod("web-1")))
    assert resolve(rule(ResourceType.SERVICE, port=80), src) == target("web-1", 8080)


def test_service_named_rule_port_matches_service_port_name() -> None:
    svc = service(
        ports=(
            {"name": "http", "port": 80, "targetPort": 8080},
            {"name": "admin", "port": 81, "targetPort": 9000},
        )
    )
    src = Source(("services", svc), ("pods", pod("web-1")))
    assert resolve(rule(ResourceType.SERVICE, port="admin"), src) == target("web-1", 9000)


@pytest.mark.parametrize("target_port", [None, 0])
def test_service_missing_or_zero_target_port_means_service_port(target_port: int | None) -> None:
    port: dict[str, Any] = {"name": "http", "port": 80}
    if target_port is not None:
        port["targetPort"] = target_port
    src = Source(("services", service(ports=(port,))), ("pods", pod("web-1")))
    assert resolve(rule(ResourceType.SERVICE, port=80), src) == target("web-1", 80)


def test_service_named_target_port_is_looked_up_on_the_pod() -> None:
    svc = service(ports=({"name": "http", "port": 80, "targetPort": "web"},))
    src = Source(("services", svc), ("pods", pod("web-1", ports=(("web", 3000),))))
    assert resolve(rule(ResourceType.SERVICE, port=80), src) == target("web-1", 3000)


def test_service_named_target_port_in_init_container() -> None:
    svc = service(ports=({"name": "http", "port": 80, "targetPort": "proxy"},))
    src = Source(("services", svc), ("pods", pod("web-1", init_ports=(("proxy", 15001),))))
    assert resolve(rule(ResourceType.SERVICE, port=80), src) == target("web-1", 15001)


def test_service_named_target_port_only_pods_that_have_it() -> None:
    svc = service(ports=({"name": "http", "port": 80, "targetPort": "web"},))
    src = Source(
        ("services", svc),
        ("pods", pod("best-but-no-port", ports=(("other", 1),), ready_since=ts(0))),
        ("pods", pod("has-port", ports=(("web", 3000),), ready_since=ts(30))),
    )
    assert resolve(rule(ResourceType.SERVICE, port=80), src) == target("has-port", 3000)


def test_service_named_target_port_nowhere() -> None:
    svc = service(ports=({"name": "http", "port": 80, "targetPort": "web"},))
    src = Source(("services", svc), ("pods", pod("web-1", ports=(("other", 1),))))
    result = resolve(rule(ResourceType.SERVICE, port=80), src)
    assert result == Unresolved(
        'service "web" sends port 80 to the container port named "web", but no ready pod has a port of that name '
        '(pod "web-1" has 1 (other)).',
        True,
    )


def test_service_without_the_port_lists_its_ports() -> None:
    svc = service(
        ports=({"name": "http", "port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 8443})
    )
    src = Source(("services", svc), ("pods", pod("web-1")))
    assert resolve(rule(ResourceType.SERVICE, port=81), src) == Unresolved(
        'service "web" has no port 81; its ports are 80 (http), 443.', True
    )
    assert resolve(rule(ResourceType.SERVICE, port="grpc"), src) == Unresolved(
        'service "web" has no port named "grpc"; its ports are 80 (http), 443.', True
    )


def test_service_prefers_tcp_when_a_number_is_declared_twice() -> None:
    svc = service(
        ports=(
            {"name": "dns-udp", "port": 53, "protocol": "UDP", "targetPort": 5353},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 5354},
        )
    )
    src = Source(("services", svc), ("pods", pod("web-1")))
    assert resolve(rule(ResourceType.SERVICE, port=53), src) == target("web-1", 5354)


def test_service_udp_only_port_is_permanent() -> None:
    svc = service(ports=({"name": "dns", "port": 53, "protocol": "UDP"},))
    result = resolve(
        rule(ResourceType.SERVICE, port=53), Source(("services", svc), ("pods", pod("web-1")))
    )
    assert result == Unresolved(
        'service "web" port 53 is UDP; port forwarding carries TCP only.', True
    )


def test_headless_service_ignores_target_port_like_kubectl() -> None:
    svc = service(ports=({"name": "http", "port": 80, "targetPort": 8080},), cluster_ip="None")
    src = Source(("services", svc), ("pods", pod("web-1")))
    assert resolve(rule(ResourceType.SERVICE, port=80), src) == target("web-1", 80)


def test_service_missing() -> None:
    assert resolve(rule(ResourceType.SERVICE, port=80), Source()) == Unresolved(
        'service "web" in namespace "default" does not exist yet.'
    )


def test_service_without_selector() -> None:
    result = resolve(
        rule(ResourceType.SERVICE, port=80), Source(("services", service(selector={})))
    )
    assert isinstance(result, Unresolved) and result.permanent
    assert result.reason.startswith('service "web" has no selector')


def test_service_no_ready_pods() -> None:
    src = Source(
        ("services", service()), ("pods", pod("a", ready=False)), ("pods", pod("b", ready=None))
    )
    assert resolve(rule(ResourceType.SERVICE, port=80), src) == Unresolved(
        'service "web" has no ready pod yet (2 pods, 2 Running but not Ready, none Ready).'
    )


# ---- cronjobs -------------------------------------------------------------------------------------


def job(
    name: str, *, created: str, owner_uid: str | None = "uid-nightly", owner_name: str = "nightly"
) -> dict[str, Any]:
    ref: dict[str, Any] = {"kind": "CronJob", "name": owner_name, "controller": True}
    if owner_uid:
        ref["uid"] = owner_uid
    return {
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "creationTimestamp": created,
            "ownerReferences": [ref],
        },
        "spec": {"selector": {"matchLabels": {"job-name": name}}},
    }


def cronjob() -> dict[str, Any]:
    return {"metadata": {"name": "nightly", "namespace": NS, "uid": "uid-nightly"}, "spec": {}}


def test_cronjob_uses_newest_job_pods() -> None:
    src = Source(
        ("cronjobs", cronjob()),
        ("jobs", job("nightly-1", created=ts(0))),
        ("jobs", job("nightly-2", created=ts(30))),
        ("jobs", job("other-9", created=ts(59), owner_uid="uid-other", owner_name="other")),
        ("pods", pod("nightly-1-a", labels={"job-name": "nightly-1"})),
        ("pods", pod("nightly-2-a", labels={"job-name": "nightly-2"}, ready_since=ts(31))),
    )
    assert resolve(rule(ResourceType.CRONJOB, "nightly"), src) == target("nightly-2-a", 8080)


def test_cronjob_falls_back_to_owner_name_and_kind_without_uid() -> None:
    src = Source(
        ("cronjobs", cronjob()),
        ("jobs", job("nightly-1", created=ts(0), owner_uid=None)),
        ("pods", pod("nightly-1-a", labels={"job-name": "nightly-1"})),
    )
    assert resolve(rule(ResourceType.CRONJOB, "nightly"), src) == target("nightly-1-a", 8080)


def test_cronjob_uid_mismatch_is_not_ours() -> None:
    # same name, but a previous incarnation of the CronJob (different uid)
    src = Source(
        ("cronjobs", cronjob()), ("jobs", job("nightly-1", created=ts(0), owner_uid="uid-older"))
    )
    assert resolve(rule(ResourceType.CRONJOB, "nightly"), src) == Unresolved(
        'cronjob "nightly" has not run a job yet.'
    )


def test_cronjob_without_jobs_and_missing() -> None:
    assert resolve(
        rule(ResourceType.CRONJOB, "nightly"), Source(("cronjobs", cronjob()))
    ) == Unresolved('cronjob "nightly" has not run a job yet.')
    assert resolve(rule(ResourceType.CRONJOB, "nightly"), Source()) == Unresolved(
        'cronjob "nightly" in namespace "default" does not exist yet.'
    )


def test_cronjob_newest_job_finished() -> None:
    src = Source(
        ("cronjobs", cronjob()),
        ("jobs", job("nightly-2", created=ts(30))),
        (
            "pods",
            pod("nightly-2-a", labels={"job-name": "nightly-2"}, phase="Succeeded", ready=False),
        ),
    )
    assert resolve(rule(ResourceType.CRONJOB, "nightly"), src) == Unresolved(
        'cronjob "nightly" (its newest job "nightly-2") has no ready pod yet (1 pod, none Ready).'
    )


# ---- helpers ----------------------------------------------------------------------------------


def test_container_port_by_name() -> None:
    p = pod("p", ports=(("a", 1), ("b", 2)), init_ports=(("b", 3), ("c", 4)))
    assert [container_port_by_name(p, n) for n in ("a", "b", "c", "d")] == [1, 2, 4, None]


def test_timestamps_with_fractions_and_offsets() -> None:
    pods = [
        pod("frac", created="2026-11-26T10:00:00.500000Z"),
        pod("plain", created="2026-11-26T10:00:00Z"),
        pod("offset", created="2026-11-26T11:00:00+02:00"),
    ]  # 09:00 UTC: the oldest
    assert names(order_pods(pods)) == ["offset", "plain", "frac"]


# ---- one forward per service port ---------------------------------------------------------------


def svc_rule(port: int | str, local: int | None = None, name: str = "web", **fields: Any) -> Rule:
    return Rule(ResourceType.SERVICE, name, port, namespace=NS, local_port=local, **fields)


def test_service_port_numbers_names_every_named_port() -> None:
    svc = service(ports=({"name": "http", "port": 80}, {"port": 9090}, {"name": "grpc", "port": 50051}))
    assert service_port_numbers(NS, svc) == {(NS, "web", "http"): 80, (NS, "web", "grpc"): 50051}


def test_a_named_and_a_numbered_port_that_the_service_says_are_one_run_once() -> None:
    numbered, named = svc_rule(80, 8080), svc_rule("http", 8080, name="web")
    numbers = service_port_numbers(NS, service())
    kept, held, repeats = one_per_forward([numbered, named], numbers, unsynced=())
    assert (kept, held, repeats) == ([numbered], [], [(named, numbered)])
    # the first written wins, whichever way it spells the port
    kept, _, repeats = one_per_forward([named, numbered], numbers, unsynced=())
    assert (kept, repeats) == ([named], [(numbered, named)])
    assert target_key(named, numbers) == target_key(numbered, numbers) == numbered.key


def test_they_are_two_forwards_when_anything_else_differs_or_the_name_is_another_port() -> None:
    numbers = service_port_numbers(NS, service(ports=({"name": "http", "port": 80}, {"name": "admin", "port": 81})))
    pairs = [
        [svc_rule(80, 8080), svc_rule("http", 9090)],  # two local ports: two tunnels
        [svc_rule(80), svc_rule("http", address="::1")],
        [svc_rule(80), Rule(ResourceType.SERVICE, "web", "http", namespace="other")],
        [svc_rule(81, 8080), svc_rule("http", 8080)],  # http is 80, not 81
        [Rule(ResourceType.DEPLOYMENT, "web", 80), Rule(ResourceType.DEPLOYMENT, "web", "http")],
    ]
    for rules in pairs:
        assert one_per_forward(rules, numbers, unsynced=()) == (rules, [], [])


def test_the_later_one_waits_while_the_services_are_not_listed_yet() -> None:
    numbered, named, other = svc_rule(80, 8080), svc_rule("http", 8080), svc_rule(80, 8080, name="api")
    assert namespaces_to_decide([numbered, named, other]) == {NS}
    assert namespaces_to_decide([numbered, other, svc_rule("http", 9090)]) == set()
    assert one_per_forward([numbered, named, other], {}, unsynced={NS}) == ([numbered, other], [named], [])
    # listed, and the service has no such name (or no longer exists): a forward of its own
    assert one_per_forward([numbered, named], {}, unsynced=()) == ([numbered, named], [], [])

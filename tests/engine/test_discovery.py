"""Automatic rules from raw Kubernetes objects: each source, namespaces, port filters, dedupe."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest

from trayapp.config.auto import AutoSettings, SelectorRule
from trayapp.engine.discovery import Discovered, discover
from trayapp.model import AutoSource, Origin, ResourceType, Rule
from trayapp.selectors import parse_selector

SVC = ResourceType.SERVICE
POD = ResourceType.POD
SKAFFOLD = {"app.kubernetes.io/managed-by": "skaffold", "skaffold.dev/run-id": "0b6f"}
OFF = AutoSettings(skaffold=False, annotation=False)
ANNOTATION_ONLY = AutoSettings(skaffold=False, annotation=True)
SKAFFOLD_SRC, DEBUG_SRC, ANNOTATED, SELECTED = (
    AutoSource.SKAFFOLD, AutoSource.DEBUG, AutoSource.ANNOTATION, AutoSource.SELECTOR)


# ---- builders: the shape the API server returns, only the fields discovery reads ------------


def port(number: int, name: str | None = None, protocol: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"port": number, "targetPort": number}
    if name:
        entry["name"] = name
    if protocol:
        entry["protocol"] = protocol
    return entry


def service(
    name: str,
    ports: Iterable[dict[str, Any]] = (),
    *,
    namespace: str = "default",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    selector: dict[str, str] | None = None,
    type_: str = "ClusterIP",
) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type_, "ports": list(ports)}
    if type_ != "ExternalName":
        spec["selector"] = {"app": name} if selector is None else selector
    else:
        spec["externalName"] = "db.example.com"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "labels": labels or {},
            "annotations": annotations or {},
        },
        "spec": spec,
    }


def container(name: str, *ports: int | tuple[int, str] | tuple[int, str, str]) -> dict[str, Any]:
    entries = []
    for item in ports:
        number, port_name, protocol = (
            (item, None, None) if isinstance(item, int) else (*item, None)[:3]
        )
        entry: dict[str, Any] = {"containerPort": number}
        if port_name:
            entry["name"] = port_name
        if protocol:
            entry["protocol"] = protocol
        entries.append(entry)
    return {"name": name, "image": f"example/{name}:1", "ports": entries}


def pod(
    name: str,
    containers: Iterable[dict[str, Any]] = (),
    *,
    namespace: str = "default",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    phase: str = "Running",
    deleting: bool = False,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{name}",
        "labels": labels or {},
        "annotations": annotations or {},
    }
    if deleting:
        metadata["deletionTimestamp"] = "2026-11-26T10:00:00Z"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": list(containers)},
        "status": {"phase": phase},
    }


def auto_rule(
    kind: ResourceType, name: str, number: int, namespace: str = "default", *, source: AutoSource,
    port_name: str | None = None, **extra: Any,
) -> Rule:
    # `deploy/dbg dlv`: the workload and the port's name, else its number; the namespace after it
    # when it is not the context's ("default" in these tests).
    label = f"{kind.short}/{name} {port_name or number}"
    if namespace != "default":
        label += f" ({namespace})"
    values: dict[str, Any] = {"local_port": number, "name": label, "auto": True, "source": source}
    values.update(extra)
    return Rule(kind, name, number, namespace, **values)


def selecting(
    kind: ResourceType,
    text: str,
    namespace: str | None = None,
    ports: tuple[int | str, ...] = (),
) -> SelectorRule:
    return SelectorRule(
        kind, namespace, parse_selector(text), text, ports, Origin("config.yaml", 9, 0)
    )


def run(
    settings: AutoSettings,
    services: Iterable[dict[str, Any]] = (),
    pods: Iterable[dict[str, Any]] = (),
    context_namespace: str = "default",
) -> Discovered:
    return discover(settings, context_namespace, services, pods)


# ---- Skaffold ------------------------------------------------------------------------------


def test_skaffold_services_every_port() -> None:
    found = run(
        AutoSettings(annotation=False),
        services=[
            service("web", [port(80, "http"), port(443, "https")], labels=SKAFFOLD),
            service("mine", [port(8080)]),  # not deployed by Skaffold
        ],
    )
    assert found == Discovered(
        (auto_rule(SVC, "web", 80, source=SKAFFOLD_SRC, scheme="http", port_name="http"),
         auto_rule(SVC, "web", 443, source=SKAFFOLD_SRC, scheme="https", port_name="https")),
        (),
    )
    assert all(rule.auto and rule.origin is None for rule in found.rules)
    assert found.rules[0].label == "svc/web http"


def test_skaffold_skips_external_name_selectorless_and_udp() -> None:
    found = run(
        AutoSettings(annotation=False),
        services=[
            service("ext", [port(5432)], labels=SKAFFOLD, type_="ExternalName"),
            service("manual", [port(80)], labels=SKAFFOLD, selector={}),
            service("dns", [port(53, "dns", "UDP"), port(5353, "tcp-dns", "TCP")], labels=SKAFFOLD),
        ],
    )
    assert found.rules == (auto_rule(SVC, "dns", 5353, source=SKAFFOLD_SRC, port_name="tcp-dns"),)
    assert found.notes == ()


def test_old_skaffold_label_value_counts() -> None:
    labels = {"app.kubernetes.io/managed-by": "skaffold-v0.41.0"}
    found = run(
        AutoSettings(annotation=False), services=[service("web", [port(80)], labels=labels)]
    )
    assert found.rules == (auto_rule(SVC, "web", 80, source=SKAFFOLD_SRC),)


def debug_config(**containers: dict[str, Any]) -> dict[str, str]:
    return {"debug.cloud.google.com/config": json.dumps(containers)}


def test_skaffold_debug_pods_every_debug_port() -> None:
    annotations = debug_config(
        app={"runtime": "jvm", "ports": {"jdwp": 5005}},
        worker={"runtime": "nodejs", "ports": {"devtools": 9229}},
        sidecar={"runtime": "go"},  # debugged without a port of its own
    )
    found = run(
        AutoSettings(annotation=False),
        pods=[
            pod("web-7d4f-abcde", [container("app", 8080)], annotations=annotations),
            pod("plain", [container("app", 8080)], labels=SKAFFOLD),  # not in debug mode
        ],
    )
    assert found == Discovered(
        (auto_rule(POD, "web-7d4f-abcde", 5005, source=DEBUG_SRC, port_name="jdwp"),
         auto_rule(POD, "web-7d4f-abcde", 9229, source=DEBUG_SRC, port_name="devtools")),
        (),
    )


def test_pods_not_running_or_being_deleted_still_become_rules() -> None:
    annotations = debug_config(app={"runtime": "go", "ports": {"dlv": 56268}})
    found = run(
        AutoSettings(annotation=False),
        pods=[
            pod("a", annotations=annotations, phase="Pending"),
            pod("b", annotations=annotations, deleting=True),
        ],
    )
    assert [rule.resource_name for rule in found.rules] == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "note"),
    [
        (
            "{not json",
            (
                'Pod "default/dbg" has a debug.cloud.google.com/config annotation that is not valid '
                "JSON; kubetray ignores it."
            ),
        ),
        (
            "[5005]",
            (
                'Pod "default/dbg" has a debug.cloud.google.com/config annotation that is not a JSON '
                "object of containers; kubetray ignores it."
            ),
        ),
        (
            '{"app": {"ports": [5005]}}',
            (
                'Pod "default/dbg": the debug.cloud.google.com/config entry for container "app" has '
                "ports that are not a JSON object of names to numbers; kubetray skips them."
            ),
        ),
        (
            '{"app": {"ports": {"jdwp": "5005"}}}',
            (
                'Pod "default/dbg": debug port "jdwp" of container "app" is "5005", not a port '
                "number; kubetray skips it."
            ),
        ),
        (
            '{"app": {"ports": {"jdwp": 70000}}}',
            (
                'Pod "default/dbg": debug port "jdwp" of container "app" is 70000, not a port '
                "number; kubetray skips it."
            ),
        ),
    ],
)
def test_malformed_debug_annotation_is_a_note(text: str, note: str) -> None:
    found = run(
        AutoSettings(annotation=False),
        pods=[pod("dbg", annotations={"debug.cloud.google.com/config": text})],
    )
    assert found == Discovered((), (note,))


def test_skaffold_off() -> None:
    annotations = debug_config(app={"ports": {"jdwp": 5005}})
    found = run(
        OFF,
        services=[service("web", [port(80)], labels=SKAFFOLD)],
        pods=[pod("dbg", annotations=annotations)],
    )
    assert found == Discovered((), ())


# ---- the kubetray.dev/forward annotation --------------------------------------------------


def forward(value: str) -> dict[str, str]:
    return {"kubetray.dev/forward": value}


def test_annotation_true_forwards_every_port() -> None:
    found = run(
        ANNOTATION_ONLY,
        services=[
            service("web", [port(80, "http"), port(53, "dns", "UDP")], annotations=forward("true"))
        ],
        pods=[
            pod(
                "api-0",
                [container("api", (8080, "http")), container("metrics", (9090, "metrics"))],
                annotations=forward("True"),
            )
        ],
    )
    assert found == Discovered(
        (
            auto_rule(POD, "api-0", 8080, source=ANNOTATED, scheme="http", port_name="http"),
            auto_rule(POD, "api-0", 9090, source=ANNOTATED, port_name="metrics"),
            auto_rule(SVC, "web", 80, source=ANNOTATED, scheme="http", port_name="http"),
        ),
        (),
    )


def test_annotation_list_numbers_names_and_local_ports() -> None:
    found = run(
        ANNOTATION_ONLY,
        services=[
            service(
                "web",
                [port(80, "http"), port(443, "https"), port(9090, "metrics")],
                annotations=forward("80, https:8443 ,9090:19090,"),
            )
        ],
        pods=[
            pod(
                "api-0",
                [container("api", (8080, "http"))],
                # A pod is reachable on an undeclared port too, by number.
                annotations=forward("http:18080,6060"),
            )
        ],
    )
    assert found.rules == (
        auto_rule(POD, "api-0", 6060, source=ANNOTATED),
        auto_rule(POD, "api-0", 8080, local_port=18080, source=ANNOTATED, scheme="http", port_name="http"),
        auto_rule(SVC, "web", 80, source=ANNOTATED, scheme="http", port_name="http"),
        auto_rule(SVC, "web", 443, local_port=8443, source=ANNOTATED, scheme="https", port_name="https"),
        auto_rule(SVC, "web", 9090, local_port=19090, source=ANNOTATED, port_name="metrics"),
    )
    assert found.notes == ()


def test_annotation_false_and_absent_forward_nothing() -> None:
    found = run(
        ANNOTATION_ONLY,
        services=[service("a", [port(80)], annotations=forward("false")), service("b", [port(80)])],
        pods=[pod("c", [container("c", 80)], annotations=forward("FALSE"))],
    )
    assert found == Discovered((), ())


@pytest.mark.parametrize("value", ["all ports", "", "80;443", "80:0", "0", "70000", "Http", "80:http"])
def test_bad_annotation_value_is_a_note(value: str) -> None:
    found = run(
        ANNOTATION_ONLY,
        services=[service("web", [port(80, "http")], annotations=forward(value))],
    )
    assert found == Discovered(
        (),
        (
            (
                f'Service "default/web" has kubetray.dev/forward: "{value}", which is not "true", '
                '"false" or a list of ports like "8080,http,9090:19090"; kubetray ignores it.'
            ),
        ),
    )


def test_annotation_port_the_object_lacks_is_a_note() -> None:
    found = run(
        ANNOTATION_ONLY,
        services=[service("web", [port(80, "http")], annotations=forward("80,81,grpc"))],
        pods=[pod("p", [container("p", 80)], annotations=forward("debug,81"))],
    )
    assert found.rules == (auto_rule(POD, "p", 81, source=ANNOTATED),
                           auto_rule(SVC, "web", 80, source=ANNOTATED, scheme="http", port_name="http"))
    assert found.notes == (
        (
            'Service "default/web" asks for port "81" (kubetray.dev/forward), which it does not '
            "declare as a TCP port; kubetray skips that port."
        ),
        (
            'Service "default/web" asks for port "grpc" (kubetray.dev/forward), which it does not '
            "declare as a TCP port; kubetray skips that port."
        ),
        (
            'Pod "default/p" asks for port "debug" (kubetray.dev/forward), which it does not '
            "declare as a TCP port; kubetray skips that port."
        ),
    )


def test_annotated_service_without_pods_is_a_note() -> None:
    found = run(
        ANNOTATION_ONLY,
        services=[
            service("ext", [port(5432)], type_="ExternalName", annotations=forward("true")),
            service("manual", [port(80)], selector={}, annotations=forward("80")),
        ],
    )
    assert found.rules == ()
    assert found.notes == tuple(
        f'Service "default/{name}" asks to be forwarded (kubetray.dev/forward) but has no pods '
        "to forward to (it has no selector or is an ExternalName service); kubetray skips it."
        for name in ("ext", "manual")
    )


def test_annotated_pod_without_ports_is_a_note() -> None:
    found = run(
        ANNOTATION_ONLY, pods=[pod("p", [container("p")], annotations=forward("true"))]
    )
    assert found.rules == ()
    assert found.notes == (
        (
            'Pod "default/p" asks to have every port forwarded (kubetray.dev/forward) but declares '
            'no TCP ports; list them in the annotation, like "8080".'
        ),
    )


def test_annotation_off() -> None:
    found = run(OFF, services=[service("web", [port(80)], annotations=forward("true"))])
    assert found == Discovered((), ())


# ---- selectors ----------------------------------------------------------------------------


def test_selector_rules_pick_by_labels() -> None:
    settings = AutoSettings(
        skaffold=False,
        annotation=False,
        selectors=(selecting(SVC, "app=web,tier!=db"), selecting(POD, "role in (worker)")),
    )
    found = run(
        settings,
        services=[
            service("web", [port(80)], labels={"app": "web", "tier": "front"}),
            service("web-db", [port(5432)], labels={"app": "web", "tier": "db"}),
            service("other", [port(81)], labels={"app": "other"}),
        ],
        pods=[
            pod("w-1", [container("w", 7000)], labels={"role": "worker"}),
            pod("x-1", [container("x", 7001)], labels={"role": "web"}),
        ],
    )
    assert found.rules == (auto_rule(POD, "w-1", 7000, source=SELECTED), auto_rule(SVC, "web", 80, source=SELECTED))
    # A selector's rules point back at the entry that made them.
    assert found.rules[0].origin == Origin("config.yaml", 9, 0)


def test_selector_ports_filter_numbers_and_names() -> None:
    settings = AutoSettings(
        skaffold=False,
        annotation=False,
        selectors=(
            selecting(SVC, "app=web", ports=(443, "metrics")),
            selecting(POD, "app=web", ports=("debug", 8080, 1234)),
        ),
    )
    found = run(
        settings,
        services=[
            service(
                "web",
                [port(80, "http"), port(443, "https"), port(9090, "metrics")],
                labels={"app": "web"},
            )
        ],
        pods=[
            pod(
                "web-1",
                [container("web", (8080, "http"), (9229, "debug"), (9000, "other"))],
                labels={"app": "web"},
            )
        ],
    )
    assert found.rules == (
        auto_rule(POD, "web-1", 8080, source=SELECTED, scheme="http", port_name="http"),
        auto_rule(POD, "web-1", 9229, source=SELECTED, port_name="debug"),
        auto_rule(SVC, "web", 443, source=SELECTED, scheme="https", port_name="https"),
        auto_rule(SVC, "web", 9090, source=SELECTED, port_name="metrics"),
    )
    # A filter port an object lacks is not worth a note: a selector spans many objects.
    assert found.notes == ()


def test_selector_skips_services_without_pods() -> None:
    settings = AutoSettings(skaffold=False, annotation=False, selectors=(selecting(SVC, "app"),))
    found = run(
        settings,
        services=[
            service("ext", [port(1)], labels={"app": "x"}, type_="ExternalName"),
            service("manual", [port(2)], labels={"app": "x"}, selector={}),
        ],
    )
    assert found == Discovered((), ())


# ---- namespaces ---------------------------------------------------------------------------


def spread() -> list[dict[str, Any]]:
    return [
        service(name, [port(80)], namespace=namespace, labels={**SKAFFOLD, "app": "web"})
        for namespace, name in (("dev", "a"), ("prod", "b"), ("default", "c"))
    ]


def names(found: Discovered) -> list[str]:
    return [f"{rule.namespace}/{rule.resource_name}" for rule in found.rules]


def test_scope_defaults_to_the_context_namespace() -> None:
    found = run(AutoSettings(), services=spread(), context_namespace="dev")
    assert names(found) == ["dev/a"]
    assert found.rules[0].label == "svc/a 80"


def test_scope_named_namespace() -> None:
    found = run(AutoSettings(namespace="prod"), services=spread(), context_namespace="dev")
    assert names(found) == ["prod/b"]
    # Outside the context's namespace the label says where it is.
    assert found.rules[0].label == "svc/b 80 (prod)"


def test_scope_every_namespace() -> None:
    found = run(AutoSettings(namespace="*"), services=spread(), context_namespace="dev")
    assert names(found) == ["default/c", "dev/a", "prod/b"]


def test_selector_namespace_overrides_the_scope() -> None:
    settings = AutoSettings(
        skaffold=False,
        annotation=False,
        namespace="dev",
        selectors=(
            selecting(SVC, "app=web", namespace="prod"),
            selecting(SVC, "app=web"),  # the auto namespace: dev
        ),
    )
    assert names(run(settings, services=spread())) == ["dev/a", "prod/b"]
    everywhere = AutoSettings(
        skaffold=False, annotation=False, selectors=(selecting(SVC, "app=web", namespace="*"),)
    )
    assert names(run(everywhere, services=spread(), context_namespace="dev")) == [
        "default/c",
        "dev/a",
        "prod/b",
    ]


def test_missing_namespace_means_default() -> None:
    svc = service("web", [port(80)], labels=SKAFFOLD)
    del svc["metadata"]["namespace"]
    assert names(run(AutoSettings(), services=[svc])) == ["default/web"]


# ---- dedupe and order ---------------------------------------------------------------------


def test_same_target_from_several_sources_is_one_rule_first_source_wins() -> None:
    web = service(
        "web",
        [port(80, "http")],
        labels={**SKAFFOLD, "app": "web"},
        annotations=forward("80:8081"),
    )
    api = service("api", [port(80, "http")], labels={"app": "web"}, annotations=forward("80:9000"))
    settings = AutoSettings(annotation=True, selectors=(selecting(SVC, "app=web"),))
    found = run(settings, services=[web, api])
    # web: Skaffold wins over its annotation (local port 80, not 8081).
    # api: the annotation wins over the selector (local port 9000, no origin).
    assert found.rules == (
        auto_rule(SVC, "api", 80, local_port=9000, source=ANNOTATED, scheme="http", port_name="http"),
        auto_rule(SVC, "web", 80, source=SKAFFOLD_SRC, scheme="http", port_name="http"),
    )
    assert found.rules[0].local_port == 9000 and found.rules[0].origin is None
    assert found.rules[1].local_port == 80


def test_output_order_is_namespace_kind_name_port_whatever_the_input_order() -> None:
    objects = [
        service("b", [port(443), port(80)], namespace="x", labels=SKAFFOLD),
        service("a", [port(8080)], namespace="x", labels=SKAFFOLD),
        service("z", [port(1)], namespace="a", labels=SKAFFOLD),
    ]
    pods = [pod("p", [container("p", 3)], namespace="x", annotations=forward("true"))]
    settings = AutoSettings(annotation=True, namespace="*")
    first = run(settings, services=objects, pods=pods)
    second = run(settings, services=reversed(objects), pods=pods)
    assert first == second
    assert [(r.namespace, r.resource_type.value, r.resource_name, r.port) for r in first.rules] == [
        ("a", "service", "z", 1),
        ("x", "pod", "p", 3),
        ("x", "service", "a", 8080),
        ("x", "service", "b", 80),
        ("x", "service", "b", 443),
    ]


def test_nothing_enabled_finds_nothing() -> None:
    assert run(OFF, services=spread()) == Discovered((), ())


# ---- what the user is told ----------------------------------------------------------------


def test_each_rule_names_its_source() -> None:
    debug = debug_config(app={"ports": {"jdwp": 5005}})
    settings = AutoSettings(annotation=True, selectors=(selecting(POD, "role=worker"),))
    found = run(
        settings,
        services=[service("web", [port(8080)], labels=SKAFFOLD),
                  service("opted", [port(8081)], annotations=forward("true"))],
        pods=[pod("dbg", annotations=debug), pod("w", [container("w", 7000)], labels={"role": "worker"})],
    )
    assert {(rule.resource_name, rule.source) for rule in found.rules} == {
        ("web", SKAFFOLD_SRC), ("opted", ANNOTATED), ("dbg", DEBUG_SRC), ("w", SELECTED)}


@pytest.mark.parametrize(("name", "app_protocol", "scheme"), [
    ("http", None, "http"), ("https", None, "https"), ("http-metrics", None, "http"),
    ("web-https", None, "https"), ("grpc", None, None), ("httpx", None, None), (None, None, None),
    ("web", "http", "http"), ("tls", "https", "https"), ("api", "kubernetes.io/h2c", "http"),
    ("db", "postgres", None),
])
def test_a_port_named_or_declared_http_gets_a_url_scheme(
    name: str | None, app_protocol: str | None, scheme: str | None
) -> None:
    entry = port(5000, name)
    if app_protocol:
        entry["appProtocol"] = app_protocol
    (rule,) = run(AutoSettings(), services=[service("web", [entry], labels=SKAFFOLD)]).rules
    assert rule.scheme == scheme


def test_the_annotation_is_off_by_default() -> None:
    found = run(AutoSettings(), services=[service("web", [port(8080)], annotations=forward("true"))])
    assert found == Discovered((), ())


# ---- a pod's rule names its workload --------------------------------------------------------


def owned(obj: dict[str, Any], kind: str, name: str, *, controller: bool = True) -> dict[str, Any]:
    """The object with an ownerReference, as the controller that made it writes one."""
    ref = {"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": f"uid-{name}", "controller": controller}
    obj["metadata"].setdefault("ownerReferences", []).append(ref)
    return obj


def replica(name: str, replicaset: str, template_hash: str | None, *, deleting: bool = False) -> dict[str, Any]:
    labels = {"app": "dbg"} | ({"pod-template-hash": template_hash} if template_hash else {})
    return owned(pod(name, [container("dbg", (2345, "dlv"), 8080)], labels=labels, deleting=deleting,
                     annotations=forward("true")), "ReplicaSet", replicaset)


def test_a_deployments_pods_make_one_rule_named_after_it() -> None:
    # Two replicas and one of the old version still going away (a rollout): one target, the
    # Deployment, so a restarted pod is a reconnect of the same tunnel on the same local port.
    pods = [replica("dbg-7d9f8c6b5-x2kq4", "dbg-7d9f8c6b5", "7d9f8c6b5"),
            replica("dbg-7d9f8c6b5-p8zt1", "dbg-7d9f8c6b5", "7d9f8c6b5"),
            replica("dbg-5c4b7d6f8-aaaaa", "dbg-5c4b7d6f8", "5c4b7d6f8", deleting=True)]
    found = run(ANNOTATION_ONLY, pods=pods)
    deploy = ResourceType.DEPLOYMENT
    assert found.rules == (auto_rule(deploy, "dbg", 2345, source=ANNOTATED, port_name="dlv"),
                           auto_rule(deploy, "dbg", 8080, source=ANNOTATED))
    assert [rule.label for rule in found.rules] == ["deploy/dbg dlv", "deploy/dbg 8080"]
    # The pod restarts under another name: the very same rules.
    assert run(ANNOTATION_ONLY, pods=[replica("dbg-7d9f8c6b5-zzzzz", "dbg-7d9f8c6b5", "7d9f8c6b5")]) == found


def test_a_replicaset_the_cache_holds_says_which_deployment_owns_it() -> None:
    # A ReplicaSet whose name does not end in the hash (renamed, or made by hand and adopted).
    replicaset = owned({"metadata": {"name": "odd-name", "namespace": "default"}}, "Deployment", "api")
    lonely = {"metadata": {"name": "lonely-9f8e", "namespace": "default"}}
    cache = {("replicasets", "default", "odd-name"): replicaset, ("replicasets", "default", "lonely-9f8e"): lonely}
    pods = [replica("odd-name-abcde", "odd-name", "5c4b7d6f8"), replica("lonely-9f8e-xyz", "lonely-9f8e", "9f8e")]
    found = discover(ANNOTATION_ONLY, "default", [], pods, lambda kind, ns, name: cache.get((kind, ns, name)))
    assert {rule.label for rule in found.rules} == {"deploy/api dlv", "deploy/api 8080", "rs/lonely-9f8e dlv",
                                                    "rs/lonely-9f8e 8080"}
    # Without the cache: a ReplicaSet without the Deployment's hash is named as itself.
    alone = run(ANNOTATION_ONLY, pods=[replica("mine-abcde", "mine", None)])
    assert {(rule.resource_type, rule.resource_name) for rule in alone.rules} == {(ResourceType.REPLICASET, "mine")}


@pytest.mark.parametrize(("owner", "kind", "label"), [
    ("StatefulSet", ResourceType.STATEFULSET, "sts/db pg"),
    ("DaemonSet", ResourceType.DAEMONSET, "ds/db pg"),
    ("ReplicationController", ResourceType.REPLICATIONCONTROLLER, "rc/db pg"),
    ("Job", ResourceType.JOB, "job/db pg"),
])
def test_other_controllers_name_the_rule(owner: str, kind: ResourceType, label: str) -> None:
    made = owned(pod("db-0", [container("db", (5432, "pg"))], annotations=forward("pg")), owner, "db")
    (rule,) = run(ANNOTATION_ONLY, pods=[made]).rules
    assert (rule.resource_type, rule.resource_name, rule.port, rule.label) == (kind, "db", 5432, label)


def test_a_cronjobs_pod_is_named_after_the_cronjob_when_its_job_is_known() -> None:
    made = owned(pod("report-29410-abcde", [container("r", (6060, "pprof"))], annotations=forward("true")),
                 "Job", "report-29410")
    job = owned({"metadata": {"name": "report-29410", "namespace": "default"}}, "CronJob", "report")
    found = discover(ANNOTATION_ONLY, "default", [], [made], lambda kind, ns, name: job if kind == "jobs" else None)
    assert [(rule.resource_type, rule.resource_name, rule.label) for rule in found.rules] == [
        (ResourceType.CRONJOB, "report", "cronjob/report pprof")]
    assert [rule.label for rule in run(ANNOTATION_ONLY, pods=[made]).rules] == ["job/report-29410 pprof"]


def test_bare_pods_and_pods_of_unknown_owners_are_named_themselves() -> None:
    bare = pod("shell", [container("sh", 7000)], annotations=forward("true"))
    custom = owned(pod("roll-abc", [container("r", (8080, "web"))], annotations=forward("true")), "Rollout", "roll")
    found = run(ANNOTATION_ONLY, pods=[bare, custom])
    assert [rule.label for rule in found.rules] == ["pod/roll-abc web", "pod/shell 7000"]
    assert all(rule.resource_type is POD for rule in found.rules)


def test_a_workload_in_another_namespace_says_which() -> None:
    made = owned(pod("db-0", [container("db", (5432, "pg"))], namespace="prod", annotations=forward("true")),
                 "StatefulSet", "db")
    found = run(AutoSettings(skaffold=False, annotation=True, namespace="*"), pods=[made])
    assert [rule.label for rule in found.rules] == ["sts/db pg (prod)"]


def test_exclusions_of_the_workload_its_pods_or_a_port_name() -> None:
    from trayapp.config.exclusions import Exclusion

    pods = [replica("dbg-7d9f8c6b5-x2kq4", "dbg-7d9f8c6b5", "7d9f8c6b5")]

    def left(*exclude: Exclusion) -> list[str]:
        settings = AutoSettings(skaffold=False, annotation=True, exclude=exclude)
        return [rule.label for rule in run(settings, pods=pods).rules]

    assert left() == ["deploy/dbg dlv", "deploy/dbg 8080"]
    assert left(Exclusion(ResourceType.DEPLOYMENT, "default", "dbg")) == []
    assert left(Exclusion(ResourceType.DEPLOYMENT, "default", "dbg", "dlv")) == ["deploy/dbg 8080"]
    assert left(Exclusion(ResourceType.DEPLOYMENT, "default", "dbg", 8080)) == ["deploy/dbg dlv"]
    # An exclusion written for the pods before their rules named the workload still holds.
    assert left(Exclusion(POD, "default", "dbg-*", 2345)) == ["deploy/dbg 8080"]
    assert left(Exclusion(ResourceType.DEPLOYMENT, "other", "dbg")) == ["deploy/dbg dlv", "deploy/dbg 8080"]

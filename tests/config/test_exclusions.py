"""`auto: exclude:` read with line-numbered problems, and honoured by discovery."""

from __future__ import annotations

from collections.abc import Callable

from tests.config.conftest import only
from trayapp.config import RuleSet
from trayapp.config.auto import AutoSettings
from trayapp.config.exclusions import Exclusion
from trayapp.engine.discovery import discover
from trayapp.model import ResourceType

SKAFFOLD = {"app.kubernetes.io/managed-by": "skaffold", "skaffold.dev/run-id": "0b6f"}


def test_exclusions_load_with_their_lines(load: Callable[[str], RuleSet]) -> None:
    rs = load("""
        auto:
          exclude:
            - {kind: service, namespace: dev, name: web, port: 8080}
            - {kind: pod, namespace: dev, name: "dbg-*"}
            - {kind: svc, namespace: dev, name: api, port: grpc}
    """)
    assert rs.problems == ()
    assert rs.auto.exclude == (
        Exclusion(ResourceType.SERVICE, "dev", "web", 8080),
        Exclusion(ResourceType.POD, "dev", "dbg-*"),
        Exclusion(ResourceType.SERVICE, "dev", "api", "grpc"),
    )
    assert [e.origin.line for e in rs.auto.exclude if e.origin] == [3, 4, 5]


def test_a_bad_exclusion_is_a_problem_at_its_line(load: Callable[[str], RuleSet]) -> None:
    rs = load("""
        auto:
          exclude:
            - {kind: ingress, namespace: dev, name: web}
    """)
    problem = only(rs.problems)
    assert (problem.line, problem.field) == (3, "auto.exclude[0].kind")
    assert "a service, a pod or a workload" in problem.message
    rs = load("auto:\n  exclude: {kind: pod}\n")
    assert only(rs.problems).field == "auto.exclude" and "must be a list" in only(rs.problems).message
    rs = load("auto:\n  exclude:\n    - {kind: pod, namespace: dev, name: x, port: 0, colour: red}\n")
    assert {p.field for p in rs.problems} == {"auto.exclude[0].port", "auto.exclude[0].colour"}


def _service(name: str, *ports: int) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": "dev", "labels": SKAFFOLD},
            "spec": {"selector": {"app": name}, "ports": [{"port": p, "protocol": "TCP"} for p in ports]}}


def test_discovery_leaves_out_what_is_excluded() -> None:
    services = [_service("web", 80, 8080), _service("api", 9090), _service("web-2", 80)]
    everything = discover(AutoSettings(), "dev", services, [])
    assert len(everything.rules) == 4
    settings = AutoSettings(exclude=(
        Exclusion(ResourceType.SERVICE, "dev", "web", 8080),  # one port
        Exclusion(ResourceType.SERVICE, "dev", "api"),  # every port
        Exclusion(ResourceType.POD, "dev", "web-*"),  # another kind: no effect on services
        Exclusion(ResourceType.SERVICE, "prod", "web-2"),  # another namespace: no effect
    ))
    found = discover(settings, "dev", services, [])
    assert [(r.resource_name, r.port) for r in found.rules] == [("web", 80), ("web-2", 80)]
    globbed = discover(AutoSettings(exclude=(Exclusion(ResourceType.SERVICE, "dev", "web*"),)), "dev", services, [])
    assert [r.resource_name for r in globbed.rules] == ["api"]

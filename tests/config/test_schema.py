"""One portForward entry: every field's defaults, conversions and problems, read from real files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.config.conftest import only
from trayapp.config import RuleSet
from trayapp.model import Origin, ResourceType, Rule, Transport

Load = Callable[[str], RuleSet]


def test_defaults_and_origin(load: Load, tmp_path: Path) -> None:
    rs = load("""
        portForward:
          - resourceType: service
            resourceName: web
            port: 80
    """)
    assert rs.problems == ()
    [rule] = rs.rules
    assert rule == Rule(ResourceType.SERVICE, "web", 80)
    assert (rule.namespace, rule.address, rule.local_port, rule.path) == (
        "default",
        "127.0.0.1",
        None,
        "/",
    )
    assert (rule.name, rule.scheme, rule.requested_local_port) == (None, None, 80)
    assert rule.origin == Origin(file=str(tmp_path / "config.yaml"), line=2, index=0)


def test_every_field_given(load: Load) -> None:
    rs = load("""
        portForward:
          - resourceType: deployment
            resourceName: api
            namespace: shop
            port: 8443
            localPort: 9443
            address: 0.0.0.0
            name: Shop API
            scheme: HTTPS
            path: /docs
    """)
    assert rs.problems == ()
    assert rs.rules == (
        Rule(
            ResourceType.DEPLOYMENT,
            "api",
            8443,
            namespace="shop",
            local_port=9443,
            address="0.0.0.0",
            name="Shop API",
            scheme="https",
            path="/docs",
        ),
    )


@pytest.mark.parametrize(
    "written", ["Service", "SERVICE", "service", "StatefulSet", "replicationController"]
)
def test_resource_type_is_case_insensitive(load: Load, written: str) -> None:
    rs = load(f"portForward: [{{resourceType: {written}, resourceName: x, port: 1}}]\n")
    assert rs.problems == ()
    assert rs.rules[0].resource_type == ResourceType.parse(written)


def test_every_resource_type_is_accepted(load: Load) -> None:
    entries = "\n".join(
        f"  - {{resourceType: {k.value}, resourceName: x, port: {i + 1}}}"
        for i, k in enumerate(ResourceType)
    )
    rs = load(f"portForward:\n{entries}\n")
    assert rs.problems == ()
    assert [r.resource_type for r in rs.rules] == list(ResourceType)


def test_numeric_string_ports_are_numbers(load: Load) -> None:
    rs = load("""
        portForward:
          - {resourceType: pod, resourceName: a, port: "8080", localPort: "9090"}
    """)
    assert rs.problems == ()
    assert (rs.rules[0].port, rs.rules[0].local_port) == (8080, 9090)


def test_named_port_has_no_local_port_until_resolved(load: Load) -> None:
    rs = load("""
        portForward:
          - {resourceType: service, resourceName: a, port: http-web}
          - {resourceType: service, resourceName: b, port: grpc, localPort: 5000}
    """)
    assert rs.problems == ()
    assert [(r.port, r.local_port, r.requested_local_port) for r in rs.rules] == [
        ("http-web", None, None),
        ("grpc", 5000, 5000),
    ]


@pytest.mark.parametrize(
    "address", ["localhost", "LocalHost", "127.0.0.2", "::1", "0:0:0:0:0:0:0:1"]
)
def test_addresses(load: Load, address: str) -> None:
    rs = load(
        f'portForward: [{{resourceType: pod, resourceName: a, port: 1, address: "{address}"}}]\n'
    )
    assert rs.problems == ()
    assert rs.rules[0].address in {"localhost", "127.0.0.2", "::1"}


@pytest.mark.parametrize("scheme", ["http", "https", "grpc+tls", "postgresql", "x.y-z"])
def test_any_url_scheme_is_accepted(load: Load, scheme: str) -> None:
    rs = load(f"portForward: [{{resourceType: pod, resourceName: a, port: 1, scheme: {scheme}}}]\n")
    assert rs.problems == ()
    assert rs.rules[0].scheme == scheme


def test_null_optional_fields_mean_the_default(load: Load) -> None:
    rs = load("""
        portForward:
          - resourceType: pod
            resourceName: a
            port: 1
            namespace:
            localPort:
    """)
    assert rs.problems == ()
    assert (rs.rules[0].namespace, rs.rules[0].local_port) == ("default", None)


# Each case: the rule text (at line 2 of the file), the line and field reported, and a piece of
# the message. The file always starts with "portForward:" on line 1.
PROBLEMS = [
    (
        "- {resourceType: sevice, resourceName: a, port: 1}",
        2,
        "portForward[0].resourceType",
        'Unknown resource type "sevice". Did you mean "service"? Allowed: pod, service, deployment,',
    ),
    (
        "- {resourceType: svc, resourceName: a, port: 1}",
        2,
        "portForward[0].resourceType",
        'Did you mean "service"?',
    ),
    (
        "- {resourceType: widget, resourceName: a, port: 1}",
        2,
        "portForward[0].resourceType",
        (
            'Unknown resource type "widget". Allowed: pod, service, deployment, replicaset, statefulset, '
            "replicationcontroller, daemonset, job, cronjob."
        ),
    ),
    (
        "- {resourceName: a, port: 1}",
        2,
        "portForward[0].resourceType",
        '"resourceType" is missing; it is required.',
    ),
    (
        "- {resourceType: pod, port: 1}",
        2,
        "portForward[0].resourceName",
        '"resourceName" is missing; it is required.',
    ),
    (
        "- {resourceType: pod, resourceName: a}",
        2,
        "portForward[0].port",
        '"port" is missing; it is required',
    ),
    (
        "- {resourceType: pod, resourceName: a, port: }",
        2,
        "portForward[0].port",
        '"port" has no value',
    ),
    (
        "- {resourceType: pod, resourceName: 42, port: 1}",
        2,
        "portForward[0].resourceName",
        '"resourceName" must be a string; found a number (42). Put it in quotes',
    ),
    (
        "- {resourceType: pod, resourceName: '', port: 1}",
        2,
        "portForward[0].resourceName",
        "is empty",
    ),
    (
        "- {resourceType: pod, resourceName: a, namespace: [x], port: 1}",
        2,
        "portForward[0].namespace",
        '"namespace" must be a string; found a list.',
    ),
    (
        "- {resourceType: pod, resourceName: a, port: 0}",
        2,
        "portForward[0].port",
        '"port" is 0, which is outside the port range 1-65535.',
    ),
    (
        "- {resourceType: pod, resourceName: a, port: '70000'}",
        2,
        "portForward[0].port",
        "outside the port range",
    ),
    (
        "- {resourceType: pod, resourceName: a, port: true}",
        2,
        "portForward[0].port",
        "must be a port number from 1 to 65535; found a true/false value (true).",
    ),
    (
        "- {resourceType: pod, resourceName: a, port: 80.5}",
        2,
        "portForward[0].port",
        "found a number (80.5)",
    ),
    (
        "- {resourceType: pod, resourceName: a, port: HTTP}",
        2,
        "portForward[0].port",
        '"HTTP" is not a port number like 8080 or a port name like "http"',
    ),
    (
        "- {resourceType: pod, resourceName: a, port: 1, localPort: 65536}",
        2,
        "portForward[0].localPort",
        '"localPort" is 65536, which is outside the port range 1-65535.',
    ),
    (
        "- {resourceType: pod, resourceName: a, port: 1, localPort: http}",
        2,
        "portForward[0].localPort",
        'must be a port number from 1 to 65535; found "http".',
    ),
    (
        "- {resourceType: pod, resourceName: a, port: 1, address: 127.0.0.256}",
        2,
        "portForward[0].address",
        '"127.0.0.256" is not an IP address (like 127.0.0.1 or ::1) or "localhost".',
    ),
    (
        "- {resourceType: pod, resourceName: a, port: 1, address: myhost}",
        2,
        "portForward[0].address",
        "is not an IP address",
    ),
    (
        "- {resourceType: pod, resourceName: a, port: 1, scheme: 'h ttp'}",
        2,
        "portForward[0].scheme",
        '"h ttp" is not a URL scheme',
    ),
    (
        "- {resourceType: pod, resourceName: a, port: 1, path: docs}",
        2,
        "portForward[0].path",
        '"docs" must start with "/", as in "/docs".',
    ),
    (
        "- {resourceType: pod, resourceName: a, port: 1, localport: 2}",
        2,
        "portForward[0].localport",
        'Unknown field "localport". Did you mean "localPort"? A rule\'s fields are: resourceType,',
    ),
    (
        "- {resourceType: pod, resource_name: a, port: 1}",
        2,
        "portForward[0].resource_name",
        'Did you mean "resourceName"?',
    ),
    (
        "- {resourceType: pod, resourceName: a, port: 1, colour: red}",
        2,
        "portForward[0].colour",
        'Unknown field "colour". A rule\'s fields are:',
    ),
    (
        "- just-a-string",
        2,
        "portForward[0]",
        "Each rule must be a mapping with fields such as resourceType, resourceName and port; found a string",
    ),
]


@pytest.mark.parametrize(
    ("entry", "line", "field", "message"), PROBLEMS, ids=[p[2] + ":" + p[3][:30] for p in PROBLEMS]
)
def test_each_problem_names_file_line_field(
    load: Load, tmp_path: Path, entry: str, line: int, field: str, message: str
) -> None:
    rs = load(f"portForward:\n  {entry}\n")
    problem = only(rs.problems)
    assert (problem.file, problem.line, problem.field) == (
        str(tmp_path / "config.yaml"),
        line,
        field,
    )
    assert message in problem.message
    assert problem.message.endswith((".", "?"))
    assert rs.rules == ()


def test_block_style_problem_lines_point_at_the_field(load: Load) -> None:
    rs = load("""
        portForward:
          - resourceType: pod
            resourceName: a
            port: 1
            localPort: 99999
    """)
    problem = only(rs.problems)
    assert (problem.line, problem.field) == (5, "portForward[0].localPort")


def test_a_missing_field_points_at_the_rule(load: Load) -> None:
    rs = load("""
        portForward:
          - resourceType: pod
            port: 1
    """)
    assert only(rs.problems).line == 2


def test_repeated_field_in_a_rule(load: Load) -> None:
    rs = load("""
        portForward:
          - resourceType: pod
            resourceName: a
            port: 1
            port: 2
    """)
    problem = only(rs.problems)
    assert (problem.line, problem.field) == (5, "portForward[0].port")
    assert "written twice in this rule (first on line 4)" in problem.message


def test_every_problem_in_one_rule_is_reported_at_once(load: Load) -> None:
    rs = load("""
        portForward:
          - resourceType: sevice
            resourceName: 5
            port: 0
            localPort: 70000
            address: nowhere
            path: x
            colour: red
    """)
    fields = [p.field.rsplit(".", 1)[1] for p in rs.problems if p.field]
    assert sorted(fields) == sorted(
        ["resourceType", "resourceName", "port", "localPort", "address", "path", "colour"]
    )
    assert [p.line for p in rs.problems] == sorted(p.line or 0 for p in rs.problems)


def test_portforward_must_be_a_list(load: Load, tmp_path: Path) -> None:
    rs = load("""
        portForward:
          resourceType: pod
    """)
    problem = only(rs.problems)
    assert (problem.line, problem.field) == (1, "portForward")
    assert problem.message == '"portForward" must be a list of rules; found a mapping.'


@pytest.mark.parametrize(("text", "transport"), [
    ("auto", Transport.AUTO), ("spdy-ws", Transport.SPDY_WS), ("spdy", Transport.SPDY), ("v4", Transport.V4),
    ("SPDY-WS", Transport.SPDY_WS),
])
def test_a_rule_may_choose_its_transport(load: Load, text: str, transport: Transport) -> None:
    rs = load(f"portForward: [{{resourceType: pod, resourceName: a, port: 1, transport: {text}}}]\n")
    assert rs.problems == ()
    assert rs.rules[0].transport == transport


def test_a_rule_without_transport_leaves_it_to_kubetray(load: Load) -> None:
    rs = load("portForward: [{resourceType: pod, resourceName: a, port: 1}]\n")
    assert rs.rules[0].transport == Transport.AUTO


def test_an_unknown_transport_names_file_line_field_and_the_choices(load: Load, tmp_path: Path) -> None:
    rs = load("""
        portForward:
          - resourceType: pod
            resourceName: a
            port: 1
          - resourceType: pod
            resourceName: b
            port: 2
            transport: spdyws
    """)
    [problem] = rs.problems
    assert problem.field == "portForward[1].transport"
    assert (problem.file, problem.line) == (str(tmp_path / "config.yaml"), 8)
    assert 'Unknown transport "spdyws". Did you mean "spdy-ws"?' in problem.message
    assert "auto, spdy-ws, spdy, v4" in problem.message
    # The broken rule is skipped; the other one still works.
    assert [rule.resource_name for rule in rs.rules] == ["a"]


def test_transport_must_be_text(load: Load) -> None:
    rs = load("portForward: [{resourceType: pod, resourceName: a, port: 1, transport: 4}]\n")
    [problem] = rs.problems
    assert problem.field == "portForward[0].transport"
    assert '"transport" must be a string' in problem.message

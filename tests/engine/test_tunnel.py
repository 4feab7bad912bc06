"""Transcript tests of one tunnel's state machine: no sockets, no clock."""

from trayapp.engine.resolve import Target, Unresolved
from trayapp.engine.tunnel import CloseConnections, Publish, TargetChanged, TunnelMachine
from trayapp.model import EventKind, ResourceType, Rule, TunnelState

RULE = Rule(ResourceType.SERVICE, "web", 80, local_port=8080)
POD_A = Target(namespace="default", pod="web-a", pod_uid="uid-a", port=8080)
POD_B = Target(namespace="default", pod="web-b", pod_uid="uid-b", port=8080)


def kinds(commands: list) -> list:
    return [c.event.kind if isinstance(c, Publish) else type(c).__name__ for c in commands]


def machine() -> TunnelMachine:
    return TunnelMachine(RULE, "kind-dev", "t1")


def test_listening_then_found_publishes_forwarding_with_port_and_pod() -> None:
    m = machine()
    assert m.listening(8080, 8080, False, ()) == []
    commands = m.resolved(POD_A)
    assert kinds(commands) == ["TargetChanged", EventKind.FORWARDING]
    event = commands[-1].event
    assert (event.local_port, event.pod, event.context, event.requested_local_port) == (8080, "web-a", "kind-dev", 8080)
    assert m.state == TunnelState.FORWARDING
    assert m.resolved(POD_A) == []  # the same answer twice says nothing


def test_fallback_names_requested_and_actual_port() -> None:
    m = machine()
    commands = m.listening(8081, 8080, True, ("8080 is in use",))
    assert kinds(commands) == [EventKind.FALLBACK]
    event = commands[0].event
    assert (event.requested_local_port, event.local_port) == (8080, 8081)
    assert "8080 is in use" in event.message and "8081" in event.message


def test_waiting_is_published_once_per_reason() -> None:
    m = machine()
    m.listening(8080, 8080, False, ())
    first = m.resolved(Unresolved('service "web" does not exist yet.'))
    assert kinds(first) == [EventKind.WAITING]
    assert m.resolved(Unresolved('service "web" does not exist yet.')) == []
    assert kinds(m.resolved(Unresolved('service "web" has no ready pod yet.'))) == [EventKind.WAITING]
    assert m.state == TunnelState.WAITING


def test_pod_change_closes_old_connections_and_reports_reconnect() -> None:
    m = machine()
    m.listening(8080, 8080, False, ())
    m.resolved(POD_A)
    commands = m.resolved(POD_B)
    assert commands[0] == CloseConnections("web-a")
    assert commands[1] == TargetChanged(POD_B)
    event = commands[-1].event
    assert (event.kind, event.old_pod, event.pod, event.local_port) == (EventKind.RECONNECTED, "web-a", "web-b", 8080)


def test_lost_then_found_again_is_a_reconnect_across_the_wait() -> None:
    m = machine()
    m.listening(8080, 8080, False, ())
    m.resolved(POD_A)
    lost = m.resolved(Unresolved("no ready pod."))
    assert kinds(lost) == ["TargetChanged", EventKind.WAITING]
    assert m.state == TunnelState.RECONNECTING
    found = m.resolved(POD_B)
    assert found[-1].event.kind == EventKind.RECONNECTED
    assert found[-1].event.old_pod == "web-a"


def test_named_port_rule_binds_after_resolution_then_reports_forwarding() -> None:
    m = TunnelMachine(Rule(ResourceType.STATEFULSET, "api", "grpc"), "c", "t2")
    assert kinds(m.resolved(POD_A)) == ["TargetChanged"]  # no listener yet: nothing to tell
    assert kinds(m.listening(8080, 8080, False, ())) == [EventKind.FORWARDING]


def test_cluster_failure_then_recovery() -> None:
    m = machine()
    m.listening(8080, 8080, False, ())
    m.resolved(POD_A)
    assert kinds(m.cluster_failed("credentials refused")) == [EventKind.FAILED]
    assert m.cluster_failed("credentials refused") == []
    assert m.state == TunnelState.FAILED
    assert kinds(m.resolved(POD_A)) == [EventKind.FORWARDING]
    assert m.state == TunnelState.FORWARDING


def test_stop_closes_everything_and_says_so() -> None:
    m = machine()
    m.listening(8080, 8080, False, ())
    m.resolved(POD_A)
    commands = m.stopped()
    assert TargetChanged(None) in commands and CloseConnections("web-a") in commands
    assert commands[-1].event.kind == EventKind.STOPPED
    assert m.state == TunnelState.STOPPED


def test_container_restart_closes_connections_and_says_so() -> None:
    m = machine()
    m.listening(8080, 8080, False, ())
    m.resolved(POD_A)
    restarted = Target(namespace="default", pod="web-a", pod_uid="uid-a", port=8080, restarts=1)
    commands = m.resolved(restarted)
    assert commands[0] == CloseConnections("web-a")
    event = commands[-1].event
    assert event.kind == EventKind.RECONNECTED and "restarted" in event.message
    assert (event.pod, event.old_pod, event.local_port) == ("web-a", "web-a", 8080)

"""Transcript tests of one tunnel's state machine: no sockets, no clock."""

from trayapp.engine.forward.resolve import Target, Unresolved
from trayapp.engine.forward.tunnel import (
    OUTAGE_GRACE,
    CloseConnections,
    Publish,
    Relist,
    TargetChanged,
    TunnelMachine,
    Wakeup,
)
from trayapp.model import EventKind, ResourceType, Rule, TunnelState

RULE = Rule(ResourceType.SERVICE, "web", 80, local_port=8080)
POD_A = Target(namespace="default", pod="web-a", pod_uid="uid-a", port=8080)
POD_B = Target(namespace="default", pod="web-b", pod_uid="uid-b", port=8080)


SERVER = "https://127.0.0.1:6443"


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


def test_pod_change_keeps_open_connections_and_reports_reconnect() -> None:
    """Only new connections move; open ones end when the old pod or the client ends them."""
    m = machine()
    m.listening(8080, 8080, False, ())
    m.resolved(POD_A)
    commands = m.resolved(POD_B)
    assert not [c for c in commands if isinstance(c, CloseConnections)]
    assert commands[0] == TargetChanged(POD_B)
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


def forwarding_on_a() -> TunnelMachine:
    m = machine()
    m.listening(8080, 8080, False, ())
    m.resolved(POD_A)
    return m


def test_an_outage_is_told_once_with_server_port_and_seconds() -> None:
    m = forwarding_on_a()
    assert m.server_failed(SERVER, now=100.0, from_watch=True) == [Wakeup(OUTAGE_GRACE)]
    assert m.state == TunnelState.FORWARDING  # a watch that comes right back is no outage
    assert m.server_failed(SERVER, now=100.5, from_watch=True) == []
    # first a fresh list (a resumed watch on a quiet cluster would never say the server is back)
    assert m.wakeup(now=100.0 + OUTAGE_GRACE) == [Relist(), Wakeup(OUTAGE_GRACE)]
    assert m.state == TunnelState.FORWARDING
    told = m.wakeup(now=100.0 + 20)
    assert kinds(told) == [EventKind.WAITING]
    assert m.state == TunnelState.WAITING
    message = told[0].event.message
    assert SERVER in message and "20 s" in message and "127.0.0.1:8080" in message
    assert "reconnects when it answers" in message
    assert m.target == POD_A  # kept: new connections still try, and a changed pod is a reconnect
    assert m.server_failed(SERVER, now=130.0, from_watch=True) == []  # no flood
    assert m.wakeup(now=131.0) == []
    assert "30 s" in (m.reason or "")  # status shows the count as it grows


def told_outage(from_watch: bool = True) -> TunnelMachine:
    m = forwarding_on_a()
    m.server_failed(SERVER, now=100.0, from_watch=from_watch)
    m.wakeup(now=102.0)
    m.wakeup(now=110.0)
    assert m.state == TunnelState.WAITING
    return m


def test_the_server_answering_within_the_grace_says_nothing() -> None:
    m = forwarding_on_a()
    m.server_failed(SERVER, now=100.0, from_watch=True)
    m.wakeup(now=100.0 + OUTAGE_GRACE)  # relists
    assert m.resolved(POD_A) == []  # which answered
    assert m.wakeup(now=100.0 + 2 * OUTAGE_GRACE) == []
    assert m.state == TunnelState.FORWARDING


def test_a_wakeup_that_comes_early_asks_again_for_the_rest() -> None:
    m = forwarding_on_a()
    m.server_failed(SERVER, now=100.0, from_watch=True)
    assert m.wakeup(now=100.5) == [Wakeup(OUTAGE_GRACE - 0.5)]


def test_after_an_outage_the_same_pod_is_forwarding_again_with_its_pod() -> None:
    m = told_outage()
    back = m.resolved(POD_A)
    assert kinds(back) == [EventKind.FORWARDING]
    assert back[0].event.pod == "web-a" and SERVER in back[0].event.message
    assert m.state == TunnelState.FORWARDING and m.reason is None
    # the next outage is told again
    assert m.server_failed(SERVER, now=200.0, from_watch=True) == [Wakeup(OUTAGE_GRACE)]


def test_after_an_outage_a_new_pod_is_a_reconnect() -> None:
    m = told_outage()
    back = m.resolved(POD_B)
    event = back[-1].event
    assert (event.kind, event.old_pod, event.pod) == (EventKind.RECONNECTED, "web-a", "web-b")


def test_a_dial_that_fails_into_a_dead_path_counts_from_when_it_began_and_relists() -> None:
    m = forwarding_on_a()
    assert m.server_failed(SERVER, now=110.0, from_watch=False, began=100.0) == [Wakeup(0.0), Relist()]
    assert "10 s" in m.wakeup(now=110.0)[0].event.message  # already listed again: told at once


def test_an_outage_seen_only_by_dials_ends_with_a_good_dial() -> None:
    m = forwarding_on_a()
    m.server_failed(SERVER, now=100.0, from_watch=False)
    assert kinds(m.wakeup(now=103.0)) == [EventKind.WAITING]
    back = m.server_answered()
    assert kinds(back) == [EventKind.FORWARDING] and m.state == TunnelState.FORWARDING


def test_an_outage_a_watch_saw_ends_only_when_the_watch_lists_again() -> None:
    m = told_outage(from_watch=False)
    assert m.server_failed(SERVER, now=111.0, from_watch=True) == []  # the dial already relisted
    assert m.server_answered() == []
    assert m.state == TunnelState.WAITING
    assert kinds(m.resolved(POD_A)) == [EventKind.FORWARDING]


def test_an_outage_while_waiting_for_a_pod_then_still_no_pod() -> None:
    m = machine()
    m.listening(8080, 8080, False, ())
    m.resolved(Unresolved("no ready pod."))
    m.server_failed(SERVER, now=100.0, from_watch=True)
    m.wakeup(now=102.0)
    assert kinds(m.wakeup(now=105.0)) == [EventKind.WAITING]
    again = m.resolved(Unresolved("no ready pod."))  # the server answers: the pod reason is back
    assert kinds(again) == [EventKind.WAITING] and "no ready pod." in again[0].event.message


def test_a_pod_found_gone_relists_once() -> None:
    m = forwarding_on_a()
    assert m.pod_gone(POD_A) == [Relist()]
    assert m.pod_gone(POD_A) == []  # many connections, one relist
    assert m.pod_gone(POD_B) == []  # not the tunnel's pod: nothing stale to fix


def test_a_stopped_tunnel_ignores_the_server() -> None:
    m = forwarding_on_a()
    m.stopped()
    assert m.server_failed(SERVER, now=1.0, from_watch=True) == []
    assert m.wakeup(now=100.0) == []

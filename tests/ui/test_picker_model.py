"""The Forward window's pure model: rows from engine updates, search, and what choosing a port proposes
(target, local port with Skaffold's fallback on real sockets, label, scheme), UDP refused with the reason."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from trayapp.engine.browse import Namespaces, ObjectRow, PortRow, Problem, Rows
from trayapp.engine.portproposal import LocalPortProposal, propose_local_port
from trayapp.engine.runtime import TunnelView
from trayapp.model import ResourceType, Rule, TunnelState
from trayapp.ui.picker_model import (
    Entry,
    PickerModel,
    already_forwarded,
    entries_of,
    label_for,
    propose,
    scheme_for,
    taken_ports,
    target_of,
    with_local_port,
)

S, D, P, J, CJ = (ResourceType.SERVICE, ResourceType.DEPLOYMENT, ResourceType.POD, ResourceType.JOB,
                  ResourceType.CRONJOB)

WEB_SVC = ObjectRow(S, "web", "dev", (PortRow(80, "http"),))
DNS_SVC = ObjectRow(S, "dns", "dev", (PortRow(53, "dns", "UDP"), PortRow(53, "dns-tcp", "TCP")))
DBG = ObjectRow(D, "dbg", "dev", (PortRow(40000, "dlv", container="app"), PortRow(8080, None, container="app")))
DBG_POD = ObjectRow(P, "dbg-7d9f8c-x2k4q", "dev", (PortRow(40000, "dlv", container="app"),), owner=(D, "dbg"))
LONE_POD = ObjectRow(P, "shell", "dev", ())
REPORT_JOB = ObjectRow(J, "report-28391", "dev", (PortRow(9000, "metrics"),), owner=(CJ, "report"))


def never_taken(port: int) -> LocalPortProposal:
    return LocalPortProposal(port, port)


def model_with(*rows: ObjectRow, namespace: str = "dev") -> PickerModel:
    model = PickerModel(namespace)
    assert model.apply(Rows(namespace, rows, reset=True, complete=True))
    return model


def entry(row: ObjectRow, port_name: str | None = None, number: int | None = None) -> Entry:
    return next(e for e in entries_of(row) if e.port and (port_name is None or e.port.name == port_name)
                and (number is None or e.port.number == number))


# --- rows and search --------------------------------------------------------------------------

def test_rows_are_sorted_by_kind_then_name_one_line_per_port() -> None:
    model = model_with(DBG_POD, DBG, WEB_SVC, DNS_SVC, LONE_POD)
    assert [(e.object_text, e.port_text) for e in model.visible] == [
        ("svc/dns", "dns 53"), ("svc/dns", "dns-tcp 53"), ("svc/web", "http 80"),
        ("deploy/dbg", "dlv 40000"), ("deploy/dbg", "8080"),
        ("pod/dbg-7d9f8c-x2k4q", "dlv 40000"), ("pod/shell", "(no ports)"),
    ]
    assert model.status() == "5 objects in namespace dev"


def test_search_matches_every_term_in_kind_name_port_and_owner() -> None:
    model = model_with(DBG_POD, DBG, WEB_SVC, DNS_SVC)
    model.set_query("svc/web")
    assert [e.object_text for e in model.visible] == ["svc/web"]
    model.set_query("DLV")
    assert [e.object_text for e in model.visible] == ["deploy/dbg", "pod/dbg-7d9f8c-x2k4q"]
    model.set_query("deploy/dbg 8080")
    assert [(e.object_text, e.port_text) for e in model.visible] == [("deploy/dbg", "8080")]
    model.set_query("udp")
    assert [e.port_text for e in model.visible] == ["dns 53"]
    model.set_query("nothing-like-this")
    assert model.visible == [] and model.status() == "4 objects in namespace dev, 0 matching"


def test_typing_on_narrows_and_deleting_widens_again() -> None:
    model = model_with(DBG_POD, DBG, WEB_SVC, DNS_SVC)
    steps = ["d", "d ", "d 4", "d 40000", "d 4", "", "svc", "svc/", "svc/w", "svc/", "dns-"]
    fresh = PickerModel("dev")
    fresh.apply(Rows("dev", (DBG_POD, DBG, WEB_SVC, DNS_SVC), reset=True))
    for query in steps:
        model.set_query(query)
        got = [(e.object_text, e.port_text) for e in model.visible]
        fresh.set_query(query)
        fresh._visible = None  # the same query searched from scratch
        assert got == [(e.object_text, e.port_text) for e in fresh.visible], query
    assert [e.port_text for e in model.visible] == ["dns-tcp 53"]


def test_updates_add_change_and_remove_rows_and_late_batches_of_another_namespace_are_ignored() -> None:
    model = model_with(WEB_SVC)
    changed = ObjectRow(S, "web", "dev", (PortRow(80, "http"), PortRow(443, "https")))
    assert model.apply(Rows("dev", (changed, DBG)))
    assert [e.port_text for e in model.visible] == ["http 80", "https 443", "dlv 40000", "8080"]
    assert model.apply(Rows("dev", removed=((S, "web"),)))
    assert [e.object_text for e in model.visible] == ["deploy/dbg", "deploy/dbg"]
    assert not model.apply(Rows("prod", (DNS_SVC,)))
    assert len(model.rows) == 1


def test_namespace_switch_clears_rows_and_reports_listing_until_complete() -> None:
    model = model_with(WEB_SVC)
    model.show_namespace("prod")
    assert model.visible == [] and model.status() == "0 objects in namespace prod (still listing\u2026)"
    model.apply(Rows("prod", (DNS_SVC,), reset=True))
    assert model.status() == "1 object in namespace prod (still listing\u2026)"
    model.apply(Rows("prod", complete=True))
    assert model.status() == "1 object in namespace prod"


def test_namespaces_and_problems() -> None:
    model = model_with(WEB_SVC)
    assert not model.apply(Namespaces(("default", "dev")))
    assert model.namespaces == ("default", "dev")
    model.apply(Problem("kubetray cannot list the namespaces right now."))
    assert model.status() == "1 object in namespace dev"  # the rows say more than the combo's trouble
    model.apply(Rows("dev", problems=("kubetray cannot list the pods in namespace dev right now.",)))
    assert model.status() == "kubetray cannot list the pods in namespace dev right now."
    model.apply(Rows("dev", (DBG,)))  # the next batch without problems: they are over
    assert model.problem is None and model.status() == "2 objects in namespace dev"
    model.show_namespace("prod")
    assert model.status() == "kubetray cannot list the namespaces right now."


# --- proposals ----------------------------------------------------------------------------------

def test_udp_is_listed_but_refused_with_the_reason() -> None:
    udp = entry(DNS_SVC, "dns")
    assert not udp.choosable
    assert udp.note == "UDP: Kubernetes port-forward carries TCP only"
    proposal = propose(udp, "dev", never_taken)
    assert proposal.draft is None and proposal.local_port is None
    assert proposal.text == "UDP port 53 (dns) of svc/dns cannot be forwarded: Kubernetes port-forward carries TCP only."
    assert entry(DNS_SVC, "dns-tcp").choosable


def test_an_object_without_ports_cannot_be_chosen() -> None:
    (only,) = entries_of(LONE_POD)
    assert not only.choosable
    assert propose(only, "dev", never_taken).draft is None


def test_a_service_port_proposes_itself_with_a_label_and_scheme() -> None:
    proposal = propose(entry(WEB_SVC), "dev", never_taken)
    draft = proposal.draft
    assert draft is not None
    assert (draft.resource_type, draft.resource_name, draft.port, draft.namespace) == (S, "web", 80, "dev")
    assert draft.local_port is None  # the port itself: the rule leaves localPort out, as Skaffold reads it
    assert (draft.name, draft.scheme) == ("svc/web http", "http")
    assert proposal.local_port == 80
    assert proposal.text == "Local port 80, the same as the port."


def test_a_pod_port_names_the_workload_never_the_pod_hash() -> None:
    draft = propose(entry(DBG_POD), "dev", never_taken).draft
    assert draft is not None
    assert (draft.resource_type, draft.resource_name, draft.name, draft.scheme) == (D, "dbg", "deploy/dbg dlv", None)
    assert "dbg-7d9f8c-x2k4q" not in draft.name
    assert target_of(REPORT_JOB) == (CJ, "report")
    assert target_of(LONE_POD) == (P, "shell")
    assert label_for(D, "dbg", PortRow(8080)) == "deploy/dbg 8080"


@pytest.mark.parametrize(("port", "scheme"), [
    (PortRow(80), "http"), (PortRow(8080), "http"), (PortRow(3000, "ui"), "http"), (PortRow(7000, "http"), "http"),
    (PortRow(9100, "http-metrics"), "http"), (PortRow(443), "https"), (PortRow(8443, "web"), "https"),
    (PortRow(9443, "https"), "https"), (PortRow(9000, "web", app_protocol="https"), "https"),
    (PortRow(9001, "web", app_protocol="http"), "http"), (PortRow(5432, "postgres"), None),
    (PortRow(40000, "dlv"), None), (PortRow(9090, "grpc"), None),
])
def test_scheme(port: PortRow, scheme: str | None) -> None:
    assert scheme_for(port) == scheme


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other program holds on 127.0.0.1, chosen where the ten after it are free."""
    for _ in range(50):
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        if port + 1 <= 65535 and propose_local_port(port + 1).port == port + 1:
            try:
                yield port
            finally:
                holder.close()
            return
        holder.close()
    pytest.skip("no port with a free neighbour was found")


def test_a_busy_port_proposes_skaffolds_fallback_on_real_sockets(busy_port: int) -> None:
    row = ObjectRow(S, "db", "dev", (PortRow(busy_port, "pg"),))
    proposal = propose(entry(row), "dev", lambda port: propose_local_port(port))
    assert proposal.local_port == busy_port + 1
    assert proposal.draft is not None and proposal.draft.local_port == busy_port + 1
    assert proposal.text.startswith(f"Local port {busy_port + 1}: {busy_port} is in use, so kubetray proposes "
                                    "the port Skaffold would pick.")


def test_ports_kubetray_tunnels_use_are_skipped_too(busy_port: int) -> None:
    free = busy_port + 1
    rule = Rule(ResourceType.SERVICE, "other", free)
    taken = taken_ports([TunnelView("t", rule, TunnelState.STOPPED, None, None, None)])
    assert taken == {free}
    local = propose_local_port(free, taken)
    assert local.port not in (busy_port, free)
    assert local.reasons[0] == f"{free} is used by another kubetray rule"


def test_a_local_port_the_user_types_is_kept_and_a_busy_one_is_flagged(busy_port: int) -> None:
    def probe(port: int) -> LocalPortProposal:
        return propose_local_port(port)

    proposal = propose(entry(WEB_SVC), "dev", never_taken)
    mine = with_local_port(proposal, busy_port, probe)
    assert mine.draft is not None and mine.draft.local_port == busy_port and mine.local_port == busy_port
    assert mine.text.startswith(f"Local port {busy_port} is taken now ({busy_port} is in use)")
    back = with_local_port(mine, 80, never_taken)
    assert back.draft is not None and back.draft.local_port is None


def test_a_target_already_forwarded_is_named() -> None:
    draft = propose(entry(WEB_SVC), "dev", never_taken).draft
    assert draft is not None
    web = TunnelView("t", Rule(S, "web", 80, "dev", local_port=8080), TunnelState.FORWARDING, 8080, None, None)
    other_namespace = TunnelView("u", Rule(S, "web", 80, "prod"), TunnelState.FORWARDING, 80, None, None)
    assert already_forwarded(draft, [other_namespace]) is None
    assert already_forwarded(draft, [other_namespace, web]) == (
        "svc/web :80 already forwards it on local port 8080; Save adds another rule for it.")


def test_a_long_fallback_is_told_in_one_sentence() -> None:
    def unprivileged(port: int) -> LocalPortProposal:
        reasons = tuple(f"{p} needs privileges" for p in range(port, port + 11))
        return LocalPortProposal(4503, port, reasons)

    proposal = propose(entry(WEB_SVC), "dev", unprivileged)
    assert proposal.local_port == 4503 and proposal.draft is not None and proposal.draft.local_port == 4503
    assert proposal.text == ("Local port 4503: 80 needs privileges; the next 10 candidates were not free either, "
                             "so kubetray proposes the port Skaffold would pick.")

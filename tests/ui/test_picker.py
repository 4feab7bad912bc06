"""The Forward window offscreen: fed engine updates, driven by keys, saving through a callable that
writes a real rules file; then inside the tray app on the real engine and a simulated cluster."""

from __future__ import annotations

import argparse
import importlib.util
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from trayapp.config.rules import load_rules
from trayapp.control import Snapshot
from trayapp.engine.browse import Namespaces, ObjectRow, PortRow, Rows
from trayapp.engine.portproposal import LocalPortProposal, propose_local_port
from trayapp.errors import KubetrayError
from trayapp.model import ResourceType, Rule, TunnelState
from trayapp.sim import SimCluster
from trayapp.sim.runner import SimThread, run_in_thread
from trayapp.ui.app import TrayApp
from trayapp.ui.bridge import Bridge
from trayapp.ui.menu_model import Prefs, Simple, build_menu
from trayapp.ui.picker import PickerWindow, Relay
from trayapp.ui.picker_model import Draft

S, D, P = ResourceType.SERVICE, ResourceType.DEPLOYMENT, ResourceType.POD
ROWS = (
    ObjectRow(S, "web", "dev", (PortRow(80, "http"),)),
    ObjectRow(S, "dns", "dev", (PortRow(53, "dns", "UDP"),)),
    ObjectRow(D, "dbg", "dev", (PortRow(40000, "dlv", container="app"),)),
    ObjectRow(P, "dbg-7d9f8c-x2k4q", "dev", (PortRow(40000, "dlv", container="app"),), owner=(D, "dbg")),
)
HEADER = "# my forwards\nportForward:  # keep this\n  - {resourceType: service, resourceName: db, port: 5432}\n"


def same(port: int) -> LocalPortProposal:
    return LocalPortProposal(port, port)


class RulesFile:
    """Stands in for config/edit.py (another part of kubetray): appends the draft as a flow-style
    rule to a real file, so the test can read the rule back through the real loader."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_text(HEADER, encoding="utf-8")
        self.drafts: list[Draft] = []

    def __call__(self, draft: Draft) -> str:
        self.drafts.append(draft)
        fields = [f"resourceType: {draft.resource_type.value}", f"resourceName: {draft.resource_name}",
                  f"port: {draft.port}", f"namespace: {draft.namespace}", f"name: '{draft.name}'"]
        if draft.local_port is not None:
            fields.append(f"localPort: {draft.local_port}")
        if draft.scheme:
            fields.append(f"scheme: {draft.scheme}")
        with self.path.open("a", encoding="utf-8") as out:
            out.write("  - {" + ", ".join(fields) + "}\n")
        return f"Added {draft.name} to {self.path}."


@pytest.fixture
def window(qtbot, tmp_path: Path) -> Iterator[tuple[PickerWindow, RulesFile, list[str]]]:
    rules = RulesFile(tmp_path / "rules.yaml")
    shown: list[str] = []
    closed: list[str] = []
    win = PickerWindow("kind-dev", "dev", same, rules, shown.append, lambda: closed.append("closed"))
    qtbot.addWidget(win)
    win.show()
    win.take(Namespaces(("default", "dev", "prod")))
    win.take(Rows("dev", ROWS, reset=True, complete=True))
    qtbot.waitUntil(lambda: win.table.rowCount() == 4)
    yield win, rules, shown
    win.close()
    assert closed == ["closed"]


def test_search_down_and_return_save_a_service_port(qtbot, window, artifacts: Path) -> None:
    win, rules, _shown = window
    assert win.namespaces.currentText() == "dev"
    assert [win.namespaces.itemText(i) for i in range(win.namespaces.count())] == ["default", "dev", "prod"]
    qtbot.keyClicks(win.search, "svc/web")
    assert win.table.rowCount() == 1
    qtbot.keyClick(win.search, Qt.Key.Key_Down)
    assert win.proposal is not None and win.proposal.draft is not None
    assert win.target.text() == "service/web port 80 in dev"
    assert (win.local_port.value(), win.name.text(), win.scheme.currentText()) == (80, "svc/web http", "http")
    assert win.note.text() == "Local port 80, the same as the port."
    win.grab().save(str(artifacts / "picker-offscreen.png"))
    qtbot.keyClick(win.view, Qt.Key.Key_Return)
    assert rules.drafts == [Draft(S, "web", 80, "dev", None, "svc/web http", "http")]
    assert win.result.text().startswith("Added svc/web http to ")
    text = rules.path.read_text(encoding="utf-8")
    assert text.startswith(HEADER)
    loaded = load_rules(rules.path)
    assert not loaded.problems
    assert Rule(S, "web", 80, "dev", name="svc/web http", scheme="http") in loaded.rules


def test_ctrl_f_searches_again_from_the_list(qtbot, window) -> None:
    win, _rules, _shown = window
    qtbot.keyClicks(win.search, "dbg")
    qtbot.keyClick(win.search, Qt.Key.Key_Down)
    assert win.search.text() == "dbg"
    qtbot.keyClick(win.view, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(win.search, "svc/web")  # replaces the selected query
    assert win.search.text() == "svc/web" and win.table.rowCount() == 1


def test_the_menu_offers_forward_beside_the_rules_file() -> None:
    items = build_menu(Snapshot(context="kind-dev", namespace="dev"), Prefs())
    texts = [item.text for item in items]
    assert texts[texts.index("Open rules file") - 1] == "Forward\u2026"
    assert items[texts.index("Forward\u2026")].command is Simple.FORWARD
    without = build_menu(Snapshot(), Prefs())
    assert not next(item for item in without if item.text == "Forward\u2026").enabled


def test_udp_is_shown_but_cannot_be_saved(qtbot, window) -> None:
    win, rules, _shown = window
    qtbot.keyClicks(win.search, "dns")
    qtbot.keyClick(win.search, Qt.Key.Key_Down)  # no TCP port matches: the first row is chosen anyway
    assert win.table.data(win.table.index(0, 3)) == "UDP: Kubernetes port-forward carries TCP only"
    assert not win.save_button.isEnabled()
    assert "cannot be forwarded: Kubernetes port-forward carries TCP only" in win.note.text()
    win.save()
    assert rules.drafts == []


def test_a_pod_port_saves_its_workload_and_the_user_edits_win(qtbot, window) -> None:
    win, rules, _shown = window
    qtbot.keyClicks(win.search, "pod/ dlv")
    qtbot.keyClick(win.search, Qt.Key.Key_Down)
    assert win.target.text() == "deployment/dbg port 40000 in dev"
    assert "owns pod/dbg-7d9f8c-x2k4q" in win.note.text()
    win.name.setText("debugger")
    win.local_port.setValue(40001)
    win.scheme.setCurrentText("http")
    win.save()
    assert rules.drafts == [Draft(D, "dbg", 40000, "dev", 40001, "debugger", "http")]


def test_a_save_that_is_refused_says_why_and_keeps_the_window(qtbot, window) -> None:
    win, _rules, _shown = window

    def refuse(_draft: Draft) -> str:
        raise KubetrayError("rules.yaml:3 has a problem you must fix first: port is not a number.")

    win._save = refuse
    qtbot.keyClicks(win.search, "svc/web")
    qtbot.keyClick(win.search, Qt.Key.Key_Down)
    win.save()
    assert win.result.text() == "rules.yaml:3 has a problem you must fix first: port is not a number."
    assert win.isVisible()


def test_choosing_a_namespace_asks_the_engine_and_late_rows_keep_the_choice(qtbot, window) -> None:
    win, _rules, shown = window
    qtbot.keyClicks(win.search, "svc/web")
    qtbot.keyClick(win.search, Qt.Key.Key_Down)
    win.take(Rows("dev", (ObjectRow(S, "aaa", "dev", (PortRow(1, "x"),)),)))  # a row before the chosen one
    win.search.clear()
    qtbot.waitUntil(lambda: win.table.rowCount() == 5)
    chosen = win.view.selectionModel().selectedRows()
    assert [win.table.entry(i.row()).object_text for i in chosen] == ["svc/web"]
    win.namespaces.setCurrentText("prod")
    assert shown == ["prod"] and win.table.rowCount() == 0 and win.proposal is None
    assert win.status.text() == "0 objects in namespace prod (still listing\u2026)"


def test_a_context_switch_makes_the_list_stale_and_turns_save_off(qtbot, window) -> None:
    win, rules, _shown = window
    qtbot.keyClicks(win.search, "svc/web")
    qtbot.keyClick(win.search, Qt.Key.Key_Down)
    assert win.save_button.isEnabled()
    win.snapshot_changed(Snapshot(context="kind-dev", namespace="dev"))
    assert win.stale is None and win.save_button.isEnabled()
    win.snapshot_changed(Snapshot(context="prod", namespace="default"))
    assert not win.save_button.isEnabled()
    assert win.status.text() == ("The current context changed to prod while this window showed kind-dev; close it "
                                 "and choose Forward\u2026 again to pick from prod.")
    win.take(Rows("dev", ROWS[:1]))
    qtbot.keyClick(win.search, Qt.Key.Key_Down)
    assert not win.save_button.isEnabled() and win.status.text().startswith("The current context changed")
    win.save()
    assert rules.drafts == []


def test_two_thousand_rows_in_batches(qtbot, window) -> None:
    win, _rules, _shown = window
    rows = [ObjectRow(S, f"svc-{i:04d}", "dev", (PortRow(8080, "http"), PortRow(9090, "grpc"))) for i in range(2000)]
    for start in range(0, 2000, 500):
        win.take(Rows("dev", tuple(rows[start:start + 500]), reset=start == 0, complete=start == 1500))
    qtbot.waitUntil(lambda: win.table.rowCount() == 4000)
    assert win.status.text() == "2000 objects in namespace dev"
    qtbot.keyClicks(win.search, "svc-1234 grpc")
    assert win.table.rowCount() == 1


def test_updates_queued_for_a_closed_window_are_dropped(qtbot) -> None:
    import shiboken6

    bridge = Bridge()
    relay = Relay.of(bridge)
    assert Relay.of(bridge) is relay
    old = PickerWindow("kind-dev", "dev", same, lambda _d: "")
    old_tag = old.listen(relay)
    new = PickerWindow("kind-dev", "dev", same, lambda _d: "")
    qtbot.addWidget(new)
    new_tag = new.listen(relay)
    assert new_tag != old_tag
    old.close()
    old.deleteLater()
    qtbot.waitUntil(lambda: not shiboken6.isValid(old))
    bridge.later(relay.updates, old_tag, Rows("dev", ROWS, reset=True))  # as from the engine thread, late
    bridge.later(relay.updates, new_tag, Rows("dev", ROWS[:1], reset=True, complete=True))
    qtbot.waitUntil(lambda: new.table.rowCount() == 1)
    assert [e.object_text for e in new.model.visible] == ["svc/web"]


# --- in the tray app, on the real engine ----------------------------------------------------

SCENARIO = """
deployments:
  - name: web
    labels: {app: web}
    ports: [{name: http, containerPort: 8080}]
services:
  - name: web
    selector: {app: web}
    ports: [{name: http, port: 80, targetPort: http}, {name: dns, port: 53, protocol: UDP}]
"""


@pytest.fixture
def sim() -> Iterator[SimThread]:
    with run_in_thread(SimCluster("ui", scenario=SCENARIO)) as thread:
        yield thread


@pytest.fixture
def app(qapp: QApplication, sim: SimThread, tmp_path: Path) -> Iterator[TrayApp]:
    kubeconfig = tmp_path / "kubeconfig"
    sim.cluster.write_kubeconfig(kubeconfig, context="sim-ctx")
    rules = tmp_path / "rules.yaml"
    rules.write_text(HEADER, encoding="utf-8")
    args = argparse.Namespace(context=None, connect_timeout=5.0, verbose=False)
    tray_app = TrayApp(qapp, args, rules, str(kubeconfig))
    tray_app.start()
    yield tray_app
    picker = getattr(tray_app, "_picker", None)
    if picker is not None:
        picker.close()
        picker.deleteLater()
    tray_app.shutdown()
    if tray_app.status_window is not None:
        tray_app.status_window.deleteLater()


def open_forward_window(qtbot, app: TrayApp) -> PickerWindow:
    qtbot.waitUntil(lambda: app.tray.snapshot.context == "sim-ctx", timeout=10000)
    app.run_command(Simple.FORWARD)
    win = app._picker
    assert isinstance(win, PickerWindow) and win.isVisible()
    qtbot.waitUntil(lambda: win.model.complete and "kube-system" in win.model.namespaces, timeout=10000)
    return win


def test_forward_lists_the_cluster_through_the_engine(qtbot, app: TrayApp) -> None:
    win = open_forward_window(qtbot, app)
    texts = [(e.object_text, e.port_text) for e in win.model.visible]
    assert texts[:3] == [("svc/web", "http 80"), ("svc/web", "dns 53"), ("deploy/web", "http 8080")]
    assert any(kind == "pod" and port == "http 8080" for kind, port in
               ((o.split("/")[0], p) for o, p in texts))
    assert app.run_command(Simple.FORWARD) is None and app._picker is win  # one window at a time
    win.close()
    # Closing stops the window's watches on the engine loop.
    qtbot.waitUntil(lambda: not [t for t in app.engine.submit(_informer_names()).result(5)
                                 if t.startswith("informer:default/") and t.endswith(("cronjobs", "daemonsets"))],
                    timeout=10000)


async def _informer_names() -> list[str]:
    import asyncio

    return [task.get_name() for task in asyncio.all_tasks()]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.skipif(importlib.util.find_spec("trayapp.config.edit") is None,
                    reason="config/edit.py (the rules-file writer) is not in this tree yet")
def test_forward_saves_a_rule_and_the_tunnel_starts(qtbot, app: TrayApp) -> None:
    win = open_forward_window(qtbot, app)
    qtbot.keyClicks(win.search, "svc/web http")
    qtbot.keyClick(win.search, Qt.Key.Key_Down)
    port = free_port()
    win.local_port.setValue(port)
    assert propose_local_port(port).port == port
    win.save()
    rules = app.tray.snapshot.rules_path
    assert rules is not None and rules.read_text(encoding="utf-8").startswith("# my forwards")
    qtbot.waitUntil(lambda: any(t.local_port == port and t.state == TunnelState.FORWARDING
                                for t in app.tray.snapshot.tunnels), timeout=15000)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
        assert answer.status == 200

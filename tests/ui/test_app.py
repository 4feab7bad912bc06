"""The tray app offscreen, on the real engine and a simulated cluster over real sockets."""

from __future__ import annotations

import argparse
import socket
import threading
import urllib.request
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QApplication

from trayapp.config.settings import load_settings
from trayapp.model import Event, EventKind, TunnelState
from trayapp.platform.instance import ask
from trayapp.sim.runner import SimThread
from trayapp.ui.app import TrayApp
from trayapp.ui.menu_model import (
    CopyText,
    OpenUrl,
    SetEnabled,
    SetNotifications,
    SetPaused,
    Simple,
    SwitchContext,
    build_menu,
)


class UrlCatcher(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    @Slot(QUrl)
    def catch(self, url: QUrl) -> None:
        self.urls.append(url.toString())


def ask_from_another_thread(qtbot, request: dict) -> dict:
    """As `kubetray status` asks: blocking, but off the GUI thread, which must stay free to answer."""
    answers: list[dict | None] = []
    threading.Thread(target=lambda: answers.append(ask(request)), daemon=True).start()
    qtbot.waitUntil(lambda: bool(answers), timeout=5000)
    assert answers[0] is not None
    return answers[0]


def forwarding(app: TrayApp) -> bool:
    return any(t.state == TunnelState.FORWARDING for t in app.tray.snapshot.tunnels)


def wait_forwarding(qtbot, app: TrayApp) -> None:
    try:
        qtbot.waitUntil(lambda: forwarding(app), timeout=10000)
    except Exception:
        raise AssertionError(f"not forwarding: the tray shows {app.tray.snapshot}, the engine has "
                             f"{app.controller.snapshot()}; events: {app.bus.history}") from None


def test_the_tray_app_forwards_and_obeys_its_menu(qtbot, app: TrayApp, unused_tcp_port: int) -> None:
    wait_forwarding(qtbot, app)
    # Offscreen there is no tray: the status window stands in, saying why.
    assert app.status_window is not None and app.status_window.isVisible()
    assert app.status_window.list.count() == 1
    assert app.tray.icon.toolTip() == "sim-ctx: 1 tunnel"
    with urllib.request.urlopen(f"http://127.0.0.1:{unused_tcp_port}/", timeout=10) as answer:
        assert answer.status == 200

    # Another process asks: `kubetray status` and the tray's own view.
    status = ask_from_another_thread(qtbot, {"request": "status"})
    assert status["mode"] == "tray" and status["tunnels"][0]["state"] == "forwarding"
    ui = ask_from_another_thread(qtbot, {"request": "ui"})
    assert ui is not None and ui["trayAvailable"] is False and ui["statusWindow"] is True

    catcher = UrlCatcher()
    QDesktopServices.setUrlHandler("http", catcher, "catch")
    try:
        app.run_command(OpenUrl(f"http://localhost:{unused_tcp_port}/"))
        assert catcher.urls == [f"http://localhost:{unused_tcp_port}/"]
    finally:
        QDesktopServices.unsetUrlHandler("http")
    app.run_command(CopyText(str(unused_tcp_port)))
    assert QGuiApplication.clipboard().text() == str(unused_tcp_port)

    app.run_command(SetPaused(True))
    qtbot.waitUntil(lambda: app.tray.snapshot.paused and not forwarding(app), timeout=5000)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", unused_tcp_port), timeout=2).close()
    app.run_command(SetPaused(False))
    wait_forwarding(qtbot, app)

    tid = app.tray.snapshot.tunnels[0].tunnel_id
    app.run_command(SetEnabled(tid, False))
    qtbot.waitUntil(lambda: app.tray.snapshot.tunnels[0].state == TunnelState.STOPPED, timeout=5000)
    app.run_command(SetEnabled(tid, True))
    wait_forwarding(qtbot, app)


def test_notifications_fall_back_to_the_tray_and_can_be_turned_off(qtbot, app: TrayApp) -> None:
    wait_forwarding(qtbot, app)
    failure = Event(EventKind.FAILED, "Something broke; kubetray keeps trying.", context="sim-ctx")
    # No notification service on this bus: the notice comes back for the tray's own balloon.
    with qtbot.waitSignal(app.bridge.notice_fallback, timeout=5000) as caught:
        app.bus.publish(failure)
    notice = caught.args[0]
    assert notice.sticky and notice.body == "Something broke; kubetray keeps trying."

    app.run_command(SetNotifications(False))
    assert load_settings().notifications is False
    with qtbot.assertNotEmitted(app.bridge.notice_fallback, wait=1500):
        app.bus.publish(Event(EventKind.FAILED, "Another thing broke.", context="sim-ctx"))


def test_open_rules_file_creates_a_commented_example(qtbot, app: TrayApp, tmp_path: Path) -> None:
    wait_forwarding(qtbot, app)
    rules = app.tray.snapshot.rules_path
    assert rules is not None
    rules.unlink()
    catcher = UrlCatcher()
    QDesktopServices.setUrlHandler("file", catcher, "catch")
    try:
        app.run_command(Simple.OPEN_RULES)
    finally:
        QDesktopServices.unsetUrlHandler("file")
    assert catcher.urls == [QUrl.fromLocalFile(str(rules)).toString()]
    assert rules.read_text(encoding="utf-8").startswith("# kubetray rules.")


def test_show_log_lists_recent_events(qtbot, app: TrayApp) -> None:
    wait_forwarding(qtbot, app)
    app.run_command(Simple.SHOW_LOG)
    assert app.log_window is not None and app.log_window.isVisible()
    qtbot.waitUntil(lambda: " forwarding " in app.log_window.toPlainText(), timeout=5000)
    app.log_window.close()


def test_switch_context_writes_the_kubeconfig_and_the_tray_follows(
        qapp: QApplication, qtbot, sim: SimThread, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    other = sim.cluster.kubeconfig_entry(context="other", namespace="staging")
    sim.cluster.write_kubeconfig(kubeconfig, context="sim-ctx", extra=[other])
    rules = tmp_path / "rules.yaml"
    rules.write_text("contexts:\n  sim-ctx:\n    portForward:\n"
                     "      - {resourceType: service, resourceName: web, port: 80, localPort: 18093}\n",
                     encoding="utf-8")
    args = argparse.Namespace(context=None, connect_timeout=5.0, verbose=False)
    tray_app = TrayApp(qapp, args, rules, str(kubeconfig))
    tray_app.start()
    try:
        qtbot.waitUntil(lambda: tray_app.tray.snapshot.contexts == ("other", "sim-ctx"), timeout=10000)
        wait_forwarding(qtbot, tray_app)
        tray_app.run_command(SwitchContext("other"))
        qtbot.waitUntil(lambda: tray_app.tray.snapshot.context == "other", timeout=5000)
        assert tray_app.tray.snapshot.namespace == "staging" and tray_app.tray.snapshot.tunnels == ()
        assert "current-context: other" in kubeconfig.read_text(encoding="utf-8")
        assert tray_app.tray.icon.toolTip() == "other: 0 tunnels"
        tray_app.run_command(SwitchContext("sim-ctx"))
        wait_forwarding(qtbot, tray_app)
    finally:
        tray_app.shutdown()
        if tray_app.status_window is not None:
            tray_app.status_window.deleteLater()


def test_a_failed_context_switch_is_told_once_and_kubetray_stays(qtbot, app: TrayApp) -> None:
    wait_forwarding(qtbot, app)
    failures: list[Event] = []
    app.bridge.engine_event.connect(lambda e: failures.append(e) if e.kind == EventKind.FAILED else None)
    told: list[object] = []
    app.bridge.tell_later.connect(told.append)
    app.run_command(SwitchContext("no-such-context"))
    qtbot.waitUntil(lambda: bool(failures), timeout=5000)
    qtbot.wait(300)
    (failure,) = failures
    assert "no-such-context" in failure.message and "kubetray stays on context sim-ctx." in failure.message
    assert told == []  # the event is the one report; the command adds no second notice
    assert app.tray.snapshot.context == "sim-ctx"


def test_an_automatic_tunnel_is_announced_and_listed_under_its_source(qtbot, app: TrayApp, sim: SimThread) -> None:
    # The rules file has no auto: section, so Skaffold's services are forwarded (the default).
    wait_forwarding(qtbot, app)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    told: list[object] = []
    app.bridge.notice_fallback.connect(told.append)  # no notification service here: the balloon's
    sim.cluster.create({
        "kind": "Service",
        "metadata": {"name": "shop", "namespace": "default",
                     "labels": {"app.kubernetes.io/managed-by": "skaffold"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": port, "targetPort": "http"}]},
    })
    title = "kubetray forwards svc/shop http automatically"
    qtbot.waitUntil(lambda: any(getattr(n, "title", None) == title for n in told), timeout=10000)
    notice = next(n for n in told if getattr(n, "title", None) == title)
    assert f"svc/default/shop port {port} is on localhost:{port}" in notice.body  # type: ignore[attr-defined]
    assert "Skaffold deployed it" in notice.body and "Don't forward" in notice.body  # type: ignore[attr-defined]
    with urllib.request.urlopen(f"http://localhost:{port}/", timeout=10) as answer:
        assert answer.status == 200
    texts = [item.text for item in build_menu(app.tray.snapshot, app.prefs())]
    heading = texts.index("Automatic \u00b7 Skaffold")
    assert texts[heading + 1].startswith(f"svc/shop http  \u2192 localhost:{port}")
    status = ask_from_another_thread(qtbot, {"request": "status"})
    shop = next(t for t in status["tunnels"] if t["resourceName"] == "shop")
    assert (shop["auto"], shop["source"], shop["url"]) == (True, "skaffold", f"http://localhost:{port}/")

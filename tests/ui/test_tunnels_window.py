""""Show all tunnels…" in the running tray app, on the real engine and a simulated cluster: the
window lists the tunnels and shows their traffic as the engine counts it."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QDesktopServices
from PySide6.QtTest import QTest

from trayapp.model import Notice, TunnelState, TunnelStats
from trayapp.ui.app import TrayApp
from trayapp.ui.menu_model import Command, CopyText, Mark, Simple
from trayapp.ui.tray import Icons
from trayapp.ui.tunnels_model import Column, TunnelTable
from trayapp.ui.tunnels_window import TunnelsWindow

from .test_app import UrlCatcher, wait_forwarding
from .test_menu_model import many


class Answers:
    """The user's answers to the questions the commands ask."""

    def __init__(self, port: int | None = None, confirm: bool = True) -> None:
        self.port = port
        self.confirm_with = confirm
        self.asked: list[str] = []

    def local_port(self, label: str, current: int | None) -> int | None:
        self.asked.append(f"port for {label} (now {current})")
        return self.port

    def confirm(self, title: str, text: str, yes: str) -> bool:
        self.asked.append(title)
        return self.confirm_with


def told(app: TrayApp) -> list[Notice]:
    notices: list[Notice] = []
    app.bridge.notice_fallback.connect(notices.append)  # no notification service here: the balloon's
    return notices


def test_show_all_tunnels_lists_them_with_live_traffic(qtbot, app: TrayApp, unused_tcp_port: int) -> None:
    wait_forwarding(qtbot, app)
    app.run_command(Simple.SHOW_TUNNELS)
    window = app.tunnels_window
    assert window is not None and window.isVisible()
    qtbot.waitUntil(lambda: window.model.rowCount() == 1, timeout=5000)
    row = window.model.row(0)
    assert (row.name, row.state, row.context, row.address) == ("web", TunnelState.FORWARDING, "sim-ctx",
                                                               f"localhost:{unused_tcp_port}")
    for _ in range(3):
        with urllib.request.urlopen(f"http://127.0.0.1:{unused_tcp_port}/", timeout=10) as answer:
            body = answer.read()
    # Counted in the engine, published at most once a second, shown without anyone asking.
    qtbot.waitUntil(lambda: window.model.row(0).stats.connections == 3
                    and window.model.row(0).stats.open_connections == 0, timeout=20000)
    stats = window.model.row(0).stats
    assert stats.bytes_in > len(body) * 3 and stats.bytes_out > 0
    assert window.model.data(window.model.index(0, Column.CONNECTIONS)) == "0 open, 3 in all"
    assert all(event.kind.value != "stats" for event in app.bus.history)

    window.filter.setText("no such tunnel")
    assert window.model.rowCount() == 0 and window.count.text() == "Showing 0 of 1 tunnels."
    window.filter.clear()
    catcher = UrlCatcher()
    QDesktopServices.setUrlHandler("http", catcher, "catch")
    try:
        cell = window.view.visualRect(window.model.index(0, Column.ADDRESS)).center()
        QTest.mouseClick(window.view.viewport(), Qt.MouseButton.LeftButton, pos=cell)
        assert catcher.urls == [f"http://localhost:{unused_tcp_port}/"]
    finally:
        QDesktopServices.unsetUrlHandler("http")
    window.close()



def test_the_table_sorts_on_a_header_click_and_updates_in_place(qtbot, artifacts: Path) -> None:
    table = TunnelTable()
    table.apply_snapshot(many(40, auto_from=10))
    icons = Icons()
    commands: list[Command] = []
    window = TunnelsWindow(table, icons.dots, commands.append, icons.app)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    assert window.model.rowCount() == 40 and window.count.text() == "40 tunnels"
    assert [window.model.row(n).name for n in range(3)] == ["svc/svc00 :8000", "svc/svc01 :8001", "svc/svc02 :8002"]
    assert window.view.horizontalHeader().sortIndicatorSection() == Column.NAME
    assert [window.model.headerData(c, Qt.Orientation.Horizontal) for c in range(3)] == ["State", "Name", "Context"]

    header = window.view.horizontalHeader()
    QTest.mouseClick(header.viewport(), Qt.MouseButton.LeftButton,
                     pos=QPoint(header.sectionViewportPosition(Column.STATE) + 5, header.height() // 2))
    assert window.model.row(0).state == TunnelState.FAILED  # the one in trouble comes first
    assert window.model.data(window.model.index(0, Column.STATE), Qt.ItemDataRole.DecorationRole) is icons.dots[
        Mark.FAILED]

    window.view.selectRow(5)
    chosen = window.model.row(5).tunnel_id
    table.apply_stats(chosen, TunnelStats(1, 1, 4096, 10))
    window.changed()
    qtbot.waitUntil(lambda: window.model.row(5).stats.bytes_in == 4096, timeout=5000)
    assert window.view.selectionModel().selectedRows()[0].row() == 5  # redrawn in place: still selected
    assert window.model.data(window.model.index(5, Column.BYTES_IN)) == "4.0 KB"

    window.filter.setText("svc05")
    assert window.model.rowCount() == 1 and window.count.text() == "Showing 1 of 40 tunnels."
    window.filter.clear()
    # An address a browser cannot open is copied.
    first = window.model.index(0, Column.ADDRESS)
    QTest.mouseClick(window.view.viewport(), Qt.MouseButton.LeftButton, pos=window.view.visualRect(first).center())
    assert commands == [CopyText(window.model.row(0).address)]
    window.grab().save(str(artifacts / "tunnels-window-offscreen.png"))

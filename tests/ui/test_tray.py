"""The tray's Qt menu, offscreen: entries, commands, the click on a tunnel, the icon."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QMenu

from trayapp.model import TunnelState
from trayapp.ui.menu_model import Command, CopyText, KeepForwarding, Mark, OpenUrl, Prefs, SetEnabled, SetPaused, Simple
from trayapp.ui.tray import Tray

from .test_menu_model import API, RULES, TLS, WEB, many, snap, view


def make_tray(qtbot, commands: list[Command]) -> Tray:
    tray = Tray(commands.append, lambda: Prefs(autostart=False))
    qtbot.addWidget(tray.menu)
    return tray


def action(menu: QMenu, start: str):
    return next(a for a in menu.actions() if a.text().startswith(start))


def full_snapshot():
    return snap(
        view(WEB, TunnelState.FORWARDING, 8080, "web-7d9-x2k"),
        view(API, TunnelState.WAITING, 9090, reason="No pod of statefulset api is ready yet."),
        view(TLS, TunnelState.FAILED, reason="The cluster refused the port-forward."),
    )


def test_menu_is_built_when_it_opens(qtbot, artifacts: Path) -> None:
    commands: list[Command] = []
    tray = make_tray(qtbot, commands)
    tray.update(full_snapshot())
    assert tray.menu.actions() == []  # nothing is built until the menu opens
    tray.menu.popup(QPoint(10, 10))
    qtbot.waitUntil(tray.menu.isVisible)
    names = [a.text() for a in tray.menu.actions() if not a.isSeparator()]
    assert names[:2] == ["kind-dev  \u00b7  namespace default", "Switch context"]
    assert "web  \u2192 localhost:8080  web-7d9-x2k" in names
    assert names[-3:] == ["Start at login", "Notifications", "Quit kubetray"]
    web = action(tray.menu, "web")
    assert [a.text() for a in tray.filled(web.menu()).actions() if not a.isSeparator()] == [
        "Open", "Copy URL", "Copy address", "Copy port", "Restart", "Pause", "Change local port\u2026",
        "Stop forwarding\u2026"]
    failed = action(tray.menu, "deploy/gateway")
    assert "The cluster refused the port-forward." in failed.toolTip()
    assert tray.menu.toolTipsVisible()
    assert not action(tray.menu, "kind-dev").isEnabled()
    login = action(tray.menu, "Start at login")
    assert login.isCheckable() and not login.isChecked()
    tray.menu.grab().save(str(artifacts / "menu-offscreen.png"))

    action(tray.menu, "Pause all").trigger()
    action(web.menu(), "Pause").trigger()
    action(tray.menu, "Quit").trigger()
    assert commands == [SetPaused(True), SetEnabled("ctx/web", False), Simple.QUIT]


def test_clicking_a_tunnel_opens_it_and_enter_does_too(qtbot) -> None:
    commands: list[Command] = []
    tray = make_tray(qtbot, commands)
    tray.update(full_snapshot())
    tray.menu.popup(QPoint(10, 10))
    qtbot.waitUntil(tray.menu.isVisible)
    web = action(tray.menu, "web")
    QTest.mouseClick(tray.menu, Qt.MouseButton.LeftButton, pos=tray.menu.actionGeometry(web).center())
    assert commands == [OpenUrl("http://localhost:8080/")]
    assert not tray.menu.isVisible()

    tray.menu.popup(QPoint(10, 10))
    qtbot.waitUntil(tray.menu.isVisible)
    tray.menu.setActiveAction(action(tray.menu, "web"))
    QTest.keyClick(tray.menu, Qt.Key.Key_Return)
    assert commands[-1] == OpenUrl("http://localhost:8080/")

    # A waiting tunnel has nothing to open: the click only shows its submenu.
    tray.menu.popup(QPoint(10, 10))
    qtbot.waitUntil(tray.menu.isVisible)
    waiting = action(tray.menu, "sts/api")
    QTest.mouseClick(tray.menu, Qt.MouseButton.LeftButton, pos=tray.menu.actionGeometry(waiting).center())
    assert len(commands) == 2


def test_icon_follows_the_overall_state(qtbot) -> None:
    tray = make_tray(qtbot, [])
    key = lambda: tray.icon.icon().cacheKey()  # noqa: E731
    assert key() == tray.icons.tray[Mark.IDLE].cacheKey()
    tray.update(snap(view(WEB, TunnelState.FORWARDING, 8080, "w")))
    assert key() == tray.icons.tray[Mark.OK].cacheKey()
    assert tray.icon.toolTip() == "kind-dev: 1 tunnel"
    tray.update(snap(view(WEB, TunnelState.RECONNECTING, 8080, "w")))
    assert key() == tray.icons.tray[Mark.BUSY].cacheKey()
    tray.update(snap(view(WEB, TunnelState.FAILED, None, reason="x")))
    assert key() == tray.icons.tray[Mark.FAILED].cacheKey()
    assert not tray.icons.tray[Mark.FAILED].isNull()


def test_an_open_menu_follows_new_state(qtbot) -> None:
    tray = make_tray(qtbot, [])
    tray.update(snap(view(WEB, TunnelState.WAITING, 8080)))
    tray.menu.popup(QPoint(10, 10))
    qtbot.waitUntil(tray.menu.isVisible)
    assert action(tray.menu, "web").text().endswith("(waiting)")
    tray.update(snap(view(WEB, TunnelState.FORWARDING, 8080, "web-1")))
    assert action(tray.menu, "web").text() == "web  \u2192 localhost:8080  web-1"


def test_a_click_or_a_quick_second_click_opens_the_menu(qtbot) -> None:
    from PySide6.QtWidgets import QSystemTrayIcon

    tray = make_tray(qtbot, [])
    tray.update(full_snapshot())
    for reason in (QSystemTrayIcon.ActivationReason.Trigger, QSystemTrayIcon.ActivationReason.DoubleClick):
        tray.icon.activated.emit(reason)
        qtbot.waitUntil(tray.menu.isVisible)
        tray.menu.close()


def test_the_release_of_the_opening_click_opens_nothing(qtbot) -> None:
    # A tall menu is placed over the icon; the release of the click that opened it lands on an
    # entry. Only a press inside the menu makes a release count, as in Qt's own QMenu.
    commands: list[Command] = []
    tray = make_tray(qtbot, commands)
    tray.update(full_snapshot())
    tray.menu.popup(QPoint(10, 10))
    qtbot.waitUntil(tray.menu.isVisible)
    web = action(tray.menu, "web")
    QTest.mouseRelease(tray.menu, Qt.MouseButton.LeftButton, pos=tray.menu.actionGeometry(web).center())
    assert commands == []


def test_reopening_the_menu_does_not_pile_up_submenus(qtbot) -> None:
    from PySide6.QtCore import QCoreApplication, QEvent

    tray = make_tray(qtbot, [])
    tray.update(full_snapshot())
    counts = []
    for _ in range(3):
        tray.rebuild()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        counts.append(len(tray.menu.findChildren(QMenu)))
    assert counts[0] == counts[1] == counts[2] == 4  # the context switch submenu and 3 tunnels


def test_an_unchanged_state_reuses_the_built_menu(qtbot) -> None:
    tray = make_tray(qtbot, [])
    tray.update(full_snapshot())
    tray.rebuild()
    first = tray.menu.actions()
    tray.rebuild()
    assert tray.menu.actions() == first  # the same QActions: nothing was rebuilt
    tray.update(snap(view(WEB, TunnelState.RECONNECTING, 8080, "web-1")))
    tray.rebuild()
    assert action(tray.menu, "web").text().endswith("(reconnecting)")


def test_a_submenu_gets_its_entries_when_it_opens(qtbot) -> None:
    tray = make_tray(qtbot, [])
    tray.update(full_snapshot())
    tray.menu.popup(QPoint(10, 10))
    qtbot.waitUntil(tray.menu.isVisible)
    sub = action(tray.menu, "web").menu()
    assert sub.actions() == []
    sub.popup(QPoint(300, 10))
    qtbot.waitUntil(sub.isVisible)
    assert [a.text() for a in sub.actions() if not a.isSeparator()][0] == "Open"
    sub.close()


def test_a_long_menu_groups_tunnels_in_submenus_that_still_open_them(qtbot, artifacts: Path) -> None:
    commands: list[Command] = []
    tray = make_tray(qtbot, commands)
    tray.update(many(40, auto_from=10))
    tray.menu.popup(QPoint(10, 10))
    qtbot.waitUntil(tray.menu.isVisible)
    skaffold = action(tray.menu, "Automatic \u00b7 Skaffold (30)")
    sub = tray.filled(skaffold.menu())
    sub.popup(QPoint(200, 10))
    qtbot.waitUntil(sub.isVisible)
    tray.menu.grab().save(str(artifacts / "menu-grouped-offscreen.png"))
    first = action(sub, "svc/svc10")
    QTest.mouseClick(sub, Qt.MouseButton.LeftButton, pos=sub.actionGeometry(first).center())
    assert commands == [CopyText("localhost:8010")]  # not an HTTP port: its address is copied


def test_keep_forwarding_is_a_checkable_entry_per_context(qtbot) -> None:
    commands: list[Command] = []
    tray = make_tray(qtbot, commands)
    tray.update(full_snapshot())
    tray.menu.popup(QPoint(10, 10))
    qtbot.waitUntil(tray.menu.isVisible)
    switch = tray.filled(action(tray.menu, "Switch context").menu())
    keep = tray.filled(action(switch, "Keep forwarding").menu())
    prod = action(keep, "prod")
    assert prod.isCheckable() and not prod.isChecked()
    prod.trigger()
    assert commands == [KeepForwarding(RULES, "prod", True)]

"""A tray whose menu a StatusNotifierItem host shows: built before it opens, submenus included.

Under such a host Qt exports the menu over D-Bus and the icon has no geometry; offscreen, a shown
icon has none either, which is what the Tray goes by. tests/desktop/test_sni.py checks the same
against a real host (gtk-sni-tray-standalone) and its first right click.
"""

from __future__ import annotations

from PySide6.QtWidgets import QMenu

from trayapp.model import TunnelState
from trayapp.ui.menu_model import Prefs
from trayapp.ui.tray import Tray

from .test_menu_model import WEB, snap, view


def texts(menu: QMenu) -> list[str]:
    return [a.text() for a in menu.actions() if not a.isSeparator()]


def test_a_shown_icon_without_geometry_keeps_its_menu_current(qtbot) -> None:
    tray = Tray(lambda _command: None, lambda: Prefs(autostart=False))
    qtbot.addWidget(tray.menu)
    tray.show()
    try:
        assert not tray.icon.geometry().isValid()
        assert texts(tray.menu)[-1] == "Quit kubetray"  # built at show(): a host reads it at once
        tray.update(snap(view(WEB, TunnelState.FORWARDING, 8080, "web-1")))
        assert not tray.menu.isVisible()
        web = next(a for a in tray.menu.actions() if a.text().startswith("web "))
        assert web.text().endswith("web-1")
        assert texts(web.menu())[0] == "Open"  # filled without being opened
        tray.update(snap(view(WEB, TunnelState.FORWARDING, 8080, "web-2")))
        assert any(t.startswith("web ") and t.endswith("web-2") for t in texts(tray.menu))
    finally:
        tray.hide()

"""The tray icon and its menu: renders menu_model's items as Qt actions, rebuilt each time it opens.

Nothing here knows about Kubernetes. The menu is filled on `aboutToShow` from the latest
Snapshot the app handed over (never by asking the engine; under a StatusNotifierItem host on
every new Snapshot too, see Tray.show), and a chosen entry's command goes to
`on_command`. A tunnel entry has a submenu, yet clicking the entry itself opens its URL, as users
expect from a list of links; Qt gives submenu entries no click, so TunnelMenu adds one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QAction, QColor, QCursor, QIcon, QKeyEvent, QMouseEvent, QPainter, QPixmap, QShowEvent
from PySide6.QtWidgets import QMenu, QSystemTrayIcon, QWidget

from trayapp.control import Snapshot
from trayapp.ui.menu_model import Command, Item, Mark, Prefs, build_menu, overall, tooltip

RESOURCES_CANDIDATES = (
    Path(__file__).resolve().parents[1] / "resources",  # inside an installed wheel
    Path(__file__).resolve().parents[2] / "resources",  # a source checkout
)

_MARK_COLOURS = {
    Mark.OK: "#2f9e5b",
    Mark.BUSY: "#d99a00",
    Mark.FAILED: "#d64545",
    Mark.STOPPED: "#7b8794",
    Mark.IDLE: "#7b8794",
}


def resources_dir() -> Path:
    for candidate in RESOURCES_CANDIDATES:
        if (candidate / "icons").is_dir():
            return candidate
    return RESOURCES_CANDIDATES[-1]


def icon_path(name: str) -> Path:
    return resources_dir() / "icons" / f"{name}.svg"


class Icons:
    """Loaded once: the tray's state icons and the small dots beside tunnels."""

    def __init__(self) -> None:
        self.tray = {mark: QIcon(str(icon_path(f"tray-{mark.value}"))) for mark in (Mark.IDLE, Mark.OK, Mark.BUSY,
                                                                                     Mark.FAILED)}
        self.app = QIcon(str(icon_path("kubetray")))
        self.dots = {mark: _dot(colour, hollow=mark == Mark.STOPPED) for mark, colour in _MARK_COLOURS.items()}

    def for_state(self, mark: Mark) -> QIcon:
        return self.tray.get(mark, self.tray[Mark.IDLE])


def _dot(colour: str, hollow: bool) -> QIcon:
    pixmap = QPixmap(16, 16)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    pen = painter.pen()
    pen.setColor(QColor(colour))
    pen.setWidthF(2.0)
    painter.setPen(pen)
    if not hollow:
        painter.setBrush(QColor(colour))
    painter.drawEllipse(3, 3, 10, 10)
    painter.end()
    return QIcon(pixmap)


class TunnelMenu(QMenu):
    """A QMenu whose entries with submenus still run their own command when clicked or Entered."""

    def __init__(self, on_command: Callable[[Command], None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._on_command = on_command
        # Qt acts on a release only after a press inside the menu; so must we, or the release of
        # the click that opened a tall menu (placed over the icon) would open a tunnel.
        self._pressed_inside = False

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt's name)
        self._pressed_inside = False
        super().showEvent(event)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt's name)
        self._pressed_inside = self.rect().contains(event.position().toPoint())
        super().mousePressEvent(event)

    def _direct(self, action: QAction | None) -> Command | None:
        if action is None or action.menu() is None or not action.isEnabled():
            return None
        item = action.data()
        return item.command if isinstance(item, Item) and item.tunnel_id and item.command else None

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt's name)
        pressed, self._pressed_inside = self._pressed_inside, False
        command = self._direct(self.actionAt(event.position().toPoint())) if pressed else None
        if command is not None and event.button() == Qt.MouseButton.LeftButton:
            self.close()
            self._on_command(command)
            return
        super().mouseReleaseEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt's name)
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            command = self._direct(self.activeAction())
            if command is not None:
                self.close()
                self._on_command(command)
                return
        super().keyPressEvent(event)


class Tray:
    def __init__(self, on_command: Callable[[Command], None], prefs: Callable[[], Prefs]) -> None:
        self._on_command = on_command
        self._prefs = prefs
        self.icons = Icons()
        self.snapshot = Snapshot()
        self._submenus: list[QMenu] = []
        self._pending_children: dict[QMenu, tuple[Item, ...]] = {}
        self._built: list[Item] | None = None
        self._exported = False  # shown by a StatusNotifierItem host: kept current, filled at once
        self.menu = TunnelMenu(on_command)
        self.menu.setToolTipsVisible(True)
        self.menu.aboutToShow.connect(self.rebuild)
        self.icon = QSystemTrayIcon(self.icons.for_state(Mark.IDLE))
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._activated)
        self.icon.setToolTip(tooltip(self.snapshot))
        self._mark = Mark.IDLE

    def show(self) -> None:
        self.icon.show()
        # Under a StatusNotifierItem host (KDE, GNOME's AppIndicator, XFCE, waybar, gtk-sni-tray)
        # Qt exports the menu over D-Bus (com.canonical.dbusmenu), and the host pops up the
        # layout it already holds when the user clicks, telling the app only then: a menu built
        # on opening would show the state of the previous opening, and lazily filled submenus
        # would show empty. Qt's icon has no geometry there (nor without any tray, where a
        # current menu costs little); an XEmbed icon has one from show() on, and its menu is
        # built when it opens.
        self._exported = not self.icon.geometry().isValid()
        if self._exported:
            self.rebuild()  # the host reads the menu as soon as the icon registers

    def hide(self) -> None:
        self.icon.hide()

    def update(self, snapshot: Snapshot) -> None:
        """A new state from the engine: icon and tooltip follow; an open menu is rebuilt."""
        self.snapshot = snapshot
        mark = overall(snapshot)
        if mark != self._mark:
            self._mark = mark
            self.icon.setIcon(self.icons.for_state(mark))
        tip = tooltip(snapshot)
        if tip != self.icon.toolTip():  # under StatusNotifierItem each call is a D-Bus signal
            self.icon.setToolTip(tip)
        # An open menu follows the new state, unless the user is inside one of its submenus,
        # which a rebuild would close under the pointer; the next opening shows the news then.
        # A menu exported over D-Bus follows it always: its host shows what it has when clicked.
        if self._exported or (self.menu.isVisible() and not any(sub.isVisible() for sub in self._submenus)):
            self.rebuild()

    def rebuild(self) -> None:
        """Make the menu show the current state; nothing is redone when nothing changed."""
        items = build_menu(self.snapshot, self._prefs())
        if items == self._built:
            return  # opening the menu again with the same state costs no Qt objects
        self._built = items
        # clear() deletes the menu's actions but not the submenus made for them: without this,
        # each opening with 200 tunnels left 200 QMenus behind (8 MB).
        for old in self._submenus:
            old.deleteLater()
        self._submenus = []
        self._pending_children = {}
        self.menu.clear()
        self._fill(self.menu, items)

    def filled(self, sub: QMenu) -> QMenu:
        """A submenu with its entries in place (they are made when it first opens)."""
        children = self._pending_children.pop(sub, None)
        if children is not None:
            self._fill(sub, children)
        return sub

    def _fill(self, menu: QMenu, items: list[Item] | tuple[Item, ...]) -> None:
        for item in items:
            if item.separator:
                menu.addSeparator()
                continue
            action = QAction(item.text, menu)
            if item.children or (item.tunnel_id is not None):
                # A TunnelMenu, so a tunnel inside a group's submenu still opens when clicked.
                sub = TunnelMenu(self._on_command, menu)
                sub.setTitle(item.text)
                sub.setToolTipsVisible(True)
                self._submenus.append(sub)
                # Entries of a submenu are made when it opens: with 200 tunnels that is 1200
                # actions fewer each time the main menu opens. Not when exported: see above.
                if self._exported:
                    self._fill(sub, item.children)
                else:
                    self._pending_children[sub] = item.children
                    sub.aboutToShow.connect(lambda s=sub: self.filled(s))
                # An action of our own rather than sub.menuAction(): calls on that shared wrapper
                # leaked references in PySide6 6.12.
                action.setMenu(sub)
            elif item.command is not None:
                command = item.command
                action.triggered.connect(lambda _checked=False, c=command: self._on_command(c))
            menu.addAction(action)
            action.setData(item)
            action.setEnabled(item.enabled and not item.heading
                              and (item.command is not None or bool(item.children)))
            if item.tooltip:
                action.setToolTip(item.tooltip)
            if item.checked is not None:
                action.setCheckable(True)
                action.setChecked(item.checked)
            if item.mark is not None:
                action.setIcon(self.icons.dots[item.mark])

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        # A left click opens the menu too: on Linux panels that is what users try first.
        # A quick second click arrives as DoubleClick; it should open the menu, not be lost.
        if reason in (QSystemTrayIcon.ActivationReason.Trigger, QSystemTrayIcon.ActivationReason.MiddleClick,
                      QSystemTrayIcon.ActivationReason.DoubleClick) and not self.menu.isVisible():
            self.popup()

    def popup(self, at: QPoint | None = None) -> None:
        geometry = self.icon.geometry()
        if at is None:
            at = geometry.bottomLeft() if geometry.isValid() and geometry.x() > 0 else QCursor.pos()
        self.menu.popup(at)

    def open_submenus(self) -> list[dict[str, object]]:
        """The submenus open now, each with its title and place on screen (for `ui` requests and tests)."""
        out: list[dict[str, object]] = []
        for sub in self._submenus:
            if sub.isVisible():
                frame = sub.geometry()
                out.append({"title": sub.title(), "x": frame.x(), "y": frame.y(), "width": frame.width(),
                            "height": frame.height()})
        return out

    def entries(self) -> list[dict[str, object]]:
        """What the open menu shows, with each entry's place on screen (for `ui` requests and tests)."""
        out: list[dict[str, object]] = []
        origin = self.menu.mapToGlobal(QPoint(0, 0))
        for action in self.menu.actions():
            if action.isSeparator():
                continue
            box = self.menu.actionGeometry(action)
            out.append({
                "text": action.text(), "enabled": action.isEnabled(),
                "checked": action.isChecked() if action.isCheckable() else None,
                "submenu": ([a.text() for a in self.filled(action.menu()).actions() if not a.isSeparator()]
                            if action.menu() else None),
                "tooltip": action.toolTip(),
                "x": origin.x() + box.center().x(), "y": origin.y() + box.center().y(),
            })
        return out

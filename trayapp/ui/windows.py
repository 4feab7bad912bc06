"""The small windows: the status window (when there is no tray), the event log, and the questions
the menu's commands ask before they change the rules file."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from trayapp.control import Snapshot
from trayapp.model import Event
from trayapp.startup import human_line
from trayapp.ui.menu_model import Command, OpenUrl, Simple, tooltip, tunnel_item
from trayapp.ui.tray import Tray


class StatusWindow(QWidget):
    """Stands in for the tray on desktops without one: the same state, the same menu."""

    def __init__(self, tray: Tray, on_command: Callable[[Command], None], why: str = "") -> None:
        super().__init__()
        self.setWindowTitle("kubetray")
        self.setWindowIcon(tray.icons.app)
        self._tray = tray
        self._on_command = on_command
        self.header = QLabel("Starting\u2026")
        self.header.setWordWrap(True)
        self.list = QListWidget()
        self.list.itemActivated.connect(self._activated)
        menu_button = QPushButton("Menu")
        menu_button.setMenu(tray.menu)
        quit_button = QPushButton("Quit")
        quit_button.clicked.connect(lambda: on_command(Simple.QUIT))
        buttons = QHBoxLayout()
        buttons.addWidget(menu_button)
        buttons.addStretch(1)
        buttons.addWidget(quit_button)
        layout = QVBoxLayout(self)
        if why:
            note = QLabel(why)
            note.setWordWrap(True)
            layout.addWidget(note)
        layout.addWidget(self.header)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        self.resize(460, 300)

    def update(self, snapshot: Snapshot) -> None:  # type: ignore[override]
        self.header.setText(tooltip(snapshot))
        self.list.clear()
        for view in snapshot.tunnels:
            entry = tunnel_item(view)
            row = QListWidgetItem(self._tray.icons.dots[entry.mark] if entry.mark else self._tray.icons.app, entry.text)
            row.setToolTip(entry.tooltip)
            row.setData(Qt.ItemDataRole.UserRole, entry.command)
            self.list.addItem(row)

    def _activated(self, row: QListWidgetItem) -> None:
        command = row.data(Qt.ItemDataRole.UserRole)
        if isinstance(command, OpenUrl):
            self._on_command(command)

    def closeEvent(self, event) -> None:  # type: ignore[no-untyped-def]  # noqa: N802 (Qt's name)
        # Closing the only window of a tray-less desktop would leave no way back: minimise.
        event.ignore()
        self.showMinimized()


class LogWindow(QPlainTextEdit):
    """The recent events, newest last, as the terminal shows them."""

    MAX_LINES = 1000

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("kubetray: recent events")
        self.setReadOnly(True)
        self.setMaximumBlockCount(self.MAX_LINES)
        self.resize(760, 360)

    def add(self, event: Event) -> None:
        self.appendPlainText(human_line(event))


class Questions:
    """What the menu's rule-changing commands ask first; tests hand the app their own answers."""

    def local_port(self, label: str, current: int | None) -> int | None:
        """The new local port for a tunnel, or None when the user cancelled."""
        port, ok = QInputDialog.getInt(
            None, "kubetray: change local port",
            f"Local port for {label}.\nkubetray writes it into the rule; if the port is busy it uses the next free one.",
            current or 8080, 1, 65535)
        return port if ok else None

    def confirm(self, title: str, text: str, yes: str) -> bool:
        # The question as the window's title and in the box itself: without a window manager
        # (and on some desktops) titles are not shown.
        box = QMessageBox(QMessageBox.Icon.Question, title, title)
        box.setInformativeText(text)
        accept = box.addButton(yes, QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        return box.clickedButton() is accept

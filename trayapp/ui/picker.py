"""The "Forward…" window: pick a port of a service, workload or pod and save it as a rule.

The window is a view of `PickerModel` (picker_model.py). Rows come from the engine's `Browser`
(engine/browse.py) through the Bridge and a `Relay`, in batches; the table is a Qt model
over the model's filtered list, so a namespace of thousands of objects costs one reset per batch
and a filter per keystroke, never a widget per row. What choosing a port proposes (target,
local port, name, scheme) is shown before Save; Save hands a `Draft` to the `save` callable,
which writes the rules file (config/edit.py); the running engine sees the file change and starts
the tunnel.

Keyboard: Ctrl+F goes to the search field, Down to the first match, Return saves.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QKeyEvent, QKeySequence, QPalette, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QSpinBox,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from trayapp.engine.browse import Namespaces
from trayapp.errors import KubetrayError
from trayapp.ui.picker_model import Draft, Entry, PickerModel, Probe, Proposal, propose, with_local_port

log = logging.getLogger(__name__)

TITLE = "kubetray: Forward\u2026"
_COLUMNS = ("Object", "Port", "Protocol", "Note")
_NO_SCHEME = "(not a web page)"

Index = QModelIndex | QPersistentModelIndex


class EntriesTable(QAbstractTableModel):
    """The model's visible entries as a table; `refresh()` after the model changed."""

    def __init__(self, model: PickerModel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self._entries: list[Entry] = []
        self._muted = QColor(128, 128, 128)

    def refresh(self) -> None:
        self.beginResetModel()
        self._entries = self.model.visible
        self.endResetModel()

    def entry(self, row: int) -> Entry | None:
        return self._entries[row] if 0 <= row < len(self._entries) else None

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008, N802 (Qt's names)
        return 0 if parent.isValid() else len(self._entries)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(_COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return _COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        entry = self.entry(index.row())
        if entry is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            column = index.column()
            if column == 0:
                return entry.object_text
            if column == 1:
                return entry.port_text
            if column == 2:
                return entry.port.protocol if entry.port else ""
            return entry.note
        if role == Qt.ItemDataRole.ToolTipRole:
            return entry.note or None
        if role == Qt.ItemDataRole.ForegroundRole and not entry.choosable:
            return self._muted
        return None


class PickerWindow(QDialog):
    """The window itself. `probe` says which local port a port would get; `save` writes a Draft
    and returns the sentence to show (or raises KubetrayError); `show_namespace` asks the engine
    for another namespace's objects; `closed` is called once when the window goes away;
    `forwarded` says when a tunnel already forwards a draft's target."""

    def __init__(self, context: str | None, namespace: str | None, probe: Probe, save: Callable[[Draft], str],
                 show_namespace: Callable[[str], None] = lambda _ns: None,
                 closed: Callable[[], None] = lambda: None,
                 forwarded: Callable[[Draft], str | None] = lambda _draft: None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(TITLE)
        self.context = context
        self.stale: str | None = None  # why this window's list no longer belongs to the current context
        self.model = PickerModel(namespace)
        self._probe = probe
        self._save = save
        self._show_namespace = show_namespace
        self._closed = closed
        self._forwarded = forwarded
        self._close_told = False
        self._tag: int | None = None
        self.proposal: Proposal | None = None
        self._chosen: Entry | None = None

        self.context_label = QLabel(f"Context <b>{context}</b>" if context else "No kube context")
        self.namespaces = QComboBox()
        self.namespaces.setMinimumContentsLength(16)
        if namespace:
            self.namespaces.addItem(namespace)
        self.namespaces.currentTextChanged.connect(self._namespace_chosen)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search: name, kind, port (e.g. svc/web http)")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._query_changed)
        self.search.installEventFilter(self)
        QShortcut(QKeySequence.StandardKey.Find, self, self._find)

        self.table = EntriesTable(self.model, self)
        self.view = QTableView()
        self.view.setModel(self.table)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.verticalHeader().hide()
        self.view.setShowGrid(False)
        self.view.setAlternatingRowColors(True)
        self.view.setWordWrap(False)
        header = self.view.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        self.view.setColumnWidth(0, 260)
        self.view.setColumnWidth(1, 120)
        self.view.setColumnWidth(2, 70)
        self.view.selectionModel().currentRowChanged.connect(self._row_changed)
        self.status = QLabel("Listing\u2026")

        self.target = QLabel("Choose a port above.")
        self.local_port = QSpinBox()
        self.local_port.setRange(1, 65535)
        self.local_port.setEnabled(False)
        self.local_port.valueChanged.connect(self._local_port_changed)
        self.name = QLineEdit()
        self.name.setEnabled(False)
        self.scheme = QComboBox()
        self.scheme.addItems([_NO_SCHEME, "http", "https"])
        self.scheme.setEnabled(False)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.result = QLabel("")
        self.result.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Forward", self.target)
        form.addRow("Local port", self.local_port)
        form.addRow("Name", self.name)
        form.addRow("Opens as", self.scheme)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Close)
        self.save_button = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        self.save_button.setEnabled(False)
        self.save_button.setDefault(True)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.close)

        top = QFormLayout()
        top.addRow(self.context_label)
        top.addRow("Namespace", self.namespaces)
        top.addRow("Search", self.search)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.status)
        layout.addLayout(form)
        layout.addWidget(self.note)
        layout.addWidget(self.result)
        layout.addWidget(self.buttons)
        self.resize(640, 620)

        # Updates arrive in bursts (batches of one list, a watch event per object); the table is
        # rebuilt once per burst, when the GUI thread is next idle.
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(0)
        self._refresh_timer.timeout.connect(self._refresh)

    # Engine -> window

    def take(self, update: object) -> None:
        if isinstance(update, Namespaces):
            self.model.apply(update)
            self._fill_namespaces(update.names)
            return
        self.model.apply(update)  # type: ignore[arg-type]
        self._refresh_timer.start()

    def _fill_namespaces(self, names: tuple[str, ...]) -> None:
        current = self.model.namespace or self.namespaces.currentText()
        self.namespaces.blockSignals(True)
        self.namespaces.clear()
        self.namespaces.addItems(list(names) if current in names or not current else [*names, current])
        self.namespaces.setCurrentText(current)
        self.namespaces.blockSignals(False)

    def snapshot_changed(self, snapshot: Any) -> None:
        """The engine's state moved on; a new current context makes this window's list stale.

        Top-level rules follow the current context, so a rule saved from the old context's list
        would forward in the new one: Save is turned off and the window says what to do.
        """
        if self.stale is None and snapshot.context != self.context:
            self.stale = (f"The current context changed to {snapshot.context or 'none'} while this window showed "
                          f"{self.context}; close it and choose Forward\u2026 again to pick from "
                          f"{snapshot.context or 'the new context'}.")
            self._refresh()
            self._enable_form(False)

    def _refresh(self) -> None:
        chosen = self._chosen
        self.table.refresh()
        self.status.setText(self.stale or self.model.status())
        if chosen is not None:  # keep the user's choice through updates of other rows
            for row, entry in enumerate(self.table.model.visible):
                if entry.row.key == chosen.row.key and entry.port == chosen.port:
                    self.view.selectionModel().blockSignals(True)
                    self.view.selectRow(row)
                    self.view.selectionModel().blockSignals(False)
                    break

    # User -> window

    def _namespace_chosen(self, namespace: str) -> None:
        if namespace and namespace != self.model.namespace:
            self.model.show_namespace(namespace)
            self._choose(None)
            self._refresh()
            self._show_namespace(namespace)

    def _find(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    def _query_changed(self, text: str) -> None:
        self.model.set_query(text)
        self._refresh()

    def eventFilter(self, watched: QObject, event: Any) -> bool:  # noqa: N802 (Qt's name)
        # Down in the search field goes to the first entry that can be chosen.
        if watched is self.search and isinstance(event, QKeyEvent) and event.type() == QKeyEvent.Type.KeyPress \
                and event.key() == Qt.Key.Key_Down:
            self.choose_first()
            return True
        return super().eventFilter(watched, event)

    def choose_first(self) -> None:
        visible = self.model.visible
        row = next((i for i, entry in enumerate(visible) if entry.choosable), 0 if visible else None)
        if row is not None:
            self.view.setFocus()
            self.view.selectRow(row)

    def _row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self._choose(self.table.entry(current.row()) if current.isValid() else None)

    def _choose(self, entry: Entry | None) -> None:
        self._chosen = entry
        self.result.setText("")
        if entry is None or self.model.namespace is None:
            self.proposal = None
            self.target.setText("Choose a port above.")
            self.note.setText("")
            self._enable_form(False)
            return
        self.proposal = propose(entry, self.model.namespace, self._probe)
        draft = self.proposal.draft
        self.note.setText(self.proposal.text)
        if draft is None:
            self.target.setText(f"{entry.object_text} {entry.port_text} cannot be chosen")
            self._enable_form(False)
            return
        self.target.setText(f"{draft.resource_type.value}/{draft.resource_name} port {draft.port} "
                            f"in {draft.namespace}")
        already = self._forwarded(draft)
        if already:
            self.note.setText(f"{self.proposal.text} {already}")
        self.local_port.blockSignals(True)
        self.local_port.setValue(self.proposal.local_port or draft.port)
        self.local_port.blockSignals(False)
        self.name.setText(draft.name)
        self.scheme.setCurrentText(draft.scheme or _NO_SCHEME)
        self._enable_form(self.proposal.local_port is not None)

    def _enable_form(self, enabled: bool) -> None:
        enabled = enabled and self.stale is None
        for widget in (self.local_port, self.name, self.scheme, self.save_button):
            widget.setEnabled(enabled)

    def _local_port_changed(self, value: int) -> None:
        if self.proposal is not None:
            self.proposal = with_local_port(self.proposal, value, self._probe)
            self.note.setText(self.proposal.text)

    def draft(self) -> Draft | None:
        """What Save writes now: the proposal with the user's edits."""
        if self.proposal is None or self.proposal.draft is None:
            return None
        base = self.proposal.draft
        scheme = self.scheme.currentText()
        return Draft(base.resource_type, base.resource_name, base.port, base.namespace, base.local_port,
                     self.name.text().strip() or base.name, None if scheme == _NO_SCHEME else scheme, base.address)

    def save(self) -> None:
        draft = self.draft()
        if draft is None or not self.save_button.isEnabled():
            return
        try:
            message = self._save(draft)
        except KubetrayError as exc:
            self._say(exc.message, error=True)
            return
        except OSError as exc:
            self._say(f"kubetray could not write the rules file: {exc.strerror or exc}. Nothing was saved.",
                      error=True)
            return
        self._say(message + " kubetray starts the tunnel as soon as it sees the file change.", error=False)

    def _say(self, text: str, error: bool) -> None:
        self.result.setText(text)
        palette = self.result.palette()
        palette.setColor(QPalette.ColorRole.WindowText, QColor(176, 0, 32) if error else self.palette().color(
            QPalette.ColorRole.WindowText))
        self.result.setPalette(palette)

    def done(self, result: int) -> None:  # Escape, Close, the window manager's close box
        self._tell_closed()
        super().done(result)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        self._tell_closed()
        super().closeEvent(event)

    def listen(self, relay: Relay) -> int:
        """Take the updates `relay` carries for this window; returns the tag they must carry."""
        self._tag = next(_TAGS)
        relay.updates.connect(self._relayed)
        return self._tag

    def _relayed(self, tag: int, update: object) -> None:
        if tag == self._tag and not self._close_told:
            self.take(update)

    def _tell_closed(self) -> None:
        if not self._close_told:
            self._close_told = True
            self._refresh_timer.stop()
            self._closed()


# --- wiring to the running app -----------------------------------------------------------------

_TAGS = itertools.count(1)


class Relay(QObject):
    """Carries browse updates from the Bridge to the Forward window they are for.

    It lives as long as the Bridge (its parent), so an update still queued when its window is
    gone reaches a live object and is dropped, instead of failing on a deleted window inside the
    Bridge's queue, where the updates behind it would wait for the next wake.
    """

    updates = Signal(int, object)  # (the window's tag, engine/browse.Update)

    @staticmethod
    def of(bridge: QObject) -> Relay:
        relay = bridge.findChild(Relay)
        return relay if relay is not None else Relay(bridge)


def save_to_rules_file(path: Path, draft: Draft) -> str:
    """Add the draft to the user's rules file, keeping its comments and layout (config/edit.py)."""
    from trayapp.config.edit import RuleDraft, add_rule

    rule = RuleDraft(draft.resource_type.value, draft.resource_name, draft.port, draft.namespace,
                     draft.local_port, draft.name, draft.scheme, draft.address)
    return str(add_rule(path, rule).message)


def open_picker(existing: PickerWindow | None, engine: Any, bridge: Any, controller: Any,
                snapshot: Callable[[], Any]) -> PickerWindow:
    """Show the window for the current context, or raise the one already open.

    `engine` is the EngineThread, `bridge` the Bridge, `controller` the Controller and `snapshot`
    returns the tray's latest Snapshot (for the context, the namespace and the ports in use).
    """
    from trayapp.config.paths import default_rules_path
    from trayapp.engine.portproposal import propose_local_port
    from trayapp.ui.picker_model import already_forwarded, taken_ports

    if existing is not None and existing.isVisible():
        existing.raise_()
        existing.activateWindow()
        return existing
    state = snapshot()
    browser: concurrent.futures.Future[Any] | None = None

    def probe(port: int) -> Any:
        return propose_local_port(port, taken_ports(snapshot().tunnels))

    def save(draft: Draft) -> str:
        return save_to_rules_file(snapshot().rules_path or default_rules_path(), draft)

    async def with_browser(action: Callable[[Any], Any]) -> None:
        if browser is None:
            return
        try:
            found = await asyncio.wrap_future(browser)
        except Exception:  # the window says nothing came; the log says why
            log.exception("the Forward window's list could not start")
            return
        if found is not None:
            await action(found)

    def show_namespace(namespace: str) -> None:
        engine.submit(with_browser(lambda b: b.show(namespace)))

    def closed() -> None:
        engine.submit(with_browser(lambda b: b.close()))

    window = PickerWindow(state.context, state.namespace, probe, save, show_namespace, closed,
                          lambda draft: already_forwarded(draft, snapshot().tunnels))
    if state.context is None:
        window.status.setText("kubetray has no kube context yet, so there is nothing to list.")
    else:
        bridge.snapshot.connect(window.snapshot_changed)
        relay = Relay.of(bridge)
        tag = window.listen(relay)
        browser = engine.submit(controller.browse(lambda update: bridge.later(relay.updates, tag, update),
                                                  state.namespace))
    window.show()
    window.raise_()
    window.activateWindow()
    window.search.setFocus()
    return window

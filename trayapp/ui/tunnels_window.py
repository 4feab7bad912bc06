"""The "Show all tunnels" window: a filterable, sortable table of every tunnel and its traffic.

A view of tunnels_model.TunnelTable, which the app keeps fed from what the engine pushes. The app
calls `changed()` after each snapshot or stats event; the table is redrawn once per turn of the
Qt loop however many came. Clicking a local address opens it (or copies it, for a tunnel a
browser cannot open), as clicking a tunnel in the menu does.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, QTimer
from PySide6.QtGui import QFont, QIcon, QPalette
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QLineEdit, QTableView, QVBoxLayout, QWidget

from trayapp.ui.menu_model import Command, CopyText, Mark, OpenUrl, state_mark
from trayapp.ui.tunnels_model import Column, Row, TunnelTable

AnyIndex = QModelIndex | QPersistentModelIndex


class TunnelsTableModel(QAbstractTableModel):
    """Qt's face of a TunnelTable: rows, texts, tooltips; sorting is done by the table itself."""

    def __init__(self, table: TunnelTable, dots: dict[Mark, QIcon]) -> None:
        super().__init__()
        self.table = table
        self._dots = dots
        self._rows: list[Row] = table.rows()
        self._link_font = QFont()
        self._link_font.setUnderline(True)

    def refresh(self) -> None:
        """Show the table's current rows: in place when the same tunnels are shown in the same order
        (the selection and scroll stay), else from scratch."""
        rows = self.table.rows()
        if [r.tunnel_id for r in rows] == [r.tunnel_id for r in self._rows]:
            changed = rows != self._rows
            self._rows = rows
            if changed and rows:
                self.dataChanged.emit(self.index(0, 0), self.index(len(rows) - 1, len(Column) - 1))
            return
        self.beginResetModel()
        self._rows = rows
        self.endResetModel()

    def row(self, index: int) -> Row:
        return self._rows[index]

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008, N802 (Qt's name and default)
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008, N802 (Qt's name and default)
        return 0 if parent.isValid() else len(Column)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802 (Qt's name)
                   role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return Column(section).title
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        row, column = self._rows[index.row()], Column(index.column())
        if role == Qt.ItemDataRole.DisplayRole:
            return row.text(column)
        if role == Qt.ItemDataRole.DecorationRole and column is Column.STATE:
            return self._dots[state_mark(row.state)]
        if role == Qt.ItemDataRole.ToolTipRole:
            if column is Column.ADDRESS and row.address:
                return f"Click to open {row.url}" if row.url else f"Click to copy {row.address}"
            return row.reason or None
        if role == Qt.ItemDataRole.FontRole and column is Column.ADDRESS and row.address:
            return self._link_font
        if role == Qt.ItemDataRole.ForegroundRole and column is Column.ADDRESS and row.address:
            return QPalette().color(QPalette.ColorRole.Link)
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (Column.CONNECTIONS, Column.BYTES_IN,
                                                                    Column.BYTES_OUT):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self.layoutAboutToBeChanged.emit()
        self.table.sort_by(Column(column), descending=order == Qt.SortOrder.DescendingOrder)
        self._rows = self.table.rows()
        self.layoutChanged.emit()


class TunnelsWindow(QWidget):
    def __init__(self, table: TunnelTable, dots: dict[Mark, QIcon], on_command: Callable[[Command], None],
                 icon: QIcon | None = None) -> None:
        super().__init__()
        self.setWindowTitle("kubetray: all tunnels")
        if icon is not None:
            self.setWindowIcon(icon)
        self._on_command = on_command
        self.model = TunnelsTableModel(table, dots)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter by name, context, address, target, pod or state")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._filter_changed)
        self.view = QTableView()
        self.view.setModel(self.model)
        # The indicator first: turning sorting on sorts by whatever it shows (by default the first
        # column, descending).
        self.view.horizontalHeader().setSortIndicator(
            int(table.sort_column), Qt.SortOrder.DescendingOrder if table.descending else Qt.SortOrder.AscendingOrder)
        self.view.setSortingEnabled(True)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setAlternatingRowColors(True)
        self.view.verticalHeader().hide()
        self.view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.view.horizontalHeader().setStretchLastSection(True)
        self.view.clicked.connect(self._clicked)
        self.count = QLabel()
        layout = QVBoxLayout(self)
        layout.addWidget(self.filter)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.count)
        # Many snapshots and stats events can arrive in one turn of the loop: one redraw for all.
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(0)
        self._redraw.timeout.connect(self.refresh)
        self.view.setWordWrap(False)
        self.refresh()
        self.view.resizeColumnsToContents()
        # Counters grow after the window opens: room for them from the start.
        room = self.view.fontMetrics().horizontalAdvance("9999.9 MB") + 16
        for column in (Column.BYTES_IN, Column.BYTES_OUT):
            self.view.horizontalHeader().resizeSection(column, max(room, self.view.columnWidth(column)))
        self.resize(1240, 460)

    def changed(self) -> None:
        """The table's contents changed: redraw once the loop is free."""
        if not self._redraw.isActive():
            self._redraw.start()

    def refresh(self) -> None:
        self.model.refresh()
        shown, total = self.model.rowCount(), self.model.table.total
        self.count.setText(f"{total} tunnel{'s' if total != 1 else ''}" if shown == total
                           else f"Showing {shown} of {total} tunnels.")

    def _filter_changed(self, text: str) -> None:
        self.model.table.set_filter(text)
        self.refresh()

    def _clicked(self, index: QModelIndex) -> None:
        if Column(index.column()) is not Column.ADDRESS:
            return
        row = self.model.row(index.row())
        if row.url:
            self._on_command(OpenUrl(row.url))
        elif row.address:
            self._on_command(CopyText(row.address))

    def closeEvent(self, event) -> None:  # type: ignore[no-untyped-def]  # noqa: N802 (Qt's name)
        self._redraw.stop()
        super().closeEvent(event)

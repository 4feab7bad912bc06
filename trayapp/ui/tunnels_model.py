"""What the "Show all tunnels" window shows, decided without Qt: rows, filtering, sorting.

`TunnelTable` lives as long as the app and is fed what the engine pushes: every snapshot (the
tunnels, their states) and every `stats` event (their traffic). It remembers since when each
tunnel is in its state, so "Since" is right even for tunnels that changed before the window
opened. The window is a view of it; nothing here asks the engine anything.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from trayapp.control import Snapshot
from trayapp.engine.runtime import TunnelView
from trayapp.model import TunnelState, TunnelStats, local_address, tunnel_url


class Column(enum.IntEnum):
    STATE = 0
    NAME = 1
    CONTEXT = 2
    ADDRESS = 3
    TARGET = 4
    POD = 5
    CONNECTIONS = 6
    BYTES_IN = 7
    BYTES_OUT = 8
    SINCE = 9

    @property
    def title(self) -> str:
        return _TITLES[self]


_TITLES = {
    Column.STATE: "State",
    Column.NAME: "Name",
    Column.CONTEXT: "Context",
    Column.ADDRESS: "Local address",
    Column.TARGET: "Target",
    Column.POD: "Pod",
    Column.CONNECTIONS: "Connections",
    Column.BYTES_IN: "In",
    Column.BYTES_OUT: "Out",
    Column.SINCE: "Since",
}
# States in the order a user scanning for trouble wants them when sorting by state.
_STATE_ORDER = {state: n for n, state in enumerate((TunnelState.FAILED, TunnelState.RECONNECTING,
                                                    TunnelState.WAITING, TunnelState.FORWARDING,
                                                    TunnelState.STOPPED))}


def human_bytes(count: int) -> str:
    """`0 B`, `512 B`, `1.5 KB`, `23.4 MB`: binary multiples, as file managers show them."""
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Row:
    tunnel_id: str
    state: TunnelState
    name: str
    context: str
    address: str  # `localhost:8080`, empty until it has a local port
    url: str | None  # set where a browser can open it
    target: str  # `svc/web :80 in default`
    pod: str
    stats: TunnelStats
    since: float  # wall-clock time it entered its state
    reason: str

    def text(self, column: Column) -> str:
        if column is Column.STATE:
            return self.state.value
        if column is Column.CONNECTIONS:
            return f"{self.stats.open_connections} open, {self.stats.connections} in all"
        if column is Column.BYTES_IN:
            return human_bytes(self.stats.bytes_in)
        if column is Column.BYTES_OUT:
            return human_bytes(self.stats.bytes_out)
        if column is Column.SINCE:
            return time.strftime("%H:%M:%S", time.localtime(self.since))
        return {Column.NAME: self.name, Column.CONTEXT: self.context, Column.ADDRESS: self.address,
                Column.TARGET: self.target, Column.POD: self.pod}[column]

    def key(self, column: Column) -> tuple[object, ...]:
        """What the column sorts by: numbers as numbers, states by urgency; then by name, so equal
        keys keep a stable, readable order."""
        primary: object
        if column is Column.STATE:
            primary = _STATE_ORDER[self.state]
        elif column is Column.CONNECTIONS:
            primary = (self.stats.open_connections, self.stats.connections)
        elif column is Column.BYTES_IN:
            primary = self.stats.bytes_in
        elif column is Column.BYTES_OUT:
            primary = self.stats.bytes_out
        elif column is Column.SINCE:
            primary = self.since
        elif column is Column.ADDRESS:
            primary = (self.address == "", self.address.rpartition(":")[0], _port(self.address))
        else:
            primary = natural(self.text(column))
        return (primary, natural(self.name), self.tunnel_id)

    def matches(self, words: list[str]) -> bool:
        haystack = " ".join((self.state.value, self.name, self.context, self.address, self.target, self.pod)).lower()
        return all(word in haystack for word in words)


def natural(text: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key that orders `web-9` before `web-10`: runs of digits compare as numbers."""
    return tuple((0, int(part)) if part.isdigit() else (1, part)
                 for part in re.split(r"(\d+)", text.lower()) if part)


def _port(address: str) -> int:
    tail = address.rpartition(":")[2]
    return int(tail) if tail.isdigit() else 0


class TunnelTable:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._views: list[tuple[TunnelView, str]] = []  # each with its context
        self._since: dict[str, tuple[TunnelState, float]] = {}
        self._stats: dict[str, TunnelStats] = {}
        self._words: list[str] = []
        self.sort_column = Column.NAME
        self.descending = False
        self._rows: list[Row] | None = None  # the visible rows, computed when asked

    # Fed by the app

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        now = self._clock()
        views: list[tuple[TunnelView, str]] = []
        since: dict[str, tuple[TunnelState, float]] = {}
        for view in snapshot.tunnels:
            # Tunnels say which context they belong to once several contexts forward at once.
            context = view.context or snapshot.context or ""
            views.append((view, context))
            known = self._since.get(view.tunnel_id)
            since[view.tunnel_id] = known if known is not None and known[0] == view.state else (view.state, now)
        self._views = views
        self._since = since
        self._stats = {tid: stats for tid, stats in self._stats.items() if tid in since}
        self._rows = None

    def apply_stats(self, tunnel_id: str | None, stats: TunnelStats | None) -> bool:
        """A `stats` event; False when it is about no tunnel shown (one that just went away)."""
        if tunnel_id is None or stats is None or tunnel_id not in self._since:
            return False
        self._stats[tunnel_id] = stats
        self._rows = None
        return True

    # Asked by the window

    def set_filter(self, text: str) -> None:
        self._words = text.lower().split()
        self._rows = None

    def sort_by(self, column: Column, descending: bool = False) -> None:
        self.sort_column, self.descending = column, descending
        self._rows = None

    @property
    def total(self) -> int:
        return len(self._views)

    def rows(self) -> list[Row]:
        """The rows that pass the filter, in the chosen order."""
        if self._rows is None:
            rows = [row for row in map(self._row, self._views) if row.matches(self._words)]
            rows.sort(key=lambda row: row.key(self.sort_column), reverse=self.descending)
            self._rows = rows
        return self._rows

    def _row(self, entry: tuple[TunnelView, str]) -> Row:
        view, context = entry
        rule = view.rule
        port = view.local_port
        return Row(
            tunnel_id=view.tunnel_id,
            state=view.state,
            name=rule.label,
            context=context,
            address=local_address(rule.address, port) if port is not None else "",
            url=tunnel_url(rule, port),
            target=f"{rule.resource_type.short}/{rule.resource_name} :{rule.port} in {rule.namespace}",
            pod=view.pod or "",
            stats=self._stats.get(view.tunnel_id, TunnelStats()),
            since=self._since[view.tunnel_id][1],
            reason=view.reason or "",
        )

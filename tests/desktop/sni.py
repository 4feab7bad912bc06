"""What a StatusNotifierItem host sees of an app, asked over the session's bus as the host asks.

A host (KDE's panel, GNOME's AppIndicator extension, waybar, gtk-sni-tray-standalone) learns the
items from org.kde.StatusNotifierWatcher, reads each item's properties (icon, tooltip, menu path)
and, when the user opens the menu, calls com.canonical.dbusmenu's AboutToShow on it, fetches the
layout with GetLayout and reports a choice with Event "clicked". `SniClient` makes those same
calls with jeepney on the desktop session's bus (by its address: pytest's own environment is
left alone), so a test checks what every SNI host would show, not what one toolkit draws.

Specs: freedesktop.org's StatusNotifierItem draft and libdbusmenu's dbus-menu.xml.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from jeepney import DBusAddress, MessageType, Properties, new_method_call
from jeepney.io.blocking import DBusConnection, open_dbus_connection

WATCHER = DBusAddress("/StatusNotifierWatcher", bus_name="org.kde.StatusNotifierWatcher",
                      interface="org.kde.StatusNotifierWatcher")
BUS = DBusAddress("/org/freedesktop/DBus", bus_name="org.freedesktop.DBus", interface="org.freedesktop.DBus")
ITEM_INTERFACE = "org.kde.StatusNotifierItem"
MENU_INTERFACE = "com.canonical.dbusmenu"
CALL_TIMEOUT = 10.0


class DBusCallFailed(AssertionError):
    pass


@dataclass(frozen=True)
class MenuEntry:
    """One node of a dbusmenu layout; `props` with jeepney's variants unwrapped."""

    id: int
    props: dict[str, Any]
    children: tuple[MenuEntry, ...] = field(default=())

    @property
    def label(self) -> str:
        return str(self.props.get("label", ""))

    @property
    def separator(self) -> bool:
        return self.props.get("type") == "separator"

    @property
    def enabled(self) -> bool:
        return bool(self.props.get("enabled", True))  # the spec's default when left out

    @property
    def has_submenu(self) -> bool:
        return self.props.get("children-display") == "submenu"

    def labels(self) -> list[str]:
        """The children's labels, separators left out, as a menu shows them."""
        return [child.label for child in self.children if not child.separator]

    def walk(self) -> Iterator[MenuEntry]:
        yield self
        for child in self.children:
            yield from child.walk()

    def child(self, prefix: str) -> MenuEntry:
        """The one child whose label starts with `prefix`."""
        found = [c for c in self.children if c.label.startswith(prefix)]
        assert len(found) == 1, f"expected one entry starting {prefix!r}, got {self.labels()}"
        return found[0]


def _entry(node: tuple[int, dict[str, tuple[str, Any]], list[tuple[str, Any]]]) -> MenuEntry:
    entry_id, props, children = node
    return MenuEntry(entry_id, {name: value for name, (_sig, value) in props.items()},
                     tuple(_entry(child) for _sig, child in children))


class SniClient:
    """A connection to the session bus that asks what an SNI host asks. Close it after use."""

    def __init__(self, bus_address: str) -> None:
        self._connection: DBusConnection = open_dbus_connection(bus=bus_address)

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> SniClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def call(self, message: Any) -> tuple[Any, ...]:
        reply = self._connection.send_and_get_reply(message, timeout=CALL_TIMEOUT)
        if reply.header.message_type == MessageType.error:
            raise DBusCallFailed(f"{message.header.fields} failed: {reply.body}")
        return tuple(reply.body)

    def get(self, address: DBusAddress, name: str) -> Any:
        _sig, value = self.call(Properties(address).get(name))[0]
        return value

    # --- the watcher -----------------------------------------------------------------------

    def host_registered(self) -> bool:
        return bool(self.get(WATCHER, "IsStatusNotifierHostRegistered"))

    def registered_items(self) -> list[str]:
        """The items the watcher lists, as it lists them: a bus name, maybe followed by a path."""
        return list(self.get(WATCHER, "RegisteredStatusNotifierItems"))

    def pid_of(self, bus_name: str) -> int:
        return int(self.call(new_method_call(BUS, "GetConnectionUnixProcessID", "s", (bus_name,)))[0])

    def item_of_pid(self, pid: int) -> SniItem | None:
        """The registered item of process `pid`, if it has one."""
        for registered in self.registered_items():
            bus_name, slash, path = registered.partition("/")
            try:
                if self.pid_of(bus_name) == pid:
                    return SniItem(self, bus_name, slash + path if slash else "/StatusNotifierItem")
            except DBusCallFailed:  # the item's owner left the bus meanwhile
                continue
        return None


class SniItem:
    """One registered StatusNotifierItem and its dbusmenu."""

    def __init__(self, client: SniClient, bus_name: str, path: str) -> None:
        self.client = client
        self.bus_name = bus_name
        self.address = DBusAddress(path, bus_name=bus_name, interface=ITEM_INTERFACE)

    def prop(self, name: str) -> Any:
        return self.client.get(self.address, name)

    def tooltip_title(self) -> str:
        # ToolTip is (icon name, icon pixmaps, title, description).
        return str(self.prop("ToolTip")[2])

    def largest_pixmap(self) -> tuple[int, int, bytes]:
        """The biggest IconPixmap: width, height, ARGB32 pixels in network byte order."""
        pixmaps = [(w, h, bytes(data)) for w, h, data in self.prop("IconPixmap")]
        assert pixmaps, f"{self.bus_name} has no IconPixmap (IconName {self.prop('IconName')!r})"
        return max(pixmaps, key=lambda p: p[0] * p[1])

    def menu(self) -> DBusAddress:
        return DBusAddress(str(self.prop("Menu")), bus_name=self.bus_name, interface=MENU_INTERFACE)

    # --- its menu, as a host opens it --------------------------------------------------------

    def about_to_show(self, entry_id: int = 0) -> bool:
        """Tell the app entry `entry_id`'s menu is opening; True if the app says to fetch it anew."""
        return bool(self.client.call(new_method_call(self.menu(), "AboutToShow", "i", (entry_id,)))[0])

    def layout(self, entry_id: int = 0) -> MenuEntry:
        """The menu below `entry_id`, every level (GetLayout with depth -1, all properties)."""
        _revision, root = self.client.call(new_method_call(self.menu(), "GetLayout", "iias", (entry_id, -1, [])))
        return _entry(root)

    def open(self, entry_id: int = 0) -> MenuEntry:
        """What a host shows when the user opens that menu: AboutToShow, then GetLayout."""
        self.about_to_show(entry_id)
        return self.layout(entry_id)

    def click(self, entry_id: int) -> None:
        """Choose an entry, as a host does when the user clicks it."""
        stamp = int(time.time()) & 0xFFFFFFFF
        self.client.call(new_method_call(self.menu(), "Event", "isvu", (entry_id, "clicked", ("i", 0), stamp)))

"""Sleep, wake and network signals on Linux: logind and NetworkManager on the system D-Bus.

Signals are subscribed to by match rule (AddMatch), never by introspecting the services, so a
machine without NetworkManager (systemd-networkd, a server) or without logind simply never
sends those signals. Each rule names the service's well-known name as the sender: the bus
daemon then delivers only what the name's current owner sends, so another process on the bus
cannot fake a wake. The bus address comes from DBUS_SYSTEM_BUS_ADDRESS when set (the tests
point it at a private dbus-daemon), else the standard system socket.

What counts:
- logind PrepareForSleep(true): going to sleep; PrepareForSleep(false): woke up.
- NetworkManager StateChanged into a connected state (CONNECTED_LOCAL and up) from a state below
  it, or from a state not seen yet: a network came (back).
- NetworkManager's PrimaryConnection changing to another connection (not to "/", which means
  offline): the route to the outside moved, e.g. Wi-Fi to Ethernet or a full-tunnel VPN.
A split-tunnel VPN that changes neither is not seen here; the engine's liveness checks cover it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from trayapp.platform.power import Emit, Reason, SourceUnavailable

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2.0  # seconds for the system bus to accept us; a hung bus counts as none
CLOSE_TIMEOUT = 1.0

LOGIN1 = "org.freedesktop.login1"
LOGIN1_PATH = "/org/freedesktop/login1"
LOGIN1_MANAGER = "org.freedesktop.login1.Manager"
NM = "org.freedesktop.NetworkManager"
NM_PATH = "/org/freedesktop/NetworkManager"
PROPERTIES = "org.freedesktop.DBus.Properties"

NM_CONNECTED_LOCAL = 50  # NMState: 50 local, 60 site, 70 global connectivity


def _match(sender: str, path: str, interface: str, member: str, arg0: str | None = None) -> str:
    """A D-Bus match rule for one signal of one service."""
    rule = (f"type='signal',sender='{sender}',path='{path}',"
            f"interface='{interface}',member='{member}'")
    return rule if arg0 is None else f"{rule},arg0='{arg0}'"


MATCH_RULES = (
    _match(LOGIN1, LOGIN1_PATH, LOGIN1_MANAGER, "PrepareForSleep"),
    _match(NM, NM_PATH, NM, "StateChanged"),
    _match(NM, NM_PATH, PROPERTIES, "PropertiesChanged", arg0=NM),  # NM's own properties only
)


class NetworkManagerState:
    """Which NetworkManager signals mean "the network changed" (pure: no bus)."""

    def __init__(self) -> None:
        self.state: int | None = None

    def state_changed(self, state: int) -> bool:
        before, self.state = self.state, state
        return state >= NM_CONNECTED_LOCAL and (before is None or before < NM_CONNECTED_LOCAL)

    @staticmethod
    def primary_changed(path: str) -> bool:
        return path != "/"


class LinuxSource:
    name = "logind and NetworkManager on the system bus"

    def __init__(self) -> None:
        self._bus: MessageBus | None = None
        self._emit: Emit | None = None
        self._nm = NetworkManagerState()
        self._closing = False
        self._watch: asyncio.Task[None] | None = None

    async def start(self, emit: Emit) -> None:
        bus = MessageBus(bus_type=BusType.SYSTEM)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await bus.connect()
                for rule in MATCH_RULES:
                    await _add_match(bus, rule)
        except BaseException as exc:  # a cancelled start (kubetray stopping) closes the bus too
            await _close(bus)
            if isinstance(exc, TimeoutError):
                raise SourceUnavailable(
                    f"the system bus did not answer within {CONNECT_TIMEOUT:.0f} s.") from None
            if isinstance(exc, SourceUnavailable) or not isinstance(exc, Exception):
                raise
            # OSError, an authentication or address error: dbus-fast raises several kinds
            raise SourceUnavailable(
                f"there is no system bus to listen on ({type(exc).__name__}).") from None
        self._bus, self._emit = bus, emit
        bus.add_message_handler(self._on_message)
        self._watch = asyncio.get_running_loop().create_task(
            self._follow(bus), name="power:system-bus")
        log.debug("listening for sleep and network changes on the system bus")

    async def aclose(self) -> None:
        self._closing = True
        bus, self._bus = self._bus, None
        if bus is not None:
            await _close(bus)
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)

    async def _follow(self, bus: MessageBus) -> None:
        """Say once if the system bus goes away (dbus-daemon restarted); the engine copes."""
        with contextlib.suppress(Exception):
            await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
        if not self._closing:
            log.warning("The system bus closed kubetray's connection; kubetray no longer hears "
                        "about sleep and network changes, and relies on its own checks.")

    def _on_message(self, message: Message) -> bool | None:
        if message.message_type is not MessageType.SIGNAL or self._emit is None:
            return None
        reason = self._reason(message)
        if reason is not None:
            log.debug("%s (%s.%s)", reason.value, message.interface, message.member)
            self._emit(reason)
        return None  # other handlers (none today) may look at it too

    def _reason(self, message: Message) -> Reason | None:
        body = message.body
        if message.member == "PrepareForSleep" and message.interface == LOGIN1_MANAGER:
            if message.signature == "b":
                return Reason.SLEEPING if body[0] else Reason.WOKE
        elif message.member == "StateChanged" and message.interface == NM:
            if message.signature == "u" and self._nm.state_changed(int(body[0])):
                return Reason.NETWORK
        elif (message.member == "PropertiesChanged" and message.interface == PROPERTIES
              and message.signature.startswith("sa{sv}") and body[0] == NM):
            primary = body[1].get("PrimaryConnection")
            if (primary is not None and primary.signature == "o"
                    and self._nm.primary_changed(primary.value)):
                return Reason.NETWORK
        return None


async def _add_match(bus: MessageBus, rule: str) -> None:
    reply = await bus.call(Message(
        destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
        interface="org.freedesktop.DBus", member="AddMatch", signature="s", body=[rule]))
    if reply is not None and reply.message_type is MessageType.ERROR:
        raise SourceUnavailable(
            f"the system bus refused to pass on its signals ({reply.error_name}).")


async def _close(bus: MessageBus) -> None:
    """Disconnect, and wait (briefly) for dbus-fast to close the socket once it reads the end."""
    if not bus.connected:
        return
    bus.disconnect()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]

"""Choose a local port and bind it, keeping the listening sockets (no probe-then-bind race).

The candidate order is Skaffold's (`pkg/skaffold/util/port.go`, GetAvailablePortWithAddress):
the requested port, the next ten, then 4503-4533, then one the OS picks. Unlike Skaffold, which
binds to test and closes again, we keep the first sockets that bind and hand them to the relay, so
nothing else can take the port in between.

The default address (127.0.0.1, or `localhost`) is bound on both 127.0.0.1 and ::1 with the same
port, as `kubectl port-forward` does: clients that resolve `localhost` to ::1 first (Node 17+,
many macOS and Linux setups) would otherwise be refused. A port counts as free only when it is
free on both. Where the machine has no IPv6 loopback, IPv4 alone is used, and the log says so once.

A port may also be refused by policy (`refuse`): automatic rules, which a cluster object can
make, never get a port below 1024 or one the user's own rules name (see `refusal_for`).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field

from trayapp.errors import PortError
from trayapp.model import Rule, is_default_loopback

log = logging.getLogger(__name__)

MAX_PORT = 65535
NEXT_PORTS = 10
# Skaffold's fallback block: IANA lists 4503-4533 as unassigned, so they are rarely in use.
FALLBACK_RANGE = range(4503, 4534)
BACKLOG = 128
_OS_PICK_ATTEMPTS = 8

_IN_USE = frozenset(
    code for code in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", None)) if code is not None
)
_PRIVILEGED = frozenset(code for code in (errno.EACCES, errno.EPERM) if code is not None)
# Windows answers WSAEACCES (10013) when the port is held with SO_EXCLUSIVEADDRUSE or sits in
# a range the system reserved (Hyper-V, WinNAT): another port will do, as for "in use".
_RESERVED = frozenset(code for code in (getattr(errno, "WSAEACCES", None),) if code is not None)
# Binding ::1 fails with these where the machine has no IPv6 loopback (IPv6 disabled, a container
# without it): the default address then listens on IPv4 alone.
_NO_IPV6 = frozenset(
    code for code in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, getattr(errno, "EPROTONOSUPPORT", None),
                      getattr(errno, "WSAEADDRNOTAVAIL", None), getattr(errno, "WSAEAFNOSUPPORT", None))
    if code is not None
)
IPV6_LOOPBACK = "::1"  # bound beside 127.0.0.1 for the default address
PRIVILEGED_BELOW = 1024  # ports below this are never given to an automatic rule

Refusal = Callable[[int], str | None]  # why a port may not be used, or None when it may


def fallback_ports(requested: int) -> Iterator[int]:
    """Candidates in order: requested, requested+1..+10 (never above 65535), 4503..4533, then 0.

    0 means "let the OS pick". No port is offered twice.
    """
    seen: set[int] = set()
    first: list[int] = []
    if 0 < requested <= MAX_PORT:
        first = [p for p in range(requested, requested + NEXT_PORTS + 1) if p <= MAX_PORT]
    for port in (*first, *FALLBACK_RANGE, 0):
        if port not in seen:
            seen.add(port)
            yield port


def fallback_reason(port: int, err_no: int | None) -> str | None:
    """Why `port` failed, when trying another port can help; None when it cannot.

    In use and "needs privileges" (ports below 1024 for non-root on POSIX) fall back; anything
    else (the address is not on this machine, a bad address family) would fail for every port.
    """
    if err_no in _IN_USE:
        return f"{port} is in use"
    if err_no in _PRIVILEGED:
        return f"{port} needs privileges"
    if err_no in _RESERVED:
        return f"{port} is reserved or held exclusively by another program"
    return None


def refusal_for(rule: Rule) -> Refusal | None:
    """The ports an automatic rule may not take, with the reason; None for the user's own rules.

    An automatic rule is made from what a cluster object says (a Skaffold label, an annotation's
    `port:localPort`), and anyone who can edit objects in the namespace can say it. Such a rule
    never takes a privileged port or a local port one of the user's rules names: it falls back as
    from a busy port instead, and the fallback event says why.
    """
    if not rule.auto:
        return None
    reserved = rule.reserved_ports

    def refuse(port: int) -> str | None:
        if 0 < port < PRIVILEGED_BELOW:
            return f"{port} is below {PRIVILEGED_BELOW}, which kubetray never gives to an automatic forward"
        if port in reserved:
            return f"{port} is named by one of your own rules"
        return None

    return refuse


@dataclass(frozen=True)
class Bound:
    """Listening, non-blocking sockets on one port and how we got it. The caller owns (and closes)
    `socks`: one socket, or two (127.0.0.1 and ::1) for the default address."""

    socks: tuple[socket.socket, ...] = field(compare=False)
    port: int
    requested: int | None
    fell_back: bool
    reasons: tuple[str, ...] = ()

    @property
    def sock(self) -> socket.socket:
        """The first socket (the IPv4 one for the default address)."""
        return self.socks[0]

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


def normalize_address(address: str) -> tuple[str, socket.AddressFamily]:
    """The IP literal to bind and its family. `localhost` means 127.0.0.1; `[::1]` means ::1."""
    text = address.strip()
    if text.lower() == "localhost":
        return "127.0.0.1", socket.AF_INET
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise PortError(
            f'The listen address "{address}" is not an IP address; '
            "use one such as 127.0.0.1, ::1 or 0.0.0.0.",
        ) from None
    return str(ip), socket.AF_INET6 if ip.version == 6 else socket.AF_INET


def _try_bind(host: str, family: socket.AddressFamily, port: int) -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio turns on TCP_NODELAY only for sockets that say they are TCP,
    # and accepted sockets inherit it. Without it small answers wait for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if os.name == "nt":
            # On Windows SO_REUSEADDR lets another program steal a bound port; exclusive use
            # is the safe equivalent of the POSIX default.
            exclusive = getattr(socket, "SO_EXCLUSIVEADDRUSE", None)
            if exclusive is not None:
                sock.setsockopt(socket.SOL_SOCKET, exclusive, 1)
        else:
            # POSIX SO_REUSEADDR only skips TIME_WAIT from our own earlier listener, so a
            # reconnect gets its old port back; never SO_REUSEPORT, which would share the port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _Hosts:
    """What to bind for one listen address: the IP literals (with their family) that must all get
    the port, and the ones that may be left out when the machine lacks them (::1)."""

    def __init__(self, address: str) -> None:
        self.address = address
        if is_default_loopback(address):
            self.required = [("127.0.0.1", socket.AF_INET)]
            self.optional = [(IPV6_LOOPBACK, socket.AF_INET6)]
        else:
            self.required = [normalize_address(address)]
            self.optional = []


_told_no_ipv6 = False


def _no_ipv6_loopback(exc: OSError) -> None:
    global _told_no_ipv6
    if not _told_no_ipv6:
        _told_no_ipv6 = True
        log.info("This machine has no IPv6 loopback (binding ::1 failed: %s); the default address "
                 "listens on 127.0.0.1 alone.", exc.strerror or exc)


def _bind_port(hosts: _Hosts, port: int) -> list[socket.socket]:
    """Bind `port` (0: one the OS picks) on every host; all or nothing. Raises the OSError of the
    first host that failed, after closing what was bound."""
    bound: list[socket.socket] = []
    try:
        for host, family in hosts.required:
            bound.append(_try_bind(host, family, port))
            port = bound[0].getsockname()[1]  # the same port on the others
        for host, family in hosts.optional:
            try:
                bound.append(_try_bind(host, family, port))
            except OSError as exc:
                if exc.errno not in _NO_IPV6:
                    raise
                _no_ipv6_loopback(exc)
    except BaseException:
        for sock in bound:
            sock.close()
        raise
    return bound


def _bind_os_pick(hosts: _Hosts, taken: Container[int], refuse: Refusal | None) -> list[socket.socket]:
    """Bind port 0; if the OS hands back a port another rule was promised, that policy refuses, or
    that is busy on ::1, hold it and retry."""
    held: list[socket.socket] = []
    try:
        for _ in range(_OS_PICK_ATTEMPTS):
            try:
                socks = _bind_port(hosts, 0)
            except OSError as exc:
                if exc.errno in _IN_USE:
                    continue  # free on 127.0.0.1 but busy on ::1: ask the OS again
                raise _port_error(hosts.address, 0, exc) from exc
            port = socks[0].getsockname()[1]
            if port not in taken and (refuse is None or refuse(port) is None):
                return socks
            held.extend(socks)  # keep it bound so the next pick differs
        raise PortError(
            f"The system offered only ports already given to other kubetray rules on {hosts.address}."
        )
    finally:
        for sock in held:
            sock.close()


def _port_error(address: str, port: int, exc: OSError) -> PortError:
    what = f"port {port}" if port else "a port"
    if exc.errno == errno.EADDRNOTAVAIL:
        detail = f"{address} is not an address of this machine"
    else:
        detail = exc.strerror or str(exc)
    return PortError(f"Cannot listen on {what} at {address}: {detail}.")


def bind_listener(
    address: str, requested: int | None, taken: Container[int] = (), refuse: Refusal | None = None
) -> Bound:
    """Bind the first free candidate port on `address` and return the listening sockets.

    `requested=None` lets the OS pick. Ports in `taken` (handed to other kubetray rules on this
    address) and ports `refuse` gives a reason for are skipped. In-use and privileged ports fall
    back to the next candidate; any other error raises PortError naming the address, since no
    other port would do better.
    """
    hosts = _Hosts(address)
    reasons: list[str] = []
    candidates = fallback_ports(requested) if requested is not None else iter((0,))
    for port in candidates:
        if port == 0:
            socks = _bind_os_pick(hosts, taken, refuse)
            chosen = socks[0].getsockname()[1]
            return Bound(
                tuple(socks),
                chosen,
                requested,
                requested is not None and chosen != requested,
                tuple(reasons),
            )
        refused = refuse(port) if refuse is not None else None
        if refused is not None:
            reasons.append(refused)
            continue
        if port in taken:
            reasons.append(f"{port} is used by another kubetray rule")
            continue
        try:
            socks = _bind_port(hosts, port)
        except OSError as exc:
            reason = fallback_reason(port, exc.errno)
            if reason is None:
                raise _port_error(address, port, exc) from exc
            reasons.append(reason)
            continue
        return Bound(tuple(socks), port, requested, port != requested, tuple(reasons))
    raise AssertionError("fallback_ports always ends with 0")  # pragma: no cover

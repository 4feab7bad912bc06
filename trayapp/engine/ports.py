"""Choose a local port and bind it, keeping the listening socket (no probe-then-bind race).

The candidate order is Skaffold's (`pkg/skaffold/util/port.go`, GetAvailablePortWithAddress):
the requested port, the next ten, then 4503-4533, then one the OS picks. Unlike Skaffold, which
binds to test and closes again, we keep the first socket that binds and hand it to the relay, so
nothing else can take the port in between.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Container, Iterator
from dataclasses import dataclass, field

from trayapp.errors import PortError

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


@dataclass(frozen=True)
class Bound:
    """A listening, non-blocking socket and how we got it. The caller owns (and closes) `sock`."""

    sock: socket.socket = field(compare=False)
    port: int
    requested: int | None
    fell_back: bool
    reasons: tuple[str, ...] = ()


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
            recoverable=False,
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


def _bind_os_pick(
    host: str, family: socket.AddressFamily, address: str, taken: Container[int]
) -> socket.socket:
    """Bind port 0; if the OS hands back a port another rule was promised, hold it and retry."""
    held: list[socket.socket] = []
    try:
        for _ in range(_OS_PICK_ATTEMPTS):
            sock = _bind_or_raise(host, family, address, 0)
            if sock.getsockname()[1] not in taken:
                return sock
            held.append(sock)  # keep it bound so the next pick differs
        raise PortError(
            f"The system offered only ports already given to other kubetray rules on {address}."
        )
    finally:
        for sock in held:
            sock.close()


def _bind_or_raise(
    host: str, family: socket.AddressFamily, address: str, port: int
) -> socket.socket:
    try:
        return _try_bind(host, family, port)
    except OSError as exc:
        raise _port_error(address, port, exc) from exc


def _port_error(address: str, port: int, exc: OSError) -> PortError:
    what = f"port {port}" if port else "a port"
    if exc.errno == errno.EADDRNOTAVAIL:
        detail = f"{address} is not an address of this machine"
    else:
        detail = exc.strerror or str(exc)
    return PortError(f"Cannot listen on {what} at {address}: {detail}.", recoverable=False)


def bind_listener(address: str, requested: int | None, taken: Container[int] = ()) -> Bound:
    """Bind the first free candidate port on `address` and return the listening socket.

    `requested=None` lets the OS pick. Ports in `taken` (handed to other kubetray rules on this
    address) are skipped. In-use and privileged ports fall back to the next candidate; any other
    error raises PortError naming the address, since no other port would do better.
    """
    host, family = normalize_address(address)
    reasons: list[str] = []
    candidates = fallback_ports(requested) if requested is not None else iter((0,))
    for port in candidates:
        if port == 0:
            sock = _bind_os_pick(host, family, address, taken)
            chosen = sock.getsockname()[1]
            return Bound(
                sock,
                chosen,
                requested,
                requested is not None and chosen != requested,
                tuple(reasons),
            )
        if port in taken:
            reasons.append(f"{port} is used by another kubetray rule")
            continue
        try:
            sock = _try_bind(host, family, port)
        except OSError as exc:
            reason = fallback_reason(port, exc.errno)
            if reason is None:
                raise _port_error(address, port, exc) from exc
            reasons.append(reason)
            continue
        return Bound(sock, port, requested, port != requested, tuple(reasons))
    raise AssertionError("fallback_ports always ends with 0")  # pragma: no cover

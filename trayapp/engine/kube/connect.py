"""Open every connection kubetray makes to an API server: lists, watches and port-forwards.

One function, `open_socket`, makes the TCP connection: direct, or through the proxy kubectl
would use (`proxies.proxy_for`: an http:// or https:// proxy's CONNECT tunnel, or SOCKS5), with
TCP keepalive on, so a path that dies without a FIN or a reset (a laptop that slept, a VPN that
dropped) is noticed within about 30 s instead of never. TLS to the API server runs over that
socket: `open_stream` for the h11 client, `open_protocol` for a SPDY port-forward session,
websockets' `connect(sock=...)` for v4 port-forwards.

Failures become ApiUnreachable with a sentence that names the server and the proxy (without its
password) and says what happened.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import ipaddress
import logging
import os
import socket
import ssl
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError, ProxyType
from python_socks.async_.asyncio import Proxy as SocksProxy

from trayapp.engine.aio import deadline
from trayapp.engine.kube.auth import ClusterAccess
from trayapp.engine.kube.proxies import ProxyUrl, ProxyUrlError, proxy_for, redact
from trayapp.errors import ApiUnreachable

log = logging.getLogger(__name__)

# Keepalive: the first probe after 15 s of silence, then every 5 s; 3 unanswered probes end the
# connection, so a dead path is known about 30 s after the last byte. Linux's TCP_USER_TIMEOUT
# gives unacknowledged writes the same 30 s (keepalive only probes an idle connection; a write
# into a dead path would otherwise be retransmitted for about 15 minutes).
KEEPALIVE_IDLE = 15
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3
USER_TIMEOUT = 30
HAPPY_EYEBALLS_DELAY = 0.3  # Go's dialer waits 300 ms before racing the next address
STREAM_LIMIT = 256 * 1024  # asyncio's buffer limit for a StreamReader over these connections
AddressInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]  # as getaddrinfo gives
_CONNECT_REPLY_LIMIT = 16 * 1024  # a proxy's answer to CONNECT longer than this is not one


@dataclass(frozen=True)
class Route:
    """Where a connection goes: the API server, and the proxy it goes through, if any."""

    server: str  # the API server's URL, as messages show it
    host: str
    port: int
    proxy: ProxyUrl | None

    @property
    def authority(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def described(self) -> str:
        """For the middle of a sentence: the API server https://... through the proxy ... (from ...)."""
        through = f" through {self.proxy.described}" if self.proxy else ""
        return f"the API server {redact(self.server)}{through}"


def route_for(access: ClusterAccess, environ: Mapping[str, str] | None = None) -> Route:
    """The route kubectl would take to this context's server. Raises ApiUnreachable."""
    try:
        proxy = proxy_for(access.server, access.proxy, os.environ if environ is None else environ)
    except ProxyUrlError as exc:
        raise ApiUnreachable(f"{exc} kubetray does not connect to the API server {redact(access.server)} "
                             "without it.") from exc
    return Route(access.server, access.host, access.port, proxy)


def set_keepalive(sock: socket.socket) -> None:
    """Turn on TCP keepalive with kubetray's timings, with whatever options this OS has."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if sys.platform == "win32" and hasattr(socket, "SIO_KEEPALIVE_VALS"):
        # Windows before 10 1709 has no per-socket TCP_KEEPIDLE: the ioctl sets idle and
        # interval (milliseconds); the probe count is the system's (10) unless TCP_KEEPCNT exists.
        with contextlib.suppress(OSError):
            sock.ioctl(socket.SIO_KEEPALIVE_VALS, (1, KEEPALIVE_IDLE * 1000, KEEPALIVE_INTERVAL * 1000))  # type: ignore[attr-defined]
    # macOS calls the idle time TCP_KEEPALIVE; Linux, the BSDs and newer Windows TCP_KEEPIDLE.
    idle = getattr(socket, "TCP_KEEPIDLE", None) or getattr(socket, "TCP_KEEPALIVE", None)
    options = [(idle, KEEPALIVE_IDLE), (getattr(socket, "TCP_KEEPINTVL", None), KEEPALIVE_INTERVAL),
               (getattr(socket, "TCP_KEEPCNT", None), KEEPALIVE_COUNT)]
    if sys.platform.startswith("linux"):
        options.append((getattr(socket, "TCP_USER_TIMEOUT", None), USER_TIMEOUT * 1000))
    for option, value in options:
        if option is None:
            continue
        try:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)
        except OSError as exc:  # an old kernel without the option: keepalive's defaults still hold
            log.debug("kubetray could not set TCP option %s: %s", option, exc)


async def open_socket(route: Route, timeout: float = 10.0) -> socket.socket:
    """A TCP socket connected to the API server, through the route's proxy, keepalive on.

    Raises ApiUnreachable with a sentence naming the server and the proxy.
    """
    try:
        async with deadline(timeout):
            sock = await _open(route)
    except TimeoutError:
        raise ApiUnreachable(f"{_cap(route.described)} did not answer within {timeout:g} s.") from None
    except OSError as exc:  # a proxy that broke the connection halfway through its answer
        raise unreachable(exc, route, timeout) from exc
    _no_delay(sock)
    return sock


def _no_delay(sock: socket.socket) -> None:
    """Small frames go out at once. asyncio sets TCP_NODELAY only on sockets whose `proto` is
    IPPROTO_TCP, and these say 0; without it a port-forward's SYN_STREAMs or first WebSocket
    frame can wait behind earlier unacknowledged bytes for the peer's delayed ACK (40 ms)."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            log.debug("kubetray could not set TCP_NODELAY: %s", exc)


async def open_stream(
    access: ClusterAccess, timeout: float = 10.0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the API server for one HTTP request: TCP as `open_socket`, then TLS."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await open_protocol(access, lambda: protocol, timeout)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


_P = TypeVar("_P", bound=asyncio.BaseProtocol)


async def open_protocol(
    access: ClusterAccess, factory: Callable[[], _P], timeout: float = 10.0
) -> tuple[asyncio.Transport, _P]:
    """`open_stream` for a caller with its own asyncio protocol (a port-forward session takes the
    bytes as they arrive, without a StreamReader's buffer in between)."""
    route = route_for(access)
    sock = await open_socket(route, timeout)
    tls = access.ssl_context if access.tls else None
    try:
        async with deadline(timeout):
            transport, protocol = await asyncio.get_running_loop().create_connection(
                factory, sock=sock, ssl=tls, server_hostname=(access.server_hostname or access.host) if tls else None)
    except (TimeoutError, OSError) as exc:
        sock.close()
        raise unreachable(exc, route, timeout, access.server_hostname) from exc
    return transport, protocol


def unreachable(exc: BaseException, route: Route, timeout: float, server_name: str | None = None) -> ApiUnreachable:
    """What went wrong once the socket was open (TLS, the handshake), as one sentence."""
    where = route.described
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ApiUnreachable(
            f"kubetray could not verify the certificate of {where}: {_verify_reason(exc, server_name or route.host)}. "
            "kubetray keeps TLS verification on; check the kubeconfig's certificate-authority and tls-server-name."
        )
    if isinstance(exc, ssl.SSLError):
        return ApiUnreachable(f"The TLS handshake with {where} failed; the server may not speak TLS on that port.")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return ApiUnreachable(f"{_cap(where)} did not answer within {timeout:g} s.")
    if isinstance(exc, (ConnectionError, EOFError)):
        return ApiUnreachable(f"{_cap(where)} closed the connection before it was set up.")
    if isinstance(exc, OSError):
        return ApiUnreachable(f"kubetray lost the connection to {where} ({_os_reason(exc)}).")
    return ApiUnreachable(f"kubetray could not set up a connection to {where}.")


# -- the TCP part ------------------------------------------------------------------------------

async def _open(route: Route) -> socket.socket:
    proxy = route.proxy
    if proxy is None:
        try:
            return await _tcp(route.host, route.port)
        except OSError as exc:
            raise ApiUnreachable(_tcp_failure(exc, f"the API server {redact(route.server)}", route.host, route.port)) from exc
    if proxy.socks:
        return await _socks(route, proxy)
    try:
        sock = await _tcp(proxy.host, proxy.port)
    except OSError as exc:
        raise ApiUnreachable(
            _tcp_failure(exc, proxy.described, proxy.host, proxy.port) + f" kubetray needs it to reach {redact(route.server)}."
        ) from exc
    try:
        if proxy.scheme == "https":
            return await _https_tunnel(sock, route, proxy)
        await _connect_through(sock, route, proxy)
        return sock
    except BaseException:
        sock.close()
        raise


async def _tcp(host: str, port: int) -> socket.socket:
    """Connect to host, racing its addresses as Go's dialer and RFC 8305 do.

    Each address gets a head start of HAPPY_EYEBALLS_DELAY before the next one is tried beside
    it, so a name whose first address is dead (IPv6 broken on a hotel network or a VPN) still
    connects in a fraction of a second. The first connected socket wins; the others are closed.
    Keepalive goes on the winner: it is the socket that crosses the network (to the server or
    to the proxy), even when the caller gets the end of an https-proxy relay instead.
    """
    loop = asyncio.get_running_loop()
    infos: Sequence[AddressInfo]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    else:  # an address needs no lookup (getaddrinfo would take a trip through a worker thread)
        family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        infos = [(family, socket.SOCK_STREAM, 0, "", (host, port))]
    sock = await race_connect(infos, f"{host}:{port}")
    set_keepalive(sock)
    return sock


async def race_connect(infos: Sequence[AddressInfo], name: str) -> socket.socket:
    """The first of these addresses to connect, each started HAPPY_EYEBALLS_DELAY after the last."""
    loop = asyncio.get_running_loop()
    racing: set[asyncio.Task[socket.socket]] = set()
    errors: list[OSError] = []
    winner: socket.socket | None = None
    try:
        for index, info in enumerate(infos):
            racing.add(loop.create_task(_attempt(*info), name=f"connect:{name}:{index}"))
            winner = await _first_connected(racing, errors, HAPPY_EYEBALLS_DELAY)
            if winner is not None:
                break
        while winner is None and racing:
            winner = await _first_connected(racing, errors, None)
    finally:
        for task in racing:
            task.cancel()
        for result in await asyncio.gather(*racing, return_exceptions=True):
            if isinstance(result, socket.socket):
                result.close()  # connected just after the winner
    if winner is None:
        raise errors[0] if errors else OSError(errno.EHOSTUNREACH, f"{name} has no address")
    return winner


async def _attempt(family: socket.AddressFamily, kind: socket.SocketKind, proto: int, _: str,
                   address: Any) -> socket.socket:
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock


async def _first_connected(racing: set[asyncio.Task[socket.socket]], errors: list[OSError],
                           timeout: float | None) -> socket.socket | None:
    """The socket of the first attempt to connect within timeout; failed attempts go to errors."""
    done, _ = await asyncio.wait(racing, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    winner: socket.socket | None = None
    for task in done:
        racing.discard(task)
        error = task.exception()
        if isinstance(error, OSError):
            errors.append(error)
        elif error is not None:
            raise error
        elif winner is None:
            winner = task.result()
        else:
            task.result().close()  # two connected at once: keep one
    return winner


def _tcp_failure(exc: OSError, what: str, host: str, port: int) -> str:
    if isinstance(exc, socket.gaierror):
        return f"kubetray could not reach {what}: the name {host} does not resolve."
    if isinstance(exc, ConnectionRefusedError):
        return f"{_cap(what)} refused the connection: nothing listens on {host}:{port}."
    if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return f"kubetray could not reach {what}: this computer has no route to {host}."
    return f"kubetray could not reach {what} ({_os_reason(exc)})."


# -- HTTP CONNECT ------------------------------------------------------------------------------

def connect_request(route: Route, proxy: ProxyUrl) -> bytes:
    """The CONNECT request that asks an HTTP proxy for a tunnel to the API server."""
    lines = [f"CONNECT {route.authority} HTTP/1.1", f"Host: {route.authority}"]
    if proxy.username is not None:
        pair = f"{proxy.username}:{proxy.password or ''}".encode()
        lines.append("Proxy-Authorization: Basic " + base64.b64encode(pair).decode())
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def check_connect_reply(head: bytes, route: Route, proxy: ProxyUrl) -> None:
    """Raise ApiUnreachable unless the proxy's answer (up to the blank line) opened the tunnel."""
    status_line = head.split(b"\r\n", 1)[0]
    parts = status_line.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1].isdigit() and 200 <= int(parts[1]) < 300:
        return
    shown = "".join(c if c.isprintable() else "?" for c in status_line[:120].decode("latin-1"))
    hint = ""
    if len(parts) >= 2 and parts[1] == b"407":
        hint = (" It did not accept the user and password in the proxy URL." if proxy.username else
                " It wants a user and password: put them in the proxy URL (http://user:password@host:port).")
    raise ApiUnreachable(
        f"{_cap(proxy.described)} refused to open a tunnel to the API server {redact(route.server)}: "
        f"it answered \u201c{shown}\u201d.{hint}"
    )


async def _connect_through(sock: socket.socket, route: Route, proxy: ProxyUrl) -> None:
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, connect_request(route, proxy))
    head = b""
    while b"\r\n\r\n" not in head:
        if len(head) > _CONNECT_REPLY_LIMIT:
            raise ApiUnreachable(f"{_cap(proxy.described)} answered CONNECT with something that is not HTTP.")
        data = await loop.sock_recv(sock, 4096)
        if not data:
            raise ApiUnreachable(
                f"{_cap(proxy.described)} closed the connection instead of opening a tunnel to "
                f"the API server {redact(route.server)}."
            )
        head += data
    head, _, extra = head.partition(b"\r\n\r\n")
    check_connect_reply(head, route, proxy)
    if extra:
        # Neither TLS nor HTTP lets the server speak first, so nothing can follow the answer yet.
        raise ApiUnreachable(f"{_cap(proxy.described)} sent data before the API server could have.")


async def _https_tunnel(sock: socket.socket, route: Route, proxy: ProxyUrl) -> socket.socket:
    """TLS to the proxy, CONNECT inside it; the tunnel is handed on as one end of a socket pair.

    The callers need a plain socket (websockets' `sock=`), and a TLS session is not one, so a
    relay task copies between the pair and the proxy's TLS stream until either side closes.
    """
    try:
        # The proxy's certificate is checked against the system's CAs, as Go does.
        reader, writer = await asyncio.open_connection(
            sock=sock, ssl=ssl.create_default_context(), server_hostname=proxy.host, limit=STREAM_LIMIT
        )
    except ssl.SSLCertVerificationError as exc:
        raise ApiUnreachable(
            f"kubetray could not verify the certificate of {proxy.described}: {_verify_reason(exc, proxy.host)}. "
            "kubetray keeps TLS verification on; this computer must trust the proxy's certificate authority."
        ) from exc
    except (ssl.SSLError, ConnectionError) as exc:
        raise ApiUnreachable(f"The TLS handshake with {proxy.described} failed.") from exc
    try:
        writer.write(connect_request(route, proxy))
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise ApiUnreachable(f"{_cap(proxy.described)} answered CONNECT with something that is not HTTP.") from None
        except asyncio.IncompleteReadError:
            raise ApiUnreachable(
                f"{_cap(proxy.described)} closed the connection instead of opening a tunnel to "
                f"the API server {redact(route.server)}."
            ) from None
        check_connect_reply(head[:-4], route, proxy)
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        inner_reader, inner_writer = await asyncio.open_connection(sock=ours, limit=STREAM_LIMIT)
    except BaseException:
        writer.close()
        raise
    task = asyncio.get_running_loop().create_task(
        _relay(reader, writer, inner_reader, inner_writer), name=f"connect:https-proxy:{route.authority}"
    )
    _TUNNELS.add(task)
    task.add_done_callback(_TUNNELS.discard)
    return theirs


# Relays of https-proxy tunnels; each ends by itself when either side of its tunnel closes.
_TUNNELS: set[asyncio.Task[None]] = set()


async def _relay(a_reader: asyncio.StreamReader, a_writer: asyncio.StreamWriter,
                 b_reader: asyncio.StreamReader, b_writer: asyncio.StreamWriter) -> None:
    async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await src.read(STREAM_LIMIT):
                dst.write(data)
                await dst.drain()

    try:
        _, pending = await asyncio.wait(
            [asyncio.ensure_future(copy(a_reader, b_writer)), asyncio.ensure_future(copy(b_reader, a_writer))],
            return_when=asyncio.FIRST_COMPLETED,
        )
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    finally:
        a_writer.close()
        b_writer.close()


# -- SOCKS5 ------------------------------------------------------------------------------------

_SOCKS_REPLIES = {
    1: "the proxy failed",
    2: "the proxy's rules do not allow it",
    3: "the proxy has no route to that network",
    4: "the proxy has no route to that host",
    5: "the API server refused the connection",
    6: "the connection timed out at the proxy",
    7: "the proxy does not support CONNECT",
    8: "the proxy does not support that kind of address",
}


async def _socks(route: Route, proxy: ProxyUrl) -> socket.socket:
    # Both socks5:// and socks5h:// let the proxy resolve the server's name, as Go's SOCKS5
    # dialer (and so kubectl) does: behind such a proxy, the name often resolves only there.
    dialer = SocksProxy(ProxyType.SOCKS5, proxy.host, proxy.port, proxy.username, proxy.password, rdns=True)
    try:
        # Our own deadline is the one that fires; python-socks' default would be 60 s.
        sock = await dialer.connect(route.host, route.port, timeout=3600)
    except ProxyConnectionError as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        raise ApiUnreachable(
            _tcp_failure(cause, proxy.described, proxy.host, proxy.port) + f" kubetray needs it to reach {redact(route.server)}."
        ) from exc
    except ProxyTimeoutError:
        raise TimeoutError from None
    except ProxyError as exc:
        reason = _SOCKS_REPLIES.get(exc.error_code or 0) or (
            "the SOCKS handshake failed (a user or password the proxy does not accept, or one it needs)"
        )
        raise ApiUnreachable(
            f"{_cap(proxy.described)} could not connect to the API server {redact(route.server)}: {reason}."
        ) from exc
    set_keepalive(sock)
    return sock


# -- words -------------------------------------------------------------------------------------

def _verify_reason(exc: ssl.SSLCertVerificationError, name: str) -> str:
    code = getattr(exc, "verify_code", None)
    if code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
        return f"its certificate is not valid for the name {name}"
    if code == 64:  # X509_V_ERR_IP_ADDRESS_MISMATCH
        return f"its certificate is not valid for the address {name}"
    if code == 10:  # X509_V_ERR_CERT_HAS_EXPIRED
        return "its certificate has expired"
    if code == 9:  # X509_V_ERR_CERT_NOT_YET_VALID
        return "its certificate is not valid yet"
    if code in (18, 19, 20, 21):  # self-signed, or an issuer the trusted CAs do not include
        return "its certificate is not signed by a certificate authority the kubeconfig trusts"
    return "its certificate did not pass verification"


def _os_reason(exc: OSError) -> str:
    if exc.errno is not None and exc.errno in errno.errorcode:
        return (exc.strerror or os.strerror(exc.errno)).rstrip(".").lower()
    return "the connection failed"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]

"""How kubetray opens a connection to an API server, on real sockets: keepalive on the socket
itself (read back with getsockopt), CONNECT and SOCKS5 tunnels through proxies the test runs,
errors that name the server and the proxy without its password, and a port-forward WebSocket
that refuses a giant frame from its header."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
import sys
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import websockets
import yaml
from websockets.asyncio.server import ServerConnection, serve

from tests.proxyservers import ConnectProxy, Socks5Proxy
from trayapp.engine.aio import deadline
from trayapp.engine.forward.v4dial import dial_v4
from trayapp.engine.forward.wire import SUBPROTOCOL
from trayapp.engine.kube import connect
from trayapp.engine.kube.api import KubeApi
from trayapp.engine.kube.auth import ClusterAccess, Credentials
from trayapp.engine.kube.tlsfiles import TlsSettings
from trayapp.errors import ApiUnreachable
from trayapp.sim import SimCluster

PASSWORD = "hunter2-p4ss"
SCENARIO = """
pods:
  - name: echo
    labels: {app: echo}
    ports: [{containerPort: 7000, kind: echo}]
"""


@pytest.fixture(autouse=True)
def _no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def assert_keepalive(sock: Any) -> None:
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
    # Small requests and port-forward frames go out at once, not after a delayed ACK.
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    idle = getattr(socket, "TCP_KEEPIDLE", None) or getattr(socket, "TCP_KEEPALIVE", None)
    if idle is not None:
        assert sock.getsockopt(socket.IPPROTO_TCP, idle) == connect.KEEPALIVE_IDLE
    if hasattr(socket, "TCP_KEEPINTVL"):
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == connect.KEEPALIVE_INTERVAL
    if hasattr(socket, "TCP_KEEPCNT"):
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == connect.KEEPALIVE_COUNT
    if sys.platform.startswith("linux"):
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == connect.USER_TIMEOUT * 1000


class FixedTls(TlsSettings):
    """One SSL context for every connection, where a kubeconfig would give certificate files."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._fixed = context

    def current(self) -> ssl.SSLContext:
        return self._fixed


def access(server: str, proxy: str | None = None, ssl_context: ssl.SSLContext | None = None,
           server_hostname: str | None = None) -> ClusterAccess:
    tls = FixedTls(ssl_context) if ssl_context is not None else None
    return ClusterAccess("ctx", server, "default", "c", "u", tls_settings=tls,
                         server_hostname=server_hostname, proxy=proxy)


@pytest.fixture
async def http_server() -> AsyncIterator[int]:
    """Answers every request with 200 and an empty JSON object, then closes."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def test_a_direct_connection_has_keepalive(http_server: int) -> None:
    _, writer = await connect.open_stream(access(f"http://127.0.0.1:{http_server}"))
    try:
        assert_keepalive(writer.get_extra_info("socket"))
    finally:
        writer.close()


@pytest.mark.parametrize("kind", ["http", "socks5", "socks5h"])
async def test_a_tunnel_through_a_proxy_has_keepalive_and_works(kind: str, http_server: int) -> None:
    proxy: ConnectProxy | Socks5Proxy = ConnectProxy() if kind == "http" else Socks5Proxy()
    await proxy.start()
    url = proxy.url() if isinstance(proxy, ConnectProxy) else proxy.url(scheme=kind)
    try:
        reader, writer = await connect.open_stream(access(f"http://127.0.0.1:{http_server}", url))
        sock = writer.get_extra_info("socket")
        assert_keepalive(sock)
        assert sock.getpeername()[1] == proxy.port  # the socket crosses to the proxy, not the server
        writer.write(b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.read()).endswith(b"{}")
        writer.close()
        assert proxy.carried == 1
    finally:
        await proxy.stop()


async def test_socks5_lets_the_proxy_resolve_the_name_as_kubectl_does(http_server: int) -> None:
    proxy = Socks5Proxy(hosts={"kube.invalid": "127.0.0.1"})
    await proxy.start()
    try:
        _, writer = await connect.open_stream(access(f"http://kube.invalid:{http_server}", proxy.url()))
        writer.close()
        assert proxy.requested_hosts == ["kube.invalid"]
    finally:
        await proxy.stop()


async def test_the_environment_proxy_is_used_and_no_proxy_bypasses_it(
    http_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = ConnectProxy(hosts={"kube.invalid": "127.0.0.1"})
    await proxy.start()
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.url())
        _, writer = await connect.open_stream(access(f"http://kube.invalid:{http_server}"))
        writer.close()
        assert proxy.carried == 1
        monkeypatch.setenv("NO_PROXY", ".invalid")  # now direct: and kube.invalid resolves nowhere
        with pytest.raises(ApiUnreachable) as caught:
            await connect.open_stream(access(f"http://kube.invalid:{http_server}"))
        assert "does not resolve" in caught.value.message and "proxy" not in caught.value.message
        assert proxy.carried == 1
    finally:
        await proxy.stop()


# -- what a failure says -----------------------------------------------------------------------

def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_refused_connection_names_the_server() -> None:
    port = closed_port()
    with pytest.raises(ApiUnreachable) as caught:
        await connect.open_stream(access(f"https://127.0.0.1:{port}", ssl_context=ssl.create_default_context()))
    assert caught.value.message == (
        f"The API server https://127.0.0.1:{port} refused the connection: nothing listens on 127.0.0.1:{port}."
    )


async def test_a_name_that_does_not_resolve_is_said_so() -> None:
    with pytest.raises(ApiUnreachable) as caught:
        await connect.open_stream(access("http://kube.invalid:6443"))
    assert caught.value.message == (
        "kubetray could not reach the API server http://kube.invalid:6443: the name kube.invalid does not resolve."
    )


async def test_a_server_that_never_answers_is_a_timeout_naming_it() -> None:
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)  # accepts, never speaks TLS
    port = silent.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ApiUnreachable) as caught:
            await connect.open_stream(access(f"https://127.0.0.1:{port}", ssl_context=ssl.create_default_context()),
                                      timeout=0.5)
        assert caught.value.message == f"The API server https://127.0.0.1:{port} did not answer within 0.5 s."
    finally:
        silent.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_server(ca: trustme.CA) -> AsyncIterator[int]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("kube.example").configure_cert(context)

    async def idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(idle, "127.0.0.1", 0, ssl=context)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def test_an_untrusted_certificate_is_refused_with_a_reason(tls_server: int) -> None:
    with pytest.raises(ApiUnreachable) as caught:
        await connect.open_stream(access(f"https://127.0.0.1:{tls_server}", ssl_context=ssl.create_default_context(),
                                         server_hostname="kube.example"))
    message = caught.value.message
    assert message.startswith(f"kubetray could not verify the certificate of the API server https://127.0.0.1:{tls_server}")
    assert "not signed by a certificate authority the kubeconfig trusts" in message
    assert "keeps TLS verification on" in message


async def test_a_certificate_for_another_name_is_refused_with_the_name(ca: trustme.CA, tls_server: int) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with pytest.raises(ApiUnreachable) as caught:
        await connect.open_stream(access(f"https://127.0.0.1:{tls_server}", ssl_context=context,
                                         server_hostname="other.example"))
    assert "its certificate is not valid for the name other.example" in caught.value.message
    # and the right name passes, through the same code
    _, writer = await connect.open_stream(access(f"https://127.0.0.1:{tls_server}", ssl_context=context,
                                                      server_hostname="kube.example"))
    writer.close()


async def test_a_proxy_that_wants_credentials_is_named_without_the_password(http_server: int) -> None:
    proxy = ConnectProxy(user="alice", password=PASSWORD)
    await proxy.start()
    try:
        with pytest.raises(ApiUnreachable) as without:
            await connect.open_stream(access(f"http://127.0.0.1:{http_server}", proxy.url()))
        assert without.value.message == (
            f"The proxy http://127.0.0.1:{proxy.port} (from the kubeconfig's proxy-url) refused to open a tunnel "
            f"to the API server http://127.0.0.1:{http_server}: it answered \u201cHTTP/1.1 407 Proxy Authentication "
            "Required\u201d. It wants a user and password: put them in the proxy URL (http://user:password@host:port)."
        )
        with pytest.raises(ApiUnreachable) as wrong:
            await connect.open_stream(access(f"http://127.0.0.1:{http_server}", proxy.url("alice", "not-" + PASSWORD)))
        assert PASSWORD not in wrong.value.message
        assert f"http://alice:xxxxx@127.0.0.1:{proxy.port}" in wrong.value.message
        assert "did not accept the user and password" in wrong.value.message
        _, writer = await connect.open_stream(access(f"http://127.0.0.1:{http_server}", proxy.url("alice", PASSWORD)))
        writer.close()
        assert proxy.carried == 1
    finally:
        await proxy.stop()


async def test_a_proxy_that_refuses_the_target_gives_its_status_line() -> None:
    proxy = ConnectProxy(status=b"HTTP/1.1 403 Forbidden by policy")
    await proxy.start()
    try:
        with pytest.raises(ApiUnreachable) as caught:
            await connect.open_stream(access("https://kube.example:6443", proxy.url("bob", PASSWORD),
                                             ssl_context=ssl.create_default_context()))
        assert caught.value.message == (
            f"The proxy http://bob:xxxxx@127.0.0.1:{proxy.port} (from the kubeconfig's proxy-url) refused to open "
            "a tunnel to the API server https://kube.example:6443: it answered \u201cHTTP/1.1 403 Forbidden by policy\u201d."
        )
    finally:
        await proxy.stop()


@pytest.mark.parametrize("scheme", ["http", "socks5"])
async def test_a_proxy_that_is_not_there_is_named_without_the_password(scheme: str) -> None:
    port = closed_port()
    with pytest.raises(ApiUnreachable) as caught:
        await connect.open_stream(access("https://kube.example:6443", f"{scheme}://carol:{PASSWORD}@127.0.0.1:{port}",
                                         ssl_context=ssl.create_default_context()))
    assert caught.value.message == (
        f"The proxy {scheme}://carol:xxxxx@127.0.0.1:{port} (from the kubeconfig's proxy-url) refused the "
        f"connection: nothing listens on 127.0.0.1:{port}. kubetray needs it to reach https://kube.example:6443."
    )


async def test_a_socks_proxy_that_refuses_the_password_or_the_target(http_server: int) -> None:
    proxy = Socks5Proxy(user="dave", password=PASSWORD)
    await proxy.start()
    try:
        with pytest.raises(ApiUnreachable) as wrong:
            await connect.open_stream(access(f"http://127.0.0.1:{http_server}", proxy.url("dave", "nope")))
        assert "SOCKS handshake failed" in wrong.value.message and "nope" not in wrong.value.message
        with pytest.raises(ApiUnreachable) as refused:
            await connect.open_stream(access(f"http://127.0.0.1:{closed_port()}", proxy.url("dave", PASSWORD)))
        assert refused.value.message.endswith(": the API server refused the connection.")
        assert PASSWORD not in refused.value.message and "socks5://dave:xxxxx@" in refused.value.message
    finally:
        await proxy.stop()


def test_a_proxy_url_kubetray_cannot_use_names_the_server() -> None:
    with pytest.raises(ApiUnreachable) as caught:
        connect.route_for(access("https://kube.example:6443", f"ftp://erin:{PASSWORD}@gw:21"))
    assert PASSWORD not in caught.value.message and "https://kube.example:6443" in caught.value.message


# -- port-forward WebSockets -------------------------------------------------------------------

def write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "ctx",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u", "namespace": "default"}}],
    }), encoding="utf-8")
    return path


@pytest.fixture
def api_for(tmp_path: Path) -> Iterator[Any]:
    made: list[Credentials] = []

    def make(server: str) -> KubeApi:
        credentials = Credentials([write_kubeconfig(tmp_path / f"kc{len(made)}", server)], None)
        made.append(credentials)
        return KubeApi(credentials.load(), credentials)

    yield make
    for credentials in made:
        credentials.close()


async def test_a_port_forward_websocket_has_keepalive(api_for: Any) -> None:
    async with SimCluster("keepalive", scenario=SCENARIO) as cluster:
        api = api_for(cluster.url)
        ws = await dial_v4(api, "default", "echo", 7000)
        try:
            assert_keepalive(ws.transport.get_extra_info("socket"))
        finally:
            await ws.close()


async def test_a_giant_frame_is_refused_from_its_header(api_for: Any) -> None:
    closed = asyncio.Event()

    async def hostile(ws: ServerConnection) -> None:
        # A binary frame announcing 1 GiB (64-bit length, unmasked as server frames are), then
        # 1 MiB of it: a client without a limit would wait for the rest, buffering as it goes.
        ws.transport.write(bytes([0x82, 127]) + (1 << 30).to_bytes(8, "big") + bytes(1 << 20))
        await ws.wait_closed()
        closed.set()

    async with serve(hostile, "127.0.0.1", 0, subprotocols=[websockets.Subprotocol(SUBPROTOCOL)]) as server:
        port = server.sockets[0].getsockname()[1]
        api = api_for(f"http://127.0.0.1:{port}")
        tracemalloc.start()
        try:
            ws = await dial_v4(api, "default", "victim", 8080)
            with pytest.raises(websockets.ConnectionClosedError) as caught:
                async with deadline(10):
                    await ws.recv()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert caught.value.sent is not None and caught.value.sent.code == 1009  # "message too big"
        async with deadline(10):
            await closed.wait()  # the hostile server saw the connection end
        assert peak < 16 * 1024 * 1024, f"{peak / 2**20:.1f} MiB allocated for a refused frame"


# -- an https:// proxy: TLS to the proxy, then CONNECT inside it -------------------------------

@pytest.fixture
def https_proxy_trusted(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """The proxy's TLS context; the test CA is what the system trusts (SSL_CERT_FILE)."""
    ca.cert_pem.write_to_path(str(tmp_path / "system-ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "system-ca.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


async def test_an_https_proxy_carries_api_calls_and_port_forwards(
    https_proxy_trusted: ssl.SSLContext, http_server: int, api_for: Any
) -> None:
    proxy = ConnectProxy(tls=https_proxy_trusted, user="frank", password=PASSWORD)
    await proxy.start()
    try:
        reader, writer = await connect.open_stream(access(f"http://127.0.0.1:{http_server}", proxy.url("frank", PASSWORD)))
        writer.write(b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.read()).endswith(b"{}")
        writer.close()
        async with SimCluster("https-proxy", scenario=SCENARIO) as cluster:
            api = api_for(cluster.url)
            api.access = dataclasses.replace(api.access, proxy=proxy.url("frank", PASSWORD))
            ws = await dial_v4(api, "default", "echo", 7000)
            await ws.send(b"\x00hello")
            await ws.close()
        assert proxy.carried == 2
        assert [t.first_line for t in proxy.tunnels][1].startswith(b"GET /api/v1/namespaces/default/pods/echo/portforward")
    finally:
        await proxy.stop()


async def test_an_https_proxy_is_verified_too(ca: trustme.CA, http_server: int) -> None:
    # No SSL_CERT_FILE here: the proxy's certificate comes from a CA the system does not trust.
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    proxy = ConnectProxy(tls=context)
    await proxy.start()
    try:
        with pytest.raises(ApiUnreachable) as caught:
            await connect.open_stream(access(f"http://127.0.0.1:{http_server}", proxy.url()))
        assert caught.value.message.startswith(f"kubetray could not verify the certificate of the proxy https://127.0.0.1:{proxy.port}")
        assert proxy.carried == 0
    finally:
        await proxy.stop()


async def test_a_server_that_hangs_up_mid_handshake_is_said_so(api_for: Any) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ApiUnreachable) as caught:
            await dial_v4(api_for(f"http://127.0.0.1:{port}"), "default", "web-0", 8080)
        assert caught.value.message == f"The API server http://127.0.0.1:{port} closed the connection before it was set up."
    finally:
        server.close()


def test_access_holds_only_the_kubeconfig_proxy_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Newer kubernetes clients fill Configuration.proxy from HTTPS_PROXY, without NO_PROXY; the
    # environment is connect.py's to apply, so the access must not carry it.
    monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy.example:3128")
    plain = Credentials([write_kubeconfig(tmp_path / "plain", "https://kube.example:6443")], None)
    assert plain.load().proxy is None
    configured = tmp_path / "configured"
    write_kubeconfig(configured, "https://kube.example:6443")
    data = yaml.safe_load(configured.read_text(encoding="utf-8"))
    data["clusters"][0]["cluster"]["proxy-url"] = f"socks5://gus:{PASSWORD}@gw.example:1080"
    configured.write_text(yaml.safe_dump(data), encoding="utf-8")
    loaded = Credentials([configured], None).load()
    assert loaded.proxy == f"socks5://gus:{PASSWORD}@gw.example:1080"
    assert PASSWORD not in repr(loaded)
    assert connect.route_for(loaded).proxy is not None and PASSWORD not in repr(connect.route_for(loaded))
    plain.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a full accept queue drops SYNs on Linux")
async def test_a_dead_first_address_does_not_hold_up_the_next() -> None:
    # A listener whose accept queue is full drops new SYNs: a connect to it hangs, as to an
    # address on a broken network. The second address must win all the same.
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(0)
    filler = socket.create_connection(dead.getsockname())
    live = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    infos: list[connect.AddressInfo] = [
        (socket.AF_INET, socket.SOCK_STREAM, 0, "", dead.getsockname()),
        (socket.AF_INET, socket.SOCK_STREAM, 0, "", live.sockets[0].getsockname()),
    ]
    try:
        async with deadline(20):  # without racing, the first attempt alone would take minutes
            sock = await connect.race_connect(infos, "test")
        assert sock.getpeername() == live.sockets[0].getsockname()
        sock.close()
    finally:
        filler.close()
        dead.close()
        live.close()

"""SpdyDialer against the simulator over real sockets, on both carriers (plain SPDY and SPDY in a
WebSocket): sessions shared per pod, refusals, half-close, dead paths, GOAWAY, a stalled reader,
TransportRefused, TLS with a bearer token."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from websockets.frames import Frame as WsFrame
from websockets.protocol import OPEN, Side
from websockets.protocol import Protocol as WsProtocol
from websockets.utils import accept_key

from tests.support.faultproxy import FaultProxy
from trayapp.engine.aio import deadline
from trayapp.engine.forward.spdy import FrameDecoder, FrameEncoder, Ping
from trayapp.engine.forward.spdydial import SpdyConnection, SpdyDialer
from trayapp.engine.forward.spdysession import SessionLost
from trayapp.engine.forward.transport import Dialer, PodConnection, PodRefused, TransportRefused
from trayapp.engine.kube import Credentials, KubeApi
from trayapp.errors import ApiUnreachable, AuthError, NotFound
from trayapp.model import Transport
from trayapp.sim import SimCluster, TlsConfig

SCENARIO = """
pods:
  - name: echo
    ports: [{containerPort: 7000, kind: echo}, {containerPort: 7001, refuse: true}]
  - name: web
    ports: [{containerPort: 8080, kind: http}, {containerPort: 9000, kind: source}]
"""
CARRIERS = {"spdy": False, "spdy-websocket": True}
TOKEN = "s3cret"


@pytest.fixture(autouse=True)
def _no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=list(CARRIERS))
def carrier(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def api_for(tmp_path: Path) -> Iterator[Any]:
    made: list[Credentials] = []

    def make(server: str, cluster: dict[str, Any] | None = None, user: dict[str, Any] | None = None) -> KubeApi:
        path = tmp_path / f"kc{len(made)}"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "ctx",
            "clusters": [{"name": "c", "cluster": {"server": server, **(cluster or {})}}],
            "users": [{"name": "u", "user": user or {}}],
            "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u", "namespace": "default"}}],
        }), encoding="utf-8")
        credentials = Credentials([path], None)
        made.append(credentials)
        return KubeApi(credentials.load(), credentials)

    yield make
    for credentials in made:
        credentials.close()


async def read_exactly(conn: PodConnection, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        chunk = await conn.receive()
        assert chunk, f"the pod ended after {len(got)} of {size} bytes"
        got += chunk
    return bytes(got)


async def read_to_end(conn: PodConnection) -> bytes:
    got = bytearray()
    while chunk := await conn.receive():
        got += chunk
    return bytes(got)


@pytest.fixture
async def cluster() -> AsyncIterator[SimCluster]:
    async with SimCluster("spdy", scenario=SCENARIO) as c:
        yield c


@contextlib.asynccontextmanager
async def dialer_to(serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]], api_for: Any,
                    over_websocket: bool) -> AsyncIterator[SpdyDialer]:
    """A SpdyDialer whose API server is `serve`, a hand-written one on a loopback port."""
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    dialer = SpdyDialer(api_for(f"http://127.0.0.1:{port}"), over_websocket=over_websocket)
    try:
        yield dialer
    finally:
        await dialer.aclose()
        server.close()
        await server.wait_closed()


async def test_many_connections_share_one_session(cluster: SimCluster, api_for: Any, carrier: str) -> None:
    dialer = SpdyDialer(api_for(cluster.url), over_websocket=CARRIERS[carrier])
    as_dialer: Dialer = dialer  # the contract, checked by mypy
    assert as_dialer.transport is (Transport.SPDY_WS if CARRIERS[carrier] else Transport.SPDY)
    try:
        async with deadline(30):
            conns = await asyncio.gather(*(dialer.open("default", "echo", 7000, 10) for _ in range(20)))
            for i, conn in enumerate(conns):
                await conn.send(f"hello {i}".encode())
            for i, conn in enumerate(conns):
                assert await read_exactly(conn, len(f"hello {i}")) == f"hello {i}".encode()
                await conn.close()
            assert cluster.api.portforward_sessions[carrier] == 1
            (session,) = dialer.sessions("default", "echo")
            # Small frames go out at once (Nagle would hold a connection's SYN_STREAMs for 40 ms).
            sock = session.socket
            assert sock is not None and sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        await dialer.aclose()


async def test_a_refused_port_fails_only_its_connection(cluster: SimCluster, api_for: Any, carrier: str) -> None:
    dialer = SpdyDialer(api_for(cluster.url), over_websocket=CARRIERS[carrier])
    try:
        async with deadline(30):
            good = await dialer.open("default", "echo", 7000, 10)
            bad = await dialer.open("default", "echo", 7001, 10)
            await bad.send(b"anyone?")
            with pytest.raises(PodRefused, match="error forwarding port 7001") as refused:
                await read_to_end(bad)
            assert not isinstance(refused.value, SessionLost)
            await bad.close()
            await good.send(b"still here")
            assert await read_exactly(good, 10) == b"still here"
            # The kubelet's worker for `bad` may now be blocked on the bytes we sent it, so the
            # session takes no new connections: the next one goes to a fresh session (already
            # being opened), while `good` stays where it is.
            (old,) = [s for s in dialer.sessions("default", "echo") if not s.usable]
            fresh = await dialer.open("default", "echo", 7000, 10)
            await fresh.send(b"fresh")
            assert await read_exactly(fresh, 5) == b"fresh"
            assert cluster.api.portforward_sessions[carrier] == 2
            assert not old.closed
            await good.close()
            assert old.closed
            await fresh.close()
    finally:
        await dialer.aclose()


async def test_half_close_reaches_the_pod_and_its_eof_comes_back(cluster: SimCluster, api_for: Any,
                                                                 carrier: str) -> None:
    dialer = SpdyDialer(api_for(cluster.url), over_websocket=CARRIERS[carrier])
    try:
        async with deadline(30):
            conn = await dialer.open("default", "web", 8080, 10)
            assert conn.half_close
            # An HTTP/1.0-style request that ends with our FIN: the answer can only come back whole
            # if the pod saw the end of the request and then closed its side, which reaches us as EOF.
            await conn.send(b"GET /bytes/100000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            await conn.send_eof()
            answer = await read_to_end(conn)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert body == bytes(i % 256 for i in range(100000))
            await conn.close()
    finally:
        await dialer.aclose()


async def test_echo_after_our_eof_still_flows_back(cluster: SimCluster, api_for: Any, carrier: str) -> None:
    dialer = SpdyDialer(api_for(cluster.url), over_websocket=CARRIERS[carrier])
    try:
        async with deadline(30):
            conn = await dialer.open("default", "echo", 7000, 10)
            payload = bytes(range(256)) * 2000  # 512 KB: more than one DATA frame each way
            await conn.send(payload)
            await conn.send_eof()
            assert await read_to_end(conn) == payload
            await conn.close()
    finally:
        await dialer.aclose()


async def test_a_deleted_pod_fails_its_connections_and_new_ones(cluster: SimCluster, api_for: Any,
                                                                carrier: str) -> None:
    dialer = SpdyDialer(api_for(cluster.url), over_websocket=CARRIERS[carrier])
    try:
        async with deadline(30):
            conn = await dialer.open("default", "echo", 7000, 10)
            await conn.send(b"ping")
            assert await read_exactly(conn, 4) == b"ping"
            cluster.delete_pod("default", "echo")
            # The pod's programs are gone: its connection ends (EOF or the kubelet's error text).
            with contextlib.suppress(PodRefused):
                await read_to_end(conn)
            await conn.close()
            # A new connection on the old session (the kubelet's session outlives the pod) is refused.
            late = await dialer.open("default", "echo", 7000, 10)
            with pytest.raises(PodRefused, match="7000"):
                await read_to_end(late)
            await late.close()
            dialer.forget("default", "echo")
            with pytest.raises(NotFound):
                await dialer.open("default", "echo", 7000, 10)
    finally:
        await dialer.aclose()


async def test_goaway_sends_new_connections_to_a_new_session(cluster: SimCluster, api_for: Any,
                                                             carrier: str) -> None:
    dialer = SpdyDialer(api_for(cluster.url), over_websocket=CARRIERS[carrier])
    try:
        async with deadline(30):
            first = await dialer.open("default", "echo", 7000, 10)
            await first.send(b"a")
            assert await read_exactly(first, 1) == b"a"
            # The server says GOAWAY and closes, as the kubelet's Close does (it resets the streams
            # first): the connection on it ends, and the next one goes to a new session.
            sessions = list(cluster.api.spdy_sessions)
            assert len(sessions) == 1
            sessions[0].go_away()
            with contextlib.suppress(PodRefused):
                await read_to_end(first)
            second = await dialer.open("default", "echo", 7000, 10)
            await second.send(b"b")
            assert await read_exactly(second, 1) == b"b"
            assert cluster.api.portforward_sessions[carrier] == 2
            await second.close()
            await first.close()
    finally:
        await dialer.aclose()


async def test_a_dead_path_is_noticed_by_ping(cluster: SimCluster, api_for: Any, carrier: str) -> None:
    async with FaultProxy(("127.0.0.1", cluster.port)) as proxy:
        dialer = SpdyDialer(api_for(proxy.url), over_websocket=CARRIERS[carrier], ping_interval=0.3,
                            ping_timeout=0.5)
        try:
            async with deadline(30):
                conn = await dialer.open("default", "echo", 7000, 10)
                await conn.send(b"x")
                assert await read_exactly(conn, 1) == b"x"
                proxy.blackhole()
                with pytest.raises(SessionLost, match="PING"):
                    await conn.receive()
                await conn.close()
                proxy.pass_through()
                again = await dialer.open("default", "echo", 7000, 10)
                await again.send(b"y")
                assert await read_exactly(again, 1) == b"y"
                await again.close()
        finally:
            await dialer.aclose()


async def test_a_stalled_reader_does_not_stall_new_connections(cluster: SimCluster, api_for: Any,
                                                               carrier: str) -> None:
    limit = 256 * 1024
    dialer = SpdyDialer(api_for(cluster.url), over_websocket=CARRIERS[carrier], buffer_limit=limit)
    try:
        async with deadline(60):
            stalled = await dialer.open("default", "web", 9000, 10)  # a source: writes forever
            first = await stalled.receive()
            assert first
            (session,) = dialer.sessions("default", "web")
            # Nobody reads `stalled`: the session fills its buffer and stops reading the socket.
            await session.stalled.wait()
            others = [await dialer.open("default", "web", 8080, 10) for _ in range(5)]
            for other in others:
                await other.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert (await read_to_end(other)).startswith(b"HTTP/1.1 200")
                await other.close()
            # Memory stays bounded: the stalled connection holds at most its limit plus one read.
            assert isinstance(stalled, SpdyConnection)
            assert stalled.buffered < limit + 256 * 1024
            assert len(dialer.sessions("default", "web")) == 2
            # Reading again resumes the old session.
            total = 0
            while total < 4 * limit:
                total += len(await stalled.receive())
            await stalled.close()
    finally:
        await dialer.aclose()


async def test_a_server_without_the_carrier_is_transport_refused(cluster: SimCluster, api_for: Any,
                                                                 carrier: str) -> None:
    cluster.settings.refused_carriers.add(carrier)
    dialer = SpdyDialer(api_for(cluster.url), over_websocket=CARRIERS[carrier])
    try:
        with pytest.raises(TransportRefused):
            await dialer.open("default", "echo", 7000, 10)
        other = SpdyDialer(api_for(cluster.url), over_websocket=not CARRIERS[carrier])
        try:
            conn = await other.open("default", "echo", 7000, 10)
            await conn.send(b"ok")
            assert await read_exactly(conn, 2) == b"ok"
            await conn.close()
        finally:
            await other.aclose()
    finally:
        await dialer.aclose()


async def test_tls_and_a_bearer_token(api_for: Any, carrier: str) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    async with SimCluster("tls", scenario=SCENARIO, token=TOKEN, tls=TlsConfig(context, ca.cert_pem.bytes())) as c:
        ca_data = {"certificate-authority-data": base64.b64encode(ca.cert_pem.bytes()).decode()}
        refused = SpdyDialer(api_for(c.url, ca_data, {"token": "wrong"}), over_websocket=CARRIERS[carrier])
        dialer = SpdyDialer(api_for(c.url, ca_data, {"token": TOKEN}), over_websocket=CARRIERS[carrier])
        try:
            with pytest.raises(AuthError):
                await refused.open("default", "echo", 7000, 10)
            conn = await dialer.open("default", "echo", 7000, 10)
            await conn.send(b"secret")
            assert await read_exactly(conn, 6) == b"secret"
            await conn.close()
        finally:
            await refused.aclose()
            await dialer.aclose()


async def test_warm_opens_the_session_before_the_first_connection(cluster: SimCluster, api_for: Any,
                                                                  carrier: str) -> None:
    dialer = SpdyDialer(api_for(cluster.url), over_websocket=CARRIERS[carrier])
    try:
        async with deadline(30):
            dialer.warm("default", "echo")
            dialer.warm("default", "echo")  # one upgrade, however often it is asked for
            conn = await dialer.open("default", "echo", 7000, 10)
            assert cluster.api.portforward_sessions[carrier] == 1
            await conn.send(b"w")
            assert await read_exactly(conn, 1) == b"w"
            await conn.close()
            dialer.warm("default", "nobody")  # a failing warm-up is only logged
            with pytest.raises(NotFound):
                await dialer.open("default", "nobody", 80, 10)
    finally:
        await dialer.aclose()


async def test_forget_lets_the_session_go_once_its_connections_end(cluster: SimCluster, api_for: Any,
                                                                   carrier: str) -> None:
    dialer = SpdyDialer(api_for(cluster.url), over_websocket=CARRIERS[carrier])
    try:
        async with deadline(30):
            conn = await dialer.open("default", "echo", 7000, 10)
            (session,) = dialer.sessions("default", "echo")
            dialer.forget("default", "echo")
            await conn.send(b"still")  # a forgotten session still carries what it has
            assert await read_exactly(conn, 5) == b"still"
            assert not session.closed
            await conn.close()
            assert session.closed
            assert dialer.sessions("default", "echo") == []
    finally:
        await dialer.aclose()


async def test_network_changed_drops_sessions_and_the_next_open_makes_a_new_one(
        cluster: SimCluster, api_for: Any, carrier: str) -> None:
    dialer = SpdyDialer(api_for(cluster.url), over_websocket=CARRIERS[carrier])
    try:
        async with deadline(30):
            old = await dialer.open("default", "echo", 7000, 10)
            dialer.network_changed()
            with pytest.raises(SessionLost, match="network changed"):
                await old.receive()
            with pytest.raises(SessionLost):
                await old.send(b"x")
            await old.close()
            new = await dialer.open("default", "echo", 7000, 10)
            await new.send(b"n")
            assert await read_exactly(new, 1) == b"n"
            await new.close()
            assert cluster.api.portforward_sessions[carrier] == 2
    finally:
        await dialer.aclose()


async def test_an_upgrade_that_never_comes_times_out_as_unreachable(cluster: SimCluster, api_for: Any,
                                                                    carrier: str) -> None:
    async with FaultProxy(("127.0.0.1", cluster.port)) as proxy:
        proxy.blackhole()
        dialer = SpdyDialer(api_for(proxy.url), over_websocket=CARRIERS[carrier], connect_timeout=0.5)
        try:
            async with deadline(30):
                with pytest.raises(ApiUnreachable):
                    await dialer.open("default", "echo", 7000, 0.5)
        finally:
            await dialer.aclose()


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
])
async def test_answers_that_are_not_this_carrier_are_transport_refused(api_for: Any, carrier: str,
                                                                       answer: bytes) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        await reader.read()
        writer.close()

    async with dialer_to(serve, api_for, CARRIERS[carrier]) as dialer:
        async with deadline(30):
            with pytest.raises(TransportRefused):
                await dialer.open("default", "web", 80, 10)


async def test_a_forbidden_status_stays_an_auth_error(api_for: Any, carrier: str) -> None:
    body = (b'{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,'
            b'"message":"pods \\"web\\" is forbidden: User \\"u\\" cannot create resource \\"pods/portforward\\""}')

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))
        await writer.drain()
        writer.close()

    async with dialer_to(serve, api_for, CARRIERS[carrier]) as dialer:
        async with deadline(30):
            with pytest.raises(AuthError, match="cannot create resource"):
                await dialer.open("default", "web", 80, 10)


async def test_frames_that_come_with_the_upgrade_answer_are_read(api_for: Any, carrier: str) -> None:
    """A server may send its first SPDY frame in the same segment as its 101: the session must
    take it from what was read with the head (here a PING, which the session echoes)."""
    over_websocket = CARRIERS[carrier]
    echoed: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        ping = FrameEncoder().encode(Ping(2))
        if over_websocket:
            key = next(line.split(":", 1)[1].strip() for line in head.split("\r\n")
                       if line.lower().startswith("sec-websocket-key:"))
            answer = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Accept: {accept_key(key)}\r\n"
                      "Sec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io\r\n\r\n").encode()
            ws = WsProtocol(Side.SERVER, state=OPEN)
            ws.send_binary(ping)
            writer.write(answer + b"".join(ws.data_to_send()))
        else:
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\nConnection: Upgrade\r\n\r\n"
                         + ping)
        decoder = FrameDecoder()
        while not echoed.done():
            data = await reader.read(65536)
            if not data:
                break
            if over_websocket:
                ws.receive_data(data)
                data = b"".join(bytes(e.data) for e in ws.events_received() if isinstance(e, WsFrame))
            for frame in decoder.receive_data(data):
                if isinstance(frame, Ping) and not echoed.done():
                    echoed.set_result(frame.ping_id)
        writer.close()

    async with dialer_to(serve, api_for, over_websocket) as dialer:
        dialer.warm("default", "web")
        async with deadline(10):
            assert await echoed == 2


async def test_a_refusal_without_a_length_is_read_to_its_end(api_for: Any, carrier: str) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)  # the body comes in a later segment, then the server closes
        writer.write(b"missing required ports parameter")
        await writer.drain()
        writer.close()

    async with dialer_to(serve, api_for, CARRIERS[carrier]) as dialer:
        async with deadline(10):
            with pytest.raises(TransportRefused, match="HTTP 400: missing required ports parameter"):
                await dialer.open("default", "web", 80, 5)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed here, so the simulator's "
                                                           "refusal cannot be checked against it")
async def test_kubectl_falls_back_from_the_simulators_refusal_as_from_an_old_api_server(
        cluster: SimCluster, tmp_path: Path) -> None:
    # The refusal kubetray takes as TransportRefused is one client-go takes as an upgrade failure:
    # kubectl (WebSockets on, its default) must then forward over plain SPDY.
    cluster.settings.refused_carriers.add("spdy-websocket")
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig", context="sim")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        local = int(probe.getsockname()[1])
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECTL_PORT_FORWARD_WEBSOCKETS": "true",
           "HOME": str(tmp_path)}
    kubectl = await asyncio.create_subprocess_exec(
        str(shutil.which("kubectl")), "port-forward", "pod/web", f"{local}:8080", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert kubectl.stdout is not None
        async with deadline(30):
            assert b"Forwarding from" in await kubectl.stdout.readline()
            reader, writer = await asyncio.open_connection("127.0.0.1", local)
            writer.write(b"GET / HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n")
            answer = await reader.read(-1)
            writer.close()
        assert answer.startswith(b"HTTP/1.1 200")
        assert cluster.api.portforward_sessions["spdy"] == 1
    finally:
        if kubectl.returncode is None:
            kubectl.kill()
        await kubectl.wait()


async def test_close_ends_a_receive_that_is_waiting(cluster: SimCluster, api_for: Any, carrier: str) -> None:
    dialer = SpdyDialer(api_for(cluster.url), over_websocket=CARRIERS[carrier])
    try:
        async with deadline(30):
            conn = await dialer.open("default", "echo", 7000, 10)
            waiting = asyncio.create_task(conn.receive())
            await conn.send(b"1")
            assert await waiting == b"1"
            waiting = asyncio.create_task(conn.receive())
            await asyncio.sleep(0)  # the receive is now waiting for the pod
            await conn.close()
            assert await waiting == b""
            await conn.close()  # idempotent
    finally:
        await dialer.aclose()

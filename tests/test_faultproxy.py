"""The fault proxy itself, over real sockets: a client through the proxy to a small server that
echoes, and can be told to speak first, so each fault is seen from both ends."""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.faultproxy import FaultProxy, FaultProxyThread, reset_socket

QUIET = 0.3  # how long "nothing arrives" is watched for; it can only make a check pass wrongly, never fail


class Upstream:
    """An echo server that also keeps every accepted connection, so a test can write from its side
    and see what its side receives (bytes, a FIN, or a reset)."""

    def __init__(self) -> None:
        self.conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.received = 0
        self.echo = True
        self._arrived = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        return "127.0.0.1", self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conns.append((reader, writer))
        self._arrived.set()
        if not self.echo:
            return
        try:
            while data := await reader.read(65536):
                self.received += len(data)
                writer.write(data)
                await writer.drain()
            writer.close()
        except ConnectionError:
            pass

    async def connection(self, index: int, timeout: float = 10.0) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async def arrived() -> None:
            while len(self.conns) <= index:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(arrived(), timeout)
        return self.conns[index]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for _, writer in self.conns:
            writer.close()
        await self._server.wait_closed()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def proxy(upstream: Upstream) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(upstream.address) as p:
        yield p


async def connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), 10)


async def silent(reader: asyncio.StreamReader) -> bool:
    """True if neither bytes nor a FIN nor a reset arrive for QUIET seconds."""
    try:
        await asyncio.wait_for(reader.read(1), QUIET)
    except TimeoutError:
        return not reader.at_eof()
    return False


async def reset_seen(reader: asyncio.StreamReader) -> bool:
    try:
        await asyncio.wait_for(reader.read(65536), 10)
    except ConnectionResetError:
        return True
    return False


async def test_pass_forwards_both_ways_and_passes_a_fin_on(proxy: FaultProxy, upstream: Upstream) -> None:
    reader, writer = await connect(proxy)
    assert await roundtrip(reader, writer, b"hello") == b"hello"
    writer.write_eof()  # the echo server answers a FIN with its own close
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    counts = await proxy.wait_until(lambda c: c.open == 0, 10)
    assert (counts.accepted, counts.connected, counts.resets) == (1, 1, 0)


async def test_blackhole_silences_open_connections_without_fin_or_reset(
    proxy: FaultProxy, upstream: Upstream
) -> None:
    reader, writer = await connect(proxy)
    assert await roundtrip(reader, writer, b"before") == b"before"
    _, server_writer = await upstream.connection(0)
    proxy.blackhole()
    writer.write(b"lost?")
    await writer.drain()
    assert await silent(reader)
    assert upstream.received == len(b"before")  # nothing reached the server either
    server_writer.write(b"from the server")  # the server's side goes unheard as well
    await server_writer.drain()
    assert await silent(reader)
    assert proxy.counts().held == 1
    writer.close()


async def test_new_connections_hang_in_a_blackhole_and_flow_when_the_path_returns(
    proxy: FaultProxy, upstream: Upstream
) -> None:
    reader, writer = await connect(proxy)
    assert await roundtrip(reader, writer, b"old") == b"old"
    proxy.blackhole()
    writer.write(b"held")
    late_reader, late_writer = await connect(proxy)  # accepted, but never connected upstream
    late_writer.write(b"waiting")
    assert await silent(late_reader)
    counts = proxy.counts()
    assert (counts.accepted, counts.connected, counts.held) == (2, 1, 2)
    proxy.pass_through()  # the same network comes back: what was held flows, as TCP retransmits it
    assert await asyncio.wait_for(reader.readexactly(4), 10) == b"held"
    assert await asyncio.wait_for(late_reader.readexactly(7), 10) == b"waiting"
    assert proxy.counts().connected == 2
    writer.close()
    late_writer.close()


async def test_reset_sends_an_rst_to_both_ends(proxy: FaultProxy, upstream: Upstream) -> None:
    upstream.echo = False
    reader, writer = await connect(proxy)
    server_reader, _ = await upstream.connection(0)
    await proxy.wait_until(lambda c: c.connected == 1, 10)
    proxy.reset_all()
    assert await reset_seen(reader)
    assert await reset_seen(server_reader)
    counts = await proxy.wait_until(lambda c: c.open == 0, 10)
    assert counts.resets == 2
    writer.close()


@pytest.mark.parametrize("latency", [0.0, 0.05])
async def test_a_reset_from_the_server_reaches_the_client_as_a_reset(
    proxy: FaultProxy, upstream: Upstream, latency: float
) -> None:
    proxy.slow(latency=latency)
    upstream.echo = False
    reader, writer = await connect(proxy)
    _, server_writer = await upstream.connection(0)
    reset_socket(server_writer)
    assert await reset_seen(reader)
    counts = await proxy.wait_until(lambda c: c.open == 0, 10)
    assert counts.resets == 1  # the proxy passed it on to the client
    writer.close()


async def test_refuse_resets_every_new_connection(proxy: FaultProxy, upstream: Upstream) -> None:
    proxy.refuse()
    for _ in range(3):
        reader, writer = await connect(proxy)
        assert await reset_seen(reader)
        writer.close()
    counts = proxy.counts()
    assert (counts.accepted, counts.connected, counts.resets) == (3, 0, 3)
    proxy.pass_through()
    reader, writer = await connect(proxy)
    assert await roundtrip(reader, writer, b"back") == b"back"
    writer.close()


async def test_wake_on_a_new_network_kills_old_connections_and_passes_new_ones(
    proxy: FaultProxy, upstream: Upstream
) -> None:
    upstream.echo = False
    old_reader, old_writer = await connect(proxy)
    server_reader, server_writer = await upstream.connection(0)
    await proxy.wait_until(lambda c: c.connected == 1, 10)
    proxy.sleep()
    proxy.wake()
    assert proxy.counts().dead == 1
    # the server writes on its old connection: it is reset, and the client still hears nothing
    server_writer.write(b"bookmark")
    await server_writer.drain()
    assert await reset_seen(server_reader)
    assert await silent(old_reader)
    # the client writes on it: it is reset too
    old_writer.write(b"anyone?")
    await old_writer.drain()
    assert await reset_seen(old_reader)
    # a new connection passes
    upstream.echo = True
    new_reader, new_writer = await connect(proxy)
    assert await roundtrip(new_reader, new_writer, b"new") == b"new"
    counts = proxy.counts()
    assert (counts.network, counts.resets, counts.dead) == (1, 2, 0)
    old_writer.close()
    new_writer.close()


async def test_bytes_sent_during_the_sleep_are_answered_with_a_reset_at_wake(
    proxy: FaultProxy, upstream: Upstream
) -> None:
    reader, writer = await connect(proxy)
    assert await roundtrip(reader, writer, b"hi") == b"hi"
    proxy.sleep()
    writer.write(b"written while asleep")
    await writer.drain()
    asleep_reader, asleep_writer = await connect(proxy)  # tried during the sleep: also an old network's
    asleep_writer.write(b"GET / HTTP/1.1\r\n\r\n")
    await proxy.wait_until(lambda c: c.held == 2, 10)
    proxy.wake()
    assert await reset_seen(reader)
    assert await reset_seen(asleep_reader)
    assert upstream.received == 2  # neither reached the server
    writer.close()
    asleep_writer.close()


async def test_slow_link_adds_latency_each_way_and_caps_bandwidth(proxy: FaultProxy, upstream: Upstream) -> None:
    reader, writer = await connect(proxy)
    assert await roundtrip(reader, writer, b"warm") == b"warm"
    proxy.slow(latency=0.25)
    started = time.monotonic()
    assert await roundtrip(reader, writer, b"ping") == b"ping"
    assert time.monotonic() - started >= 0.5  # 0.25 s there and 0.25 s back; a lower bound only
    proxy.slow(bandwidth=200_000)
    payload = bytes(100_000)
    started = time.monotonic()
    assert await roundtrip(reader, writer, payload) == payload
    # 100 kB take 0.5 s each way at 200 kB/s; the two directions overlap, chunk by chunk
    assert time.monotonic() - started >= 0.5
    proxy.pass_through()
    writer.close()


async def test_unavailable_answers_503_with_retry_after(proxy: FaultProxy, upstream: Upstream) -> None:
    proxy.unavailable(retry_after=7)
    reader, writer = await connect(proxy)
    writer.write(b"GET /api/v1/pods HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 10)
    head = answer.split(b"\r\n\r\n")[0].decode().split("\r\n")
    assert head[0] == "HTTP/1.1 503 Service Unavailable"
    assert "Retry-After: 7" in head
    assert b'"code": 503' in answer
    counts = proxy.counts()
    assert (counts.unavailable, counts.connected) == (1, 0)
    writer.close()


async def test_a_target_that_is_down_resets_the_client(unused_tcp_port: int) -> None:
    async with FaultProxy(("127.0.0.1", unused_tcp_port)) as proxy:
        reader, writer = await connect(proxy)
        assert await reset_seen(reader)
        writer.close()


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def threaded_echo() -> Iterator[tuple[str, int]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address  # type: ignore[misc]
    server.shutdown()
    server.server_close()


def test_the_proxy_thread_is_driven_from_synchronous_code(threaded_echo: tuple[str, int]) -> None:
    with FaultProxyThread(threaded_echo) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as conn:
            conn.sendall(b"sync")
            assert conn.recv(4) == b"sync"
            proxy.blackhole()
            conn.sendall(b"gone")
            conn.settimeout(QUIET)
            with pytest.raises(socket.timeout):
                conn.recv(4)
            proxy.reset_all()
            conn.settimeout(10)
            with pytest.raises(ConnectionResetError):
                conn.recv(4)
        assert proxy.counts().resets == 2

"""Port-forward over real WebSockets, with the websockets asyncio client and our channel codec."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from trayapp.engine.forward.wire import SUBPROTOCOL, ClientChannels, DataReceived, ErrorReceived
from trayapp.sim import SimCluster
from trayapp.sim.backends import pattern


async def open_pf(cluster: SimCluster, pod: str, *ports: int, ns: str = "default") -> ClientConnection:
    query = "&".join(f"ports={p}" for p in ports)
    return await connect(f"ws://127.0.0.1:{cluster.port}/api/v1/namespaces/{ns}/pods/{pod}/portforward?{query}",
                         subprotocols=[SUBPROTOCOL], max_size=None)  # type: ignore[list-item]


class Stream:
    def __init__(self, ws: ClientConnection, port: int) -> None:
        self.ws = ws
        self.channels = ClientChannels([port])
        self.buffer = bytearray()
        self.errors: list[str] = []

    async def send(self, data: bytes) -> None:
        await self.ws.send(self.channels.encode_data(data))

    async def pump(self) -> bool:
        """Read one message; False once the WebSocket is closed."""
        try:
            message = await asyncio.wait_for(self.ws.recv(), 10)
        except ConnectionClosed:
            return False
        for event in self.channels.receive(message):
            if isinstance(event, DataReceived):
                self.buffer += event.data
            elif isinstance(event, ErrorReceived):
                self.errors.append(event.text)
        return True

    async def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            assert await self.pump(), "closed early"
        return bytes(self.buffer)

    async def read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            assert await self.pump(), "closed early"
        return bytes(self.buffer[:n])


async def test_http_through_portforward(cluster: SimCluster) -> None:
    pod = cluster.pod_names(label_selector="app=web")[0]
    ws = await open_pf(cluster, pod, 8080)
    assert ws.subprotocol == SUBPROTOCOL
    s = Stream(ws, 8080)
    for _ in range(2):  # keep-alive: two requests on one forwarded connection
        s.buffer.clear()
        await s.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = await s.read_until(b"port=8080\n")
        assert f"X-Pod: {pod}".lower().encode() in reply.lower()
        assert f"pod={pod} namespace=default port=8080".encode() in reply
    assert s.channels.confirmed
    await ws.close()


async def test_echo_bulk_and_upload(cluster: SimCluster) -> None:
    ws = await open_pf(cluster, "debug-shell", 7000)
    s = Stream(ws, 7000)
    payload = pattern(3 * 1024 * 1024 + 7)

    async def writer() -> None:
        for i in range(0, len(payload), 200_000):
            await s.send(payload[i:i + 200_000])

    task = asyncio.create_task(writer(), name="test:echo-writer")
    assert await s.read_exactly(len(payload)) == payload
    await task
    await ws.close()

    pod = cluster.pod_names(label_selector="app=web")[0]
    ws = await open_pf(cluster, pod, 8080)
    s = Stream(ws, 8080)
    body = pattern(2 * 1024 * 1024)
    await s.send(f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    reply = await s.read_until(b"}")
    result = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert result == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    s.buffer.clear()
    await s.send(b"GET /bytes/1000000 HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await s.read_until(b"\r\n\r\n")
    header_len = head.index(b"\r\n\r\n") + 4
    data = (await s.read_exactly(header_len + 1_000_000))[header_len:]
    assert data == pattern(1_000_000)
    await ws.close()


async def test_source_backend_streams(cluster: SimCluster) -> None:
    ws = await open_pf(cluster, "debug-shell", 7001)
    s = Stream(ws, 7001)
    assert await s.read_exactly(1_000_000) == pattern(1_000_000)
    await ws.close()


async def test_refused_port_sends_error_text(cluster: SimCluster) -> None:
    for port in (7002, 9999):
        ws = await open_pf(cluster, "debug-shell", port)
        s = Stream(ws, port)
        while await s.pump():
            pass
        assert ws.close_code == 1000
        assert len(s.errors) == 1
        assert s.errors[0].startswith(f"error forwarding port {port} to pod debug-shell, uid : "
                                      "failed to execute portforward in network namespace")
        assert s.errors[0].rstrip().endswith("connect: connection refused")


async def test_missing_pod_is_404_and_finished_pod_400(cluster: SimCluster) -> None:
    with pytest.raises(InvalidStatus) as info:
        await open_pf(cluster, "no-such-pod", 8080)
    assert info.value.response.status_code == 404
    assert json.loads(info.value.response.body)["reason"] == "NotFound"
    cluster.set_phase("default", "debug-shell", "Succeeded")
    with pytest.raises(InvalidStatus) as info:
        await open_pf(cluster, "debug-shell", 7000)
    assert info.value.response.status_code == 400


async def test_pod_deletion_closes_stream(cluster: SimCluster) -> None:
    ws = await open_pf(cluster, "debug-shell", 7000)
    s = Stream(ws, 7000)
    await s.send(b"ping")
    assert await s.read_exactly(4) == b"ping"
    cluster.delete("pods", "default", "debug-shell")
    while await s.pump():
        pass
    assert ws.close_code == 1000


async def test_two_ports_on_one_stream(cluster: SimCluster) -> None:
    ws = await open_pf(cluster, "api-0", 9090, 8000)
    channels = ClientChannels([9090, 8000])
    await ws.send(channels.encode_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1))
    got = b""
    while b"port=8000" not in got:
        for event in channels.receive(await asyncio.wait_for(ws.recv(), 5)):
            if isinstance(event, DataReceived):
                assert event.port_index == 1
                got += event.data
    await ws.close()


async def test_post_upgrade_accepted(cluster: SimCluster) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", cluster.port)
    writer.write(b"POST /api/v1/namespaces/default/pods/debug-shell/portforward?ports=7000 HTTP/1.1\r\n"
                 b"Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    writer.close()

"""Port-forward over plain SPDY/3.1 against the simulator: a small client written here with the
engine's codec, over a real socket, to the simulated pods' real backend listeners."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode
from websockets.protocol import OPEN
from websockets.uri import parse_uri
from websockets.utils import accept_key

from trayapp.engine.aio import deadline
from trayapp.engine.forward.spdy import (
    Data,
    Frame,
    FrameDecoder,
    FrameEncoder,
    GoAway,
    Ping,
    RstStatus,
    RstStream,
    SynReply,
    SynStream,
    WindowUpdate,
)
from trayapp.sim import SimCluster
from trayapp.sim.backends import pattern


class SpdyClient:
    """kubectl's side of the session, frame by frame; `frames` keeps everything the sim sent."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.encoder = FrameEncoder()
        self.decoder = FrameDecoder()
        self.frames: list[Frame] = []
        self.next_id = 1

    @classmethod
    async def open(cls, cluster: SimCluster, pod: str, protocol: str = "portforward.k8s.io") -> SpdyClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", cluster.port)
        writer.write(f"POST /api/v1/namespaces/default/pods/{pod}/portforward HTTP/1.1\r\n"
                     f"Host: 127.0.0.1:{cluster.port}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                     f"X-Stream-Protocol-Version: {protocol}\r\nContent-Length: 0\r\n\r\n".encode())
        async with deadline(10):
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
        client = cls(reader, writer)
        client.head = head
        return client

    head = ""

    def send(self, *frames: Frame) -> None:
        self.writer.write(b"".join(self.encoder.encode(f) for f in frames))

    def open_stream(self, headers: dict[str, str], fin: bool = False) -> int:
        sid, self.next_id = self.next_id, self.next_id + 2
        self.send(SynStream(sid, tuple(headers.items()), fin=fin))
        return sid

    def open_pair(self, port: int, request_id: int) -> tuple[int, int]:
        common = {"port": str(port), "requestid": str(request_id)}
        error = self.open_stream({"streamtype": "error", **common})
        data = self.open_stream({"streamtype": "data", **common})
        return error, data

    async def wait_for(self, found: object) -> None:
        """Read until `found(frames)` is true (or the socket ends, which fails the test)."""
        assert callable(found)
        async with deadline(10):
            while not found(self.frames):
                data = await self.reader.read(65536)
                assert data, f"the simulator closed the session; frames so far: {self.frames}"
                self.frames += self.decoder.receive_data(data)

    def received(self, sid: int) -> bytes:
        return b"".join(f.data for f in self.frames if isinstance(f, Data) and f.stream_id == sid)

    def finished(self, sid: int) -> bool:
        return any(isinstance(f, Data) and f.stream_id == sid and f.fin for f in self.frames)

    def close(self) -> None:
        self.writer.close()


async def test_upgrade_answer_and_two_connections_each_get_their_own_answer(cluster: SimCluster) -> None:
    pods = cluster.pod_names(label_selector="app=web")
    client = await SpdyClient.open(cluster, pods[0])
    try:
        assert client.head.startswith("HTTP/1.1 101")
        assert "upgrade: spdy/3.1" in client.head.lower()
        assert "x-stream-protocol-version: portforward.k8s.io" in client.head.lower()
        first = client.open_pair(8080, 0)
        second = client.open_pair(8080, 1)
        # Data on the data streams right away, before the pairs are connected: it must wait.
        client.send(Data(first[1], b"GET /bytes/1000 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
                    Data(second[1], b"GET /bytes/2000 HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"))
        await client.wait_for(lambda fs: client.finished(first[1]) and client.finished(second[1]))
        replies = {f.stream_id for f in client.frames if isinstance(f, SynReply)}
        assert replies == {*first, *second}
        assert all(not f.headers for f in client.frames if isinstance(f, SynReply))
        for (_, data), size in ((first, 1000), (second, 2000)):
            head, body = client.received(data).split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 200")
            assert f"x-pod: {pods[0]}".encode() in head.lower()
            assert body == pattern(size)
        assert client.received(first[0]) == b"" and client.received(second[0]) == b""
    finally:
        client.close()


async def test_half_close_both_ways(cluster: SimCluster) -> None:
    client = await SpdyClient.open(cluster, "debug-shell")
    try:
        error, data = client.open_pair(7000, 5)  # the echo backend closes once it has our EOF
        client.send(Data(data, b"hello, "), Data(data, b"echo", fin=True))
        await client.wait_for(lambda fs: client.finished(data) and client.finished(error))
        assert client.received(data) == b"hello, echo"
        assert client.received(error) == b""
        # The session outlives the connection: a new pair still works.
        error2, data2 = client.open_pair(7000, 6)
        client.send(Data(data2, b"again", fin=True))
        await client.wait_for(lambda fs: client.finished(data2))
        assert client.received(data2) == b"again"
    finally:
        client.close()


async def test_more_than_a_mebibyte_before_the_pods_port_answers_waits_instead_of_a_reset(
    cluster: SimCluster,
) -> None:
    """spdystream's frame worker waits on a stream whose copy to the pod has not started: the
    session stops reading for a while, and nothing is reset or lost (an upload sent as early data)."""
    cluster.settings.spdy_max_early = 1024  # far less than arrives before the pod's port answers
    client = await SpdyClient.open(cluster, "debug-shell")
    try:
        error, data = client.open_pair(7000, 9)
        payload = bytes(range(256)) * (3 * 4096 + 17)  # 3 MiB and a bit, all at once
        client.send(*(Data(data, payload[i:i + 32768]) for i in range(0, len(payload), 32768)),
                    Data(data, b"", fin=True))
        await client.wait_for(lambda fs: client.finished(data) and client.finished(error))
        assert client.received(data) == payload
        assert not [f for f in client.frames if isinstance(f, RstStream)]
    finally:
        client.close()


async def test_large_download_comes_in_frames_of_at_most_32_kib(cluster: SimCluster) -> None:
    pod = cluster.pod_names(label_selector="app=web")[0]
    client = await SpdyClient.open(cluster, pod)
    try:
        _, data = client.open_pair(8080, 0)
        client.send(Data(data, b"GET /bytes/300000 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", fin=True),
                    WindowUpdate(data, 1 << 20))  # ignored: there is no flow control
        await client.wait_for(lambda fs: client.finished(data))
        body = client.received(data).split(b"\r\n\r\n", 1)[1]
        assert len(body) == 300000
        assert max(len(f.data) for f in client.frames if isinstance(f, Data)) <= 32 * 1024
    finally:
        client.close()


@pytest.mark.parametrize("headers", [
    {"streamtype": "data", "requestid": "0"},  # no port
    {"port": "8080", "requestid": "0"},  # no stream type
    {"streamtype": "stdin", "port": "8080", "requestid": "0"},
    {"streamtype": "data", "port": "70000", "requestid": "0"},
])
async def test_a_stream_without_port_or_stream_type_is_reset(cluster: SimCluster, headers: dict[str, str]) -> None:
    client = await SpdyClient.open(cluster, "debug-shell")
    try:
        sid = client.open_stream(headers)
        await client.wait_for(lambda fs: any(isinstance(f, RstStream) for f in fs))
        assert [f for f in client.frames if isinstance(f, RstStream | SynReply)] == [
            RstStream(sid, RstStatus.CANCEL)]
    finally:
        client.close()


async def test_refused_port_gets_the_kubelets_error_text(cluster: SimCluster) -> None:
    client = await SpdyClient.open(cluster, "debug-shell")
    try:
        error, data = client.open_pair(7002, 0)
        await client.wait_for(lambda fs: client.finished(error) and client.finished(data))
        text = client.received(error).decode()
        assert text.startswith("error forwarding port 7002 to pod debug-shell, uid : failed to execute portforward")
        assert text.rstrip().endswith("connect: connection refused")
        assert client.received(data) == b""
    finally:
        client.close()


async def test_ping_is_echoed(cluster: SimCluster) -> None:
    client = await SpdyClient.open(cluster, "debug-shell")
    try:
        client.send(Ping(7), Ping(9))
        await client.wait_for(lambda fs: Ping(9) in fs)
        assert [f for f in client.frames if isinstance(f, Ping)] == [Ping(7), Ping(9)]
    finally:
        client.close()


async def test_a_lone_stream_is_reset_after_the_pair_timeout(cluster: SimCluster) -> None:
    cluster.settings.spdy_pair_timeout = 0.2
    client = await SpdyClient.open(cluster, "debug-shell")
    try:
        sid = client.open_stream({"streamtype": "error", "port": "7000", "requestid": "3"})
        await client.wait_for(lambda fs: any(isinstance(f, RstStream) for f in fs))
        assert RstStream(sid, RstStatus.CANCEL) in client.frames
        assert b"timed out waiting for streams" in client.received(sid)
    finally:
        client.close()


async def test_an_unknown_stream_protocol_is_refused(cluster: SimCluster) -> None:
    client = await SpdyClient.open(cluster, "debug-shell", protocol="portforward.k8s.io.v2")
    try:
        assert client.head.startswith("HTTP/1.1 403")
    finally:
        client.close()


class TunnelClient(SpdyClient):
    """The same client with its SPDY bytes in binary WebSocket messages (KEP-4006), cut at odd
    places: frames do not line up with messages."""

    @classmethod
    async def open_tunnel(cls, cluster: SimCluster, pod: str) -> TunnelClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", cluster.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(f"GET /api/v1/namespaces/default/pods/{pod}/portforward HTTP/1.1\r\n"
                     f"Host: 127.0.0.1:{cluster.port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                     f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
                     "Sec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io\r\n\r\n".encode())
        async with deadline(10):
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
        assert head.startswith("HTTP/1.1 101"), head
        assert f"sec-websocket-accept: {accept_key(key)}".lower() in head.lower()
        assert "sec-websocket-protocol: spdy/3.1+portforward.k8s.io" in head.lower()
        client = cls(reader, writer)
        client.ws = ClientProtocol(parse_uri(f"ws://127.0.0.1:{cluster.port}/"), state=OPEN, max_size=None)
        return client

    ws: ClientProtocol

    def send(self, *frames: Frame) -> None:
        data = b"".join(self.encoder.encode(f) for f in frames)
        for i in range(0, len(data), 7):  # 7-byte messages: every frame spans several
            self.ws.send_binary(data[i:i + 7])
        self.writer.write(b"".join(self.ws.data_to_send()))

    async def wait_for(self, found: object) -> None:
        assert callable(found)
        async with deadline(10):
            while not found(self.frames):
                data = await self.reader.read(65536)
                assert data, f"the simulator closed the tunnel; frames so far: {self.frames}"
                self.ws.receive_data(data)
                for message in self.ws.events_received():
                    if isinstance(message, WsFrame) and message.opcode is Opcode.BINARY:
                        self.frames += self.decoder.receive_data(bytes(message.data))


async def test_the_websocket_tunnel_carries_the_same_session(cluster: SimCluster) -> None:
    pod = cluster.pod_names(label_selector="app=web")[0]
    client = await TunnelClient.open_tunnel(cluster, pod)
    try:
        error, data = client.open_pair(8080, 0)
        client.send(Ping(3), Data(data, b"GET /bytes/70000 HTTP/1.1\r\nHost: a\r\n\r\n", fin=True))
        await client.wait_for(lambda fs: client.finished(data) and client.finished(error))
        head, body = client.received(data).split(b"\r\n\r\n", 1)
        assert f"X-Pod: {pod}".encode() in head
        assert body == pattern(70000)
        assert Ping(3) in client.frames
    finally:
        client.close()


async def test_a_websocket_upgrade_that_is_not_version_13_is_refused(cluster: SimCluster) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", cluster.port)
    try:
        writer.write(b"GET /api/v1/namespaces/default/pods/debug-shell/portforward HTTP/1.1\r\nHost: x\r\n"
                     b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\n"
                     b"Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"
                     b"Sec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io\r\n\r\n")
        async with deadline(10):
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
        assert head.startswith("HTTP/1.1 400")
    finally:
        writer.close()


async def test_a_stopped_pod_reports_on_open_error_streams(cluster: SimCluster) -> None:
    cluster.settings.stream_errors_on_pod_stop = True
    client = await SpdyClient.open(cluster, "debug-shell")
    try:
        error, data = client.open_pair(7000, 0)
        client.send(Data(data, b"ping"))
        await client.wait_for(lambda fs: client.received(data) == b"ping")
        cluster.delete_pod("default", "debug-shell")
        await client.wait_for(lambda fs: client.finished(error) and client.finished(data))
        assert client.received(error).decode().endswith("read: connection reset by peer")
    finally:
        client.close()


async def test_a_lost_sandbox_answers_with_containerds_text(cluster: SimCluster) -> None:
    client = await SpdyClient.open(cluster, "debug-shell")
    try:
        cluster.lose_sandbox("default", "debug-shell")
        error, data = client.open_pair(7000, 0)
        await client.wait_for(lambda fs: client.finished(error) and client.finished(data))
        assert "failed to find sandbox" in client.received(error).decode()
    finally:
        client.close()


async def test_a_broken_frame_gets_goaway_and_the_socket_closes(cluster: SimCluster) -> None:
    client = await SpdyClient.open(cluster, "debug-shell")
    try:
        client.writer.write(b"\x80\x02\x00\x01\x00\x00\x00\x00")  # a SYN_STREAM of SPDY version 2
        async with deadline(10):
            rest = await client.reader.read(-1)
        assert client.decoder.receive_data(rest) == [GoAway(0, 1)]
    finally:
        client.close()


async def test_after_the_clients_goaway_open_streams_finish_then_the_socket_closes(cluster: SimCluster) -> None:
    client = await SpdyClient.open(cluster, "debug-shell")
    try:
        error, data = client.open_pair(7000, 0)
        client.send(Data(data, b"one"))
        await client.wait_for(lambda fs: client.received(data) == b"one")
        client.send(GoAway(data))
        late = client.open_stream({"streamtype": "error", "port": "7000", "requestid": "1"})
        await client.wait_for(lambda fs: any(isinstance(f, RstStream) for f in fs))
        assert RstStream(late, RstStatus.PROTOCOL_ERROR) in client.frames
        client.send(Data(data, b" two", fin=True))
        await client.wait_for(lambda fs: client.finished(data))
        assert client.received(data) == b"one two"
        async with deadline(10):
            rest = await client.reader.read(-1)  # the session ends with its last stream
        assert all(isinstance(f, Data) and f.stream_id == error for f in client.decoder.receive_data(rest))
    finally:
        client.close()

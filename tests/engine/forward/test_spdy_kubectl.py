"""The SPDY codec against a peer we did not write: the real `kubectl port-forward` (plain SPDY).

A small API server here answers kubectl's pod lookup and its `Upgrade: SPDY/3.1` request, then
reads what kubectl sends for one local connection with our FrameDecoder: if the dictionary or the
framing were wrong, the header blocks would not inflate. Skipped where kubectl is not installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from trayapp.engine.aio import deadline
from trayapp.engine.forward.spdy import Data, FrameDecoder, FrameEncoder, SynReply, SynStream

KUBECTL = shutil.which("kubectl")
POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web", "namespace": "default", "uid": "1", "resourceVersion": "1"},
    "spec": {"containers": [{"name": "web", "image": "x", "ports": [{"containerPort": 8080}]}]},
    "status": {"phase": "Running"},
}
DISCOVERY = {  # what kubectl asks before it can name "pod/web"
    "/api": {"kind": "APIVersions", "versions": ["v1"],
             "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "verbs": ["get", "list"]},
        {"name": "pods/portforward", "singularName": "", "namespaced": True, "kind": "PodPortForwardOptions",
         "verbs": ["create", "get"]},
    ]},
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed here")
async def test_kubectl_streams_decode_and_our_replies_are_accepted(tmp_path: Path) -> None:
    received: asyncio.Queue[SynStream | Data] = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        if not head.startswith("POST"):
            path = head.split(" ", 2)[1].split("?")[0]
            body = json.dumps(DISCOVERY.get(path, POD)).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            writer.close()
            return
        assert "upgrade: spdy/3.1" in head.lower()
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                     b"X-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n")
        decoder, encoder = FrameDecoder(), FrameEncoder()
        while data := await reader.read(65536):
            for frame in decoder.receive_data(data):
                if isinstance(frame, SynStream):
                    writer.write(encoder.encode(SynReply(frame.stream_id)))  # the kubelet's empty reply
                if isinstance(frame, SynStream | Data):
                    await received.put(frame)
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    api_port = server.sockets[0].getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{api_port}'}}}}]\n"
        "users: [{name: u, user: {}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n")
    local = _free_port()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECTL_PORT_FORWARD_WEBSOCKETS": "false",
           "HOME": str(tmp_path)}
    assert KUBECTL is not None
    kubectl = await asyncio.create_subprocess_exec(
        KUBECTL, "port-forward", "pod/web", f"{local}:8080", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert kubectl.stdout is not None
        async with deadline(20):
            line = await kubectl.stdout.readline()
        assert b"Forwarding from" in line, (line, await kubectl.stderr.read() if kubectl.stderr else b"")
        _, writer = await asyncio.open_connection("127.0.0.1", local)
        writer.write(b"hello")
        await writer.drain()
        frames = []
        async with deadline(20):
            while not any(isinstance(f, Data) and f.data == b"hello" for f in frames):
                frames.append(await received.get())
        streams = [dict(f.headers) for f in frames if isinstance(f, SynStream)]
        assert [s["streamtype"] for s in streams] == ["error", "data"]
        assert all(s["port"] == "8080" and s["requestid"] == streams[0]["requestid"] for s in streams)
        writer.close()
    finally:
        kubectl.kill()
        await kubectl.wait()
        server.close()
        await server.wait_closed()

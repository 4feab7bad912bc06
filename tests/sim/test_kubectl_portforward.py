"""The real `kubectl port-forward` through the simulator: a peer we did not write must accept the
sim's SPDY session, plain (`KUBECTL_PORT_FORWARD_WEBSOCKETS=false`) and in a WebSocket (the
default), and carry HTTP to the pod's backend. Skipped where kubectl is not installed."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from pathlib import Path

import pytest

from trayapp.engine.aio import deadline
from trayapp.sim import SimCluster

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed here, so it cannot be "
                                                        "checked against the simulator")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _get(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n")
        async with deadline(20):
            return await reader.read(-1)
    finally:
        writer.close()


async def _forward_and_get(cluster: SimCluster, tmp_path: Path, target: str, remote: int,
                           websockets: str, requests: int = 2) -> list[bytes]:
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig", context="sim")
    local = _free_port()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECTL_PORT_FORWARD_WEBSOCKETS": websockets,
           "HOME": str(tmp_path)}
    assert KUBECTL is not None
    kubectl = await asyncio.create_subprocess_exec(
        KUBECTL, "port-forward", target, f"{local}:{remote}", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert kubectl.stdout is not None and kubectl.stderr is not None
        async with deadline(30):
            line = await kubectl.stdout.readline()
        if b"Forwarding from" not in line:
            kubectl.kill()
            pytest.fail(f"kubectl did not start forwarding: {line!r} {await kubectl.stderr.read()!r}")
        # More than one connection: kubectl keeps one session and opens a stream pair for each.
        answers = [await _get(local) for _ in range(requests)]
        # kubectl falls back to plain SPDY silently: the sim must have seen the carrier asked for.
        carrier = "spdy-websocket" if websockets == "true" else "spdy"
        assert dict(cluster.api.portforward_sessions) == {carrier: 1}
        return answers
    finally:
        if kubectl.returncode is None:
            kubectl.kill()
        await kubectl.wait()


@pytest.mark.parametrize("websockets", ["false", "true"])
async def test_kubectl_forwards_to_a_pod_(cluster: SimCluster, tmp_path: Path, websockets: str) -> None:
    pod = cluster.pod_names(label_selector="app=web")[0]
    for answer in await _forward_and_get(cluster, tmp_path, f"pod/{pod}", 8080, websockets):
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert f"X-Pod: {pod}".encode() in answer


@pytest.mark.parametrize("websockets", ["false", "true"])
async def test_kubectl_forwards_to_a_service_(cluster: SimCluster, tmp_path: Path,
                                                       websockets: str) -> None:
    pods = cluster.pod_names(label_selector="app=web")
    for answer in await _forward_and_get(cluster, tmp_path, "service/web", 80, websockets):
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert any(f"X-Pod: {pod}".encode() in answer for pod in pods)
        assert b"port=8080" in answer  # the service's targetPort, by name

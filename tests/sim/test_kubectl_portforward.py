"""The real `kubectl port-forward` through the simulator: a peer we did not write must accept the
sim's SPDY session, plain (`KUBECTL_PORT_FORWARD_WEBSOCKETS=false`) and in a WebSocket (the
default), and carry HTTP to the pod's backend. Skipped where kubectl is not installed."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from trayapp.engine.aio import deadline
from trayapp.sim import SimCluster
from trayapp.sim.backends import pattern

T = TypeVar("T")

KUBECTL = shutil.which("kubectl")
# KUBECTL_PORT_FORWARD_WEBSOCKETS (the SPDY-in-WebSocket carrier) came with kubectl 1.30; Debian 12's
# kubernetes-client is 1.20 and would only ever speak plain SPDY.
NEEDED = (1, 30)


def _kubectl_version(kubectl: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True,
                             text=True, timeout=30, check=False).stdout
        version = json.loads(out)["clientVersion"]
        return int(version["major"]), int(re.sub(r"\D.*", "", version["minor"]))
    except (OSError, subprocess.SubprocessError, ValueError, KeyError):
        return None


def _skip_reason() -> str | None:
    if KUBECTL is None:
        return "kubectl is not installed here, so it cannot be checked against the simulator"
    version = _kubectl_version(KUBECTL)
    if version is None:
        return f"{KUBECTL} did not say its version, so it is not checked against the simulator"
    if version < NEEDED:
        return (f"kubectl {version[0]}.{version[1]} is older than {NEEDED[0]}.{NEEDED[1]}, which these "
                "tests need (KUBECTL_PORT_FORWARD_WEBSOCKETS)")
    return None


SKIP_REASON = _skip_reason()
pytestmark = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")


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
                           websockets: str) -> list[bytes]:
    # More than one connection: kubectl keeps one session and opens a stream pair for each.
    return await _forward(cluster, tmp_path, target, remote, websockets, _get, _get)


async def _forward(cluster: SimCluster, tmp_path: Path, target: str, remote: int, websockets: str,
                   *clients: Callable[[int], Awaitable[T]]) -> list[T]:
    """Run kubectl port-forward to `target`, then each client against its local port in turn."""
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
        answers = [await client(local) for client in clients]
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


@pytest.mark.parametrize("websockets", ["false", "true"])
async def test_kubectl_carries_a_large_download_and_upload(cluster: SimCluster, tmp_path: Path,
                                                           websockets: str) -> None:
    pod = cluster.pod_names(label_selector="app=web")[0]
    size = 16 * 1024 * 1024
    upload = pattern(size)

    async def exchange(port: int) -> list[bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET /bytes/{size} HTTP/1.1\r\nHost: pod\r\n\r\n".encode())
            async with deadline(60):
                head = await reader.readuntil(b"\r\n\r\n")
                body = await reader.readexactly(size)
            writer.write(f"POST /upload HTTP/1.1\r\nHost: pod\r\nContent-Length: {size}\r\n"
                         "Connection: close\r\n\r\n".encode() + upload)
            async with deadline(60):
                answer = await reader.read(-1)
            return [head, body, answer]
        finally:
            writer.close()

    [[head, body, answer]] = await _forward(cluster, tmp_path, f"pod/{pod}", 8080, websockets, exchange)
    assert head.startswith(b"HTTP/1.1 200")
    assert body == pattern(size)
    assert hashlib.sha256(upload).hexdigest().encode() in answer

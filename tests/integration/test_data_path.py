"""The data path under load: many concurrent connections on one tunnel, checksummed transfers
both ways, large downloads and uploads, and a local half-close."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os

import pytest

from trayapp.model import EventKind, ResourceType, Rule
from trayapp.sim import SimCluster

CONNECTIONS = 100
PER_CONNECTION = 2 * 1024 * 1024


async def echo_checksummed(port: int, size: int) -> tuple[str, str]:
    """Send `size` random bytes while reading the echo back; return both sha256 digests."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = os.urandom(size)
    sent_digest = hashlib.sha256(payload).hexdigest()

    async def send() -> None:
        view = memoryview(payload)
        for offset in range(0, size, 64 * 1024):
            writer.write(view[offset:offset + 64 * 1024])
            await writer.drain()

    async def receive() -> str:
        digest = hashlib.sha256()
        remaining = size
        while remaining:
            chunk = await reader.read(min(remaining, 256 * 1024))
            assert chunk, f"echo ended with {remaining} bytes missing"
            digest.update(chunk)
            remaining -= len(chunk)
        return digest.hexdigest()

    _, received_digest = await asyncio.gather(send(), receive())
    writer.close()
    return sent_digest, received_digest


@pytest.mark.transports
@pytest.mark.slow
async def test_hundred_concurrent_connections_checksummed_both_ways(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    _, events = await run_rules([Rule(ResourceType.POD, "debug-shell", 7000, local_port=unused_tcp_port)])
    await events.wait_for(EventKind.FORWARDING)
    results = await asyncio.wait_for(
        asyncio.gather(*(echo_checksummed(unused_tcp_port, PER_CONNECTION) for _ in range(CONNECTIONS))), 180
    )
    assert len(results) == CONNECTIONS
    for sent, received in results:
        assert sent == received
    assert not events.of(EventKind.FAILED)


@pytest.mark.transports
async def test_large_download_and_upload_through_a_service(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    _, events = await run_rules([Rule(ResourceType.SERVICE, "web", 80, local_port=unused_tcp_port)])
    await events.wait_for(EventKind.FORWARDING)
    size = 32 * 1024 * 1024

    reader, writer = await asyncio.open_connection("127.0.0.1", unused_tcp_port)
    writer.write(f"GET /bytes/{size} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    body = await reader.readexactly(size)
    assert len(body) == size

    payload = os.urandom(size)
    writer.write(f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())
    writer.write(payload)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    answer = json.loads(await reader.readexactly(length))
    assert answer == {"bytes": size, "sha256": hashlib.sha256(payload).hexdigest()}
    writer.close()


@pytest.mark.transports
async def test_local_half_close_still_delivers_the_answer(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    _, events = await run_rules([Rule(ResourceType.SERVICE, "web", 80, local_port=unused_tcp_port)])
    forwarding = await events.wait_for(EventKind.FORWARDING)
    reader, writer = await asyncio.open_connection("127.0.0.1", unused_tcp_port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    writer.write_eof()  # we are done sending; the answer must still arrive
    answer = await asyncio.wait_for(reader.read(), 10)
    assert answer.startswith(b"HTTP/1.1 200")
    assert forwarding.pod is not None and forwarding.pod.encode() in answer
    writer.close()


@pytest.mark.transports
async def test_after_the_local_eof_a_silent_pod_does_not_hold_the_connection(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    """An echo pod never ends its side; kubetray must still let go once the pod falls silent."""
    run, events = await run_rules([Rule(ResourceType.POD, "debug-shell", 7000, local_port=unused_tcp_port)])
    await events.wait_for(EventKind.FORWARDING)
    reader, writer = await asyncio.open_connection("127.0.0.1", unused_tcp_port)
    writer.write(b"last words")
    writer.write_eof()
    assert await reader.readexactly(10) == b"last words"  # the answer still arrives after our EOF
    assert await asyncio.wait_for(reader.read(), 15) == b""  # then kubetray ends the connection
    writer.close()
    forwarder = next(iter(run.forwarders.values()))
    for _ in range(100):  # the stream to the pod is closed right after the local socket
        if not forwarder._connections:
            break
        await asyncio.sleep(0.05)
    assert not forwarder._connections

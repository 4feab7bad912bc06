"""The simulator's `latency`: a delay line in front of the API listener (trayapp/sim/latency.py).

Real sockets throughout. Timing is checked only against bounds physics sets (a reply cannot come
before the round trips it needs), plus one very generous upper bound, so a loaded machine cannot
make these fail."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.stream import portforward

from tests.sim.conftest import SCENARIO
from trayapp.engine.aio import deadline
from trayapp.sim import SimCluster
from trayapp.sim.backends import pattern
from trayapp.sim.demo import demo_scenario_path
from trayapp.sim.latency import DelayLine
from trayapp.sim.runner import SimThread

ROOT = Path(__file__).resolve().parents[2]
RTT = 0.25
SLACK = 5.0  # far above any scheduling hiccup, far below what a missing delay stage would hide


async def _http_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> bytes:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: sim\r\n\r\n".encode())
    async with deadline(20):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        return await reader.readexactly(length)


@pytest.fixture
async def far_cluster() -> AsyncIterator[SimCluster]:
    c = SimCluster("far", scenario=SCENARIO, latency=RTT)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


async def test_a_list_takes_one_round_trip_more_and_a_new_connection_one_more(far_cluster: SimCluster) -> None:
    direct = await asyncio.open_connection("127.0.0.1", far_cluster.server.port)
    started = time.perf_counter()
    far = await asyncio.open_connection("127.0.0.1", far_cluster.port)
    assert far_cluster.port != far_cluster.server.port
    try:
        # First request on a new connection: the TCP handshake's round trip, then the request's.
        first = await _http_get(*far, "/api/v1/namespaces/default/pods")
        first_took = time.perf_counter() - started
        assert b'"PodList"' in first
        assert first_took >= 2 * RTT - 0.01

        t0 = time.perf_counter()
        near = await _http_get(*direct, "/api/v1/namespaces/default/pods")
        near_took = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = await _http_get(*far, "/api/v1/namespaces/default/pods")
        far_took = time.perf_counter() - t0
        assert again.count(b'"name"') == near.count(b'"name"')
        assert RTT - 0.01 <= far_took < near_took + RTT + SLACK
    finally:
        for _, writer in (direct, far):
            writer.close()


async def test_dropping_connections_cuts_them_and_refuses_new_ones_meanwhile(far_cluster: SimCluster) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", far_cluster.port)
    try:
        await _http_get(reader, writer, "/version")
        await far_cluster.drop_connections(down_for=600)
        async with deadline(20):
            try:
                assert await reader.read(-1) == b""  # cut, as by an API server restart
            except ConnectionResetError:
                pass  # the other way a cut shows
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", far_cluster.port)
    finally:
        writer.close()


def test_port_forward_carries_a_request_and_a_download_through_the_delay(tmp_path: Path) -> None:
    with SimThread(SimCluster("far", scenario=SCENARIO, latency=0.05, token="t")) as thread:
        kubeconfig = thread.cluster.write_kubeconfig(tmp_path / "kubeconfig")
        configuration = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        api = client.ApiClient(configuration)
        try:
            core = client.CoreV1Api(api)
            pod = thread.cluster.pod_names(label_selector="app=web")[0]
            size = 4 << 20
            pf = portforward(core.connect_get_namespaced_pod_portforward, pod, "default", ports="8080")
            sock = pf.socket(8080)
            sock.setblocking(True)
            sock.settimeout(30)
            sock.sendall(f"GET /bytes/{size} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            reply = b""
            while chunk := sock.recv(1 << 20):
                reply += chunk
            sock.close()
            head, _, body = reply.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert body == pattern(size)  # every byte, in order
        finally:
            api.close()


async def _echo_until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    data = await reader.read(-1)
    writer.write(data[::-1])
    writer.close()


async def test_a_half_close_travels_both_ways_and_data_keeps_its_order() -> None:
    server = await asyncio.start_server(_echo_until_eof, "127.0.0.1", 0)
    line = await DelayLine(("127.0.0.1", server.sockets[0].getsockname()[1]), 0.02).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", line.port)
        sent = b"".join(i.to_bytes(4, "big") for i in range(200_000))  # 800 KB, many chunks
        for i in range(0, len(sent), 7919):
            writer.write(sent[i:i + 7919])
        writer.write_eof()  # the upstream answers only after it saw our EOF
        async with deadline(30):
            got = await reader.read(-1)  # and its close reaches us
        assert got == sent[::-1]
        writer.close()
    finally:
        await line.stop()
        server.close()


async def test_what_a_client_sent_before_it_closed_still_arrives_then_the_close() -> None:
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.set_result(await reader.read(-1))
        writer.close()

    server = await asyncio.start_server(record, "127.0.0.1", 0)
    line = await DelayLine(("127.0.0.1", server.sockets[0].getsockname()[1]), 0.05).start()
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", line.port)
        writer.write(b"last words" * 1000)
        writer.close()  # a full close, at once: the bytes are already on their way
        async with deadline(20):
            assert await received == b"last words" * 1000
    finally:
        await line.stop()
        server.close()


async def test_an_upstream_that_refuses_ends_the_client_connection() -> None:
    server = await asyncio.start_server(_echo_until_eof, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    line = await DelayLine(("127.0.0.1", port), 0.02).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", line.port)
        writer.write(b"hello")
        async with deadline(20):
            try:
                assert await reader.read(-1) == b""
            except ConnectionResetError:
                pass  # a reset is the other honest answer
        writer.close()
    finally:
        await line.stop()


def test_serve_with_tls_and_a_latency_answers_the_official_client(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "trayapp.sim", "serve", "--scenario", str(demo_scenario_path()), "--tls",
         "--latency", "0.1", "--token=-starts-with-a-dash", "--kubeconfig", str(kubeconfig)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("https://127.0.0.1:")
        assert proc.stdout.readline().startswith("kubeconfig:")
        configuration = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        with client.ApiClient(configuration) as api:
            started = time.perf_counter()
            pods = client.CoreV1Api(api).list_namespaced_pod("default").items
            # A new connection: TCP handshake, TLS handshake, then the request: at least 3 round trips.
            assert time.perf_counter() - started >= 0.3 - 0.01
        assert any(p.metadata.name == "debug-shell" for p in pods)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0

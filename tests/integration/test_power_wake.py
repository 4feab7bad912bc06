"""A wake from sleep or a new network heals kubetray at once: `kubetray --headless` as a real
process, its API traffic through a path that dies the way a sleeping laptop's does, logind's and
NetworkManager's real signals on a private bus standing in for the system bus.

While "asleep" (or offline), every connection on the path goes silent for good (no FIN, no
reset) and the serving pod is deleted; the watch on the dead path never hears of it. The OS's
signal alone must end the open local connection, restart the watches on the new path and move
the tunnel to the replacement pod on the same local port (about 0.5 s after the signal here).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import pytest

from tests.platform.system_bus import (  # noqa: F401 - system_bus, logind, network_manager: fixtures
    NM_CONNECTED_GLOBAL,
    NM_DISCONNECTED,
    FakeService,
    PrivateBus,
    logind,
    network_manager,
    system_bus,
)
from trayapp.sim import SimCluster
from trayapp.sim.kubeconfig import write_kubeconfig
from trayapp.sim.runner import SimThread, run_in_thread

from .conftest import SCENARIO

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="logind is Linux's")

LISTENING = "listening for sleep and network changes on the system bus"


class DyingPath:
    """A TCP relay to the API server whose open connections can all go silent at once, for good,
    while new connections still get through: the old network is gone, a new one is up."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream = upstream_port
        self._pumps: set[asyncio.Task[None]] = set()
        self._sockets: list[asyncio.StreamWriter] = []  # kept open (and referenced) after the death
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream)
        except OSError:
            writer.close()
            return
        self._sockets += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(_pump(source, sink), name="dying-path:pump")
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    def die(self) -> int:
        """Every open connection stops carrying bytes and never closes; how many pumps stopped."""
        pumps = list(self._pumps)
        for task in pumps:
            task.cancel()
        return len(pumps)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pumps):
            task.cancel()
        for writer in self._sockets:
            writer.transport.abort()


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except OSError:
        pass
    sink.close()


class Kubetray:
    """`kubetray --headless --json -v`: JSON events from stdout, log lines from stderr, on threads."""

    def __init__(self, *args: str) -> None:
        # Its own state and instance folders: another kubetray on this machine must not answer
        # `already running` in its place.
        env = {**os.environ, "XDG_STATE_HOME": tempfile.mkdtemp(prefix="kubetray-test-state-"),
               "XDG_RUNTIME_DIR": tempfile.mkdtemp(prefix="kubetray-test-run-")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trayapp", "--headless", "--json", "-v", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.events: Queue[dict[str, Any]] = Queue()
        self.logs: Queue[str] = Queue()
        self.seen: list[dict[str, Any]] = []
        self.log_lines: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        threading.Thread(target=self._read, args=(self.process.stdout, True), daemon=True).start()
        threading.Thread(target=self._read, args=(self.process.stderr, False), daemon=True).start()

    def _read(self, stream: Any, events: bool) -> None:
        for line in stream:
            if events:
                self.events.put(json.loads(line))
            else:
                self.logs.put(line.rstrip("\n"))

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except Empty:
                raise AssertionError(f"no matching event; saw {self.seen}") from None
            self.seen.append(event)
            if predicate(event):
                return event

    def wait_for_log(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.logs.get(timeout=max(0.0, deadline - time.monotonic()))
            except Empty:
                raise AssertionError(f"no log line with {text!r}; saw {self.log_lines[-30:]}") from None
            self.log_lines.append(line)
            if text in line:
                return line

    def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=15)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def sim() -> Iterator[SimThread]:
    with run_in_thread(SimCluster("power", scenario=SCENARIO)) as thread:
        yield thread


def read_response_head(conn: socket.socket) -> dict[str, str]:
    """The head of one HTTP answer and its body, leaving the (keep-alive) connection open."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = conn.recv(65536)
        assert chunk, f"the connection ended before an answer: {raw!r}"
        raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in head.decode().split("\r\n")[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        body += conn.recv(65536)
    return headers


def serving_pod(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
        return str(answer.headers["X-Pod"])


@pytest.mark.parametrize("how", ["wake", "new-network"])
def test_a_tunnel_whose_watch_died_moves_when_the_os_says_so(
    how: str, sim: SimThread, logind: FakeService, network_manager: FakeService, tmp_path: Path,  # noqa: F811 - fixtures
    unused_tcp_port: int,
) -> None:
    """`wake`: logind's PrepareForSleep(true), then (false). `new-network`: NetworkManager goes
    offline, then connected again, as when a laptop moves to another Wi-Fi network."""
    cluster = sim.cluster
    cluster.scale("deployments", "default", "web", 1)
    path = DyingPath(cluster.port)
    path_port = sim.call(path.start)
    entry = cluster.kubeconfig_entry("sim-ctx")
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig",
                                  [dataclasses.replace(entry, server=entry.server.replace(
                                      f":{cluster.port}", f":{path_port}"))], "sim-ctx")
    rules = tmp_path / "rules.yaml"
    rules.write_text("portForward:\n  - {resourceType: deployment, resourceName: web, port: 8080, "
                     f"localPort: {unused_tcp_port}}}\n", encoding="utf-8")
    app = Kubetray("--config", str(rules), "--kubeconfig", str(kubeconfig))
    try:
        app.wait_for_log(LISTENING)
        first = app.wait_for(lambda e: e["event"] == "forwarding")
        assert first["localPort"] == unused_tcp_port
        with socket.create_connection(("127.0.0.1", unused_tcp_port), timeout=15) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response_head(conn)["x-pod"] == first["pod"]

            if how == "wake":
                logind.signal("PrepareForSleep", "b", True)
            else:
                network_manager.signal("StateChanged", "u", NM_DISCONNECTED)
            assert sim.call(path.die) >= 4  # the watches and the open session, both ways
            replacement = cluster.delete_pod("default", first["pod"])
            assert replacement and replacement != first["pod"]
            woke = time.monotonic()
            if how == "wake":
                logind.signal("PrepareForSleep", "b", False)
            else:
                network_manager.signal("StateChanged", "u", NM_CONNECTED_GLOBAL)

            # the open connection rode the dead path: it is ended, not left hanging
            with _ended():
                while conn.recv(65536):
                    pass
        moved = app.wait_for(lambda e: e["event"] == "reconnected")
        assert (moved["oldPod"], moved["pod"], moved["localPort"]) == (first["pod"], replacement, unused_tcp_port)
        assert serving_pod(unused_tcp_port) == replacement
        print(f"{how} signal to the replacement serving: {time.monotonic() - woke:.2f} s")
        app.wait_for_log("the computer woke from sleep after" if how == "wake" else "the network changed: ")
        assert app.stop(signal.SIGINT) == 0
    finally:
        app.kill()
        sim.call(path.close)


class _ended:
    """The block ends by EOF or a reset, either being an ended connection."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is None or issubclass(kind, ConnectionResetError)


def test_ctrl_c_while_the_system_bus_hangs(sim: SimThread, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A system bus that accepts and never answers must not keep kubetray from stopping."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "hung_bus_socket"))
    listener.listen()
    held: list[socket.socket] = []
    accepted = threading.Event()

    def hold() -> None:
        conn, _ = listener.accept()
        held.append(conn)
        accepted.set()

    threading.Thread(target=hold, daemon=True).start()
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'hung_bus_socket'}")
    kubeconfig = tmp_path / "kubeconfig"
    sim.cluster.write_kubeconfig(kubeconfig, context="sim-ctx")
    rules = tmp_path / "rules.yaml"
    rules.write_text("portForward:\n  - {resourceType: service, resourceName: web, port: 80}\n", encoding="utf-8")
    app = Kubetray("--config", str(rules), "--kubeconfig", str(kubeconfig))
    try:
        assert accepted.wait(15), "kubetray never connected to the system bus"
        assert app.stop(signal.SIGINT) == 0
    finally:
        app.kill()
        for conn in held:
            conn.close()
        listener.close()

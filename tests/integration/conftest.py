"""Fixtures that run the real engine against the simulator over real sockets.

Over which transport: tests marked `transports` run once per transport (spdy-ws, spdy, v4), each
its own test id; the others use `auto`. `KUBETRAY_TEST_TRANSPORT=v4` (or spdy-ws, spdy, auto) runs
every test over that one instead, the marked ones included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from trayapp.engine.events import EventBus
from trayapp.engine.kube.auth import Credentials
from trayapp.engine.runtime import ContextRun, RunPlan
from trayapp.model import Event, EventKind, Rule, Transport
from trayapp.sim import SimCluster

SCENARIO = """
deployments:
  - name: web
    replicas: 2
    labels: {app: web}
    ports: [{name: http, containerPort: 8080}]
services:
  - name: web
    selector: {app: web}
    ports: [{name: http, port: 80, targetPort: http}]
  - name: api
    selector: {app: api}
    ports: [{name: grpc, port: 9090, targetPort: grpc}, {name: web, port: 8000, targetPort: 8000}]
statefulsets:
  - name: api
    labels: {app: api}
    ports: [{name: grpc, containerPort: 9090, kind: echo}, {name: http, containerPort: 8000}]
replicasets:
  - name: legacy
    labels: {app: legacy}
    ports: [{containerPort: 8080}]
replicationcontrollers:
  - name: old
    labels: {app: old}
    ports: [{containerPort: 8080}]
daemonsets:
  - name: agent
    labels: {app: agent}
    ports: [{name: metrics, containerPort: 9100}]
jobs:
  - name: migrate
    labels: {app: migrate}
    ports: [{containerPort: 8080}]
cronjobs:
  - name: report
    jobs: 1
    labels: {app: report}
    ports: [{name: http, containerPort: 8080}]
pods:
  - name: debug-shell
    labels: {app: debug}
    ports:
      - {containerPort: 7000, kind: echo}
      - {containerPort: 7001, kind: source}
      - {containerPort: 7002, refuse: true}
"""


TRANSPORTS = (Transport.SPDY_WS, Transport.SPDY, Transport.V4)
TRANSPORT_ENV = "KUBETRAY_TEST_TRANSPORT"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "transports: run over each transport (spdy-ws, spdy, v4)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "transport" not in metafunc.fixturenames or metafunc.definition.get_closest_marker("transports") is None:
        return
    chosen = os.environ.get(TRANSPORT_ENV)
    transports = [Transport(chosen)] if chosen else list(TRANSPORTS)
    metafunc.parametrize("transport", transports, indirect=True, ids=[t.value for t in transports])


@pytest.fixture
def transport(request: pytest.FixtureRequest) -> Transport:
    """The transport the engine under test is told to use (`--transport`)."""
    return Transport(getattr(request, "param", None) or os.environ.get(TRANSPORT_ENV) or "auto")


class Events:
    """Collects engine events and lets a test wait for the one it expects."""

    def __init__(self) -> None:
        self.seen: list[Event] = []
        self._changed = asyncio.Condition()

    def __call__(self, event: Event) -> None:
        self.seen.append(event)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(
        self, kind: EventKind, where: Callable[[Event], bool] = lambda e: True, timeout: float = 10.0
    ) -> Event:
        async def find() -> Event:
            async with self._changed:
                while True:
                    for event in self.seen:
                        if event.kind == kind and where(event):
                            return event
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(find(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {kind.value} event; saw: {[e.message for e in self.seen]}") from None

    def of(self, kind: EventKind) -> list[Event]:
        return [e for e in self.seen if e.kind == kind]


@pytest.fixture
async def cluster() -> AsyncIterator[SimCluster]:
    c = SimCluster("test", scenario=SCENARIO, bookmark_interval=0.5)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


@pytest.fixture
def kubeconfig(cluster: SimCluster, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    cluster.write_kubeconfig(path, context="sim")
    return path


async def start_run(
    kubeconfig: Path, rules: Sequence[Rule], connect_timeout: float = 10.0, transport: Transport = Transport.AUTO,
) -> tuple[ContextRun, Events]:
    """The engine on one kubeconfig's current context, its events collected."""
    events = Events()
    bus = EventBus()
    bus.subscribe(events)
    credentials = Credentials([kubeconfig], None)
    access = await asyncio.to_thread(credentials.load)
    run = ContextRun(access, credentials, RunPlan(tuple(rules), transport=transport), bus, connect_timeout)
    await run.start()
    return run, events


@contextlib.asynccontextmanager
async def running(kubeconfig: Path, rules: Sequence[Rule]) -> AsyncIterator[Events]:
    run, events = await start_run(kubeconfig, rules)
    try:
        yield events
    finally:
        await run.stop()


@pytest.fixture
async def run_rules(kubeconfig: Path, transport: Transport) -> AsyncIterator[Callable[..., object]]:
    runs: list[ContextRun] = []

    async def start(rules: Sequence[Rule], connect_timeout: float = 10.0) -> tuple[ContextRun, Events]:
        run, events = await start_run(kubeconfig, rules, connect_timeout, transport)
        runs.append(run)
        return run, events

    yield start
    for run in runs:
        await run.stop()

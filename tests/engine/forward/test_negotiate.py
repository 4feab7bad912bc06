"""Choosing the transport per API server, against the simulator over real sockets.

The v4 dialer is real throughout. Where a test needs an API server that refuses a SPDY upgrade
(the simulator serves both), that transport's dialer is one that refuses, as such a server's
answer does, before any byte: `Refusing`. Every other dialer is wrapped in `Recorder`, which
only counts what the negotiator asked of it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from trayapp.engine.forward import Dialer, Negotiator, PodConnection, TransportRefused, V4Dialer, build_dialer
from trayapp.engine.kube import KubeApi
from trayapp.model import Transport
from trayapp.sim import SimCluster

SCENARIO = """
pods:
  - name: shell
    ports: [{containerPort: 7000, kind: echo}]
"""
CARRIERS = {Transport.V4: "v4", Transport.SPDY: "spdy", Transport.SPDY_WS: "spdy-websocket"}


class Recorder:
    """A dialer's calls, counted, on the way to the real one."""

    def __init__(self, inner: Dialer) -> None:
        self.inner = inner
        self.opened = 0
        self.calls: list[tuple[str, ...]] = []

    @property
    def transport(self) -> Transport:
        return self.inner.transport

    async def open(self, namespace: str, pod: str, port: int, timeout: float) -> PodConnection:
        self.opened += 1
        return await self.inner.open(namespace, pod, port, timeout)

    def warm(self, namespace: str, pod: str) -> None:
        self.calls.append(("warm", namespace, pod))
        self.inner.warm(namespace, pod)

    def forget(self, namespace: str, pod: str) -> None:
        self.calls.append(("forget", namespace, pod))
        self.inner.forget(namespace, pod)

    def network_changed(self) -> None:
        self.calls.append(("network_changed",))
        self.inner.network_changed()

    async def aclose(self) -> None:
        self.calls.append(("aclose",))
        await self.inner.aclose()


class Refusing(Recorder):
    """The dialer of a transport the API server does not speak: its upgrade is refused."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self.opened = 0
        self.calls = []

    @property
    def transport(self) -> Transport:
        return self._transport

    async def open(self, namespace: str, pod: str, port: int, timeout: float) -> PodConnection:
        self.opened += 1
        raise TransportRefused(f"The API server answered the {self._transport.value} upgrade with 400.",
                               status=400)

    def warm(self, namespace: str, pod: str) -> None:
        self.calls.append(("warm", namespace, pod))

    def forget(self, namespace: str, pod: str) -> None:
        self.calls.append(("forget", namespace, pod))

    def network_changed(self) -> None:
        self.calls.append(("network_changed",))

    async def aclose(self) -> None:
        self.calls.append(("aclose",))


@pytest.fixture
async def cluster() -> AsyncIterator[SimCluster]:
    async with SimCluster("negotiate", scenario=SCENARIO) as c:
        yield c



class OnlyV4:
    """A server that speaks v4 only: both SPDY forms refused, v4 real."""

    def __init__(self) -> None:
        self.dialers: dict[Transport, Recorder] = {}

    def __call__(self, api: KubeApi, transport: Transport) -> Dialer:
        dialer = Recorder(V4Dialer(api)) if transport == Transport.V4 else Refusing(transport)
        self.dialers[transport] = dialer
        return dialer


async def echo_through(connection: PodConnection) -> bytes:
    try:
        await connection.send(b"ping")
        return await connection.receive()
    finally:
        await connection.close()


async def test_auto_falls_back_in_order_and_remembers_per_server(
    api: KubeApi, cluster: SimCluster, caplog: pytest.LogCaptureFixture
) -> None:
    server = OnlyV4()
    negotiator = Negotiator(api, server)
    tunnel = negotiator.for_tunnel(Transport.AUTO)
    assert tunnel.transport == Transport.AUTO  # nothing known before the first connection
    with caplog.at_level(logging.DEBUG, logger="trayapp.engine.forward.negotiate"):
        for _ in range(3):
            assert await echo_through(await tunnel.open("default", "shell", 7000, 10.0)) == b"ping"
    spdy_ws, spdy, v4 = (server.dialers[t] for t in (Transport.SPDY_WS, Transport.SPDY, Transport.V4))
    assert (spdy_ws.opened, spdy.opened, v4.opened) == (1, 1, 3)  # each refusal asked once, then remembered
    assert negotiator.settled == Transport.V4 and tunnel.transport == Transport.V4
    assert cluster.api.portforward_sessions["v4"] == 3
    # Another tunnel of the same server starts where the first one settled.
    assert negotiator.for_tunnel(Transport.AUTO).transport == Transport.V4
    assert "refused the spdy-ws transport" in caplog.text
    assert "port-forwarding over v4 for the rest of this run" in caplog.text
    await negotiator.aclose()


async def test_a_forced_transport_that_is_refused_fails_with_its_name(api: KubeApi) -> None:
    server = OnlyV4()
    negotiator = Negotiator(api, server)
    tunnel = negotiator.for_tunnel(Transport.SPDY)
    assert tunnel.transport == Transport.SPDY
    with pytest.raises(TransportRefused) as refused:
        await tunnel.open("default", "shell", 7000, 10.0)
    assert "refused the spdy transport, which this tunnel is set to use" in refused.value.message
    assert "does not fall back" in refused.value.message
    assert Transport.V4 not in server.dialers  # no fallback was tried
    await negotiator.aclose()


async def test_a_forced_transport_is_used_even_when_auto_settled_elsewhere(api: KubeApi, cluster: SimCluster) -> None:
    server = OnlyV4()
    negotiator = Negotiator(api, server)
    assert await echo_through(await negotiator.for_tunnel(Transport.V4).open("default", "shell", 7000, 10.0)) == b"ping"
    assert negotiator.settled is None  # a forced choice teaches AUTO nothing
    assert Transport.SPDY_WS not in server.dialers
    await negotiator.aclose()


async def test_a_server_refusing_everything_says_so(api: KubeApi) -> None:
    negotiator = Negotiator(api, lambda _api, transport: Refusing(transport))
    with pytest.raises(TransportRefused) as refused:
        await negotiator.for_tunnel(Transport.AUTO).open("default", "shell", 7000, 10.0)
    assert "accepted none of the port-forward transports kubetray speaks (spdy-ws, spdy, v4)" in refused.value.message
    assert negotiator.settled is None


async def test_auto_with_the_real_dialers_settles_on_the_best_the_simulator_speaks(
    api: KubeApi, cluster: SimCluster
) -> None:
    negotiator = Negotiator(api, build_dialer)
    assert await echo_through(await negotiator.for_tunnel(Transport.AUTO).open("default", "shell", 7000, 10.0)) == b"ping"
    best = Transport.SPDY_WS
    assert negotiator.settled == best
    assert cluster.api.portforward_sessions[CARRIERS[best]] == 1
    await negotiator.aclose()


async def test_sessions_are_warmed_per_pod_and_let_go_when_no_tunnel_uses_it(api: KubeApi) -> None:
    server = OnlyV4()
    negotiator = Negotiator(api, server)
    first, second = negotiator.for_tunnel(Transport.V4), negotiator.for_tunnel(Transport.V4)
    first.warm("default", "shell")
    second.warm("default", "shell")
    v4 = server.dialers[Transport.V4]
    assert v4.calls == [("warm", "default", "shell"), ("warm", "default", "shell")]
    first.forget("default", "shell")
    assert ("forget", "default", "shell") not in v4.calls  # the second tunnel still uses it
    await second.aclose()  # a stopping tunnel lets its pods go
    assert v4.calls[-1] == ("forget", "default", "shell")
    second.forget("default", "shell")  # forgetting twice is harmless
    assert v4.calls.count(("forget", "default", "shell")) == 1
    first.network_changed()
    assert v4.calls[-1] == ("network_changed",)
    await negotiator.aclose()
    assert v4.calls[-1] == ("aclose",)


async def test_pods_warmed_before_auto_settled_are_warmed_on_the_settled_transport(api: KubeApi) -> None:
    server = OnlyV4()
    negotiator = Negotiator(api, server)
    tunnel = negotiator.for_tunnel(Transport.AUTO)
    tunnel.warm("default", "shell")  # nothing known yet: the first choice opens ahead
    assert list(server.dialers) == [Transport.SPDY_WS]
    assert server.dialers[Transport.SPDY_WS].calls == [("warm", "default", "shell")]
    assert await echo_through(await tunnel.open("default", "shell", 7000, 10.0)) == b"ping"
    assert ("warm", "default", "shell") in server.dialers[Transport.V4].calls
    tunnel.forget("default", "shell")  # every dialer that may hold a session lets it go
    assert all(d.calls[-1] == ("forget", "default", "shell") for d in server.dialers.values())
    await negotiator.aclose()


# The simulator answers like an API server without a carrier once `refused_carriers` names it.
@pytest.mark.parametrize(("refused", "settles_on"), [
    ({"spdy-websocket"}, Transport.SPDY),  # an API server before 1.31, or with PortForwardWebsockets off
    ({"spdy-websocket", "spdy"}, Transport.V4),  # and a front that does not pass SPDY upgrades
], ids=["no-spdy-ws", "no-spdy"])
async def test_auto_against_a_server_that_refuses_carriers(
    api: KubeApi, cluster: SimCluster, refused: set[str], settles_on: Transport
) -> None:
    cluster.settings.refused_carriers.update(refused)
    negotiator = Negotiator(api)
    tunnel = negotiator.for_tunnel(Transport.AUTO)
    for _ in range(2):
        assert await echo_through(await tunnel.open("default", "shell", 7000, 10.0)) == b"ping"
    assert negotiator.settled == settles_on
    assert set(cluster.api.portforward_sessions) == {CARRIERS[settles_on]}
    await negotiator.aclose()


async def test_a_forced_transport_a_real_server_refuses_fails_by_name(api: KubeApi, cluster: SimCluster) -> None:
    cluster.settings.refused_carriers.add("spdy-websocket")
    negotiator = Negotiator(api)
    with pytest.raises(TransportRefused) as refused:
        await negotiator.for_tunnel(Transport.SPDY_WS).open("default", "shell", 7000, 10.0)
    assert "refused the spdy-ws transport" in refused.value.message
    assert not cluster.api.portforward_sessions  # nothing else was tried
    await negotiator.aclose()

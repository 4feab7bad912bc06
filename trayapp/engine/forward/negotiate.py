"""Which transport carries the connections to one API server's pods, and the dialers that do it.

One `Negotiator` per API server (per KubeApi) holds one dialer per transport, shared by every
tunnel of that server, so tunnels to one pod share its session. Each tunnel gets a
`TunnelDialer`, a Dialer that follows the tunnel's choice:

- AUTO tries spdy-ws, then spdy, then v4, moving on only when a transport is refused
  (`TransportRefused`: the API server does not speak it), and remembers for the rest of the run
  what it settled on for that server, so later connections go straight to it.
- A forced transport (a rule's `transport:`, or `--transport`) is used alone: when the server
  refuses it, the connection fails with a message naming it, and kubetray does not fall back.

Sessions are kept per pod while a tunnel points at it: `warm` counts the tunnels on a pod and
`forget` lets the session go once none is left.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from trayapp.engine.forward.spdydial import SpdyDialer
from trayapp.engine.forward.transport import Dialer, PodConnection, TransportRefused
from trayapp.engine.forward.v4dial import V4Dialer
from trayapp.engine.kube import KubeApi
from trayapp.model import Transport

log = logging.getLogger(__name__)

# AUTO's order of preference: one session per pod first, v4's WebSocket per connection last.
PREFERENCE = (Transport.SPDY_WS, Transport.SPDY, Transport.V4)

DialerFactory = Callable[[KubeApi, Transport], Dialer]


def build_dialer(api: KubeApi, transport: Transport) -> Dialer:
    """The dialer of one concrete transport (not AUTO) for one API server."""
    if transport == Transport.V4:
        return V4Dialer(api)
    if transport == Transport.AUTO:
        raise ValueError("AUTO is a choice among transports, not one")
    return SpdyDialer(api, over_websocket=transport == Transport.SPDY_WS)


class Negotiator:
    """The transports of one API server: what AUTO settled on, and one dialer per transport."""

    def __init__(self, api: KubeApi, factory: DialerFactory = build_dialer) -> None:
        self._api = api
        self._factory = factory
        self._dialers: dict[Transport, Dialer] = {}
        self._settled: Transport | None = None
        self._refused: set[Transport] = set()
        self._pods: Counter[tuple[str, str]] = Counter()  # tunnels pointing at each pod

    @property
    def settled(self) -> Transport | None:
        """What AUTO settled on for this server, once a connection went through."""
        return self._settled

    @property
    def server(self) -> str:
        return self._api.access.server

    def dialer(self, transport: Transport) -> Dialer:
        dialer = self._dialers.get(transport)
        if dialer is None:
            dialer = self._dialers[transport] = self._factory(self._api, transport)
        return dialer

    def for_tunnel(self, choice: Transport) -> TunnelDialer:
        return TunnelDialer(self, choice)

    async def open_auto(self, namespace: str, pod: str, port: int, timeout: float) -> PodConnection:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        settled = self._settled
        if settled is not None:
            try:
                return await self.dialer(settled).open(namespace, pod, port, timeout)
            except TransportRefused as exc:
                # The server changed under us (an upgrade, another server behind one name): negotiate again.
                log.debug("API server %s now refuses %s (%s); negotiating again", self.server, settled.value,
                          exc.message)
                self._refused.add(settled)
                self._settled = None
        for transport in PREFERENCE:
            if transport in self._refused:
                continue
            try:
                connection = await self.dialer(transport).open(
                    namespace, pod, port, max(deadline - loop.time(), 0.1))
            except TransportRefused as exc:
                log.debug("API server %s refused the %s transport (%s); trying the next one",
                          self.server, transport.value, exc.message)
                self._refused.add(transport)
                continue
            self._settle(transport)
            return connection
        raise TransportRefused(
            f"The API server {self.server} accepted none of the port-forward transports kubetray speaks "
            f"({', '.join(t.value for t in PREFERENCE)}); kubetray tries them again for the next connection.")

    def _settle(self, transport: Transport) -> None:
        if self._settled == transport:
            return
        self._settled = transport
        log.debug("API server %s: port-forwarding over %s for the rest of this run", self.server, transport.value)
        dialer = self.dialer(transport)
        for namespace, pod in self._pods:
            dialer.warm(namespace, pod)

    def warm(self, transport: Transport | None, namespace: str, pod: str) -> None:
        """`transport` None: AUTO has not settled; the session of the transport it will try first
        is opened ahead all the same (a server that refuses it costs one upgrade, in the
        background), so that the first connection finds it open."""
        self._pods[(namespace, pod)] += 1
        if transport is None:
            transport = next((t for t in PREFERENCE if t not in self._refused), Transport.V4)
        self.dialer(transport).warm(namespace, pod)

    def forget(self, namespace: str, pod: str) -> None:
        key = (namespace, pod)
        self._pods[key] -= 1
        if self._pods[key] > 0:
            return
        del self._pods[key]
        for dialer in self._dialers.values():
            dialer.forget(namespace, pod)

    def network_changed(self) -> None:
        for dialer in self._dialers.values():
            dialer.network_changed()

    async def aclose(self) -> None:
        dialers, self._dialers = list(self._dialers.values()), {}
        results = await asyncio.gather(*(d.aclose() for d in dialers), return_exceptions=True)
        for dialer, result in zip(dialers, results, strict=True):
            if isinstance(result, Exception):
                log.warning("closing the %s sessions failed", dialer.transport.value, exc_info=result)


class TunnelDialer:
    """One tunnel's Dialer: its transport choice over its server's Negotiator."""

    def __init__(self, negotiator: Negotiator, choice: Transport) -> None:
        self._negotiator = negotiator
        self.choice = choice
        self._pods: Counter[tuple[str, str]] = Counter()

    @property
    def transport(self) -> Transport:
        """The transport in use: the forced one, else what AUTO settled on (AUTO until then)."""
        if self.choice != Transport.AUTO:
            return self.choice
        return self._negotiator.settled or Transport.AUTO

    async def open(self, namespace: str, pod: str, port: int, timeout: float) -> PodConnection:
        if self.choice == Transport.AUTO:
            return await self._negotiator.open_auto(namespace, pod, port, timeout)
        try:
            return await self._negotiator.dialer(self.choice).open(namespace, pod, port, timeout)
        except TransportRefused as exc:
            raise TransportRefused(
                f"The API server {self._negotiator.server} refused the {self.choice.value} transport, which "
                f"this tunnel is set to use ({exc.message}). kubetray does not fall back to another one when "
                "a transport is chosen; remove the rule's `transport:` (or --transport) to let it pick one "
                "the server speaks.", status=exc.status) from exc

    def warm(self, namespace: str, pod: str) -> None:
        known = self.transport
        self._pods[(namespace, pod)] += 1
        self._negotiator.warm(None if known == Transport.AUTO else known, namespace, pod)

    def forget(self, namespace: str, pod: str) -> None:
        key = (namespace, pod)
        if self._pods[key] <= 0:
            return
        self._pods[key] -= 1
        if self._pods[key] == 0:
            del self._pods[key]
        self._negotiator.forget(namespace, pod)

    def network_changed(self) -> None:
        self._negotiator.network_changed()

    async def aclose(self) -> None:
        """Let this tunnel's pods go; the sessions themselves belong to the Negotiator."""
        for (namespace, pod), count in list(self._pods.items()):
            for _ in range(count):
                self.forget(namespace, pod)

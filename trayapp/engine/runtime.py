"""Runs everything: a kube context's rules become forwarders; their events go to subscribers.

The runtime never imports Qt. The tray and `--headless` subscribe to its events; both call
`stop()` to end it cleanly (listeners closed, connections ended, `stopped` events published).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from trayapp.engine.auth import ClusterAccess, Credentials
from trayapp.engine.cache import ClusterCache
from trayapp.engine.forwarder import Forwarder
from trayapp.engine.kube import KubeApi
from trayapp.model import Event, Rule, TunnelState

log = logging.getLogger(__name__)

Subscriber = Callable[[Event], None]


class EventBus:
    """Fans events out to subscribers; a failing subscriber is logged, never fatal."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self.history: list[Event] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def publish(self, event: Event) -> None:
        self.history.append(event)
        del self.history[:-500]
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                log.exception("an event subscriber failed on %s", event.kind.value)


@dataclass(frozen=True)
class TunnelView:
    """A snapshot of one tunnel for the UI and `status`."""

    tunnel_id: str
    rule: Rule
    state: TunnelState
    local_port: int | None
    pod: str | None
    reason: str | None


def tunnel_id(context: str, rule: Rule) -> str:
    return f"{context}/{rule.namespace}/{rule.resource_type.short}/{rule.resource_name}:{rule.port}@{rule.address}"


class ContextRun:
    """The tunnels of one context, sharing one API connection setup and one watch cache."""

    def __init__(
        self,
        access: ClusterAccess,
        credentials: Credentials,
        rules: Sequence[Rule],
        bus: EventBus,
        connect_timeout: float = 10.0,
    ) -> None:
        self.access = access
        self.credentials = credentials
        self.cache = ClusterCache(KubeApi(access, credentials))
        self.forwarders: list[Forwarder] = []
        self._bus = bus
        self._rules = tuple(rules)
        self._connect_timeout = connect_timeout

    def _taken(self, address: str) -> set[int]:
        return {f.local_port for f in self.forwarders if f.rule.address == address and f.local_port is not None}

    async def start(self) -> None:
        for rule in self._rules:
            forwarder = Forwarder(
                rule, self.access.context, tunnel_id(self.access.context, rule), self.cache,
                self._bus.publish, self._taken, self._connect_timeout,
            )
            self.forwarders.append(forwarder)
            await forwarder.start()

    async def stop(self) -> None:
        await asyncio.gather(*(f.stop() for f in self.forwarders), return_exceptions=True)
        await self.cache.stop()
        self.credentials.close()

    def views(self) -> list[TunnelView]:
        return [
            TunnelView(
                f.tunnel_id, f.rule, f.state, f.local_port,
                f.machine.target.pod if f.machine.target else None, f.machine.reason,
            )
            for f in self.forwarders
        ]

"""Runs everything: a kube context's rules become forwarders; their events go to subscribers.

The runtime never imports Qt. The tray and `--headless` subscribe to its events; both call
`stop()` to end it cleanly (listeners closed, connections ended, `stopped` events published).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from trayapp.engine.auth import ClusterAccess, Credentials
from trayapp.engine.cache import ClusterCache
from trayapp.engine.events import EventBus
from trayapp.engine.forwarder import Forwarder
from trayapp.engine.kube import KubeApi
from trayapp.errors import AuthError, KubetrayError
from trayapp.model import Event, EventKind, Rule, TunnelState

log = logging.getLogger(__name__)

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
    """The tunnels of one context, sharing one API connection setup and one watch cache.

    The set of rules can change while it runs (automatic rules appear and disappear, the rules
    file is reloaded): `apply_rules` stops the forwarders whose rule is gone and starts the new
    ones, leaving unchanged ones untouched, so their listeners and connections live on.
    """

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
        self.cache = ClusterCache(KubeApi(access, credentials), on_error=self._cluster_error)
        self.forwarders: dict[str, Forwarder] = {}
        self._bus = bus
        self._rules = tuple(rules)
        self._connect_timeout = connect_timeout
        self._lock = asyncio.Lock()  # apply_rules calls run one at a time, in order

    @property
    def context(self) -> str:
        return self.access.context

    def _taken(self, address: str) -> set[int]:
        return {
            f.local_port for f in self.forwarders.values()
            if f.rule.address == address and f.local_port is not None
        }

    async def start(self) -> None:
        await self.apply_rules(self._rules)

    async def apply_rules(self, rules: Sequence[Rule]) -> None:
        async with self._lock:
            wanted = {tunnel_id(self.context, rule): rule for rule in rules}
            gone = [f for tid, f in self.forwarders.items() if wanted.get(tid) != f.rule]
            for forwarder in gone:
                del self.forwarders[forwarder.tunnel_id]
            # Stop first, so a changed rule's new forwarder can have its port back.
            await asyncio.gather(*(f.stop() for f in gone), return_exceptions=True)
            for tid, rule in wanted.items():
                if tid in self.forwarders:
                    continue
                forwarder = Forwarder(
                    rule, self.context, tid, self.cache, self._bus.publish, self._taken, self._connect_timeout,
                )
                self.forwarders[tid] = forwarder
                await forwarder.start()
            self._rules = tuple(rules)

    def _cluster_error(self, error: KubetrayError) -> None:
        """One message for the context, not one per tunnel, when the cluster refuses us."""
        if isinstance(error, AuthError):
            # The same words for every watch that fails, so the bus coalesces them into one event.
            log.info("context %s: %s", self.context, error.message)
            self._bus.publish(Event(
                EventKind.FAILED,
                f"The cluster of context {self.context!r} refused kubetray's credentials (HTTP {error.status}), "
                "even after reading them again; that context needs new credentials.",
                context=self.context,
            ))

    async def stop(self) -> None:
        async with self._lock:
            forwarders, self.forwarders = list(self.forwarders.values()), {}
            await asyncio.gather(*(f.stop() for f in forwarders), return_exceptions=True)
        await self.cache.stop()
        self.credentials.close()

    def views(self) -> list[TunnelView]:
        return [
            TunnelView(
                f.tunnel_id, f.rule, f.state, f.local_port,
                f.machine.target.pod if f.machine.target else None, f.machine.reason,
            )
            for f in self.forwarders.values()
        ]

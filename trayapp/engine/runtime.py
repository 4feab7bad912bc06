"""Runs everything: a kube context's rules become forwarders; their events go to subscribers.

The runtime never imports Qt. The tray and `--headless` subscribe to its events; both call
`stop()` to end it cleanly (listeners closed, connections ended, `stopped` events published).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from trayapp.engine.autoforward import AutoForwarder, namespaces_to_watch
from trayapp.engine.discovery import Settings
from trayapp.engine.events import EventBus
from trayapp.engine.forward import Forwarder, Negotiator, namespaces_to_decide, one_per_forward, target_key
from trayapp.engine.kube import WATCH_SILENCE_SECONDS, ClusterAccess, ClusterCache, Credentials, Informer, KubeApi
from trayapp.engine.portmemory import PortKey, PortMemory
from trayapp.engine.portnames import PortNames
from trayapp.errors import AuthError, KubetrayError
from trayapp.model import Event, EventKind, Rule, Transport, TunnelState, tunnel_url

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
    context: str | None = None  # the kube context it forwards from (several run at once when pinned)
    transport: Transport | None = None  # what its connections use; None until AUTO settled

    @property
    def url(self) -> str | None:
        """The URL to open, once it has a local port and where it is HTTP (model.Rule.is_http)."""
        return tunnel_url(self.rule, self.local_port)


def tunnel_id(context: str, rule: Rule) -> str:
    """One forward's id: its target and, when it is not the port itself, the local port it asks for.

    One target on two local ports is two tunnels (as in Skaffold), so the local port is part of
    the id; a rule that leaves it to the port keeps the shorter id it always had.
    """
    target = f"{context}/{rule.namespace}/{rule.resource_type.short}/{rule.resource_name}:{rule.port}"
    local = rule.requested_local_port
    if local is None or local == rule.port:
        return f"{target}@{rule.address}"
    host = f"[{rule.address}]" if ":" in rule.address else rule.address
    return f"{target}@{host}:{local}"


@dataclass
class Switches:
    """What the user turned off from the tray, shared by every ContextRun of one Supervisor.

    Tunnel ids name their context, so a tunnel stopped in one context stays stopped when the
    user comes back to it, and "Pause all" outlives a context switch.
    """

    paused: bool = False
    disabled: set[str] = field(default_factory=set)

    def enabled(self, tid: str) -> bool:
        return not self.paused and tid not in self.disabled


@dataclass(frozen=True)
class RunPlan:
    """What to forward in a context: the user's rules, and the `auto:` settings if any."""

    rules: tuple[Rule, ...] = ()
    auto: Settings | None = None
    # --transport: what carries the connections of rules that leave it to kubetray (`auto`).
    transport: Transport = Transport.AUTO


class ContextRun:
    """The tunnels of one context, sharing one API connection setup and one watch cache.

    The set of rules changes while it runs (automatic rules appear and disappear, the rules file
    is reloaded): only the forwarders whose rule changed are stopped or started, so the others
    keep their listeners and connections. A user rule and an automatic rule for the same target
    make one tunnel, with the user's settings. An automatic rule gets back the local port it had
    last time (PortMemory) when that port is free.
    """

    def __init__(
        self,
        access: ClusterAccess,
        credentials: Credentials,
        plan: RunPlan | Sequence[Rule],
        bus: EventBus,
        connect_timeout: float = 10.0,
        port_memory: PortMemory | None = None,
        switches: Switches | None = None,
        watch_silence: float = WATCH_SILENCE_SECONDS,
        taken_elsewhere: Callable[[str], set[int]] | None = None,
    ) -> None:
        self.access = access
        self.credentials = credentials
        api = KubeApi(access, credentials, watch_silence=watch_silence)
        self.cache = ClusterCache(api, on_error=self._cluster_error)
        # Which transport this API server speaks is found once for all of the context's tunnels,
        # which also share its per-pod sessions.
        self.negotiator = Negotiator(api)
        self.forwarders: dict[str, Forwarder] = {}
        self._bus = bus
        self._plan = plan if isinstance(plan, RunPlan) else RunPlan(tuple(plan))
        self._auto_rules: tuple[Rule, ...] = ()
        self._discovered: tuple[Rule, ...] = ()  # the automatic rules as found, before the guard
        self._desired: dict[str, Rule] = {}  # the rule each forwarder was started for, before port memory
        self._connect_timeout = connect_timeout
        self._memory = port_memory
        self._auto: AutoForwarder | None = None
        self._lock = asyncio.Lock()  # rule changes are applied one at a time, in order
        self._pending: asyncio.Task[None] | None = None
        self._stopped = False
        self._told_forbidden: set[tuple[str, str | None]] = set()
        self.switches = switches or Switches()
        self._switched_off: dict[str, Rule] = {}  # wanted, but stopped or paused by the user
        self._keep_port: dict[str, int] = {}  # a restarted tunnel gets its local port back
        # What named service ports stand for, so `port: http` and `port: 80` run once (_wanted).
        self._port_names = PortNames(self.cache, self._port_names_changed)
        self._told_repeats: set[str] = set()
        # Local ports the tunnels of other contexts hold (pinned contexts run beside the current
        # one): a rule asking for one of them falls back, as for a port another rule of this run holds.
        self._taken_elsewhere = taken_elsewhere or (lambda _address: set())

    @property
    def context(self) -> str:
        return self.access.context

    def _taken(self, address: str) -> set[int]:
        """Local ports other tunnels hold on `address`, in this context and in the others."""
        return self.held_ports(address) | self._taken_elsewhere(address)

    def held_ports(self, address: str) -> set[int]:
        """Local ports this run's tunnels hold on `address`; "localhost" listens on 127.0.0.1."""
        def bound(where: str) -> str:
            return "127.0.0.1" if where == "localhost" else where

        return {
            f.local_port for f in self.forwarders.values()
            if bound(f.rule.address) == bound(address) and f.local_port is not None
        }

    async def start(self) -> None:
        await self._apply()
        self._start_auto()

    def _start_auto(self) -> None:
        auto = self._plan.auto
        if auto is not None and (auto.skaffold or auto.annotation or auto.selectors):
            self._auto = AutoForwarder(
                auto, self.context, self.access.namespace, self.cache, self._bus.publish, self._auto_changed,
            )
            self._auto.start()

    async def namespace_changed(self, namespace: str) -> bool:
        """The context's namespace changed: only automatic forwarding follows it (each rule names
        its own namespace, "default" unless written). Automatic tunnels whose target stays keep
        running; True when automatic forwarding now looks in other namespaces."""
        before, self.access = self.access.namespace, replace(self.access, namespace=namespace)
        if self._auto is None:
            return False
        self._auto.stop()
        self._start_auto()  # hands over the new automatic rules; _apply moves only what changed
        settings = self._auto.settings
        return namespaces_to_watch(settings, before) != namespaces_to_watch(settings, namespace)

    async def apply_rules(self, rules: Sequence[Rule] | RunPlan) -> None:
        """New user rules (the rules file was reloaded); automatic rules stay as discovered unless
        the `auto:` settings changed (an `auto.exclude` line added, a source turned off)."""
        plan = rules if isinstance(rules, RunPlan) else RunPlan(tuple(rules), self._plan.auto)
        auto_changed = plan.auto != self._plan.auto
        self._plan = RunPlan(plan.rules, plan.auto, plan.transport if isinstance(rules, RunPlan)
                             else self._plan.transport)
        if auto_changed:  # as for a new namespace: what is still wanted keeps its tunnel
            if self._auto is not None:
                self._auto.stop()
                self._auto = None
            self._start_auto()
            if self._auto is None:  # turned off: its tunnels go
                self._discovered = ()
        # The user's rules name the ports that cluster objects may not take: guard again.
        self._auto_rules = AutoForwarder.guard(self._discovered, self._plan.rules)
        await self._apply()

    async def set_plan(self, plan: RunPlan) -> None:
        """A new plan, automatic forwarding included: the context became or stopped being the
        current one while it stays pinned. Tunnels whose rule stays keep their connections."""
        if plan.auto != self._plan.auto:
            if self._auto is not None:
                self._auto.stop()
                self._auto = None
            self._discovered = self._auto_rules = ()
            self._plan = plan
            self._start_auto()
        await self.apply_rules(plan)

    def _auto_changed(self, rules: Sequence[Rule]) -> None:
        # What a cluster object may ask for ends here: loopback only, never a port that one of
        # the user's rules names (nor, in the forwarder, one below 1024).
        self._discovered = tuple(rules)
        guarded = AutoForwarder.guard(rules, self._plan.rules)
        changed = guarded != self._auto_rules
        self._auto_rules = guarded  # also when only the reserved ports changed: new starts use them
        if not changed:
            return
        # A new task each time (the lock keeps them in order): one already past _wanted() would
        # miss this change.
        previous = self._pending
        self._pending = asyncio.get_running_loop().create_task(
            self._apply_after(previous), name=f"context:{self.context}:auto")

    def _port_names_changed(self) -> None:
        if self._stopped:
            return
        previous = self._pending
        self._pending = asyncio.get_running_loop().create_task(
            self._apply_after(previous), name=f"context:{self.context}:port-names")

    async def _apply_after(self, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        await self._apply()

    def _wanted(self) -> dict[str, Rule]:
        """Every tunnel the plan asks for, by id, in rule order; the first rule for an id wins.

        Two rules for one target on two local ports are two tunnels; two rules asking for one
        local port are two tunnels too (the later one falls back, ports.py). `port: http` and
        `port: 80` of one service with nothing else different are one tunnel, once the service
        says they are the same port (resolve.one_per_forward).
        """
        self._port_names.watch(namespaces_to_decide(self._plan.rules))
        rules, _held, repeats = one_per_forward(
            self._plan.rules, self._port_names.numbers, self._port_names.unsynced)
        for repeat, kept in repeats:
            if tunnel_id(self.context, repeat) not in self._told_repeats:
                self._told_repeats.add(tunnel_id(self.context, repeat))
                log.info("context %s: %s is the same forward as %s; it runs once",
                         self.context, repeat.label, kept.label)
        wanted: dict[str, Rule] = {}
        for rule in rules:
            wanted.setdefault(tunnel_id(self.context, rule), rule)
        numbers = self._port_names.numbers
        user_targets = {target_key(rule, numbers) for rule in rules}
        for rule in self._auto_rules:
            if target_key(rule, numbers) not in user_targets:  # the user's own rule for that target wins
                tid = tunnel_id(self.context, rule)
                running = self._desired.get(tid)
                if running is not None and running.auto and replace(running, name=rule.name) == rule:
                    # Only the label moved (it names the namespace when that is not the context's):
                    # not worth breaking its connections. The ports now reserved are the new ones.
                    rule = replace(running, reserved_ports=rule.reserved_ports)
                wanted.setdefault(tid, rule)
        return wanted

    def _remembered(self, rule: Rule) -> Rule:
        if not rule.auto or self._memory is None:
            return rule
        port = self._memory.get(PortKey.of(self.context, rule))
        return replace(rule, local_port=port) if port else rule

    async def _apply(self) -> None:
        async with self._lock:
            if self._stopped:
                return  # a change queued behind stop(): nothing to start any more
            everything = self._wanted()
            wanted = {tid: rule for tid, rule in everything.items() if self.switches.enabled(tid)}
            self._switched_off = {tid: rule for tid, rule in everything.items() if tid not in wanted}
            gone = [
                self.forwarders[tid] for tid, rule in self._desired.items()
                if wanted.get(tid) != rule or _gives_way(self.forwarders[tid], wanted[tid])
            ]
            # Stop first, so a changed rule's new forwarder can have its port back; until they
            # are stopped, _taken() still counts their ports.
            await _stop_all(gone)
            for forwarder in gone:
                del self.forwarders[forwarder.tunnel_id]
                del self._desired[forwarder.tunnel_id]
            for tid, rule in wanted.items():
                if tid in self.forwarders:
                    continue
                start_rule = self._remembered(rule)
                if tid in self._keep_port:
                    start_rule = replace(start_rule, local_port=self._keep_port.pop(tid))
                if rule.transport == Transport.AUTO:  # --transport applies where the rule leaves it open
                    start_rule = replace(start_rule, transport=self._plan.transport)
                forwarder = Forwarder(
                    start_rule, self.context, tid, self.cache, self._bus.publish, self._taken,
                    self._connect_timeout, self.negotiator.for_tunnel(start_rule.transport),
                )
                self.forwarders[tid] = forwarder
                self._desired[tid] = rule
                await forwarder.start()
                if rule.auto and self._memory is not None and forwarder.local_port is not None:
                    self._memory.remember(PortKey.of(self.context, rule), forwarder.local_port)

    async def switches_changed(self) -> None:
        """The user paused, resumed, stopped or started tunnels: start and stop to match."""
        await self._apply()

    async def restart(self, tid: str) -> bool:
        """Stop a tunnel and start it again on the same local port; False if there is no such tunnel."""
        async with self._lock:
            forwarder = self.forwarders.pop(tid, None)
            if forwarder is None:
                return False
            del self._desired[tid]
            if forwarder.local_port is not None:
                self._keep_port[tid] = forwarder.local_port
            await forwarder.stop()
        await self._apply()
        return True

    def network_changed(self) -> None:
        """Sleep, wake or a new network: restart every watch and end connections on the old path."""
        log.info("context %s: the network changed; restarting watches and connections", self.context)
        self.cache.restart_all()
        for forwarder in self.forwarders.values():
            forwarder.network_changed()

    def _cluster_error(self, informer: Informer, error: KubetrayError) -> None:
        """One message for the context, not one per tunnel, when the cluster refuses us."""
        if not isinstance(error, AuthError):
            return
        log.info("context %s: %s", self.context, error.message)
        if error.status == 403:
            if informer.namespace is None:
                return  # automatic forwarding over all namespaces falls back by itself
            where = (informer.kind, informer.namespace)
            if where not in self._told_forbidden:
                self._told_forbidden.add(where)
                self._bus.publish(Event(
                    EventKind.FAILED,
                    f"Context {self.context!r} may not watch {informer.kind} in namespace "
                    f"{informer.namespace!r} (403 Forbidden); tunnels that need them wait until it may.",
                    context=self.context, namespace=informer.namespace,
                ))
            return
        # The same words for every watch that fails, so the bus coalesces them into one event.
        self._bus.publish(Event(
            EventKind.FAILED,
            f"The cluster of context {self.context!r} refused kubetray's credentials (HTTP {error.status}), "
            "even after reading them again; that context needs new credentials: store a token with "
            f"`kubetray token set {self.context}` or refresh the kubeconfig's credentials.",
            context=self.context,
        ))

    async def stop(self) -> None:
        if self._auto is not None:
            self._auto.stop()
        async with self._lock:
            self._stopped = True
            if self._pending is not None:  # waiting on the lock: cancelling it interrupts nothing
                self._pending.cancel()
            forwarders, self.forwarders = list(self.forwarders.values()), {}
            self._port_names.close()
            self._desired = {}
            self._auto_rules = self._discovered = ()
            self._switched_off = {}
            await _stop_all(forwarders)
            await self.negotiator.aclose()
        await self.cache.stop()
        self.credentials.close()

    def views(self) -> list[TunnelView]:
        """Every tunnel of the context, in rule order, including those the user switched off."""
        views = {
            f.tunnel_id: TunnelView(
                f.tunnel_id, f.rule, f.state, f.local_port,
                f.machine.target.pod if f.machine.target else None, f.machine.reason, self.context,
                f.transport,
            )
            for f in self.forwarders.values()
        }
        reason = "Paused from the tray." if self.switches.paused else "Stopped from the tray."
        for tid, rule in self._switched_off.items():
            views[tid] = TunnelView(tid, rule, TunnelState.STOPPED, None, None, reason, self.context)
        order = {tid: position for position, tid in enumerate(self._wanted())}
        return sorted(views.values(), key=lambda v: order.get(v.tunnel_id, len(order)))


def _gives_way(forwarder: Forwarder, rule: Rule) -> bool:
    """An automatic tunnel on a port that a user rule now names starts again elsewhere."""
    return rule.auto and forwarder.local_port is not None and forwarder.local_port in rule.reserved_ports


async def _stop_all(forwarders: Sequence[Forwarder]) -> None:
    """Stop forwarders together; one that fails to stop is logged and the others still stop."""
    results = await asyncio.gather(*(f.stop() for f in forwarders), return_exceptions=True)
    for forwarder, result in zip(forwarders, results, strict=True):
        if isinstance(result, Exception):
            log.error("stopping tunnel %s failed; its listener or connections may linger",
                      forwarder.tunnel_id, exc_info=result)

"""Follows the kubeconfig: one ContextRun for the effective context, swapped when it changes.

The kubeconfig files are watched (filewatch.py), never polled. After each change the effective
context is read again; if its fingerprint (context, cluster, user, namespace) is unchanged nothing
happens. A new context name, cluster, server, proxy or user is a switch: the old context's tunnels
stop, one `context` event is published, and the new context's rules start. Anything else keeps the
running context and its connections: a new namespace moves only what follows the context's
namespace (automatic forwarding; a rule names its own namespace), and new credentials (a token
rewritten in place by an auth provider, a rotated certificate) are read again for the next request.
A kubeconfig that cannot be read gives one `failed` event naming the file; the tunnels already
running are kept, and kubetray recovers by itself when the file is fixed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from trayapp.engine.events import EventBus
from trayapp.engine.filewatch import FileWatcher
from trayapp.engine.kube import (
    Credentials,
    EffectiveContext,
    MergedKubeconfig,
    merged_kubeconfig,
    read_effective_context,
)
from trayapp.engine.portmemory import PortMemory
from trayapp.engine.runtime import ContextRun, RunPlan, Switches, TunnelView
from trayapp.errors import KubetrayError
from trayapp.model import Event, EventKind, Rule

log = logging.getLogger(__name__)

# What to run in a context: the user's rules for it and the automatic-forwarding settings.
PlanFor = Callable[[EffectiveContext], RunPlan | Sequence[Rule]]


@dataclass(frozen=True)
class _Reading:
    """One reading of the kubeconfig: the effective context and where its connections go.

    `route` is finer than nothing and coarser than the fingerprint: when it changes the tunnels
    lead somewhere else and the context is switched; when only the fingerprint changes (the
    namespace, a token, a certificate) the running tunnels stay.
    """

    effective: EffectiveContext
    route: tuple[str, ...]


class _UnknownPinnedContext(KubetrayError):
    """--context names a context the kubeconfig does not have: the flag, not the file, is wrong."""


def _route(effective: EffectiveContext, merged: MergedKubeconfig | None) -> tuple[str, ...]:
    cluster = merged.clusters.get(effective.cluster) if merged is not None else None
    proxy = str(cluster.body.get("proxy-url") or "") if cluster is not None else ""
    return (effective.name, effective.cluster, effective.server, proxy, effective.user)


class Supervisor:
    def __init__(
        self,
        paths: Sequence[Path],
        bus: EventBus,
        plan_for: PlanFor,
        pinned_context: str | None = None,
        connect_timeout: float = 10.0,
        port_memory: PortMemory | None = None,
        stored_token: Callable[[str], str | None] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.paths = tuple(paths)
        self.effective: EffectiveContext | None = None
        self.run: ContextRun | None = None
        self._bus = bus
        self._plan_for = plan_for
        self._memory = port_memory
        self._stored_token = stored_token
        self._pinned = pinned_context
        self._connect_timeout = connect_timeout
        self._lock = asyncio.Lock()
        self._last_problem: str | None = None
        self._route: tuple[str, ...] | None = None  # of the running context (see _Reading)
        self._on_change = on_change or (lambda: None)
        self.switches = Switches()
        self.contexts: tuple[str, ...] = ()  # every context in the kubeconfig, for the tray's switch menu
        self.problem: str | None = None  # why the kubeconfig cannot be used right now, if it cannot
        self._closed = False  # serve() has ended: a late command must not start tunnels again

    async def serve(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; the kubeconfig is read once the watch is armed, so no change is lost."""
        watcher = FileWatcher(self.paths)
        await watcher.start()
        follow = asyncio.get_running_loop().create_task(self._follow(watcher), name="supervisor:kubeconfig")
        try:
            await self.refresh()
            await stop.wait()
        finally:
            # Under the lock, so the cancel never lands in the middle of a context switch.
            async with self._lock:
                follow.cancel()
                await asyncio.gather(follow, return_exceptions=True)
                await watcher.aclose()
                await self._stop_run()
                self._closed = True

    async def _follow(self, watcher: FileWatcher) -> None:
        async for changed in watcher.changes():
            log.debug("kubeconfig changed: %s", ", ".join(str(p) for p in sorted(changed)))
            try:
                await self.refresh()
            except Exception as exc:  # following must outlive any one bad reading
                log.exception("following the kubeconfig failed")
                self._bus.publish(Event(EventKind.FAILED, f"kubetray could not apply a kubeconfig change: {exc}. "
                                        "It keeps watching the file."))

    async def refresh(self, force: bool = False) -> None:
        """Read the kubeconfig and switch context if the effective one changed (or when forced)."""
        try:
            async with self._lock:
                await self._refresh(force)
        finally:
            self._on_change()

    async def _refresh(self, force: bool) -> None:
        if self._closed:
            return
        try:
            reading = await asyncio.to_thread(self._read)
        except _UnknownPinnedContext as exc:
            keeping = self.run is not None
            self._problem(exc.message, keeping, " kubetray keeps the current tunnels until it is back." if keeping
                          else " kubetray starts forwarding if a context of that name is added; otherwise "
                               "start kubetray again with --context set to one of those.")
            return
        except KubetrayError as exc:
            self._problem(exc.message, keeping=self.run is not None)
            return
        self._last_problem = self.problem = None
        effective = reading.effective
        if not force and self.run is not None and self.effective is not None:
            if effective.fingerprint == self.effective.fingerprint:
                return
            if reading.route == self._route:
                await self._change_in_place(self.run, self.effective, effective)
                return
        previous = self.effective
        stopped = len(self.run.forwarders) if self.run else 0
        await self._stop_run()
        self.effective = effective
        self._route = reading.route
        await self._start_run(effective, previous, stopped)

    async def _change_in_place(self, run: ContextRun, previous: EffectiveContext, effective: EffectiveContext) -> None:
        """Same context, cluster and user, something else changed: keep the tunnels and their connections."""
        self.effective = effective
        # Maybe the credentials (a token rewritten in place, a rotated certificate): the next
        # request reads the kubeconfig again; the connections already open are left alone.
        run.credentials.invalidate()
        if previous.namespace == effective.namespace:
            log.info("context %s: its kubeconfig entries changed; new requests use them", effective.name)
            return
        follows = await run.namespace_changed(effective.namespace)
        if follows:
            kept = sum(1 for forwarder in run.forwarders.values() if not forwarder.rule.auto)
            what = (f"kubetray keeps the {kept} tunnel{'s' if kept != 1 else ''} of your rules, each "
                    "of which names its own namespace; automatic forwarding now looks in namespace "
                    f"{effective.namespace!r}.")
        else:
            kept = len(run.forwarders)
            what = (f"kubetray keeps its {kept} tunnel{'s' if kept != 1 else ''}: each rule names its "
                    "own namespace.")
        self._bus.publish(Event(
            EventKind.CONTEXT,
            f"The namespace of context {effective.name} changed from {previous.namespace!r} to "
            f"{effective.namespace!r}. {what}",
            context=effective.name,
            previous_context=previous.name,
            namespace=effective.namespace,
        ))

    def _read(self) -> _Reading:
        """In a worker thread: the effective context, and every context's name on the way."""
        merged: MergedKubeconfig | None = None
        try:
            merged = merged_kubeconfig(self.paths)
            self.contexts = tuple(sorted(merged.contexts))
        except KubetrayError:
            pass  # read_effective_context reports the same problem, with its file
        if merged is not None and self._pinned is not None and self._pinned not in merged.contexts:
            files = ", ".join(str(path) for path in merged.files)
            known = ", ".join(sorted(merged.contexts)) or "none"
            raise _UnknownPinnedContext(
                f"The context {self._pinned!r} named by --context does not exist in the kubeconfig "
                f"{files} (it has: {known})."
            )
        effective = read_effective_context(self.paths, self._pinned)
        return _Reading(effective, _route(effective, merged))

    def _problem(self, message: str, keeping: bool, tail: str | None = None) -> None:
        self.problem = message
        if message == self._last_problem:
            return  # one event per problem, however often the file is rewritten meanwhile
        self._last_problem = message
        if tail is None:
            tail = (" kubetray keeps the current tunnels and switches once the file is fixed." if keeping
                    else " kubetray starts forwarding once the file is fixed.")
        self._bus.publish(Event(EventKind.FAILED, message + tail,
                                context=self.effective.name if self.effective else None))

    async def _start_run(self, effective: EffectiveContext, previous: EffectiveContext | None, stopped: int) -> None:
        credentials = Credentials(self.paths, effective.name, self._stored_token)
        try:
            access = await asyncio.to_thread(credentials.load)
        except KubetrayError as exc:
            credentials.close()
            self._problem(exc.message, keeping=False)
            return
        plan = self._plan(effective)
        if previous is not None and previous.fingerprint != effective.fingerprint:
            where = "" if previous.name != effective.name else " (its cluster, user or namespace changed)"
            self._bus.publish(Event(
                EventKind.CONTEXT,
                f"The kubeconfig context changed from {previous.name} to {effective.name}{where}: "
                f"kubetray stopped {stopped} tunnel{'s' if stopped != 1 else ''} and starts "
                f"{len(plan.rules)} for {effective.name}"
                f"{' plus what automatic forwarding finds' if plan.auto is not None else ''}.",
                context=effective.name,
                previous_context=previous.name,
                namespace=effective.namespace,
            ))
        run = ContextRun(access, credentials, plan, self._bus, self._connect_timeout, self._memory, self.switches)
        self.run = run
        await run.start()

    def _plan(self, effective: EffectiveContext) -> RunPlan:
        plan = self._plan_for(effective)
        return plan if isinstance(plan, RunPlan) else RunPlan(tuple(plan))

    async def _stop_run(self) -> None:
        run, self.run = self.run, None
        if run is not None:
            await run.stop()

    async def reload_rules(self) -> None:
        """The rules file changed: give the running context its new rules."""
        async with self._lock:
            if self.run is not None and self.effective is not None:
                await self.run.apply_rules(self._plan(self.effective))

    async def set_paused(self, paused: bool) -> None:
        """Pause all (listeners closed, ports freed) or resume all; kept across context switches."""
        async with self._lock:
            self.switches.paused = paused
            if self.run is not None:
                await self.run.switches_changed()

    async def set_enabled(self, tid: str, enabled: bool) -> None:
        """Stop or start one tunnel; it stays stopped until started again, in this context."""
        async with self._lock:
            if enabled:
                self.switches.disabled.discard(tid)
            else:
                self.switches.disabled.add(tid)
            if self.run is not None:
                await self.run.switches_changed()

    async def restart(self, tid: str) -> bool:
        async with self._lock:
            return self.run is not None and await self.run.restart(tid)

    def network_changed(self) -> None:
        """The machine woke up or its network changed: every context heals at once."""
        if self.run is not None:
            self.run.network_changed()

    def views(self) -> list[TunnelView]:
        return self.run.views() if self.run else []

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

Pinned contexts (`pinned: true` in the rules file) forward the rules under their own entry
whatever the current context is: one ContextRun per context, each with its own API connections
and credentials. A context that is both pinned and current has ONE run, whose plan is its pinned
rules plus everything else that applies to the current context (top-level rules, automatic
forwarding). Switching to it grows that run's plan and switching away shrinks it back
(ContextRun.set_plan), so its pinned tunnels never restart and keep their connections. A pinned
context whose kubeconfig entry disappears is stopped, with one `failed` event, and started again
when the entry is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
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
# The pinned contexts and the rules under each one's own entry, in the rules file's order.
PinnedFor = Callable[[], Mapping[str, Sequence[Rule]]]


@dataclass(frozen=True)
class _Reading:
    """One reading of the kubeconfig: the effective context and where its connections go.

    `route` is finer than nothing and coarser than the fingerprint: when it changes the tunnels
    lead somewhere else and the context is switched; when only the fingerprint changes (the
    namespace, a token, a certificate) the running tunnels stay.
    """

    effective: EffectiveContext
    route: tuple[str, ...]


@dataclass
class _Running:
    """A running context: its run and the reading it was started (or last updated) for."""

    run: ContextRun
    effective: EffectiveContext
    route: tuple[str, ...]


class _UnknownContextFlag(KubetrayError):
    """--context names a context the kubeconfig does not have: the flag, not the file, is wrong."""


def _unusable(name: str, problem: str) -> str:
    return f"Context {name} is pinned in the rules file, but kubetray cannot use it: {problem}"


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
        pinned_for: PinnedFor | None = None,
    ) -> None:
        self.paths = tuple(paths)
        self.effective: EffectiveContext | None = None  # the current context, as last read
        self._runs: dict[str, _Running] = {}  # every running context: the current one and the pinned ones
        self._bus = bus
        self._plan_for = plan_for
        self._pinned_for = pinned_for or dict
        self._memory = port_memory
        self._stored_token = stored_token
        self._fixed = pinned_context  # --context: the current context, whatever the kubeconfig says
        self._connect_timeout = connect_timeout
        self._lock = asyncio.Lock()
        self._last_problem: str | None = None
        self._route: tuple[str, ...] | None = None  # of the current context (see _Reading)
        self._on_change = on_change or (lambda: None)
        self.switches = Switches()
        self.contexts: tuple[str, ...] = ()  # every context in the kubeconfig, for the tray's switch menu
        self.problem: str | None = None  # why the kubeconfig cannot be used right now, if it cannot
        self._told_missing: dict[str, str] = {}  # pinned context -> why it cannot run, as last told
        self._closed = False  # serve() has ended: a late command must not start tunnels again

    @property
    def run(self) -> ContextRun | None:
        """The current context's run (which also carries its pinned rules when it is pinned)."""
        running = self._runs.get(self.effective.name) if self.effective is not None else None
        return running.run if running is not None else None

    @property
    def runs(self) -> tuple[ContextRun, ...]:
        """Every running context, the current one first."""
        current = self.run
        return ((current,) if current else ()) + tuple(r.run for r in self._runs.values() if r.run is not current)

    @property
    def pinned(self) -> tuple[str, ...]:
        """The contexts the rules file pins, forwarding or not."""
        return tuple(self._pinned_for())

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
                await self._stop_all_runs()
                self._closed = True

    async def _follow(self, watcher: FileWatcher) -> None:
        async for changed in watcher.changes():
            log.debug("kubeconfig changed: %s", ", ".join(str(p) for p in sorted(changed)))
            try:
                await self.refresh()
            except Exception as exc:  # following must outlive any one bad reading
                log.exception("following the kubeconfig failed")
                self._bus.publish(Event(EventKind.FAILED, f"kubetray could not apply a kubeconfig change: {exc}. "
                                        "It keeps watching the file.",
                                        context=self.effective.name if self.effective else None))

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
        wanted = self._wanted_pinned()
        try:
            reading = await asyncio.to_thread(self._read)
        except _UnknownContextFlag as exc:
            keeping = self.run is not None
            self._problem(exc.message, keeping, " kubetray keeps the current tunnels until it is back." if keeping
                          else " kubetray starts forwarding if a context of that name is added; otherwise "
                               "start kubetray again with --context set to one of those.")
            return
        except KubetrayError as exc:
            self._problem(exc.message, keeping=self.run is not None)
            return
        self._last_problem = self.problem = None
        pinned = await asyncio.to_thread(self._read_pinned, tuple(wanted))
        await self._follow_current(reading, pinned, wanted, force)
        await self._reconcile_pinned(pinned, wanted)

    async def _follow_current(self, reading: _Reading, pinned: Mapping[str, _Reading | str],
                              wanted: Mapping[str, tuple[Rule, ...]], force: bool) -> None:
        effective = reading.effective
        current = self.run
        if not force and current is not None and self.effective is not None:
            if effective.fingerprint == self.effective.fingerprint:
                return
            if reading.route == self._route:
                await self._change_in_place(current, self.effective, effective)
                self._runs[effective.name].effective = effective
                return
        previous = self.effective
        stopped, kept = await self._leave(previous, effective.name, pinned, wanted)
        self.effective = effective
        self._route = reading.route
        await self._enter(reading, previous, stopped, kept, wanted, force)

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
        if merged is not None and self._fixed is not None and self._fixed not in merged.contexts:
            files = ", ".join(str(path) for path in merged.files)
            known = ", ".join(sorted(merged.contexts)) or "none"
            raise _UnknownContextFlag(
                f"The context {self._fixed!r} named by --context does not exist in the kubeconfig "
                f"{files} (it has: {known})."
            )
        effective = read_effective_context(self.paths, self._fixed)
        return _Reading(effective, _route(effective, merged))

    def _read_pinned(self, names: Sequence[str]) -> dict[str, _Reading | str]:
        """In a worker thread: each pinned context's reading, or why it cannot run now."""
        if not names:
            return {}
        try:
            merged = merged_kubeconfig(self.paths)
        except KubetrayError as exc:
            return {name: _unusable(name, exc.message) for name in names}
        found: dict[str, _Reading | str] = {}
        for name in names:
            if name not in merged.contexts:
                files = ", ".join(str(path) for path in merged.files)
                found[name] = (f"Context {name} is pinned in the rules file, but the kubeconfig ({files}) "
                               "has no context of that name.")
                continue
            try:
                effective = read_effective_context(self.paths, name)
            except KubetrayError as exc:
                found[name] = _unusable(name, exc.message)
                continue
            found[name] = _Reading(effective, _route(effective, merged))
        return found

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

    # The current context

    async def _leave(self, previous: EffectiveContext | None, coming: str, pinned: Mapping[str, _Reading | str],
                     wanted: Mapping[str, tuple[Rule, ...]]) -> tuple[int, int]:
        """Stop what the current context forwards as current, before the next one starts (its
        ports may be wanted again). A pinned context keeps its pinned tunnels running.
        Returns (tunnels stopped, tunnels kept)."""
        if previous is None or previous.name not in self._runs:
            return 0, 0
        running = self._runs[previous.name]
        before = len(running.run.forwarders)
        reading = pinned.get(previous.name)
        if previous.name != coming and isinstance(reading, _Reading) and reading.route == running.route:
            await running.run.set_plan(RunPlan(wanted[previous.name]))
            kept = len(running.run.forwarders)
            return before - kept, kept
        if previous.name != coming:
            await self._stop(previous.name)
        # else it leads somewhere else now, or a restart was asked for: _enter starts it afresh
        return before, 0

    async def _enter(self, reading: _Reading, previous: EffectiveContext | None, stopped: int, kept: int,
                     wanted: Mapping[str, tuple[Rule, ...]], force: bool) -> None:
        effective = reading.effective
        plan = self._current_plan(effective, wanted)
        running = self._runs.get(effective.name)
        if running is not None and (force or running.route != reading.route):
            await self._stop(effective.name)  # leads somewhere else now, or asked to start afresh
            running = None
        already = len(running.run.forwarders) if running is not None else 0

        def announce() -> None:
            if previous is None or previous.fingerprint == effective.fingerprint:
                return
            where = "" if previous.name != effective.name else " (its cluster, user or namespace changed)"
            kept_text = (f" (it keeps forwarding the {kept} pinned tunnel{'s' if kept != 1 else ''} of "
                         f"{previous.name})" if kept and previous.name != effective.name else "")
            starts = f"starts {len(plan.rules)} for {effective.name}" + (
                f" ({already} of them pinned and already running)" if already else "")
            self._bus.publish(Event(
                EventKind.CONTEXT,
                f"The kubeconfig context changed from {previous.name} to {effective.name}{where}: "
                f"kubetray stopped {stopped} tunnel{'s' if stopped != 1 else ''}{kept_text} and {starts}"
                f"{' plus what automatic forwarding finds' if plan.auto is not None else ''}.",
                context=effective.name,
                previous_context=previous.name,
                namespace=effective.namespace,
            ))
        if running is not None:
            announce()
            running.effective, running.route = effective, reading.route
            await running.run.set_plan(plan)
            return
        await self._start(reading, plan, announce)

    def _current_plan(self, effective: EffectiveContext, wanted: Mapping[str, tuple[Rule, ...]]) -> RunPlan:
        """What the current context forwards; a pinned context's own rules win for their targets,
        so growing its run to the current plan leaves its pinned tunnels as they are."""
        plan = self._plan(effective)
        own = wanted.get(effective.name)
        if not own:
            return plan
        targets = {rule.key for rule in own}
        return replace(plan, rules=(*own, *(rule for rule in plan.rules if rule.key not in targets)))

    def _plan(self, effective: EffectiveContext) -> RunPlan:
        plan = self._plan_for(effective)
        return plan if isinstance(plan, RunPlan) else RunPlan(tuple(plan))

    # Running contexts

    async def _start(self, reading: _Reading, plan: RunPlan,
                     announce: Callable[[], None] = lambda: None) -> ContextRun | None:
        """Load the context's credentials, then `announce` and start its run; None if they cannot
        be loaded (said once)."""
        effective = reading.effective
        credentials = Credentials(self.paths, effective.name, self._stored_token)
        try:
            access = await asyncio.to_thread(credentials.load)
        except KubetrayError as exc:
            credentials.close()
            if self.effective is not None and effective.name == self.effective.name:
                self._problem(exc.message, keeping=False)
            else:
                self._tell_missing(effective.name, _unusable(effective.name, exc.message), 0)
            return None
        announce()
        name = effective.name

        def elsewhere(address: str) -> set[int]:
            return set().union(*(r.run.held_ports(address) for n, r in self._runs.items() if n != name))

        run = ContextRun(access, credentials, plan, self._bus, self._connect_timeout, self._memory, self.switches,
                         taken_elsewhere=elsewhere)
        self._runs[name] = _Running(run, effective, reading.route)
        await run.start()
        return run

    async def _stop(self, name: str) -> None:
        running = self._runs.pop(name, None)
        if running is not None:
            await running.run.stop()

    async def _stop_all_runs(self) -> None:
        for name in list(self._runs):
            await self._stop(name)

    def _wanted_pinned(self) -> dict[str, tuple[Rule, ...]]:
        """The pinned contexts that have rules to forward."""
        return {name: tuple(rules) for name, rules in self._pinned_for().items() if rules}

    async def _reconcile_pinned(self, pinned: Mapping[str, _Reading | str],
                                wanted: Mapping[str, tuple[Rule, ...]]) -> None:
        """Start, update and stop the runs of pinned contexts that are not the current one."""
        current = self.effective.name if self.effective is not None else None
        for name in [n for n in self._runs if n != current and n not in wanted]:
            log.info("context %s is no longer pinned; kubetray stops its tunnels", name)
            await self._stop(name)
        for name in [n for n in self._told_missing if n not in wanted]:
            del self._told_missing[name]
        for name, rules in wanted.items():
            if name == current:
                continue  # the current run carries them (_current_plan)
            reading = pinned.get(name)
            running = self._runs.get(name)
            if not isinstance(reading, _Reading):
                count = len(running.run.forwarders) if running is not None else 0
                await self._stop(name)
                self._tell_missing(name, reading or _unusable(name, "it could not be read."), count)
                continue
            if running is not None and running.route != reading.route:
                await self._stop(name)  # it leads to another cluster, server or user now
                running = None
            if running is None:
                if await self._start(reading, RunPlan(rules)) is not None:
                    self._told_missing.pop(name, None)
                continue
            self._told_missing.pop(name, None)
            if running.effective.fingerprint != reading.effective.fingerprint:
                running.run.credentials.invalidate()
                running.effective = reading.effective
            await running.run.set_plan(RunPlan(rules))

    def _tell_missing(self, name: str, why: str, stopped: int) -> None:
        """Say once why pinned context `name` cannot run (`why` is a sentence naming it)."""
        if self._told_missing.get(name) == why:
            return
        self._told_missing[name] = why
        what = (f"kubetray stopped its {stopped} tunnel{'s' if stopped != 1 else ''} and starts them again"
                if stopped else "kubetray starts its tunnels")
        self._bus.publish(Event(
            EventKind.FAILED,
            f"{why} {what} once the context can be used.",
            context=name,
        ))

    # Commands

    async def reload_rules(self) -> None:
        """The rules file changed: give the running contexts their new rules; start and stop the
        runs of contexts pinned or unpinned."""
        async with self._lock:
            if self._closed:
                return
            wanted = self._wanted_pinned()
            pinned = await asyncio.to_thread(self._read_pinned, tuple(wanted))
            current = self.run
            if current is not None and self.effective is not None:
                await current.apply_rules(self._current_plan(self.effective, wanted))
            await self._reconcile_pinned(pinned, wanted)

    async def restart_context(self, name: str) -> None:
        """Start a pinned context afresh (a token was stored for it); the current one: refresh(force=True)."""
        async with self._lock:
            if self._closed or (self.effective is not None and self.effective.name == name):
                return
            await self._stop(name)
            wanted = self._wanted_pinned()
            await self._reconcile_pinned(await asyncio.to_thread(self._read_pinned, tuple(wanted)), wanted)

    async def set_paused(self, paused: bool) -> None:
        """Pause all (listeners closed, ports freed) or resume all; kept across context switches."""
        async with self._lock:
            self.switches.paused = paused
            for run in self.runs:
                await run.switches_changed()

    async def set_enabled(self, tid: str, enabled: bool) -> None:
        """Stop or start one tunnel; it stays stopped until started again, in this context."""
        async with self._lock:
            if enabled:
                self.switches.disabled.discard(tid)
            else:
                self.switches.disabled.add(tid)
            for run in self.runs:
                await run.switches_changed()

    async def restart(self, tid: str) -> bool:
        async with self._lock:
            for run in self.runs:
                if await run.restart(tid):
                    return True
            return False

    def network_changed(self) -> None:
        """The machine woke up or its network changed: every context heals at once."""
        for run in self.runs:
            run.network_changed()

    def views(self) -> list[TunnelView]:
        """Every tunnel, the current context's first; each view names its context."""
        return [view for run in self.runs for view in run.views()]

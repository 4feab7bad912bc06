"""The app without its face: one object that runs the engine for the tray and the terminal.

`Controller.serve()` loads the rules, follows the kubeconfig (Supervisor) and the rules file, and
runs until stopped. Its commands (pause, stop or restart a tunnel, switch context, reload, store a
token) are coroutines on the engine's loop; the tray calls them through `EngineThread.submit`.
After anything changes it hands a fresh `Snapshot` to `on_snapshot`, at most once per loop turn,
so the UI renders state it is given and never asks the engine while a menu is opening.
A wake from sleep or a network change (platform/power) restarts every watch and session at once.

It joins config, engine and platform, so it sits above them, beside `startup`; it imports no Qt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trayapp.config.problems import Problem
from trayapp.config.rules import RuleSet, load_rules
from trayapp.engine.browse import Browser, Update
from trayapp.engine.events import EventBus
from trayapp.engine.filewatch import FileWatcher
from trayapp.engine.kube import EffectiveContext, set_current_context
from trayapp.engine.portmemory import PortMemory
from trayapp.engine.runtime import RunPlan, TunnelView
from trayapp.engine.supervisor import Supervisor
from trayapp.errors import KubetrayError
from trayapp.model import Event, EventKind, Transport, is_loopback, listen_text, tunnel_url
from trayapp.platform.power import NetworkWatcher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineOptions:
    kubeconfig_paths: tuple[Path, ...]
    rules_path: Path | None = None  # None: the per-user rules file
    pinned_context: str | None = None  # --context: follow no kubeconfig switches
    connect_timeout: float = 10.0
    port_memory: PortMemory | None = None
    stored_token: Callable[[str], str | None] | None = None
    store_token: Callable[[str, str], None] | None = None
    watch_rules: bool = True
    # --transport: what carries connections for rules without their own `transport:`.
    transport: Transport = Transport.AUTO


@dataclass(frozen=True)
class Snapshot:
    """Everything the tray shows, as of one moment."""

    context: str | None = None
    namespace: str | None = None
    contexts: tuple[str, ...] = ()
    pinned: bool = False  # the context was given on the command line; switching is not offered
    # Contexts the rules file pins (`pinned: true`): they forward whatever the current context is.
    pinned_contexts: tuple[str, ...] = ()
    tunnels: tuple[TunnelView, ...] = ()
    paused: bool = False
    problem: str | None = None  # why the kubeconfig cannot be used, when it cannot
    rules_path: Path | None = None
    kubeconfig_paths: tuple[Path, ...] = ()  # the files this instance follows
    recent: tuple[Event, ...] = field(default=(), compare=False)

    def tunnel(self, tunnel_id: str | None) -> TunnelView | None:
        return next((view for view in self.tunnels if view.tunnel_id == tunnel_id), None)


class Controller:
    def __init__(
        self,
        options: EngineOptions,
        bus: EventBus,
        on_snapshot: Callable[[Snapshot], None] | None = None,
    ) -> None:
        self.options = options
        self.bus = bus
        self._on_snapshot = on_snapshot
        self.ruleset: RuleSet = RuleSet(path=None)
        self._rules_good = False  # self.ruleset came from a file that could be used as a whole
        self._told_broken: str | None = None
        self.supervisor = Supervisor(
            options.kubeconfig_paths, bus, self._plan_for, options.pinned_context, options.connect_timeout,
            options.port_memory, options.stored_token, on_change=self.changed,
            pinned_for=lambda: self.ruleset.pinned_plans(),
        )
        self._push_scheduled = False
        self.mode = "headless"
        # The tray answers what only it knows (show the menu, what the menu holds).
        self.ui_requests: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Traffic counters change no tunnel's state: the tunnels window takes them from the bus.
        bus.subscribe(lambda event: None if event.kind == EventKind.STATS else self.changed())

    # Running

    async def serve(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._load_rules()
        watcher = None
        watching = None
        if self.options.watch_rules and self.rules_path is not None:
            watcher = FileWatcher([self.rules_path])
            await watcher.start()
            watching = self._loop.create_task(self._follow_rules(watcher), name="controller:rules")

        async def follow_network() -> None:
            try:
                async for change in NetworkWatcher().changes():
                    await self.network_changed(change.text)
            except Exception:  # kubetray works without these signals; its own checks remain
                log.exception("listening for sleep and network changes failed")

        network = self._loop.create_task(follow_network(), name="controller:network")
        try:
            await self.supervisor.serve(stop)
        finally:
            # Cancelling also ends a connect to a system bus that hangs: stopping never waits on it.
            network.cancel()
            await asyncio.gather(network, return_exceptions=True)
            if watching is not None:
                watching.cancel()
                await asyncio.gather(watching, return_exceptions=True)
            if watcher is not None:
                await watcher.aclose()

    @property
    def rules_path(self) -> Path | None:
        return self.ruleset.path or self.ruleset.searched or self.options.rules_path

    def _load_rules(self) -> bool:
        """Read the rules file; False when it cannot be used as a whole and the last good rules stay.

        A file caught half-saved, or with one line indented wrong, is not YAML at all: taking it
        as "no rules" would stop every tunnel. As with a broken kubeconfig, kubetray keeps what it
        runs, says so once, and takes the file again as soon as it can be read.
        """
        ruleset = load_rules(self.options.rules_path)
        if not ruleset.readable and self._rules_good:
            self._tell_broken(ruleset, keeping=True)
            return False
        self.ruleset = ruleset
        self._rules_good = ruleset.readable
        if not ruleset.readable:  # at start-up there is nothing good to keep
            self._tell_broken(ruleset, keeping=False)
            return True
        self._told_broken = None
        for problem in ruleset.problems:
            self.bus.publish(Event(EventKind.FAILED, f"{problem} {_consequence(problem)}",
                                   context=_context_of(problem)))
        for warning in ruleset.warnings:
            # `kubetray check` shows these; the rules run as written (a shared port falls back
            # with its own `fallback` event), so they are not events.
            log.info("%s", warning)
        return True

    def _tell_broken(self, ruleset: RuleSet, keeping: bool) -> None:
        problem = " ".join(str(p) for p in ruleset.problems) or f"{ruleset.searched} cannot be read."
        if problem == self._told_broken:
            return  # one event per problem, however often the file is saved meanwhile
        self._told_broken = problem
        count = len(self.supervisor.views())
        if keeping and count:
            tail = (f"kubetray keeps the {count} tunnel{'s' if count != 1 else ''} of the last good "
                    "version until the file is fixed.")
        elif keeping:
            tail = "kubetray keeps the rules of the last good version until the file is fixed."
        else:
            tail = "kubetray starts the file's rules once it is fixed."
        self.bus.publish(Event(EventKind.FAILED, f"{problem} {tail}"))

    def _plan_for(self, effective: EffectiveContext) -> RunPlan:
        auto = self.ruleset.auto if self.ruleset.auto.enabled else None
        rules = self.ruleset.rules_for(effective.name)
        if not rules and auto is None:
            where = self.rules_path or "the rules file"
            self.bus.publish(Event(
                EventKind.WAITING, f"No rules apply to context {effective.name!r} in {where} "
                "and automatic forwarding is off; kubetray has nothing to forward there.",
                context=effective.name))
        return RunPlan(rules, auto, self.options.transport)

    async def _follow_rules(self, watcher: FileWatcher) -> None:
        async for _changed in watcher.changes():
            try:
                await self.reload_rules()
            except Exception:  # following must outlive any one bad reading
                log.exception("applying the changed rules file failed")

    # Commands (coroutines on the engine loop)

    async def reload_rules(self) -> None:
        if self._load_rules():
            await self.supervisor.reload_rules()
        self.changed()

    async def pause_all(self) -> None:
        await self.supervisor.set_paused(True)
        self.changed()

    async def resume_all(self) -> None:
        await self.supervisor.set_paused(False)
        self.changed()

    async def set_enabled(self, tunnel_id: str, enabled: bool) -> None:
        await self.supervisor.set_enabled(tunnel_id, enabled)
        self.changed()

    async def restart(self, tunnel_id: str) -> None:
        await self.supervisor.restart(tunnel_id)
        self.changed()

    async def switch_context(self, name: str) -> Path | None:
        """Write current-context as `kubectl config use-context` does; the file watch does the rest.

        A failure is published as an event (the one report of it) and None is returned.
        """
        try:
            return await asyncio.to_thread(set_current_context, self.options.kubeconfig_paths, name)
        except KubetrayError as exc:
            current = self.supervisor.effective.name if self.supervisor.effective else None
            stays = f" kubetray stays on context {current}." if current else ""
            self.bus.publish(Event(EventKind.FAILED, f"kubetray could not switch to context {name!r}: "
                                   f"{exc.message}{stays}", context=current))
            return None

    async def browse(self, on_update: Callable[[Update], None], namespace: str | None = None) -> Browser | None:
        """The "Forward…" window's view of the current context (engine/browse.py); None without one."""
        run, effective = self.supervisor.run, self.supervisor.effective
        if run is None or effective is None:
            return None
        browser = Browser(run.cache.api, on_update)
        browser.start()
        await browser.show(namespace or effective.namespace)
        return browser

    async def network_changed(self, why: str) -> None:
        """Sleep, wake or a network change (platform/power): restart every watch and session.

        Only logged: the tunnels' own events say what changed for the user (a moved pod, a
        reconnect), and a wake that changed nothing should not show up in the tray at all.
        """
        log.info("%s: kubetray restarts every watch and port-forward session", why)
        self.supervisor.network_changed()
        self.changed()

    async def set_token(self, context: str, token: str) -> None:
        """Store a context's token in the OS keyring and reconnect that context with it."""
        if self.options.store_token is None:
            raise KubetrayError("This kubetray has no keyring to store tokens in.")
        await asyncio.to_thread(self.options.store_token, context, token)
        if self.supervisor.effective is not None and self.supervisor.effective.name == context:
            await self.supervisor.refresh(force=True)
        elif context in self.supervisor.pinned:
            await self.supervisor.restart_context(context)

    async def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """A request from another kubetray process (platform/instance.py)."""
        if request.get("request") == "status":
            return {"pid": os.getpid(), "mode": self.mode, **snapshot_json(self.snapshot())}
        if self.ui_requests is not None:
            return await self.ui_requests(request)
        return {"error": f"unknown request {request.get('request')!r}"}

    # State

    def changed(self) -> None:
        """Something changed: push one snapshot at the end of this loop turn, however many changes came."""
        if self._on_snapshot is None or self._push_scheduled:
            return
        loop = self._loop
        if loop is None:
            with contextlib.suppress(RuntimeError):
                loop = asyncio.get_running_loop()
        if loop is None:
            return
        self._push_scheduled = True
        loop.call_soon(self._push)

    def _push(self) -> None:
        self._push_scheduled = False
        if self._on_snapshot is not None:
            self._on_snapshot(self.snapshot())

    def snapshot(self) -> Snapshot:
        effective = self.supervisor.effective
        return Snapshot(
            context=effective.name if effective else None,
            namespace=effective.namespace if effective else None,
            contexts=self.supervisor.contexts,
            pinned=self.options.pinned_context is not None,
            pinned_contexts=self.supervisor.pinned,
            tunnels=tuple(self.supervisor.views()),
            paused=self.supervisor.switches.paused,
            problem=self.supervisor.problem,
            rules_path=self.rules_path,
            kubeconfig_paths=self.options.kubeconfig_paths,
            recent=tuple(self.bus.history[-50:]),
        )


def _context_of(problem: Problem) -> str | None:
    """The context a rules-file problem is about: the one whose entry it is in, when that entry
    names a context rather than a glob; None for the file's top level."""
    match = _CONTEXT_FIELD.match(problem.field or "")
    return match.group(1) if match and not set("*?[") & set(match.group(1)) else None


_CONTEXT_FIELD = re.compile(r'contexts\["(.*?)"\]')


def _consequence(problem: Problem) -> str:
    """What kubetray did about one problem in a rules file it could read."""
    if problem.field and "portForward[" in problem.field:
        return "kubetray skipped that rule; the others work."
    return "kubetray ignored that part of the file; the rest works."


def tunnel_json(view: TunnelView, context: str | None) -> dict[str, Any]:
    """One tunnel for `status --json`; `context` is the one it forwards from (the view's own, else
    the given one). `listen` is where it listens as the user should read it
    (`localhost:5432`, `0.0.0.0:8080, open to your network`); `url` is set only where a browser
    can open the tunnel (model.Rule.is_http); `source` names the `auto:` source of an automatic one."""
    rule = view.rule
    port = view.local_port
    return {
        "id": view.tunnel_id,
        "context": view.context or context,
        "namespace": rule.namespace,
        "rule": rule.label,
        "resourceType": rule.resource_type.value,
        "resourceName": rule.resource_name,
        "port": rule.port,
        "address": rule.address,
        "state": view.state.value,
        "localPort": port,
        "listen": listen_text(rule.address, port) if port is not None else None,
        "openToNetwork": not is_loopback(rule.address),
        "url": tunnel_url(rule, port),
        "pod": view.pod,
        "reason": view.reason,
        "auto": rule.auto,
        "source": rule.source.value if rule.source else None,
        # The transport its connections use (spdy-ws, spdy, v4); null until kubetray settled on one.
        "transport": view.transport.value if view.transport else None,
        # What the rule or --transport asks for: auto, or the one forced.
        "transportChoice": rule.transport.value,
    }


def snapshot_json(snapshot: Snapshot) -> dict[str, Any]:
    """`kubetray status --json`: camelCase like the headless events."""
    return {
        "context": snapshot.context,
        "namespace": snapshot.namespace,
        "contexts": list(snapshot.contexts),
        "pinnedContexts": list(snapshot.pinned_contexts),
        "paused": snapshot.paused,
        "problem": snapshot.problem,
        "rulesPath": str(snapshot.rules_path) if snapshot.rules_path else None,
        "kubeconfigPaths": [str(path) for path in snapshot.kubeconfig_paths],
        "tunnels": [tunnel_json(view, snapshot.context) for view in snapshot.tunnels],
    }

"""One tunnel at work: its listener, its open connections, and the I/O its state machine asks for.

The listener is bound once and kept for the tunnel's life, whatever happens to the pods behind
it. Each accepted connection gets its own port-forward stream to the tunnel's current pod; a
connection that arrives while no pod is ready waits for one, up to `connect_timeout`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Container

from trayapp.engine.aio import deadline as time_limit
from trayapp.engine.backoff import Backoff
from trayapp.engine.cache import ClusterCache
from trayapp.engine.listeners import Listeners
from trayapp.engine.ports import bind_listener, refusal_for
from trayapp.engine.relay import READ_SIZE, relay
from trayapp.engine.resolve import Target, Unresolved, kinds_needed, resolve
from trayapp.engine.tunnel import CloseConnections, Command, Publish, TargetChanged, TunnelMachine
from trayapp.errors import ApiError, ApiUnreachable, AuthError, KubetrayError, NotFound, PortError
from trayapp.model import Event, Rule, TunnelState

log = logging.getLogger(__name__)


class Forwarder:
    def __init__(
        self,
        rule: Rule,
        context: str,
        tunnel_id: str,
        cache: ClusterCache,
        publish: Callable[[Event], None],
        taken_ports: Callable[[str], Container[int]],
        connect_timeout: float = 10.0,
    ) -> None:
        self.rule = rule
        self.machine = TunnelMachine(rule, context, tunnel_id)
        self._cache = cache
        self._publish = publish
        self._taken_ports = taken_ports
        self._connect_timeout = connect_timeout
        self._server: Listeners | None = None
        self._server_task: asyncio.Task[None] | None = None
        self._target_changed = asyncio.Event()
        self._retry = Backoff(initial=0.1, cap=1.0)
        self._connections: dict[asyncio.Task[None], str] = {}
        self._kinds = kinds_needed(rule.resource_type)

    @property
    def state(self) -> TunnelState:
        return self.machine.state

    @property
    def local_port(self) -> int | None:
        return self.machine.local_port

    @property
    def tunnel_id(self) -> str:
        return self.machine.tunnel_id

    async def start(self) -> None:
        if self.rule.requested_local_port is not None:
            self._listen(self.rule.requested_local_port)
        self._cache.subscribe(self, self._kinds, self.rule.namespace)
        self.cluster_changed()

    def _listen(self, requested: int | None) -> None:
        # An automatic rule (made from what a cluster object says) skips privileged ports and the
        # ports the user's rules name, as it would skip a busy port.
        try:
            bound = bind_listener(self.rule.address, requested, self._taken_ports(self.rule.address),
                                  refusal_for(self.rule))
        except PortError as exc:
            self._run(self.machine.cluster_failed(exc.message))
            return
        loop = asyncio.get_running_loop()
        self._server_task = loop.create_task(self._serve(bound.socks), name=f"tunnel:{self.tunnel_id}:listen")
        self._run(self.machine.listening(bound.port, bound.requested, bound.fell_back, bound.reasons))

    async def _serve(self, socks: tuple[socket.socket, ...]) -> None:
        # One server per socket (127.0.0.1 and ::1 for the default address), closed as one.
        self._server = await Listeners.serve(socks, self._accepted, READ_SIZE)

    # ClusterCache subscriber
    def cluster_changed(self) -> None:
        if self.machine.state == TunnelState.STOPPED:
            return
        if not self._cache.synced(self._kinds, self.rule.namespace):
            return
        prefer = self.machine.target.pod if self.machine.target else None
        result: Target | Unresolved = resolve(self.rule, self._cache, prefer=prefer)
        self._run(self.machine.resolved(result))
        if isinstance(result, Target) and self.machine.local_port is None and self._server is None:
            self._listen(result.port)

    def cluster_failed(self, error: KubetrayError) -> None:
        if self.machine.state == TunnelState.STOPPED:
            return
        if isinstance(error, AuthError):
            # The context run tells the user once for the whole context; the tunnel only shows it.
            self.machine.cluster_failed(f"The cluster refused kubetray's credentials. ({error.message})")
        elif self.machine.target is None:
            self._run(self.machine.resolved(Unresolved(f"{error.message} kubetray keeps retrying.")))

    def _run(self, commands: list[Command]) -> None:
        for command in commands:
            if isinstance(command, Publish):
                self._publish(command.event)
            elif isinstance(command, TargetChanged):
                # Wake every waiting connection once; later waiters wait on a fresh event.
                self._target_changed.set()
                self._target_changed = asyncio.Event()
            elif isinstance(command, CloseConnections):
                for task, pod in list(self._connections.items()):
                    if pod == command.pod:
                        task.cancel()

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._connect_timeout
        avoid: Target | None = None  # a pod that just refused: wait for the cluster to move on
        attempt = 0
        self._connections[task] = ""  # known from the start, so stop() also ends a waiting connection
        try:
            while True:
                target = await self._wait_for_target(deadline, avoid)
                if target is None:
                    log.info("%s: closed a connection: no ready pod within %.0f s (%s)",
                             self.rule.label, self._connect_timeout, self.machine.reason)
                    return
                self._connections[task] = target.pod
                try:
                    ws = await self._cache.api.dial_portforward(target.namespace, target.pod, target.port)
                except (NotFound, ApiUnreachable) as exc:
                    # The pod died before its watch event reached us, or the API server is
                    # restarting: retry on the replacement (or once it answers) until the deadline.
                    log.debug("%s: dialing %s failed (%s); retrying", self.rule.label, target.pod, exc)
                    if isinstance(exc, NotFound) or exc.status == 400:
                        avoid = target
                    else:
                        await asyncio.sleep(min(self._retry.delay(attempt), max(0.0, deadline - loop.time())))
                    attempt += 1
                    if loop.time() >= deadline:
                        self._run(self.machine.connection_failed(target.pod, exc.message))
                        return
                    continue
                except ApiError as exc:
                    self._run(self.machine.connection_failed(target.pod, exc.message))
                    return
                except Exception as exc:  # a library error we did not translate: this connection only
                    log.warning("%s: dialing pod %s failed", self.rule.label, target.pod, exc_info=True)
                    self._run(self.machine.connection_failed(target.pod, f"{type(exc).__name__}: {exc}"))
                    return
                result = await relay(reader, writer, ws, target.port)
                if result.error:
                    self._run(self.machine.connection_failed(target.pod, result.error))
                return
        except asyncio.CancelledError:
            pass
        finally:
            self._connections.pop(task, None)
            writer.close()

    async def _wait_for_target(self, deadline: float, avoid: Target | None) -> Target | None:
        loop = asyncio.get_running_loop()
        while True:
            if self.machine.state == TunnelState.STOPPED:
                return None
            target = self.machine.target
            if target is not None and target != avoid:
                return target
            changed = self._target_changed
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                async with time_limit(remaining):
                    await changed.wait()
            except asyncio.TimeoutError:
                return None

    def network_changed(self) -> None:
        """After sleep or a network change: open connections rode a path that may be dead for good.

        They are ended now, so their clients see a closed connection instead of a silent one and
        connect again; the listener stays, and new connections dial on the new path.
        """
        for task, pod in list(self._connections.items()):
            if pod:  # one still waiting for a pod has no path yet: it keeps waiting
                task.cancel()

    async def stop(self) -> None:
        self._cache.unsubscribe(self)
        self._run(self.machine.stopped())
        if self._server_task is not None:
            await asyncio.gather(self._server_task, return_exceptions=True)
        if self._server is not None:
            self._server.close()
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

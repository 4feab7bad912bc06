"""One tunnel at work: its listener, its open connections, and the I/O its state machine asks for.

The listener is bound once and kept for the tunnel's life, whatever happens to the pods behind
it. Each accepted connection gets its own connection to the tunnel's current pod from the tunnel's
Dialer (transport.py; which transport is negotiate.py's business); a connection that arrives
while no pod is ready waits for one, up to `connect_timeout`. The dialer is told when the tunnel
moves to a pod (`warm`, so a session is open before the first connection) and leaves it (`forget`).

Failures are sorted here, by type: an API server that does not answer (or answers 503/429) is an
outage the state machine tells once, and dials retry until `connect_timeout`; a pod the server
says is gone (404, or the kubelet's "failed to find sandbox") means kubetray's view is stale, so
the tunnel's kinds are listed again at once and the connection waits for the new pod, carrying
what it already sent when the pod never answered. A connection that breaks while the tunnel moves
off its pod (a rollout, a deletion) is part of that move, not a failure of its own.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Container
from dataclasses import replace

from trayapp.engine.aio import deadline as time_limit
from trayapp.engine.backoff import Backoff
from trayapp.engine.forward.listeners import Listeners
from trayapp.engine.forward.negotiate import Negotiator
from trayapp.engine.forward.ports import bind_listener, refusal_for
from trayapp.engine.forward.pump import LOCAL_FLUSH_TIMEOUT, READ_SIZE, close_local, relay
from trayapp.engine.forward.resolve import Target, Unresolved, kinds_needed, resolve
from trayapp.engine.forward.stats import TunnelCounter
from trayapp.engine.forward.transport import Dialer, TransportRefused
from trayapp.engine.forward.tunnel import (
    CloseConnections,
    Command,
    Publish,
    Relist,
    TargetChanged,
    TunnelMachine,
    Wakeup,
)
from trayapp.engine.kube import ClusterCache
from trayapp.errors import ApiError, ApiUnreachable, AuthError, KubetrayError, NotFound, PortError
from trayapp.model import Event, Rule, Transport, TunnelState

log = logging.getLogger(__name__)

# How long a connection that failed waits for the tunnel to move to another pod before the failure
# counts as the connection's own: in a rollout the kubelet's error can beat the watch event.
SETTLE = 2.0
# The kubelet's (CRI runtime's) words for a pod whose sandbox or container no longer exists.
_POD_GONE_TEXTS = ("failed to find sandbox", "not found", "no such container")


def server_away(error: KubetrayError) -> bool:
    """The API server did not answer, or asked us to come back later (503, 429)."""
    if isinstance(error, ApiError) and error.status in (429, 503):
        return True
    # A certificate kubetray refuses is an answer, and a problem that waiting does not fix: it is
    # reported with its own words, not as silence.
    return isinstance(error, ApiUnreachable) and not isinstance(error.__cause__, ssl.SSLCertVerificationError)


def pod_gone_text(text: str) -> bool:
    lowered = text.lower()
    return any(words in lowered for words in _POD_GONE_TEXTS)


def never_reached_text(text: str) -> bool:
    """The kubelet could not connect to the pod's port at all: nothing reached the program."""
    return "connection refused" in text.lower()


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
        dialer: Dialer | None = None,
    ) -> None:
        self.rule = rule
        # Without a dialer from the context run, the tunnel negotiates for itself (tests, tools).
        self._own_negotiator = Negotiator(cache.api) if dialer is None else None
        if self._own_negotiator is not None:
            dialer = self._own_negotiator.for_tunnel(rule.transport)
        assert dialer is not None
        self._dialer: Dialer = dialer
        self._warmed: tuple[str, str] | None = None  # the pod the dialer was told about
        self._told_transport: Transport | None = None  # the transport the log last named
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
        self._wakeup: asyncio.TimerHandle | None = None
        self.stats = TunnelCounter(context, tunnel_id, publish)  # connections and bytes, for the tunnels window

    @property
    def state(self) -> TunnelState:
        return self.machine.state

    @property
    def local_port(self) -> int | None:
        return self.machine.local_port

    @property
    def tunnel_id(self) -> str:
        return self.machine.tunnel_id

    @property
    def transport(self) -> Transport | None:
        """The transport this tunnel's connections use; None while AUTO has not settled yet."""
        transport = self._dialer.transport
        return None if transport == Transport.AUTO else transport

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
        elif server_away(error):
            now = asyncio.get_running_loop().time()
            self._run(self.machine.server_failed(self._server_name, now, from_watch=True, detail=error.message))
        elif self.machine.target is None:
            self._run(self.machine.resolved(Unresolved(f"{error.message} kubetray keeps retrying.")))

    @property
    def _server_name(self) -> str:
        return self._cache.api.access.server

    def _run(self, commands: list[Command]) -> None:
        for command in commands:
            if isinstance(command, Publish):
                self._publish(replace(command.event, transport=self.transport))
            elif isinstance(command, TargetChanged):
                self._point_dialer()
                # Wake every waiting connection once; later waiters wait on a fresh event.
                self._target_changed.set()
                self._target_changed = asyncio.Event()
            elif isinstance(command, CloseConnections):
                for task, pod in list(self._connections.items()):
                    if pod == command.pod:
                        task.cancel()
            elif isinstance(command, Wakeup):
                if self._wakeup is not None:
                    self._wakeup.cancel()
                self._wakeup = asyncio.get_running_loop().call_later(command.delay, self._woken)
            elif isinstance(command, Relist):
                self._cache.relist(self._kinds, self.rule.namespace)

    def _point_dialer(self) -> None:
        """Tell the dialer which pod the tunnel uses now, so its session is open ahead of time."""
        target = self.machine.target
        now = (target.namespace, target.pod) if target is not None else None
        if now == self._warmed:
            return
        if self._warmed is not None:
            self._dialer.forget(*self._warmed)
        self._warmed = now
        if now is not None:
            self._dialer.warm(*now)

    def _woken(self) -> None:
        self._wakeup = None
        commands = self.machine.wakeup(asyncio.get_running_loop().time())
        if any(isinstance(command, Publish) for command in commands):
            log.info("%s: %s", self.rule.label, self.machine.reason)
        self._run(commands)

    def _dial_failed(self, began: float, detail: str) -> None:
        now = asyncio.get_running_loop().time()
        self._run(self.machine.server_failed(self._server_name, now, from_watch=False, began=began, detail=detail))

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = ""  # known from the start, so stop() also ends a waiting connection
        reader, writer = self.stats.track(reader, writer)
        flush = LOCAL_FLUSH_TIMEOUT
        try:
            await self._connect_and_relay(task, reader, writer)
        except asyncio.CancelledError:
            flush = 0.0  # ended on purpose (stop, restart, new network): no waiting on the client
        except Exception:  # a bug in one connection must not reach asyncio's default handler
            log.exception("%s: a connection failed unexpectedly", self.rule.label)
        finally:
            self._connections.pop(task, None)
            self.stats.closed()
            await close_local(writer, flush)

    async def _connect_and_relay(
        self, task: asyncio.Task[None], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._connect_timeout
        avoid: Target | None = None  # a pod found gone or refusing: wait for the cluster to move on
        attempt = 0
        replay = b""  # what this connection already sent to a pod that turned out to be gone
        while True:
            target = await self._wait_for_target(deadline, avoid)
            if target is None:
                log.info("%s: closed a connection: no ready pod within %.0f s (%s)",
                         self.rule.label, self._connect_timeout, self.machine.reason)
                return
            self._connections[task] = target.pod
            began = loop.time()
            try:
                connection = await self._dialer.open(
                    target.namespace, target.pod, target.port, timeout=max(deadline - began, 0.1))
            except TransportRefused as exc:
                # The transport this tunnel must use (or every one kubetray speaks) is refused: a
                # setting to change, not something waiting fixes. Said once, shown by `status`.
                self._run(self.machine.cluster_failed(exc.message))
                return
            except ApiError as exc:
                if isinstance(exc, NotFound) or exc.status == 400:
                    # The pod died before its watch event reached us (or that watch is dead): ask
                    # the server again now, and wait for the replacement until the deadline.
                    log.debug("%s: pod %s is gone (%s)", self.rule.label, target.pod, exc.message)
                    avoid = target
                    self._run(self.machine.pod_gone(target))
                    continue
                if not server_away(exc):
                    self._run(self.machine.connection_failed(target.pod, exc.message))
                    return
                # Unreachable, restarting or busy (503/429): retry until the deadline.
                self._dial_failed(began, exc.message)
                delay = max(self._retry.delay(attempt), getattr(exc, "retry_after", None) or 0.0)
                attempt += 1
                if loop.time() + delay >= deadline:
                    log.info("%s: closed a connection: the API server did not answer within %.0f s (%s)",
                             self.rule.label, self._connect_timeout, exc.message)
                    return
                await asyncio.sleep(delay)
                continue
            except Exception:  # a library error we did not translate: this connection only
                log.warning("%s: dialing pod %s failed", self.rule.label, target.pod, exc_info=True)
                self._run(self.machine.connection_failed(
                    target.pod, "kubetray could not open a port-forward stream to it; its log has the details."))
                return
            self._run(self.machine.server_answered())
            if connection.transport != self._told_transport:
                self._told_transport = connection.transport
                log.info("%s: connections to pod %s go over %s", self.rule.label, target.pod,
                         connection.transport.value)
            result = await relay(reader, writer, connection, first=replay)
            if result.error is None:
                return
            error = result.error
            if result.never_reached and result.unanswered is not None:
                # The session carrying it died before the kubelet took the stream (a path that
                # died in sleep, a GOAWAY): nothing reached the pod, so send it again at once on
                # a new session (the dialer opens one), until the connect deadline.
                log.debug("%s: a connection did not reach pod %s (%s); sending it again",
                          self.rule.label, target.pod, error)
                replay = result.unanswered
                delay = self._retry.delay(attempt)
                attempt += 1
                if loop.time() + delay >= deadline:
                    self._run(self.machine.connection_failed(target.pod, error))
                    return
                await asyncio.sleep(delay)
                continue
            gone = pod_gone_text(error)
            # Whatever broke the connection may have taken the pod with it, and a watch that
            # is dead would never say so: ask the server once per pod.
            self._run(self.machine.pod_gone(target))
            if result.unanswered is not None and (gone or never_reached_text(error)):
                # The kubelet never reached the pod's port, so nothing was delivered and nothing
                # is lost: once the tunnel moves on (the pod is gone, or a rollout took it
                # away), carry this connection, and what it sent, to the new pod. (A connection
                # the pod dropped may have delivered a request: that is never sent twice.)
                until = deadline if gone else min(deadline, loop.time() + SETTLE)
                if await self._moved_from(target, until):
                    replay, avoid = result.unanswered, target
                    continue
            else:
                await close_local(writer)  # the client learns at once; the verdict can wait
                gone = gone or await self._moved_from(target, loop.time() + SETTLE)
            if gone:
                # The pod went away under the connection: a rollout or a deletion, which the
                # tunnel reports as such, not a failure of its own.
                log.info("%s: a connection to pod %s ended as the pod went away (%s)",
                         self.rule.label, target.pod, error.strip())
                return
            self._run(self.machine.connection_failed(target.pod, error))
            return

    async def _moved_from(self, target: Target, until: float) -> bool:
        """Wait until `until` for the tunnel to leave `target`; True if it did."""
        loop = asyncio.get_running_loop()
        while self.machine.target == target and self.machine.state != TunnelState.STOPPED:
            remaining = until - loop.time()
            if remaining <= 0:
                return False
            changed = self._target_changed
            try:
                async with time_limit(remaining):
                    await changed.wait()
            except TimeoutError:
                return False
        return self.machine.state != TunnelState.STOPPED

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
            except TimeoutError:
                return None

    def network_changed(self) -> None:
        """After sleep or a network change: open connections rode a path that may be dead for good.

        They are ended now, so their clients see a closed connection instead of a silent one and
        connect again; the listener stays, and new connections dial on the new path (the dialer
        drops the sessions it kept on the old one).
        """
        self._dialer.network_changed()
        for task, pod in list(self._connections.items()):
            if pod:  # one still waiting for a pod has no path yet: it keeps waiting
                task.cancel()

    async def stop(self) -> None:
        self._cache.unsubscribe(self)
        self.stats.stop()
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None
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
        if self._warmed is not None:
            self._dialer.forget(*self._warmed)
            self._warmed = None
        await self._dialer.aclose()
        if self._own_negotiator is not None:
            await self._own_negotiator.aclose()

"""One tunnel's state machine: resolution results and listener facts in, events and commands out.

Pure: it never touches a socket or reads the clock (callers pass `now`), and timers are commands
(Wakeup) the forwarder carries out, so every transition is tested as a transcript.
The forwarder (forwarder.py) feeds it and carries out the commands it returns.

An API server that stops answering is an outage: when it has not answered for a grace (a watch
that broke and comes right back is no outage) the tunnel says `waiting`, once per outage, and
keeps its listener and its last pod. The first answer ends it: `forwarding` again, or
`reconnected` when the pod changed meanwhile.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from trayapp.engine.forward.resolve import Target, Unresolved
from trayapp.model import Event, EventKind, Rule, TunnelState

log = logging.getLogger(__name__)

# Seconds the API server may stay silent before kubetray acts. A dial that failed starts a list
# at once and tells after one grace; a watch that failed gets one grace before kubetray lists
# again and one more for that list to answer, so a server restart that is over says nothing.
OUTAGE_GRACE = 2.0


@dataclass(frozen=True)
class Publish:
    event: Event


@dataclass(frozen=True)
class CloseConnections:
    """Close the open connections to this pod: they can no longer work (restart, stop)."""

    pod: str


@dataclass(frozen=True)
class Wakeup:
    """Call `wakeup(now)` after `delay` seconds (replaces any earlier Wakeup)."""

    delay: float


@dataclass(frozen=True)
class Relist:
    """List the tunnel's kinds again now: the view may be stale, or its watches dead or resumed
    silently."""


@dataclass(frozen=True)
class TargetChanged:
    """Wake connections waiting for a pod (target None means none is ready)."""

    target: Target | None


Command = Publish | CloseConnections | TargetChanged | Wakeup | Relist


@dataclass
class _Outage:
    """The API server has not answered since `since`; `told` once the tunnel said so."""

    server: str
    since: float
    from_watch: bool  # a watch failed too: only a watch's answer ends it, not one good dial
    detail: str | None = None  # what the last attempt ran into (a proxy's refusal, a timeout), a sentence
    told: bool = False
    relisted: bool = False  # the tunnel's kinds were listed again for this outage


class TunnelMachine:
    def __init__(self, rule: Rule, context: str, tunnel_id: str) -> None:
        self.rule = rule
        self.context = context
        self.tunnel_id = tunnel_id
        self.state = TunnelState.WAITING
        self.target: Target | None = None
        self.local_port: int | None = None
        self.reason: str | None = None
        self._last_target: Target | None = None
        self._outage: _Outage | None = None
        self._relisted_for: Target | None = None  # one relist per pod found gone

    def _event(self, kind: EventKind, message: str, **fields: object) -> Publish:
        base = Event(
            kind=kind,
            message=message,
            context=self.context,
            tunnel_id=self.tunnel_id,
            resource_type=self.rule.resource_type,
            resource_name=self.rule.resource_name,
            namespace=self.rule.namespace,
            address=self.rule.address,
            local_port=self.local_port,
            requested_local_port=self.rule.requested_local_port,
            port=self.rule.port,
            pod=self.target.pod if self.target else None,
            label=self.rule.label,
            auto=self.rule.auto,
            source=self.rule.source,
        )
        return Publish(replace(base, **fields))  # type: ignore[arg-type]

    def _set_state(self, state: TunnelState) -> None:
        if state != self.state:
            log.debug("tunnel %s: %s -> %s", self.tunnel_id, self.state.value, state.value)
            self.state = state

    @property
    def where(self) -> str:
        return f"{self.rule.address}:{self.local_port}"

    def listening(self, port: int, requested: int | None, fell_back: bool, reasons: tuple[str, ...]) -> list[Command]:
        self.local_port = port
        commands: list[Command] = []
        if fell_back:
            why = reasons[0] if reasons else f"{requested} is not available"
            commands.append(self._event(
                EventKind.FALLBACK,
                f"{self.rule.label} wanted {self.rule.address}:{requested}, but {why}; "
                f"it listens on {self.where} instead.",
                requested_local_port=requested,
            ))
        if self.target is not None:
            commands.append(self._forwarding_event())
        return commands

    def _forwarding_event(self) -> Publish:
        assert self.target is not None
        return self._event(
            EventKind.FORWARDING,
            f"Forwarding {self.rule.label} on {self.where} to pod {self.target.pod} port {self.target.port}.",
        )

    def resolved(self, result: Target | Unresolved) -> list[Command]:
        """The cluster answered (a list or a watch event): this is what the rule resolves to now."""
        outage, self._outage = self._outage, None
        if isinstance(result, Target):
            return self._found(result, outage)
        return self._lost(result)

    def _found(self, target: Target, outage: _Outage | None = None) -> list[Command]:
        old = self.target
        if old == target:
            if self.state == TunnelState.FORWARDING:
                return []
            self.reason = None  # the cluster answered again after a failure
            self._set_state(TunnelState.FORWARDING)
            if self.local_port is None:
                return []
            if outage is not None and outage.told:
                return [self._answered_event(outage)]
            return [self._forwarding_event()]
        self.target = target
        self.reason = None
        self._set_state(TunnelState.FORWARDING)
        previous = old or self._last_target  # across a wait, the pod we forwarded to before it
        self._last_target = target
        # A pod is the same pod only with the same uid: a StatefulSet's replacement keeps the name.
        replaced = previous is not None and (previous.pod, previous.pod_uid) != (target.pod, target.pod_uid)
        restarted = previous is not None and not replaced and target.restarts > previous.restarts
        commands: list[Command] = []
        if restarted:
            # The container's process is gone, and with it every connection it had.
            commands.append(CloseConnections(target.pod))
        # A different pod (unready, deleted, replaced) keeps the connections already open to the
        # old one, as kubectl does: they end when the pod or the client ends them, and a deleted
        # pod's server ends them itself. Only new connections go to the new pod.
        commands.append(TargetChanged(target))
        if self.local_port is None:
            return commands  # the forwarder binds the listener now and reports through listening()
        if restarted:
            commands.append(self._event(
                EventKind.RECONNECTED,
                f"The container of pod {target.pod} restarted; {self.rule.label} keeps {self.where} "
                "and new connections reach the restarted container.",
                old_pod=target.pod,
            ))
        elif replaced and previous is not None:
            moved = (f"moved from pod {previous.pod} to pod {target.pod}" if previous.pod != target.pod
                     else f"moved to the new pod {target.pod} that replaced the old one")
            commands.append(self._event(
                EventKind.RECONNECTED,
                f"{self.rule.label} {moved}; {self.where} stays the same.",
                old_pod=previous.pod,
            ))
        else:
            commands.append(self._forwarding_event())
        return commands

    def _lost(self, unresolved: Unresolved) -> list[Command]:
        old = self.target
        if old is None and unresolved.reason == self.reason:
            return []
        self.target = None
        self.reason = unresolved.reason
        commands: list[Command] = []
        if old is not None:
            self._set_state(TunnelState.RECONNECTING)
            commands.append(TargetChanged(None))
            keeping = f"; {self.where} stays open" if self.local_port else ""
            message = f"{self.rule.label} lost pod {old.pod}: {unresolved.reason} Waiting for another pod{keeping}."
        else:
            self._set_state(TunnelState.WAITING)
            keeping = f" {self.where} is open and waits with it." if self.local_port else ""
            message = f"{self.rule.label} is waiting: {unresolved.reason}{keeping}"
        commands.append(self._event(EventKind.WAITING, message, old_pod=old.pod if old else None))
        return commands

    def cluster_failed(self, message: str) -> list[Command]:
        """The cluster refuses to be asked (credentials refused): not this rule's fault."""
        self._outage = None  # it answered, with a refusal
        if self.reason == message and self.state == TunnelState.FAILED:
            return []
        self.reason = message
        self._set_state(TunnelState.FAILED)
        return [self._event(EventKind.FAILED, f"{self.rule.label}: {message}")]

    # -- the API server does not answer ---------------------------------------------------
    def server_failed(
        self, server: str, now: float, from_watch: bool, began: float | None = None, detail: str | None = None,
    ) -> list[Command]:
        """A list, watch or port-forward dial found the API server unreachable (or 503/429).

        The first failure of an outage starts the grace timer, counted from `began`, when the
        failed attempt started (a dial into a dead path fails only at its timeout); later
        failures only update the reason that `status` shows.
        """
        if self.state in (TunnelState.STOPPED, TunnelState.FAILED):
            return []  # a refused credential or a port it could not bind says more than this
        outage = self._outage
        if outage is not None:
            outage.detail = detail or outage.detail
        if outage is None:
            since = now if began is None else min(began, now)
            outage = self._outage = _Outage(server, since, from_watch, detail)
            commands: list[Command] = [Wakeup(max(0.0, since + OUTAGE_GRACE - now))]
            if not from_watch:
                # A dial found the server away; the watches may be just as dead and not know it.
                outage.relisted = True
                commands.append(Relist())
            return commands
        commands = []
        if from_watch:
            outage.from_watch = True
            if outage.told and not outage.relisted:
                outage.relisted = True
                commands.append(Relist())
        if outage.told:
            self.reason = self._outage_reason(outage, now)
        return commands

    def wakeup(self, now: float) -> list[Command]:
        """The grace timer fired: if the server still has not answered, say so, once."""
        outage = self._outage
        if outage is None or outage.told or self.state == TunnelState.STOPPED:
            return []
        if now - outage.since < OUTAGE_GRACE:
            return [Wakeup(OUTAGE_GRACE - (now - outage.since))]
        if not outage.relisted:
            # A watch that broke resumes from its resourceVersion, and a resumed watch on a quiet
            # cluster says nothing: list again, so that the server's first answer is heard, and
            # give that list one more grace before telling (a server that restarted is back).
            outage.relisted = True
            return [Relist(), Wakeup(OUTAGE_GRACE)]
        outage.told = True
        self.reason = self._outage_reason(outage, now)
        self._set_state(TunnelState.WAITING)
        return [self._event(EventKind.WAITING, f"{self.rule.label} is waiting: {self.reason}")]

    def server_answered(self) -> list[Command]:
        """A port-forward dial got through. It ends an outage that only dials had seen; one that
        a watch saw ends when the watch lists again (resolved()), so the cache is fresh."""
        outage = self._outage
        if outage is None or outage.from_watch:
            return []
        self._outage = None
        if not outage.told or self.target is None:
            return []
        self.reason = None
        self._set_state(TunnelState.FORWARDING)
        return [self._answered_event(outage)]

    def _outage_reason(self, outage: _Outage, now: float) -> str:
        seconds = max(round(now - outage.since), 1)
        if self.local_port is not None:
            doing = f"kubetray keeps {self.where} open and reconnects when it answers."
        else:
            doing = "kubetray reconnects when it answers."
        # What the last attempt ran into tells a proxy refusing the password from a path that died.
        detail = f" {outage.detail}" if outage.detail else ""
        return f"The API server {outage.server} has not answered for {seconds} s; {doing}{detail}"

    def _answered_event(self, outage: _Outage) -> Publish:
        assert self.target is not None
        return self._event(
            EventKind.FORWARDING,
            f"The API server {outage.server} answers again; {self.rule.label} forwards {self.where} "
            f"to pod {self.target.pod} port {self.target.port}.",
        )

    def pod_gone(self, target: Target) -> list[Command]:
        """A dial to `target` found its pod gone (or a connection to it broke) while the cache
        still shows it: the view may be stale. One relist per pod, however many connections."""
        if target != self.target or target == self._relisted_for or self.state == TunnelState.STOPPED:
            return []
        self._relisted_for = target
        log.info("tunnel %s: pod %s may be gone while kubetray's view still shows it; listing again",
                 self.tunnel_id, target.pod)
        return [Relist()]

    def connection_failed(self, pod: str, text: str) -> list[Command]:
        """One connection failed (error-channel text, refused dial). The tunnel itself goes on."""
        text = text.strip()
        if text and text[-1] not in ".!?":
            text += "."
        return [self._event(
            EventKind.FAILED,
            f"A connection through {self.rule.label} to pod {pod} failed: {text} "
            "The tunnel keeps listening; other connections are unaffected.",
            pod=pod,
        )]

    def stopped(self) -> list[Command]:
        self._outage = None
        self._set_state(TunnelState.STOPPED)
        where = f" on {self.where}" if self.local_port else ""
        commands: list[Command] = [TargetChanged(None)]
        if self.target is not None:
            commands.append(CloseConnections(self.target.pod))
        commands.append(self._event(EventKind.STOPPED, f"Stopped forwarding {self.rule.label}{where}."))
        self.target = None
        return commands

"""One tunnel's state machine: resolution results and listener facts in, events and commands out.

Pure: it never touches a socket or the clock, so every transition is tested as a transcript.
The forwarder (forwarder.py) feeds it and carries out the commands it returns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from trayapp.engine.resolve import Target, Unresolved
from trayapp.model import Event, EventKind, Rule, TunnelState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Publish:
    event: Event


@dataclass(frozen=True)
class CloseConnections:
    """Close the open connections to this pod: the tunnel no longer forwards to it."""

    pod: str


@dataclass(frozen=True)
class TargetChanged:
    """Wake connections waiting for a pod (target None means none is ready)."""

    target: Target | None


Command = Publish | CloseConnections | TargetChanged


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
        if isinstance(result, Target):
            return self._found(result)
        return self._lost(result)

    def _found(self, target: Target) -> list[Command]:
        old = self.target
        if old == target:
            if self.state == TunnelState.FORWARDING:
                return []
            self.reason = None  # the cluster answered again after a failure
            self._set_state(TunnelState.FORWARDING)
            return [self._forwarding_event()] if self.local_port is not None else []
        self.target = target
        self.reason = None
        self._set_state(TunnelState.FORWARDING)
        previous = old or self._last_target  # across a wait, the pod we forwarded to before it
        self._last_target = target
        # A pod is the same pod only with the same uid: a StatefulSet's replacement keeps the name.
        replaced = previous is not None and (previous.pod, previous.pod_uid) != (target.pod, target.pod_uid)
        restarted = previous is not None and not replaced and target.restarts > previous.restarts
        commands: list[Command] = []
        if previous is not None and (replaced or restarted):
            # Also across a wait: a connection still open on the pod we left must not linger there.
            commands.append(CloseConnections(previous.pod))
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
        """The cluster cannot be asked (credentials refused, unreachable): not this rule's fault."""
        if self.reason == message and self.state == TunnelState.FAILED:
            return []
        self.reason = message
        self._set_state(TunnelState.FAILED)
        return [self._event(EventKind.FAILED, f"{self.rule.label}: {message}")]

    def connection_failed(self, pod: str, text: str) -> list[Command]:
        """One connection failed (error-channel text, refused dial). The tunnel itself goes on."""
        return [self._event(
            EventKind.FAILED,
            f"A connection through {self.rule.label} to pod {pod} failed: {text.strip()} "
            "The tunnel keeps listening; other connections are unaffected.",
            pod=pod,
        )]

    def stopped(self) -> list[Command]:
        self._set_state(TunnelState.STOPPED)
        where = f" on {self.where}" if self.local_port else ""
        commands: list[Command] = [TargetChanged(None)]
        if self.target is not None:
            commands.append(CloseConnections(self.target.pod))
        commands.append(self._event(EventKind.STOPPED, f"Stopped forwarding {self.rule.label}{where}."))
        self.target = None
        return commands

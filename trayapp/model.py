"""Values shared by every layer: forwarding rules, tunnel states and the events the engine publishes.

Everything here is a frozen dataclass or an enum; nothing here does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class ResourceType(str, enum.Enum):
    """The resource kinds a rule may name: Skaffold's `portForward.resourceType` values."""

    POD = "pod"
    SERVICE = "service"
    DEPLOYMENT = "deployment"
    REPLICASET = "replicaset"
    STATEFULSET = "statefulset"
    REPLICATIONCONTROLLER = "replicationcontroller"
    DAEMONSET = "daemonset"
    JOB = "job"
    CRONJOB = "cronjob"

    @classmethod
    def parse(cls, text: str) -> ResourceType:
        """Case-insensitive, as Skaffold accepts `Service` and `service` alike."""
        return cls(text.strip().lower())

    @property
    def short(self) -> str:
        return _SHORT_NAMES[self]


_SHORT_NAMES = {
    ResourceType.POD: "pod",
    ResourceType.SERVICE: "svc",
    ResourceType.DEPLOYMENT: "deploy",
    ResourceType.REPLICASET: "rs",
    ResourceType.STATEFULSET: "sts",
    ResourceType.REPLICATIONCONTROLLER: "rc",
    ResourceType.DAEMONSET: "ds",
    ResourceType.JOB: "job",
    ResourceType.CRONJOB: "cronjob",
}

DEFAULT_NAMESPACE = "default"
DEFAULT_ADDRESS = "127.0.0.1"
HTTPS_PORTS = frozenset({443, 8443})


@dataclass(frozen=True)
class Origin:
    """Where a rule was written, so every message can point at it."""

    file: str
    line: int | None = None
    index: int | None = None  # position in its portForward list

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file


@dataclass(frozen=True)
class Rule:
    """One forwarding rule in Skaffold's `portForward` schema, plus kubetray's own fields."""

    resource_type: ResourceType
    resource_name: str
    port: int | str
    namespace: str = DEFAULT_NAMESPACE
    local_port: int | None = None  # None: the port when it is a number, else the resolved one
    address: str = DEFAULT_ADDRESS
    name: str | None = None
    scheme: str | None = None
    path: str = "/"
    origin: Origin | None = field(default=None, compare=False)
    # Made by automatic discovery (auto: in the rules file), not written by the user. Its local
    # port is remembered across restarts; a user rule for the same target replaces it.
    auto: bool = False

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        """What makes two rules the same forward (their target), for duplicate detection."""
        return (self.resource_type.value, self.namespace, self.resource_name, str(self.port), self.address)

    @property
    def requested_local_port(self) -> int | None:
        if self.local_port is not None:
            return self.local_port
        return self.port if isinstance(self.port, int) else None

    @property
    def label(self) -> str:
        return self.name or f"{self.resource_type.short}/{self.resource_name} :{self.port}"

    def url_scheme(self, port: int | None = None) -> str:
        if self.scheme:
            return self.scheme
        candidates = {self.port, port, self.local_port}
        return "https" if candidates & HTTPS_PORTS else "http"


class TunnelState(str, enum.Enum):
    WAITING = "waiting"  # no pod to forward to yet; the listener may already be open
    FORWARDING = "forwarding"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    STOPPED = "stopped"


class EventKind(str, enum.Enum):
    CONTEXT = "context"
    FORWARDING = "forwarding"
    FALLBACK = "fallback"
    WAITING = "waiting"
    RECONNECTED = "reconnected"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Event:
    """Something the engine tells the user about; rendered by the tray and by `--headless`."""

    kind: EventKind
    message: str
    context: str | None = None
    tunnel_id: str | None = None
    resource_type: ResourceType | None = None
    resource_name: str | None = None
    namespace: str | None = None
    address: str | None = None
    local_port: int | None = None
    requested_local_port: int | None = None
    port: int | str | None = None
    pod: str | None = None
    old_pod: str | None = None
    previous_context: str | None = None  # on `context` events: the context left behind
    label: str | None = None
    count: int = 1

    def to_json(self) -> dict[str, Any]:
        """camelCase keys, as Skaffold's and Kubernetes' own JSON spell them."""
        raw = asdict(self)
        out: dict[str, Any] = {"event": self.kind.value}
        for key, value in raw.items():
            if key == "kind":
                continue
            if isinstance(value, enum.Enum):
                value = value.value
            out[_camel(key)] = value
        return out


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass(frozen=True)
class Notice:
    """One desktop notification, as the UI decided to show it (after coalescing)."""

    title: str
    body: str
    # Errors stay until the user dismisses them; information goes away by itself.
    sticky: bool = False
    # Opened when the notification is clicked, where the platform supports that.
    url: str | None = None
    tunnel_id: str | None = None


def local_host(address: str) -> str:
    """How to reach a listener's address from this machine: localhost for loopback and wildcards."""
    return "localhost" if address in ("127.0.0.1", "0.0.0.0", "::", "::1") else address


def local_url(rule: Rule, local_port: int) -> str:
    """The URL a forwarded tunnel answers on: scheme and path from the rule, http by default."""
    host = local_host(rule.address)
    if ":" in host:
        host = f"[{host}]"
    path = rule.path if rule.path.startswith("/") else "/" + rule.path
    return f"{rule.url_scheme(local_port)}://{host}:{local_port}{path}"

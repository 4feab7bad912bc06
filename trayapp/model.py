"""Values shared by every layer: forwarding rules, tunnel states and the events the engine publishes.

Everything here is a frozen dataclass or an enum; nothing here does I/O.
"""

from __future__ import annotations

import enum
import ipaddress
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
# Ports that by convention serve HTTP, so a tunnel to one of them gets a URL to open. Others
# (databases, gRPC, debuggers) get an address to copy: a browser pointed at them shows nothing.
HTTP_PORTS = frozenset({80, 3000, 4200, 5000, 5173, 8000, 8008, 8080, 8081, 8888, 9000}) | HTTPS_PORTS
OPEN_TO_NETWORK = "open to your network"


class AutoSource(str, enum.Enum):
    """Which part of the rules file's `auto:` section made an automatic rule."""

    SKAFFOLD = "skaffold"  # a service Skaffold deployed
    DEBUG = "debug"  # a pod in Skaffold debug mode
    ANNOTATION = "annotation"  # a service or pod annotated kubetray.dev/forward
    SELECTOR = "selector"  # a service or pod an `auto.selectors` entry picks

    @property
    def heading(self) -> str:
        """A heading for the tunnels this source made (not `title`: that is str's own method)."""
        return _SOURCE_TITLES[self]

    @property
    def why(self) -> str:
        """Why kubetray forwards an object of this source, to finish "forwarded because ...". """
        return _SOURCE_REASONS[self]


_SOURCE_TITLES = {
    AutoSource.SKAFFOLD: "Skaffold",
    AutoSource.DEBUG: "Skaffold debug",
    AutoSource.ANNOTATION: "kubetray.dev/forward annotation",
    AutoSource.SELECTOR: "auto.selectors",
}
_SOURCE_REASONS = {
    AutoSource.SKAFFOLD: "Skaffold deployed it",
    AutoSource.DEBUG: "it is a pod in Skaffold debug mode",
    AutoSource.ANNOTATION: "it is annotated kubetray.dev/forward",
    AutoSource.SELECTOR: "it matches a selector in the rules file's auto.selectors",
}


@dataclass(frozen=True)
class Origin:
    """Where a rule was written, so every message can point at it."""

    file: str
    line: int | None = None
    index: int | None = None  # position in its portForward list

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file


class Transport(str, enum.Enum):
    """What carries a tunnel's connections to the pod, in kubetray's order of preference.

    AUTO tries SPDY_WS, then SPDY, then V4, and remembers per API server what it settled on.
    """

    AUTO = "auto"
    SPDY_WS = "spdy-ws"  # one SPDY/3.1 session per pod inside a WebSocket (KEP-4006, kubectl 1.31+)
    SPDY = "spdy"  # one SPDY/3.1 session per pod on an HTTP/1.1 Upgrade (every API server)
    V4 = "v4"  # one v4.channel.k8s.io WebSocket per local connection


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
    source: AutoSource | None = None  # on automatic rules: which `auto:` source made it
    # On automatic rules: local ports the user's own rules name, which a cluster object may not
    # take (the engine skips them as it skips a busy port). Not part of the rule's identity.
    reserved_ports: frozenset[int] = field(default=frozenset(), compare=False, repr=False)
    # What carries its connections (the rules file's `transport:`); AUTO lets kubetray choose.
    transport: Transport = Transport.AUTO

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

    @property
    def is_http(self) -> bool:
        """Whether a browser can open this tunnel: the rule names a scheme, the port's name says
        http or https (`http`, `https`, `http-metrics`, `web-http`), or the port or the local port
        asked for is one that serves HTTP by convention (HTTP_PORTS)."""
        if self.scheme:
            return True
        if isinstance(self.port, str):
            return is_http_port_name(self.port)
        return bool({self.port, self.local_port} & HTTP_PORTS)


def is_http_port_name(name: str) -> bool:
    """Kubernetes' naming convention: `http`, `https`, or a name with an `http`/`https` part."""
    parts = name.lower().replace("_", "-").split("-")
    return "http" in parts or "https" in parts or "h2c" in parts


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
    # A tunnel's traffic counters (Event.stats), at most once a second while it carries traffic.
    # For the tunnels window: not told to people, not kept in the history, not printed.
    STATS = "stats"


@dataclass(frozen=True)
class TunnelStats:
    """What one tunnel has carried since it started, as of one moment."""

    open_connections: int = 0
    connections: int = 0  # accepted since the tunnel started, open or not
    bytes_in: int = 0  # from the pod to local clients
    bytes_out: int = 0  # from local clients to the pod


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
    auto: bool = False  # about a tunnel of an automatic rule (the rules file's `auto:`)
    source: AutoSource | None = None  # on those: which `auto:` source made it
    stats: TunnelStats | None = None  # on `stats` events
    # On a tunnel's events: the transport its connections use, once known (AUTO settles on the first).
    transport: Transport | None = None

    def to_json(self) -> dict[str, Any]:
        """camelCase keys, as Skaffold's and Kubernetes' own JSON spell them."""
        raw = asdict(self)
        out: dict[str, Any] = {"event": self.kind.value}
        for key, value in raw.items():
            if key == "kind" or (key == "stats" and value is None):
                continue  # events other than `stats` look as they always did
            if key == "stats":
                value = {_camel(name): number for name, number in value.items()}
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


def is_loopback(address: str) -> bool:
    """Whether a listener on `address` is reachable only from this machine.

    `localhost`, 127.0.0.0/8 and ::1 are; wildcards (0.0.0.0, ::) and every other address are
    open to the network. Anything that is not an IP address counts as open: better a warning too
    many than a listener on the network shown as private.
    """
    text = address.strip()
    if text.lower() == "localhost":
        return True
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def is_default_loopback(address: str) -> bool:
    """The default address (127.0.0.1, or `localhost`): kubetray listens on both 127.0.0.1 and
    ::1 for it, as `kubectl port-forward` does, so `localhost` works whichever one a client picks."""
    return address.strip().lower() in (DEFAULT_ADDRESS, "localhost")


def listen_text(address: str, local_port: int) -> str:
    """Where a listener is, as the user should read it.

    `localhost:8080` for the default address, `[::1]:5432` or `127.0.0.2:5432` for other loopback
    addresses, and `0.0.0.0:8080, open to your network` for anything other machines can reach.
    """
    if is_default_loopback(address):
        return f"localhost:{local_port}"
    host = address.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    where = f"[{host}]:{local_port}" if ":" in host else f"{host}:{local_port}"
    return where if is_loopback(address) else f"{where}, {OPEN_TO_NETWORK}"


def local_host(address: str) -> str:
    """The host part of a URL that reaches a listener on `address` from this machine.

    `localhost` for the default address (kubetray listens on both 127.0.0.1 and ::1 for it); for a
    wildcard, the loopback address of its family (0.0.0.0 takes IPv4 only, so `localhost` could
    resolve to ::1 and be refused); any other address as it is.
    """
    text = address.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if is_default_loopback(text):
        return "localhost"
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(text, text)


def local_address(address: str, local_port: int) -> str:
    """`host:port` to paste into a client on this machine (`localhost:5432`, `[::1]:5432`)."""
    host = local_host(address)
    return f"[{host}]:{local_port}" if ":" in host else f"{host}:{local_port}"


def local_url(rule: Rule, local_port: int) -> str:
    """The URL a forwarded tunnel answers on: scheme and path from the rule, http by default."""
    host = local_host(rule.address)
    if ":" in host:
        host = f"[{host}]"
    path = rule.path if rule.path.startswith("/") else "/" + rule.path
    return f"{rule.url_scheme(local_port)}://{host}:{local_port}{path}"


def tunnel_url(rule: Rule, local_port: int | None) -> str | None:
    """The URL to open in a browser, only where the tunnel is HTTP (Rule.is_http) and listening."""
    if local_port is None or not rule.is_http:
        return None
    return local_url(rule, local_port)

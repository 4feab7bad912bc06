"""Kubernetes API routes: discovery, get/list/watch of the served kinds, the port-forward upgrade,
and authentication. `/_sim/` paths go to the control handler instead.

Answers are shaped like kube-apiserver's: typed lists with the collection resourceVersion, `Status`
objects for every error, watch events on a chunked response.
"""

from __future__ import annotations

import asyncio
import hmac
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from trayapp.sim.backends import Backends
from trayapp.sim.http import Handler, HttpConnection, Request
from trayapp.sim.objects import KINDS, Kind, Obj, kind_for_path, status
from trayapp.sim.portforward import PortForwardSession, PortTarget, sandbox_gone_text
from trayapp.sim.selectors import SelectorError, parse_field_selector, parse_label_selector
from trayapp.sim.spdyforward import LINGER as SPDY_LINGER
from trayapp.sim.spdyforward import MAX_EARLY as SPDY_MAX_EARLY
from trayapp.sim.spdyforward import PAIR_TIMEOUT as SPDY_PAIR_TIMEOUT
from trayapp.sim.spdyforward import PROTOCOL as SPDY_PROTOCOL
from trayapp.sim.spdyforward import SpdyForwardSession, SpdyUpgrade, offers_portforward_protocol, offers_spdy
from trayapp.sim.spdytunnel import SpdyTunnel, offers_tunnel
from trayapp.sim.store import Store, WatchFilter
from trayapp.sim.watch import WatchOptions, WatchStream

KUBE_VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0-kubetray-sim",
                "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22.5", "compiler": "gc",
                "platform": "linux/amd64"}
_VERBS = ["get", "list", "watch"]


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.status = status(code, reason, message, details)


@dataclass
class ApiSettings:
    token: str | None = None
    bookmark_interval: float = 5.0
    # RBAC stand-in: a user bound to namespaced Roles only may not list across all namespaces.
    forbid_all_namespaces: bool = False
    # Pod uids whose sandbox the node lost while the API still shows the pod (SimCluster.lose_sandbox).
    lost_sandboxes: set[str] = field(default_factory=set)
    # When a pod's programs stop, open port-forward streams get the kubelet's "connection reset
    # by peer" on their error channel before they close, as some kubelets report it.
    stream_errors_on_pod_stop: bool = False
    # How long a SPDY port-forward stream waits for the other stream of its pair (the kubelet's
    # stream-creation timeout).
    spdy_pair_timeout: float = SPDY_PAIR_TIMEOUT
    # How long one direction of a SPDY-forwarded connection may outlive the other (containerd: 1 s).
    spdy_linger: float = SPDY_LINGER
    # Bytes a SPDY data stream may bring before the pod's port is connected; then reading waits.
    spdy_max_early: int = SPDY_MAX_EARLY
    # Port-forward carriers this server does not speak, answered as a real server that lacks them
    # does: "spdy-websocket" (an API server before 1.31 or with PortForwardWebsockets off) and
    # "spdy" (a front that does not pass SPDY upgrades).
    refused_carriers: set[str] = field(default_factory=set)


def _resource_list(group_version: str, kinds: list[Kind]) -> Obj:
    resources = []
    for k in kinds:
        resources.append({"name": k.plural, "singularName": k.kind.lower(), "namespaced": k.namespaced,
                          "kind": k.kind, "verbs": list(_VERBS), "shortNames": list(k.short_names)})
        if k.plural == "pods":
            resources.append({"name": "pods/portforward", "singularName": "", "namespaced": True,
                              "kind": "PodPortForwardOptions", "verbs": ["create", "get"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": resources}


def _group(name: str) -> Obj:
    version = {"groupVersion": f"{name}/v1", "version": "v1"}
    return {"name": name, "versions": [version], "preferredVersion": version}


class ApiHandler(Handler):
    def __init__(self, store: Store, backends: Backends, settings: ApiSettings,
                 control: Handler, tasks: set[asyncio.Task[None]],
                 address: Callable[[], str]) -> None:
        self._store = store
        self._backends = backends
        self.settings = settings
        self._control = control
        self._tasks = tasks
        self._address = address
        # Port-forward sessions opened, by carrier ("v4", "spdy", "spdy-websocket"): tests and
        # benchmarks read which transport a client really used (kubectl falls back silently).
        self.portforward_sessions: Counter[str] = Counter()
        # The SPDY sessions still open, so a test can make one send GOAWAY.
        self.spdy_sessions: weakref.WeakSet[SpdyForwardSession] = weakref.WeakSet()

    def handle(self, request: Request, conn: HttpConnection) -> None:
        if request.path.startswith("/_sim/"):
            self._control.handle(request, conn)
            return
        try:
            if not self._authenticated(request, conn):
                raise ApiError(401, "Unauthorized", "Unauthorized")
            self._route(request, conn)
        except ApiError as exc:
            conn.respond_json(exc.status["code"], exc.status, close=request.wants_upgrade)

    def _authenticated(self, request: Request, conn: HttpConnection) -> bool:
        if self.settings.token is None:
            return True
        if conn.transport is not None and conn.transport.get_extra_info("peercert"):
            return True  # a client certificate the TLS layer already verified
        offered = request.headers.get("authorization", "")
        return hmac.compare_digest(offered.encode(), f"Bearer {self.settings.token}".encode())

    # -- routing -------------------------------------------------------------------------
    def _route(self, request: Request, conn: HttpConnection) -> None:
        path = request.path.rstrip("/") or "/"
        if path in ("/healthz", "/livez", "/readyz"):
            conn.respond(200, b"ok", "text/plain; charset=utf-8")
            return
        discovery = self._discovery(path)
        if discovery is not None:
            conn.respond_json(200, discovery)
            return
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        kind = kind_for_path(group, version, rest[0]) if rest else None
        if kind is None or (namespace is not None and not kind.namespaced) or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if len(rest) == 3:
            if kind.plural == "pods" and rest[2] == "portforward" and namespace is not None:
                self._portforward(request, conn, namespace, rest[1])
                return
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if kind.namespaced and namespace is None and self.settings.forbid_all_namespaces:
            raise ApiError(403, "Forbidden",
                           f'{kind.plural} is forbidden: User "sim-user" cannot list resource "{kind.plural}" '
                           f'in API group "{group}" at the cluster scope')
        if request.method != "GET":
            raise ApiError(405, "MethodNotAllowed",
                           f"the simulator serves only get, list and watch on {kind.plural}")
        if len(rest) == 2:
            if kind.namespaced and namespace is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            self._get(conn, kind, namespace or "", rest[1])
        elif request.param("watch") in ("true", "1"):
            self._watch(request, conn, kind, namespace)
        else:
            self._list(request, conn, kind, namespace)

    def _discovery(self, path: str) -> Obj | None:
        if path == "/version":
            return KUBE_VERSION
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": self._address()}]}
        if path == "/api/v1":
            return _resource_list("v1", [k for k in KINDS if not k.group])
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group("apps"), _group("batch")]}
        for group in ("apps", "batch"):
            if path == f"/apis/{group}":
                return {"kind": "APIGroup", "apiVersion": "v1", **_group(group)}
            if path == f"/apis/{group}/v1":
                return _resource_list(f"{group}/v1", [k for k in KINDS if k.group == group])
        return None

    def _get(self, conn: HttpConnection, kind: Kind, namespace: str, name: str) -> None:
        obj = self._store.get(kind.plural, namespace, name)
        if obj is None:
            raise ApiError(404, "NotFound", f'{kind.plural} "{name}" not found',
                           {"name": name, "kind": kind.plural, **({"group": kind.group} if kind.group else {})})
        conn.respond_json(200, obj)

    def _filter(self, request: Request, kind: Kind, namespace: str | None) -> WatchFilter:
        try:
            labels = parse_label_selector(request.param("labelSelector"))
            fields = parse_field_selector(request.param("fieldSelector"))
        except SelectorError as exc:
            raise ApiError(400, "BadRequest", str(exc)) from None
        return WatchFilter(kind.plural, namespace, labels, fields)

    def _list(self, request: Request, conn: HttpConnection, kind: Kind, namespace: str | None) -> None:
        f = self._filter(request, kind, namespace)
        items = self._store.list(kind.plural, namespace, f.labels, f.fields)
        for item in items:
            # kube-apiserver leaves kind and apiVersion off the items of a typed list.
            item.pop("kind", None)
            item.pop("apiVersion", None)
        conn.respond_json(200, {"kind": kind.list_kind, "apiVersion": kind.api_version,
                                "metadata": {"resourceVersion": str(self._store.rv)}, "items": items})

    def _watch(self, request: Request, conn: HttpConnection, kind: Kind, namespace: str | None) -> None:
        f = self._filter(request, kind, namespace)
        rv_text = request.param("resourceVersion") or "0"
        if not rv_text.isdigit():
            raise ApiError(400, "BadRequest", f"invalid resource version: {rv_text!r}")
        timeout = request.param("timeoutSeconds")
        options = WatchOptions(
            since=None if rv_text == "0" else int(rv_text),
            bookmarks=request.param("allowWatchBookmarks") in ("true", "1"),
            timeout=float(timeout) if timeout else None,
            bookmark_interval=self.settings.bookmark_interval,
        )
        WatchStream(self._store, kind, f, conn, options).start()

    def _portforward(self, request: Request, conn: HttpConnection, namespace: str, name: str) -> None:
        if request.method not in ("GET", "POST"):
            raise ApiError(405, "MethodNotAllowed", "port-forward takes GET or POST with a WebSocket upgrade")
        pod = self._store.get("pods", namespace, name)
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})
        phase = pod.get("status", {}).get("phase")
        if phase != "Running":
            raise ApiError(400, "BadRequest",
                           f"unable to upgrade connection: pod {name} is not running (phase {phase})")
        if offers_tunnel(request) and "spdy-websocket" in self.settings.refused_carriers:
            # Without the gate the API server hands the WebSocket to the kubelet, whose v4 handler
            # wants ?ports= (kubelet NewV4Options): a 400 in plain text, not a Status.
            conn.respond(400, b'query parameter "port" is required', "text/plain; charset=utf-8", close=True)
            return
        if offers_spdy(request) and "spdy" in self.settings.refused_carriers:
            conn.respond(403, b"unable to upgrade: unable to negotiate protocol: client supports "
                              b"[portforward.k8s.io], server accepts []\n", "text/plain; charset=utf-8", close=True)
            return
        if offers_tunnel(request) or offers_spdy(request):
            self._spdy_portforward(request, conn, pod)
            return
        ports: list[int] = []
        for value in request.query.get("ports", []):
            for item in value.split(","):
                if not item.strip().isdigit() or not 0 < int(item) < 65536:
                    raise ApiError(400, "BadRequest", f"invalid port {item!r}")
                ports.append(int(item))
        if not ports:
            raise ApiError(400, "BadRequest", "unable to upgrade connection: at least one port is required")
        if not request.wants_upgrade:
            raise ApiError(400, "BadRequest", "Upgrade request required")
        uid = pod["metadata"]["uid"]
        lost = uid in self.settings.lost_sandboxes
        targets = [PortTarget(p, self._backends.address(uid, p), sandbox_gone_text(p, name, uid) if lost else None)
                   for p in ports]
        session = PortForwardSession(conn, name, targets, self._tasks)
        self.portforward_sessions["v4"] += 1
        if self.settings.stream_errors_on_pod_stop:
            session.forget = self._backends.on_stop(uid, session.pod_stopped)
        session.upgrade(request)

    def _spdy_portforward(self, request: Request, conn: HttpConnection, pod: Obj) -> None:
        """The kubelet's SPDY handler: the ports come per stream, not in the query. SPDY comes
        plain (`Upgrade: SPDY/3.1`) or tunnelled in a WebSocket (KEP-4006)."""
        tunnel = offers_tunnel(request)
        if not tunnel and not offers_portforward_protocol(request):
            raise ApiError(403, "Forbidden", "unable to upgrade: unable to negotiate protocol: client supports "
                           f"{request.headers.get('x-stream-protocol-version', '')!r}, server supports "
                           f"[{SPDY_PROTOCOL}]")
        name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]

        def target_for(port: int) -> PortTarget:
            # Looked up per connection: one session outlives many, and the sandbox may go between.
            lost = uid in self.settings.lost_sandboxes
            return PortTarget(port, self._backends.address(uid, port),
                              sandbox_gone_text(port, name, uid) if lost else None)

        session = SpdyForwardSession(name, target_for, self._tasks, self.settings.spdy_pair_timeout,
                                     self.settings.spdy_linger, self.settings.spdy_max_early)
        if self.settings.stream_errors_on_pod_stop:
            session.forget = self._backends.on_stop(uid, session.pod_stopped)
        self.portforward_sessions["spdy-websocket" if tunnel else "spdy"] += 1
        self.spdy_sessions.add(session)
        (SpdyTunnel if tunnel else SpdyUpgrade)(conn, session).upgrade(request)

"""What the "Forward…" window shows: a context's namespaces and one namespace's objects with their ports.

A `Browser` lists and then watches (informers of its own, on the context's KubeApi) the namespaces
and, for the namespace being shown, the services, deployments, statefulsets, daemonsets, pods,
jobs and cronjobs. Each object is summarised here, in the engine, as a small frozen `ObjectRow`
(kind, name, ports, owner), and only rows that changed are handed on, in batches of at most
`BATCH_ROWS`, so a namespace of thousands of objects costs the UI a few updates, not one per
object. The watches run while the window is open: `close()` stops them. No Qt here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from trayapp.engine.kube import Informer, KubeApi
from trayapp.errors import KubetrayError
from trayapp.model import ResourceType

log = logging.getLogger(__name__)

# Plural resource -> the rule's resourceType, in the order the window lists them.
KINDS: dict[str, ResourceType] = {
    "services": ResourceType.SERVICE,
    "deployments": ResourceType.DEPLOYMENT,
    "statefulsets": ResourceType.STATEFULSET,
    "daemonsets": ResourceType.DAEMONSET,
    "cronjobs": ResourceType.CRONJOB,
    "jobs": ResourceType.JOB,
    "pods": ResourceType.POD,
}
_OWNER_KINDS = {
    "Deployment": ResourceType.DEPLOYMENT,
    "StatefulSet": ResourceType.STATEFULSET,
    "DaemonSet": ResourceType.DAEMONSET,
    "ReplicaSet": ResourceType.REPLICASET,
    "ReplicationController": ResourceType.REPLICATIONCONTROLLER,
    "Job": ResourceType.JOB,
    "CronJob": ResourceType.CRONJOB,
}
# Rows per update: big enough that a namespace of 2,000 objects takes four updates, small enough
# that the UI thread handles each within a frame or two.
BATCH_ROWS = 500


@dataclass(frozen=True)
class PortRow:
    """One port of an object: a service port, or a container port of a pod (template)."""

    number: int
    name: str | None = None
    protocol: str = "TCP"
    container: str | None = None  # for container ports
    app_protocol: str | None = None  # a service port's appProtocol (http, https, grpc...)


@dataclass(frozen=True)
class ObjectRow:
    kind: ResourceType
    name: str
    namespace: str
    ports: tuple[PortRow, ...] = ()
    owner: tuple[ResourceType, str] | None = None  # the controller of a pod or job, as a rule would name it
    state: str | None = None  # a pod's phase

    @property
    def key(self) -> tuple[ResourceType, str]:
        return (self.kind, self.name)


@dataclass(frozen=True)
class Namespaces:
    """Every namespace of the context (all of them, each time they change or list again after a Problem)."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class Rows:
    """Objects of `namespace` that appeared or changed (`upserts`) or went away (`removed`).

    `reset` is set on the first batch after a new namespace is shown: the UI drops what it had.
    `complete` is set once every kind of the namespace has been listed or has failed to list.
    `problems` is the current list of failures (empty once they are over); every batch carries it.
    """

    namespace: str
    upserts: tuple[ObjectRow, ...] = ()
    removed: tuple[tuple[ResourceType, str], ...] = ()
    reset: bool = False
    complete: bool = False
    problems: tuple[str, ...] = ()  # kinds that cannot be listed right now, said for the user


@dataclass(frozen=True)
class Problem:
    """Listing the namespaces failed; the informer retries by itself. `message` is for the user."""

    message: str
    namespace: str | None = None


Update = Namespaces | Rows | Problem


# --- summaries (pure) ------------------------------------------------------------------------------

def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def container_ports(pod_spec: Mapping[str, Any]) -> tuple[PortRow, ...]:
    """The ports the containers of a pod (template) declare, in order."""
    rows: list[PortRow] = []
    for container in _list(pod_spec.get("containers")):
        container = _dict(container)
        for port in _list(container.get("ports")):
            port = _dict(port)
            number = _int(port.get("containerPort"))
            if number is None:
                continue
            rows.append(PortRow(number, _str(port.get("name")), _str(port.get("protocol")) or "TCP",
                                _str(container.get("name"))))
    return tuple(rows)


def service_ports(spec: Mapping[str, Any]) -> tuple[PortRow, ...]:
    rows: list[PortRow] = []
    for port in _list(spec.get("ports")):
        port = _dict(port)
        number = _int(port.get("port"))
        if number is None:
            continue
        rows.append(PortRow(number, _str(port.get("name")), _str(port.get("protocol")) or "TCP",
                            app_protocol=_str(port.get("appProtocol"))))
    return tuple(rows)


def _template_spec(kind: str, spec: Mapping[str, Any]) -> Mapping[str, Any]:
    if kind == "cronjobs":
        spec = _dict(_dict(spec.get("jobTemplate")).get("spec"))
    return _dict(_dict(spec.get("template")).get("spec"))


def owner_of(metadata: Mapping[str, Any]) -> tuple[ResourceType, str] | None:
    """The controller a rule should name instead of this object: a pod's Deployment (through its
    ReplicaSet, whose name is the deployment's plus the pod-template-hash), StatefulSet, DaemonSet
    or Job; a job's CronJob. None for objects nobody controls."""
    refs = [_dict(ref) for ref in _list(metadata.get("ownerReferences"))]
    controllers = [ref for ref in refs if ref.get("controller") is True] or refs[:1]
    for ref in controllers[:1]:
        kind = _OWNER_KINDS.get(str(ref.get("kind")))
        name = _str(ref.get("name"))
        if kind is None or name is None:
            return None
        template_hash = _str(_dict(metadata.get("labels")).get("pod-template-hash"))
        if kind is ResourceType.REPLICASET and template_hash and name.endswith("-" + template_hash):
            return (ResourceType.DEPLOYMENT, name[: -len(template_hash) - 1])
        return (kind, name)
    return None


def summarise(kind: str, obj: Mapping[str, Any]) -> ObjectRow | None:
    """One cluster object (of plural `kind`) as a row; None when it has no name."""
    metadata = _dict(obj.get("metadata"))
    name = _str(metadata.get("name"))
    if name is None or kind not in KINDS:
        return None
    namespace = _str(metadata.get("namespace")) or ""
    spec = _dict(obj.get("spec"))
    if kind == "services":
        ports = service_ports(spec)
    elif kind == "pods":
        ports = container_ports(spec)
    else:
        ports = container_ports(_template_spec(kind, spec))
    owner = owner_of(metadata) if kind in ("pods", "jobs") else None
    state = _str(_dict(obj.get("status")).get("phase")) if kind == "pods" else None
    return ObjectRow(KINDS[kind], name, namespace, ports, owner, state)


def batches(rows: Iterable[ObjectRow], size: int = BATCH_ROWS) -> Iterable[tuple[ObjectRow, ...]]:
    chunk: list[ObjectRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield tuple(chunk)
            chunk = []
    if chunk:
        yield tuple(chunk)


# --- the session ---------------------------------------------------------------------------------

class Browser:
    """One open "Forward…" window's view of a context. Every method runs on the engine loop.

    `on_update` is called on the engine loop with each `Update`; the tray hands them to the GUI
    thread. Changes within one loop turn are gathered into one flush.
    """

    def __init__(self, api: KubeApi, on_update: Callable[[Update], None], *,
                 batch_rows: int = BATCH_ROWS, informer_options: Mapping[str, Any] | None = None) -> None:
        self.api = api
        self.namespace: str | None = None
        self._on_update = on_update
        self._batch_rows = batch_rows
        self._options = dict(informer_options or {})
        self._namespaces: Informer | None = None
        self._informers: dict[str, Informer] = {}
        # What the UI was last told per kind: object name -> (the object as cached, its row).
        self._told: dict[str, dict[str, tuple[Mapping[str, Any], ObjectRow]]] = {}
        self._dirty: set[str] = set()
        self._namespaces_dirty = False
        self._reset_pending = False
        self._complete_told = False
        self._problems: dict[str, str] = {}  # kind -> why it cannot be listed now
        self._problems_told: tuple[str, ...] = ()
        self._flush_scheduled = False
        self._closed = False
        self._last_namespaces: tuple[str, ...] | None = None

    def start(self) -> None:
        """Start watching the namespaces (the window's combo box)."""
        if self._namespaces is None and not self._closed:
            self._namespaces = Informer(self.api, "namespaces", None, self._namespaces_changed, self._failed,
                                        **self._options)
            self._namespaces.start()

    async def show(self, namespace: str) -> None:
        """Watch the objects of `namespace` instead of the one shown before."""
        if self._closed or namespace == self.namespace:
            return
        await self._stop_objects()
        self.namespace = namespace
        self._reset_pending = True
        self._complete_told = False
        self._problems = {}
        self._problems_told = ()
        for kind in KINDS:
            informer = Informer(self.api, kind, namespace, self._objects_changed, self._failed, **self._options)
            self._informers[kind] = informer
            self._told[kind] = {}
            informer.start()

    async def close(self) -> None:
        """The window closed: stop every watch."""
        self._closed = True
        await self._stop_objects()
        if self._namespaces is not None:
            namespaces, self._namespaces = self._namespaces, None
            await namespaces.stop()

    async def _stop_objects(self) -> None:
        informers, self._informers = list(self._informers.values()), {}
        self._told = {}
        self._dirty.clear()
        await asyncio.gather(*(informer.stop() for informer in informers))

    # Informer callbacks

    def _namespaces_changed(self, informer: Informer) -> None:
        self._namespaces_dirty = True
        self._schedule()

    def _objects_changed(self, informer: Informer) -> None:
        if self._informers.get(informer.kind) is informer:  # not a late call from a stopped one
            self._dirty.add(informer.kind)
            self._schedule()

    def _failed(self, informer: Informer, error: KubetrayError) -> None:
        where = f" in namespace {informer.namespace}" if informer.namespace else ""
        message = (f"kubetray cannot list the {informer.kind}{where} right now ({error.message.rstrip('.')}); "
                   "it keeps trying and updates the list when it can.")
        if informer is self._namespaces:
            self._last_namespaces = None  # the next list is told even if it names the same ones
            self._tell(Problem(message))
        elif self._informers.get(informer.kind) is informer:
            self._problems[informer.kind] = message
            self._dirty.add(informer.kind)
            self._schedule()

    def _schedule(self) -> None:
        if not self._flush_scheduled and not self._closed:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._closed:
            return
        if self._namespaces_dirty and self._namespaces is not None:
            self._namespaces_dirty = False
            names = tuple(sorted(name for obj in self._namespaces.objects.values()
                                 if (name := _str(_dict(obj.get("metadata")).get("name")))))
            if names != self._last_namespaces:
                self._last_namespaces = names
                self._tell(Namespaces(names))
        namespace = self.namespace
        if namespace is None:
            return
        upserts: list[ObjectRow] = []
        removed: list[tuple[ResourceType, str]] = []
        dirty, self._dirty = self._dirty, set()
        for kind in KINDS:  # a stable order: services first, as the window lists them
            informer = self._informers.get(kind)
            if kind not in dirty or informer is None:
                continue
            if informer.last_error is None:
                self._problems.pop(kind, None)  # it answers again
            upserts.extend(self._diff(kind, informer.objects, removed))
        problems = tuple(self._problems[kind] for kind in KINDS if kind in self._problems)
        # A kind that cannot be listed (403, a server away) must not keep the list "still listing".
        complete = all(informer.synced.is_set() or informer.last_error is not None
                       for informer in self._informers.values())
        newly_complete = complete and not self._complete_told
        if (not upserts and not removed and not self._reset_pending and not newly_complete
                and problems == self._problems_told):
            return
        self._complete_told = self._complete_told or complete
        self._problems_told = problems
        chunks = list(batches(upserts, self._batch_rows)) or [()]
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            self._tell(Rows(namespace, chunk, tuple(removed) if last else (), reset=self._reset_pending,
                            complete=complete and last, problems=problems))
            self._reset_pending = False

    def _diff(self, kind: str, objects: Mapping[str, Mapping[str, Any]],
              removed: list[tuple[ResourceType, str]]) -> list[ObjectRow]:
        """Rows for the objects that changed since the UI was last told (by identity: the informer
        replaces an object's dict when it changes), and the keys of those that went away."""
        told = self._told.setdefault(kind, {})
        changed: list[ObjectRow] = []
        for name, obj in objects.items():
            previous = told.get(name)
            if previous is not None and previous[0] is obj:
                continue
            row = summarise(kind, obj)
            if row is None:
                continue
            told[name] = (obj, row)
            if previous is None or previous[1] != row:
                changed.append(row)
        for name in [name for name in told if name not in objects]:
            removed.append(told.pop(name)[1].key)
        return changed

    def _tell(self, update: Update) -> None:
        try:
            self._on_update(update)
        except Exception:  # the window's bug must not stop the watches
            log.exception("the browse window failed to take an update")

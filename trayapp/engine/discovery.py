"""Automatic rules: the services and pods in the cluster that `auto:` asks to forward -> Rules.

Pure: raw Kubernetes JSON objects in, `Rule(auto=True)` values and notes for the user out; the
runtime lists and watches the objects and calls `discover` again whenever they change.

Sources, in the order that decides which one wins when several name the same target:
1. Skaffold (`skaffold`): services labelled `app.kubernetes.io/managed-by=skaffold`, every TCP
   port, as `skaffold dev --port-forward` does; pods in Skaffold debug mode (annotation
   `debug.cloud.google.com/config`), every debug port, as `skaffold debug` does.
2. Annotation (`annotation`): services and pods annotated `kubetray.dev/forward: "true"` (every
   port) or `"8080,http,9090:19090"` (those ports, each optionally with `:localPort`).
3. Selectors: services or pods a label selector picks, optionally only some of their ports.

Whatever a source picks, an `auto.exclude` entry (the user's "Don't forward this automatically")
drops: its kind, namespace, name glob and port, if given, all match.

A pod's rule names the workload that owns it (`deploy/dbg`, `sts/db`, `ds/agent`, `job/migrate`,
`cronjob/report`), not the pod, whose name changes on every restart: a restarted pod is then a
reconnect of the same tunnel on the same local port, not a rule removed and another added, and
the replicas of one workload make one tunnel, as `kubectl port-forward deploy/dbg` does (the
engine picks the pod, the newest version's during a rollout). A pod no known controller owns is
named itself. Labels say what the user knows: the workload and the port's name (`deploy/dbg dlv`,
`svc/web http`), its number when it has no name, and the namespace when it is not the context's.

Each rule says which source made it (`Rule.source`), so the user is told why it is forwarded.
The local port asked for is the service or container port (or the annotation's `localPort`);
when it is busy, below 1024, or named by one of the user's rules, the engine falls back, and
remembers what it got (engine/portmemory.py). Automatic rules always listen on 127.0.0.1.
A port named like `http`/`https` (or with appProtocol http, https, h2c) gets that URL scheme.

Deliberately simple:
- Pods that are not Running or are being deleted still become rules; their tunnels wait.
- A Deployment is known from its ReplicaSet's name and the pod's `pod-template-hash` label, or
  from the ReplicaSet itself when the engine's cache holds it; a CronJob only from its Job in the
  cache, else the pod's rule names the Job. The engine watches Jobs once such a rule runs, so a
  CronJob's debug pod may start as `job/report-29410` and become `cronjob/report` a moment later
  (its tunnel restarted once); rare enough not to watch every namespace's Jobs for it.
- A pod and the service in front of it may both be forwarded; nothing here relates them.
- Services without a selector and ExternalName services are skipped: they have no pod to reach.
- Only TCP ports: the port-forward protocol carries nothing else.
- Container ports are those of `containers`, not of init containers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any, NamedTuple, Protocol

from trayapp.model import AutoSource, Origin, ResourceType, Rule, is_http_port_name
from trayapp.selectors import Selector

ALL_NAMESPACES = "*"
MANAGED_BY = "app.kubernetes.io/managed-by"
DEBUG_ANNOTATION = "debug.cloud.google.com/config"
FORWARD_ANNOTATION = "kubetray.dev/forward"
TEMPLATE_HASH = "pod-template-hash"

Obj = Mapping[str, Any]
# (plural kind, namespace, name) -> the object if the caller has it: ReplicaSets and Jobs, to
# find the Deployment or CronJob that owns a pod (engine/kube ClusterCache.get fits).
OwnerLookup = Callable[[str, str, str], Obj | None]

_PORT_ITEM = re.compile(r"(?P<port>[0-9]+|[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(:(?P<local>[0-9]+))?")


class SelectorSettings(Protocol):
    """What discovery reads from one `auto.selectors` entry (config.auto.SelectorRule)."""

    @property
    def kind(self) -> ResourceType: ...
    @property
    def namespace(self) -> str | None: ...
    @property
    def selector(self) -> Selector: ...
    @property
    def ports(self) -> tuple[int | str, ...]: ...
    @property
    def origin(self) -> Origin | None: ...


class ExclusionSettings(Protocol):
    """What discovery reads from one `auto.exclude` entry (config.exclusions.Exclusion)."""

    @property
    def kind(self) -> ResourceType: ...
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...  # a glob
    @property
    def port(self) -> int | str | None: ...


class Settings(Protocol):
    """What discovery reads from the `auto:` section (config.auto.AutoSettings).

    A protocol rather than an import: the engine does not depend on config.
    """

    @property
    def skaffold(self) -> bool: ...
    @property
    def annotation(self) -> bool: ...
    @property
    def namespace(self) -> str | None: ...
    @property
    def selectors(self) -> Sequence[SelectorSettings]: ...
    @property
    def exclude(self) -> Sequence[ExclusionSettings]: ...


class Discovered(NamedTuple):
    """The rules found (sorted by namespace, kind, name, port) and notes for the user."""

    rules: tuple[Rule, ...]
    notes: tuple[str, ...]


class _Port(NamedTuple):
    number: int
    name: str | None
    protocol: str
    app_protocol: str | None = None

    @property
    def scheme(self) -> str | None:
        """http or https when the port's appProtocol or name says so (Kubernetes' conventions)."""
        for hint in (self.app_protocol, self.name):
            if isinstance(hint, str) and is_http_port_name(hint.rsplit("/", 1)[-1]):
                return "https" if "https" in hint.lower() else "http"
        return None


# ---- reading objects -------------------------------------------------------------------------


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _name(obj: Obj) -> str:
    return str(_meta(obj).get("name") or "")


def _namespace(obj: Obj) -> str:
    return str(_meta(obj).get("namespace") or "default")


def _labels(obj: Obj) -> Mapping[str, str]:
    return _meta(obj).get("labels") or {}


def _annotations(obj: Obj) -> Mapping[str, str]:
    return _meta(obj).get("annotations") or {}


def _valid_port(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 1 <= value <= 65535 else None


def _service_ports(service: Obj) -> list[_Port]:
    ports = []
    for entry in (service.get("spec") or {}).get("ports") or ():
        number = _valid_port(entry.get("port"))
        if number is not None:
            ports.append(_Port(number, entry.get("name"), entry.get("protocol") or "TCP",
                               entry.get("appProtocol")))
    return ports


def _container_ports(pod: Obj) -> list[_Port]:
    ports: list[_Port] = []
    seen: set[int] = set()
    for container in (pod.get("spec") or {}).get("containers") or ():
        for entry in container.get("ports") or ():
            number = _valid_port(entry.get("containerPort"))
            if number is not None and number not in seen:
                seen.add(number)
                ports.append(_Port(number, entry.get("name"), entry.get("protocol") or "TCP",
                                   entry.get("appProtocol")))
    return ports


def _forwardable(service: Obj) -> bool:
    spec = service.get("spec") or {}
    return spec.get("type") != "ExternalName" and bool(spec.get("selector"))


def _is_skaffold(obj: Obj) -> bool:
    # Skaffold 1.x and later write "skaffold"; older releases wrote "skaffold-v0.x".
    value = str(_labels(obj).get(MANAGED_BY) or "")
    return value == "skaffold" or value.startswith("skaffold-")


def _what(kind: ResourceType, obj: Obj) -> str:
    noun = "Service" if kind is ResourceType.SERVICE else "Pod"
    return f'{noun} "{_namespace(obj)}/{_name(obj)}"'


class Workload(NamedTuple):
    """What a pod's rule names: its controller, or the pod itself."""

    kind: ResourceType
    name: str


_CONTROLLERS = {
    "StatefulSet": ResourceType.STATEFULSET,
    "DaemonSet": ResourceType.DAEMONSET,
    "ReplicationController": ResourceType.REPLICATIONCONTROLLER,
}


def _controller(obj: Obj) -> tuple[str, str] | None:
    """The (kind, name) of the object's controller: the owner marked so, else its only owner."""
    refs = [ref for ref in _meta(obj).get("ownerReferences") or () if isinstance(ref, Mapping)]
    chosen = next((ref for ref in refs if ref.get("controller")), refs[0] if len(refs) == 1 else None)
    if chosen is None or not chosen.get("kind") or not chosen.get("name"):
        return None
    return str(chosen["kind"]), str(chosen["name"])


def workload_of(pod: Obj, owners: OwnerLookup | None = None) -> Workload:
    """The workload a rule for this pod should name, so the rule outlives the pod."""
    owner = _controller(pod)
    if owner is None:
        return Workload(ResourceType.POD, _name(pod))
    kind, name = owner
    namespace = _namespace(pod)
    if kind == "ReplicaSet":
        replicaset = owners("replicasets", namespace, name) if owners else None
        if replicaset is not None:
            above = _controller(replicaset)
            if above is not None and above[0] == "Deployment":
                return Workload(ResourceType.DEPLOYMENT, above[1])
            return Workload(ResourceType.REPLICASET, name)
        # The Deployment controller names its ReplicaSets NAME-HASH and labels their pods with HASH.
        template_hash = str(_labels(pod).get(TEMPLATE_HASH) or "")
        if template_hash and name.endswith(f"-{template_hash}") and len(name) > len(template_hash) + 1:
            return Workload(ResourceType.DEPLOYMENT, name[: -len(template_hash) - 1])
        return Workload(ResourceType.REPLICASET, name)
    if kind == "Job":
        job = owners("jobs", namespace, name) if owners else None
        above = _controller(job) if job is not None else None
        if above is not None and above[0] == "CronJob":
            return Workload(ResourceType.CRONJOB, above[1])
        return Workload(ResourceType.JOB, name)
    if kind in _CONTROLLERS:
        return Workload(_CONTROLLERS[kind], name)
    return Workload(ResourceType.POD, _name(pod))  # an owner kubetray cannot forward to (a CRD's)


def auto_label(kind: ResourceType, name: str, port: int | str, port_name: str | None = None,
               namespace: str | None = None) -> str:
    """`deploy/dbg dlv`: the workload and the port's name, else its number; `(NS)` after it when
    the namespace is not the context's. The Forward window proposes the same (ui/picker_model.py)."""
    label = f"{kind.short}/{name} {port_name or port}"
    return f"{label} ({namespace})" if namespace else label


# ---- the sources -----------------------------------------------------------------------------


class _Collector:
    """Builds rules, keeping the first for each target, and collects notes."""

    def __init__(self, context_namespace: str, exclude: Sequence[ExclusionSettings] = (),
                 owners: OwnerLookup | None = None) -> None:
        self.context_namespace = context_namespace
        self.exclude = exclude
        self.owners = owners
        self.rules: dict[tuple[str, ...], Rule] = {}
        self.notes: list[str] = []

    def add(
        self,
        source: AutoSource,
        kind: ResourceType,
        obj: Obj,
        port: int | _Port,
        local_port: int | None = None,
        origin: Origin | None = None,
    ) -> None:
        scheme = port.scheme if isinstance(port, _Port) else None
        port_name = port.name if isinstance(port, _Port) else None
        number = port.number if isinstance(port, _Port) else port
        namespace = _namespace(obj)
        # The user may have excluded the pod itself (an older exclusion, or a glob on pod names).
        if _excluded(kind, namespace, _name(obj), number, port_name, self.exclude):
            return
        target = workload_of(obj, self.owners) if kind is ResourceType.POD else Workload(kind, _name(obj))
        if _excluded(target.kind, namespace, target.name, number, port_name, self.exclude):
            return
        rule = Rule(
            resource_type=target.kind,
            resource_name=target.name,
            port=number,
            namespace=namespace,
            local_port=local_port if local_port is not None else number,
            name=auto_label(target.kind, target.name, number, port_name,
                            namespace if namespace != self.context_namespace else None),
            scheme=scheme,
            origin=origin,
            auto=True,
            source=source,
        )
        self.rules.setdefault(rule.key, rule)


def _skaffold(collector: _Collector, services: list[Obj], pods: list[Obj]) -> None:
    for service in services:
        if _is_skaffold(service) and _forwardable(service):
            for port in _service_ports(service):
                if port.protocol == "TCP":
                    collector.add(AutoSource.SKAFFOLD, ResourceType.SERVICE, service, port)
    for pod in pods:
        text = _annotations(pod).get(DEBUG_ANNOTATION)
        if text is not None:
            for debug_port in _debug_ports(collector, pod, text):
                collector.add(AutoSource.DEBUG, ResourceType.POD, pod, debug_port)


def _debug_ports(collector: _Collector, pod: Obj, text: str) -> list[_Port]:
    what = _what(ResourceType.POD, pod)
    try:
        config = json.loads(text)
    except (ValueError, TypeError):
        collector.notes.append(
            f"{what} has a {DEBUG_ANNOTATION} annotation that is not valid JSON; "
            "kubetray ignores it."
        )
        return []
    if not isinstance(config, dict):
        collector.notes.append(
            f"{what} has a {DEBUG_ANNOTATION} annotation that is not a JSON object of "
            "containers; kubetray ignores it."
        )
        return []
    found: list[_Port] = []
    for container, entry in config.items():
        ports = entry.get("ports") if isinstance(entry, dict) else None
        if ports is None:
            continue  # a container being debugged without a debug port (e.g. some runtimes)
        if not isinstance(ports, dict):
            collector.notes.append(
                f'{what}: the {DEBUG_ANNOTATION} entry for container "{container}" has ports '
                "that are not a JSON object of names to numbers; kubetray skips them."
            )
            continue
        for port_name, value in ports.items():
            number = _valid_port(value)
            if number is None:
                collector.notes.append(
                    f'{what}: debug port "{port_name}" of container "{container}" is '
                    f"{json.dumps(value)}, not a port number; kubetray skips it."
                )
            elif number not in (known.number for known in found):
                found.append(_Port(number, str(port_name), "TCP"))
    return found


def _annotated(collector: _Collector, kind: ResourceType, objects: list[Obj]) -> None:
    for obj in objects:
        value = _annotations(obj).get(FORWARD_ANNOTATION)
        if value is None:
            continue
        what = _what(kind, obj)
        text = str(value).strip()
        if text.lower() == "false":
            continue
        if kind is ResourceType.SERVICE and not _forwardable(obj):
            collector.notes.append(
                f"{what} asks to be forwarded ({FORWARD_ANNOTATION}) but has no pods to forward "
                "to (it has no selector or is an ExternalName service); kubetray skips it."
            )
            continue
        declared = _service_ports(obj) if kind is ResourceType.SERVICE else _container_ports(obj)
        if text.lower() == "true":
            tcp = [port for port in declared if port.protocol == "TCP"]
            if not tcp:
                collector.notes.append(
                    f"{what} asks to have every port forwarded ({FORWARD_ANNOTATION}) but "
                    'declares no TCP ports; list them in the annotation, like "8080".'
                )
            for port in tcp:
                collector.add(AutoSource.ANNOTATION, kind, obj, port)
            continue
        wanted = _parse_port_list(text)
        if wanted is None:
            collector.notes.append(
                f'{what} has {FORWARD_ANNOTATION}: "{value}", which is not "true", "false" or a '
                'list of ports like "8080,http,9090:19090"; kubetray ignores it.'
            )
            continue
        for asked, local in wanted:
            matched = _match_port(asked, declared, kind)
            if matched is None:
                collector.notes.append(
                    f'{what} asks for port "{asked}" ({FORWARD_ANNOTATION}), which it does not '
                    "declare as a TCP port; kubetray skips that port."
                )
            else:
                collector.add(AutoSource.ANNOTATION, kind, obj, matched, local)


def _parse_port_list(text: str) -> list[tuple[int | str, int | None]] | None:
    """`"8080,http,9090:19090"` -> [(8080, None), ("http", None), (9090, 19090)]; None if bad."""
    result: list[tuple[int | str, int | None]] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue  # a trailing comma is harmless
        match = _PORT_ITEM.fullmatch(item)
        if match is None:
            return None
        port_text, local_text = match.group("port"), match.group("local")
        port: int | str = int(port_text) if port_text.isdigit() else port_text
        local = int(local_text) if local_text is not None else None
        if (isinstance(port, int) and _valid_port(port) is None) or (
            local is not None and _valid_port(local) is None
        ):
            return None
        result.append((port, local))
    return result or None


def _match_port(wanted: int | str, declared: list[_Port], kind: ResourceType) -> _Port | int | None:
    for port in declared:
        if port.protocol == "TCP" and wanted in (port.number, port.name):
            return port
    # A pod can be reached on any port it listens on, declared or not; a service only on its own.
    if kind is ResourceType.POD and isinstance(wanted, int):
        return wanted
    return None


def _selected(
    collector: _Collector,
    rule: SelectorSettings,
    scope: str,
    services: list[Obj],
    pods: list[Obj],
) -> None:
    namespace = rule.namespace if rule.namespace is not None else scope
    objects = services if rule.kind is ResourceType.SERVICE else pods
    for obj in objects:
        if not _in_scope(_namespace(obj), namespace) or not rule.selector.matches(_labels(obj)):
            continue
        if rule.kind is ResourceType.SERVICE:
            if not _forwardable(obj):
                continue
            declared = _service_ports(obj)
        else:
            declared = _container_ports(obj)
        for port in declared:
            # The filter picks among declared ports: one selector spans many objects, so a port
            # that one of them lacks is not a mistake worth a note.
            if port.protocol == "TCP" and (
                not rule.ports or port.number in rule.ports or port.name in rule.ports
            ):
                collector.add(AutoSource.SELECTOR, rule.kind, obj, port, origin=rule.origin)


def _in_scope(namespace: str, scope: str) -> bool:
    return scope == ALL_NAMESPACES or namespace == scope


def _excluded(kind: ResourceType, namespace: str, name: str, port: int, port_name: str | None,
              exclude: Sequence[ExclusionSettings]) -> bool:
    """Whether the user said not to forward this automatically ("Don't forward this automatically");
    an exclusion's port may be the number or the port's name."""
    return any(
        entry.kind is kind
        and entry.namespace == namespace
        and fnmatchcase(name, entry.name)
        and (entry.port is None or str(entry.port) in (str(port), port_name))
        for entry in exclude
    )


def _sorted(objects: Iterable[Obj]) -> list[Obj]:
    return sorted(objects, key=lambda obj: (_namespace(obj), _name(obj)))


def discover(
    settings: Settings,
    context_namespace: str,
    services: Iterable[Obj],
    pods: Iterable[Obj],
    owners: OwnerLookup | None = None,
) -> Discovered:
    """The automatic rules for these services and pods, and notes about what was skipped.

    `context_namespace` is the kube context's namespace, the scope when `settings.namespace` is
    None. Selector entries with their own namespace look there instead. `owners` finds the
    ReplicaSets and Jobs behind pods, when the caller has them (see `workload_of`).
    """
    all_services = _sorted(services)
    all_pods = _sorted(pods)
    scope = settings.namespace if settings.namespace is not None else context_namespace
    in_services = [obj for obj in all_services if _in_scope(_namespace(obj), scope)]
    in_pods = [obj for obj in all_pods if _in_scope(_namespace(obj), scope)]
    collector = _Collector(context_namespace, settings.exclude, owners)
    if settings.skaffold:
        _skaffold(collector, in_services, in_pods)
    if settings.annotation:
        _annotated(collector, ResourceType.SERVICE, in_services)
        _annotated(collector, ResourceType.POD, in_pods)
    for rule in settings.selectors:
        _selected(collector, rule, scope, all_services, all_pods)
    ordered = sorted(
        collector.rules.values(),
        key=lambda r: (r.namespace, r.resource_type.value, r.resource_name, int(r.port)),
    )
    return Discovered(tuple(ordered), tuple(collector.notes))

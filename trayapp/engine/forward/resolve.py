"""Pure resolution: a rule plus the cluster's objects -> the pod and container port to forward to.

Objects are the raw JSON dicts the API server returns; an ObjectSource serves them (from the
engine's watch caches, or from a test's dicts). Nothing here does I/O or keeps state, so the
engine can call `resolve` on every watch event and compare answers.

The choices match `kubectl port-forward`: attachablepodforobject.go (a pod is used as named),
helpers.go GetFirstPod (pods by the object's selector, sorted with sort.Reverse(ActivePods), first
wins), podutils.go ActivePods (the order), service_port.go and pod_port.go (port translation).
Where kubectl has no answer (CronJob) or picks an old pod mid-rollout, we say why we differ.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from trayapp.engine.forward.pods import (
    Obj,
    container_port_by_name,
    container_ports,
    created_at,
    is_deleting,
    is_ready,
    max_restarts,
    meta,
    name_of,
    newest_version,
    order_pods,
    phase_of,
)
from trayapp.model import ResourceType, Rule
from trayapp.selectors import Selector, from_label_selector, from_map


class ObjectSource(Protocol):
    """Read access to cluster objects by plural kind ("pods", "services", "deployments", ...)."""

    def get(self, kind: str, namespace: str, name: str) -> Obj | None: ...

    def list(self, kind: str, namespace: str) -> Sequence[Obj]: ...


@dataclass(frozen=True)
class Target:
    """Forward to this pod's container port."""

    namespace: str
    pod: str
    pod_uid: str
    port: int
    restarts: int = 0  # the pod's highest container restart count: a restart breaks open connections


@dataclass(frozen=True)
class Unresolved:
    """No target right now; `reason` is a full sentence for the user.

    `permanent` means waiting alone cannot help (the rule or the object's spec is wrong); the
    engine still keeps watching, since an edit can fix it.
    """

    reason: str
    permanent: bool = False


Resolution = Target | Unresolved

KIND_OF: dict[ResourceType, str] = {
    ResourceType.POD: "pods",
    ResourceType.SERVICE: "services",
    ResourceType.DEPLOYMENT: "deployments",
    ResourceType.REPLICASET: "replicasets",
    ResourceType.STATEFULSET: "statefulsets",
    ResourceType.REPLICATIONCONTROLLER: "replicationcontrollers",
    ResourceType.DAEMONSET: "daemonsets",
    ResourceType.JOB: "jobs",
    ResourceType.CRONJOB: "cronjobs",
}

# Labels a controller stamps on each version of its pods (Deployment -> ReplicaSet;
# StatefulSet and DaemonSet -> ControllerRevision).


def kinds_needed(resource_type: ResourceType) -> tuple[str, ...]:
    """The kinds the engine must watch so that `resolve` sees every change that matters."""
    if resource_type is ResourceType.POD:
        return ("pods",)
    if resource_type is ResourceType.CRONJOB:
        return ("cronjobs", "jobs", "pods")
    if resource_type in (ResourceType.SERVICE, ResourceType.DEPLOYMENT):
        # replicasets: which version is newest during a rollout (see _revisions)
        return (KIND_OF[resource_type], "pods", "replicasets")
    return (KIND_OF[resource_type], "pods")


def _describe_ports(ports: Sequence[Obj], number_key: str) -> str:
    parts = []
    for port in ports:
        text = str(port.get(number_key))
        if port.get("name"):
            text += f" ({port['name']})"
        parts.append(text)
    return ", ".join(parts) if parts else "none"


def _numeric(port: int | str) -> int | None:
    """A rule port that is a number (or all digits: a port name always has a letter)."""
    if isinstance(port, int):
        return port
    return int(port) if port.isdigit() else None


# ---- choosing among a selector's pods -----------------------------------------------------------


def _pods_for(source: ObjectSource, namespace: str, selector: Selector) -> list[Obj]:
    return [
        pod for pod in source.list("pods", namespace) if selector.matches(meta(pod).get("labels"))
    ]


def _no_ready_pod(what: str, pods: Sequence[Obj]) -> Unresolved:
    if not pods:
        return Unresolved(f"{what} has no pods yet.")
    total = len(pods)
    noun = "pod" if total == 1 else "pods"
    deleting = sum(1 for pod in pods if is_deleting(pod))
    running = sum(1 for pod in pods if not is_deleting(pod) and phase_of(pod) == "Running")
    details = [f"{total} {noun}"]
    if deleting:
        details.append(f"{deleting} being deleted")
    if running:
        details.append(f"{running} Running but not Ready")
    details.append("none Ready")
    return Unresolved(f"{what} has no ready pod yet ({', '.join(details)}).")


def _candidates(pods: Sequence[Obj]) -> list[Obj]:
    """Pods fit to serve traffic: not being deleted, Running and Ready."""
    return [p for p in pods if not is_deleting(p) and phase_of(p) == "Running" and is_ready(p)]


def _revisions(source: ObjectSource, namespace: str) -> dict[str, int]:
    """ReplicaSet uid -> its Deployment revision: creation times have one-second resolution, so
    pods of two versions made in the same second can only be told apart by their ReplicaSet."""
    revisions = {}
    for replicaset in source.list("replicasets", namespace):
        text = (meta(replicaset).get("annotations") or {}).get("deployment.kubernetes.io/revision", "")
        if str(text).isdigit():
            revisions[str(meta(replicaset).get("uid", ""))] = int(text)
    return revisions


def _choose(
    candidates: Sequence[Obj], *, prefer_newest: bool, prefer: str | None, source: ObjectSource, namespace: str
) -> Obj:
    group = newest_version(candidates, _revisions(source, namespace)) if prefer_newest else list(candidates)
    if prefer is not None:
        for pod in group:
            if name_of(pod) == prefer:  # sticky: keep the pod in use while it stays a good choice
                return pod
    return order_pods(group)[0]


def _target(pod: Obj, namespace: str, port: int) -> Target:
    return Target(namespace, name_of(pod), str(meta(pod).get("uid", "")), port, max_restarts(pod))


def _port_on_pod(pod: Obj, namespace: str, port: int | str) -> Resolution:
    number = _numeric(port)
    if number is not None:
        return _target(pod, namespace, number)
    found = container_port_by_name(pod, str(port))
    if found is None:
        return Unresolved(
            f'pod "{name_of(pod)}" has no container port named "{port}"; its ports are '
            f"{_describe_ports(container_ports(pod), 'containerPort')}.",
            permanent=True,
        )
    return _target(pod, namespace, found)


def _valid_port(number: int | None) -> bool:
    return number is None or 0 < number <= 65535


# ---- one resolver per kind ----------------------------------------------------------------------


def _resolve_pod(rule: Rule, source: ObjectSource) -> Resolution:
    # attachablepodforobject.go: a pod is used as named; portforward.go then insists on Running.
    ns, name = rule.namespace, rule.resource_name
    pod = source.get("pods", ns, name)
    if pod is None:
        return Unresolved(f'pod "{name}" in namespace "{ns}" does not exist yet.')
    if is_deleting(pod):
        return Unresolved(f'pod "{name}" is being deleted.')
    phase = phase_of(pod)
    if phase in ("Succeeded", "Failed"):
        return Unresolved(
            f'pod "{name}" has finished (phase {phase}) and will not run again.', permanent=True
        )
    if phase != "Running":
        return Unresolved(f'pod "{name}" is not running yet (phase {phase or "unknown"}).')
    return _port_on_pod(pod, ns, rule.port)


def _find_service_port(service: Obj, port: int | str) -> Obj | None:
    ports = (service.get("spec") or {}).get("ports") or ()
    number = _numeric(port)
    if number is not None:
        matches = [p for p in ports if p.get("port") == number]
        # a number may be declared for TCP and UDP (DNS on 53); port-forward carries TCP only
        return next(
            (p for p in matches if (p.get("protocol") or "TCP") == "TCP"),
            matches[0] if matches else None,
        )
    return next((p for p in ports if p.get("name") == port), None)


def _resolve_service(rule: Rule, source: ObjectSource, prefer: str | None) -> Resolution:
    ns, name = rule.namespace, rule.resource_name
    service = source.get("services", ns, name)
    if service is None:
        return Unresolved(f'service "{name}" in namespace "{ns}" does not exist yet.')
    spec = service.get("spec") or {}
    if not spec.get("selector"):
        return Unresolved(
            f'service "{name}" has no selector, so kubetray cannot tell which pods serve it; '
            "forward to a pod or workload instead.",
            permanent=True,
        )
    svc_port = _find_service_port(service, rule.port)
    if svc_port is None:
        what = (
            f"port {rule.port}" if _numeric(rule.port) is not None else f'port named "{rule.port}"'
        )
        return Unresolved(
            f'service "{name}" has no {what}; '
            f"its ports are {_describe_ports(spec.get('ports') or (), 'port')}.",
            permanent=True,
        )
    if (svc_port.get("protocol") or "TCP") != "TCP":
        return Unresolved(
            f'service "{name}" port {svc_port.get("port")} is {svc_port.get("protocol")}; '
            "port forwarding carries TCP only.",
            permanent=True,
        )
    try:
        pods = _pods_for(source, ns, from_map(spec["selector"]))
    except ValueError as exc:
        return Unresolved(f'service "{name}" has an invalid selector: {exc}', permanent=True)
    candidates = _candidates(pods)
    if not candidates:
        return _no_ready_pod(f'service "{name}"', pods)

    number = int(svc_port["port"])
    target = svc_port.get("targetPort")
    if spec.get("clusterIP") == "None":
        # service_port.go: for a headless service kubectl ignores targetPort and dials the
        # service port on the pod, as clients resolving the headless DNS name would.
        return _target(_choose(candidates, prefer_newest=True, prefer=prefer, source=source, namespace=ns), ns, number)
    if isinstance(target, str) and target:
        # A named targetPort may differ per pod (e.g. mid-rollout); only pods declaring it qualify.
        named = [p for p in candidates if container_port_by_name(p, target) is not None]
        if not named:
            best = order_pods(candidates)[0]
            return Unresolved(
                f'service "{name}" sends port {number} to the container port named "{target}", '
                "but no ready pod "
                f'has a port of that name (pod "{name_of(best)}" has '
                f"{_describe_ports(container_ports(best), 'containerPort')}).",
                permanent=True,
            )
        pod = _choose(named, prefer_newest=True, prefer=prefer, source=source, namespace=ns)
        return _target(pod, ns, container_port_by_name(pod, target) or 0)
    # service_port.go: an int targetPort is used as is; 0 or absent means the service port.
    chosen_port = int(target) if isinstance(target, int) and target else number
    return _target(_choose(candidates, prefer_newest=True, prefer=prefer, source=source, namespace=ns), ns, chosen_port)


def _workload_selector(resource_type: ResourceType, obj: Obj) -> Selector:
    raw = (obj.get("spec") or {}).get("selector")
    if resource_type is ResourceType.REPLICATIONCONTROLLER:
        return from_map(raw)  # helpers.go SelectorsForObject: labels.SelectorFromSet
    return from_label_selector(raw)  # metav1.LabelSelectorAsSelector


def _resolve_selected(
    what: str,
    resource_type: ResourceType,
    obj: Obj,
    rule: Rule,
    source: ObjectSource,
    prefer: str | None,
) -> Resolution:
    try:
        selector = _workload_selector(resource_type, obj)
    except ValueError as exc:
        return Unresolved(f"{what} has an invalid selector: {exc}", permanent=True)
    if selector.selects_everything or selector.nothing:
        # The API server never stores such a workload; choosing any pod of the namespace would
        # surprise the user more than waiting does.
        return Unresolved(
            f"{what} has an empty selector, so it selects no pods kubetray can choose.",
            permanent=True,
        )
    pods = _pods_for(source, rule.namespace, selector)
    candidates = _candidates(pods)
    if not candidates:
        return _no_ready_pod(what, pods)
    prefer_newest = resource_type is ResourceType.DEPLOYMENT
    pod = _choose(candidates, prefer_newest=prefer_newest, prefer=prefer, source=source, namespace=rule.namespace)
    return _port_on_pod(pod, rule.namespace, rule.port)


def _owned_by(job: Obj, cronjob: Obj) -> bool:
    cron_uid = meta(cronjob).get("uid")
    for ref in meta(job).get("ownerReferences") or ():
        if cron_uid and ref.get("uid"):
            if ref["uid"] == cron_uid:
                return True
        elif ref.get("kind") == "CronJob" and ref.get("name") == name_of(cronjob):
            return True
    return False


def _resolve_cronjob(rule: Rule, source: ObjectSource, prefer: str | None) -> Resolution:
    # kubectl has no CronJob case; we follow the newest Job the CronJob created.
    ns, name = rule.namespace, rule.resource_name
    cronjob = source.get("cronjobs", ns, name)
    if cronjob is None:
        return Unresolved(f'cronjob "{name}" in namespace "{ns}" does not exist yet.')
    jobs = [
        job for job in source.list("jobs", ns) if _owned_by(job, cronjob) and not is_deleting(job)
    ]
    if not jobs:
        return Unresolved(f'cronjob "{name}" has not run a job yet.')
    epoch = datetime.min.replace(tzinfo=UTC)
    job = max(jobs, key=lambda j: (created_at(j) or epoch, name_of(j)))
    what = f'cronjob "{name}" (its newest job "{name_of(job)}")'
    return _resolve_selected(what, ResourceType.JOB, job, rule, source, prefer)


def resolve(rule: Rule, source: ObjectSource, prefer: str | None = None) -> Resolution:
    """The pod and container port `rule` forwards to now, or why there is none.

    `prefer` names the pod currently in use: when it is still among the best group of
    candidates it is kept, so a tunnel does not hop between equally good pods on every event.
    """
    number = _numeric(rule.port)
    if not _valid_port(number):
        return Unresolved(f"port {rule.port} is not a valid port number (1-65535).", permanent=True)
    kind = rule.resource_type
    if kind is ResourceType.POD:
        return _resolve_pod(rule, source)
    if kind is ResourceType.SERVICE:
        return _resolve_service(rule, source, prefer)
    if kind is ResourceType.CRONJOB:
        return _resolve_cronjob(rule, source, prefer)
    obj = source.get(KIND_OF[kind], rule.namespace, rule.resource_name)
    what = f'{kind.value} "{rule.resource_name}"'
    if obj is None:
        return Unresolved(f'{what} in namespace "{rule.namespace}" does not exist yet.')
    return _resolve_selected(what, kind, obj, rule, source, prefer)


# ---- one forward per service port ---------------------------------------------------------------

# (namespace, service, port name) -> the port's number
PortNumbers = Mapping[tuple[str, str, str], int]


def service_port_numbers(namespace: str, service: Obj) -> dict[tuple[str, str, str], int]:
    """Every named port of `service`, by name: what `port: http` stands for in a rule."""
    found: dict[tuple[str, str, str], int] = {}
    for port in (service.get("spec") or {}).get("ports") or ():
        name, number = port.get("name"), port.get("port")
        if isinstance(name, str) and name and isinstance(number, int):
            found[(namespace, name_of(service), name)] = number
    return found


def _service_port(rule: Rule, numbers: PortNumbers) -> int | None:
    number = _numeric(rule.port)
    if number is not None:
        return number
    return numbers.get((rule.namespace, rule.resource_name, str(rule.port)))


def _forward_group(rule: Rule) -> tuple[str, str, str, int | None] | None:
    """Service rules that may be one forward: everything but the port's spelling is the same."""
    if rule.resource_type is not ResourceType.SERVICE:
        return None
    return (rule.namespace, rule.resource_name, rule.address, rule.local_port)


def target_key(rule: Rule, numbers: PortNumbers) -> tuple[str, str, str, str, str]:
    """`rule.key` with a named service port given by its number, where the service told it."""
    number = _service_port(rule, numbers) if rule.resource_type is ResourceType.SERVICE else None
    if number is None:
        return rule.key
    kind, namespace, name, _, address = rule.key
    return (kind, namespace, name, str(number), address)


def namespaces_to_decide(rules: Sequence[Rule]) -> set[str]:
    """Namespaces with a service rule that names a port and another that numbers it, alike otherwise."""
    spellings: dict[tuple[str, str, str, int | None], set[bool]] = {}
    for rule in rules:
        group = _forward_group(rule)
        if group is not None:
            spellings.setdefault(group, set()).add(isinstance(rule.port, str))
    return {group[0] for group, kinds in spellings.items() if len(kinds) == 2}


def one_per_forward(
    rules: Sequence[Rule], numbers: PortNumbers, unsynced: Container[str]
) -> tuple[list[Rule], list[Rule], list[tuple[Rule, Rule]]]:
    """Rules to run, rules to hold back, and (dropped, kept) pairs that are one forward.

    Two service rules are one forward when they differ only in naming a service port (`http`)
    and numbering it (`80`) and the service says the name stands for that number: only the
    cluster knows that, so this is decided here, not in the rules file. The rule written first
    runs. While the services of a rule's namespace are not listed yet, a rule that may repeat an
    earlier one is held back, so it does not start only to be stopped a moment later; once they
    are listed, a name the service does not have is a forward of its own.
    """
    kept: list[Rule] = []
    held: list[Rule] = []
    repeats: list[tuple[Rule, Rule]] = []
    by_group: dict[tuple[str, str, str, int | None], list[Rule]] = {}
    for rule in rules:
        group = _forward_group(rule)
        earlier = by_group.get(group, []) if group is not None else []
        number = _service_port(rule, numbers)
        same = next(
            (o for o in earlier if number is not None and _service_port(o, numbers) == number),
            None,
        )
        if same is not None:
            repeats.append((rule, same))
            continue
        undecided = [
            other for other in earlier
            if isinstance(other.port, str) != isinstance(rule.port, str)
            and (number is None or _service_port(other, numbers) is None)
        ]
        if undecided and rule.namespace in unsynced:
            held.append(rule)
            continue
        kept.append(rule)
        if group is not None:
            by_group.setdefault(group, []).append(rule)
    return kept, held, repeats


__all__ = [
    "KIND_OF",
    "ObjectSource",
    "Resolution",
    "Target",
    "Unresolved",
    "container_port_by_name",
    "is_ready",
    "kinds_needed",
    "namespaces_to_decide",
    "newest_version",
    "one_per_forward",
    "order_pods",
    "resolve",
    "service_port_numbers",
    "target_key",
]

"""Facts about pods read from their raw JSON, and kubectl's order for choosing among them.

`order_pods` is podutils.go ActivePods taken through sort.Reverse, as helpers.go GetFirstPod
uses it; `newest_version` is Skaffold's preference for the new version during a rollout.
Pure functions over dicts; no I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

Obj = Mapping[str, Any]  # a Kubernetes object (or part of one) as the API returns it

# Labels that tell one controller version's pods from another's (Deployment / StatefulSet, DaemonSet).
VERSION_LABELS = ("pod-template-hash", "controller-revision-hash")

# ---- small readers over raw JSON ----------------------------------------------------------------


def meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def name_of(obj: Obj) -> str:
    return str(meta(obj).get("name", ""))


def _time(text: object) -> datetime | None:
    """RFC 3339 from the API (`2026-11-26T10:00:00Z`, maybe with fractions); None when absent."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def created_at(obj: Obj) -> datetime | None:
    return _time(meta(obj).get("creationTimestamp"))


def is_deleting(obj: Obj) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def phase_of(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def _ready_condition(pod: Obj) -> Obj | None:
    for cond in (pod.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Ready":
            return dict(cond)
    return None


def is_ready(pod: Obj) -> bool:
    """podutil.IsPodReady: the Ready condition is present and "True"."""
    cond = _ready_condition(pod)
    return cond is not None and cond.get("status") == "True"


def _ready_since(pod: Obj) -> datetime | None:
    cond = _ready_condition(pod)
    if cond is None or cond.get("status") != "True":
        return None
    return _time(cond.get("lastTransitionTime"))


def max_restarts(pod: Obj) -> int:
    # podutils.go maxContainerRestarts: the highest restartCount of any app container.
    counts = [
        int(cs.get("restartCount") or 0)
        for cs in (pod.get("status") or {}).get("containerStatuses") or ()
    ]
    return max(counts, default=0)


def container_ports(pod: Obj) -> list[Obj]:
    """All declared ports, containers first, then initContainers (restartable sidecars)."""
    spec = pod.get("spec") or {}
    found: list[Obj] = []
    for group in ("containers", "initContainers"):
        for container in spec.get(group) or ():
            found.extend(container.get("ports") or ())
    return found


def container_port_by_name(pod: Obj, name: str) -> int | None:
    """pod_port.go / service_port.go lookupContainerPortNumberByName, plus initContainers."""
    for port in container_ports(pod):
        if port.get("name") == name and port.get("containerPort"):
            return int(port["containerPort"])
    return None






# ---- kubectl's pod order ----------------------------------------------------------------------


_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}  # any other phase counts as 0, as in Go


def _later_or_zero(t1: datetime | None, t2: datetime | None) -> bool:
    """podutils.go afterOrZero: a missing time counts as later than any real one."""
    if t1 is None or t2 is None:
        return t1 is None
    return t1 > t2


def _active_pods_less(a: Obj, b: Obj) -> bool:
    """podutils.go ActivePods.Less: is `a` the worse pod? Steps numbered as kubectl's."""
    node_a = (a.get("spec") or {}).get("nodeName") or ""
    node_b = (b.get("spec") or {}).get("nodeName") or ""
    if node_a != node_b and (not node_a or not node_b):  # 1. unassigned < assigned
        return not node_a
    phase_a, phase_b = _PHASE_ORDINAL.get(phase_of(a), 0), _PHASE_ORDINAL.get(phase_of(b), 0)
    if phase_a != phase_b:  # 2. Pending < Unknown < Running
        return phase_a < phase_b
    ready_a, ready_b = is_ready(a), is_ready(b)
    if ready_a != ready_b:  # 3. not ready < ready
        return not ready_a
    if ready_a and ready_b:  # 4. ready more recently (or unknown) < ready for longer
        since_a, since_b = _ready_since(a), _ready_since(b)
        if since_a != since_b:
            return _later_or_zero(since_a, since_b)
    restarts_a, restarts_b = max_restarts(a), max_restarts(b)
    if restarts_a != restarts_b:  # 5. more restarts < fewer restarts
        return restarts_a > restarts_b
    created_a, created_b = created_at(a), created_at(b)
    if created_a != created_b:  # 6. newer (or unknown) < older
        return _later_or_zero(created_a, created_b)
    return False


def _best_first(a: Obj, b: Obj) -> int:
    # sort.Reverse(ActivePods): the "greatest" pod first. Go's sort is not stable, so equal pods
    # come out in any order; we break ties by name so the answer is the same on every event.
    if _active_pods_less(b, a):
        return -1
    if _active_pods_less(a, b):
        return 1
    return (name_of(a) > name_of(b)) - (name_of(a) < name_of(b))


def order_pods(pods: Sequence[Obj]) -> list[Obj]:
    """Best pod first, as GetFirstPod picks with sort.Reverse(ActivePods) (helpers.go)."""
    return sorted(pods, key=functools.cmp_to_key(_best_first))


def _version_key(pod: Obj) -> tuple[str | None, str | None]:
    owner_uid = None
    for ref in meta(pod).get("ownerReferences") or ():
        if ref.get("controller"):
            owner_uid = ref.get("uid") or f"{ref.get('kind')}/{ref.get('name')}"
            break
    labels = meta(pod).get("labels") or {}
    revision = next((labels[key] for key in VERSION_LABELS if key in labels), None)
    return owner_uid, revision


def newest_version(pods: Sequence[Obj], revisions: Mapping[str, int] | None = None) -> list[Obj]:
    """The pods of the newest controller version, when they span more than one (a rollout).

    A version is a controller owner uid plus its pod-template-hash / controller-revision-hash.
    The newest is the one whose owner has the highest revision in `revisions` (ReplicaSet uid ->
    Deployment revision), then the one holding the most recently created pod. Skaffold forwards
    services to the new version so answers do not come from pods about to be replaced; kubectl
    would keep the old, longer-ready pod.
    """
    groups: dict[tuple[str | None, str | None], list[Obj]] = {}
    for pod in pods:
        groups.setdefault(_version_key(pod), []).append(pod)
    if len(groups) <= 1:
        return list(pods)
    known = revisions or {}
    epoch = datetime.min.replace(tzinfo=UTC)

    def rank(pod: Obj) -> tuple[int, datetime, str]:
        owner = _version_key(pod)[0]
        return (known.get(owner or "", -1), created_at(pod) or epoch, name_of(pod))

    return groups[_version_key(max(pods, key=rank))]

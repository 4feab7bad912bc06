"""Kubernetes object shapes for the simulator: the kind table, metadata stamping and builders.

Everything here is pure: it makes or reshapes dicts exactly as the API server would serialize them.
The store and the controllers decide when to call it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import string
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]

# Annotations the simulator reads; they ride along in pod templates so that controller-made pods
# inherit their backend description the same way real pods inherit their containers.
BACKENDS_ANNOTATION = "sim.kubetray.io/backends"
READY_DELAY_ANNOTATION = "sim.kubetray.io/ready-delay"
SCALE_DOWN_DELAY_ANNOTATION = "sim.kubetray.io/scale-down-delay"
PHASE_ANNOTATION = "sim.kubetray.io/phase"


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    group: str
    version: str
    namespaced: bool
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


KINDS: tuple[Kind, ...] = (
    Kind("Namespace", "namespaces", "", "v1", False, ("ns",)),
    Kind("Node", "nodes", "", "v1", False, ("no",)),
    Kind("Pod", "pods", "", "v1", True, ("po",)),
    Kind("Service", "services", "", "v1", True, ("svc",)),
    Kind("Endpoints", "endpoints", "", "v1", True, ("ep",)),
    Kind("ReplicationController", "replicationcontrollers", "", "v1", True, ("rc",)),
    Kind("Deployment", "deployments", "apps", "v1", True, ("deploy",)),
    Kind("ReplicaSet", "replicasets", "apps", "v1", True, ("rs",)),
    Kind("StatefulSet", "statefulsets", "apps", "v1", True, ("sts",)),
    Kind("DaemonSet", "daemonsets", "apps", "v1", True, ("ds",)),
    Kind("Job", "jobs", "batch", "v1", True, ()),
    Kind("CronJob", "cronjobs", "batch", "v1", True, ("cj",)),
)
_BY_ANY: dict[str, Kind] = {}
for _k in KINDS:
    for _alias in (_k.kind, _k.kind.lower(), _k.plural, *_k.short_names):
        _BY_ANY[_alias] = _k
_BY_ANY["endpoint"] = _BY_ANY["Endpoints"]


def kind_of(name: str) -> Kind:
    """Look up a kind by its Kind, lower-case singular, plural or short name."""
    try:
        return _BY_ANY[name] if name in _BY_ANY else _BY_ANY[name.lower()]
    except KeyError:
        raise KeyError(f"the simulator does not serve kind {name!r}") from None


def kind_for_path(group: str, version: str, plural: str) -> Kind | None:
    for k in KINDS:
        if k.group == group and k.version == version and k.plural == plural:
            return k
    return None


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_suffix(length: int = 5) -> str:
    # Kubernetes' generateName alphabet leaves out vowels and look-alike characters.
    return "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=length))


def template_hash(template: Obj) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return "".join(c for c in digest if c in string.hexdigits)[:10]


def stamp_new(obj: Obj, kind: Kind) -> Obj:
    """Fill the fields the API server sets on create (everything but resourceVersion)."""
    obj = copy.deepcopy(obj)
    obj["kind"] = kind.kind
    obj["apiVersion"] = kind.api_version
    meta = obj.setdefault("metadata", {})
    if kind.namespaced:
        meta.setdefault("namespace", "default")
    else:
        meta.pop("namespace", None)
    meta.setdefault("uid", str(uuid.uuid4()))
    meta.setdefault("creationTimestamp", now_rfc3339())
    meta.setdefault("labels", {})
    meta.setdefault("annotations", {})
    if kind.kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "ReplicationController",
                     "Job", "CronJob"):
        meta.setdefault("generation", 1)
    return obj


def owner_ref(owner: Obj) -> Obj:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_uid(obj: Obj) -> str | None:
    for ref in obj["metadata"].get("ownerReferences", []):
        if ref.get("controller"):
            return str(ref["uid"])
    return None


def namespace(name: str) -> Obj:
    return {"metadata": {"name": name}, "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}}


def node(name: str) -> Obj:
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "lastTransitionTime": now_rfc3339()}],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        },
    }


def pod_from_template(template: Obj, name: str, ns: str, owner: Obj | None,
                      extra_labels: dict[str, str] | None = None) -> Obj:
    tmeta = template.get("metadata", {})
    labels = {**tmeta.get("labels", {}), **(extra_labels or {})}
    meta: Obj = {"name": name, "namespace": ns, "labels": labels,
                 "annotations": dict(tmeta.get("annotations", {}))}
    if owner is not None:
        meta["ownerReferences"] = [owner_ref(owner)]
    return {"metadata": meta, "spec": copy.deepcopy(template.get("spec", {})), "status": {}}


def set_pod_status(pod: Obj, phase: str, ready: bool, restart_count: int = 0) -> None:
    """Write a kubelet-shaped status: phase, conditions and one status per container."""
    now = now_rfc3339()
    old = {c["type"]: c for c in pod.get("status", {}).get("conditions", [])}

    def condition(kind: str, value: bool) -> Obj:
        status = "True" if value else "False"
        previous = old.get(kind)
        # lastTransitionTime moves only when the status flips, which is what clients sort on.
        since = previous["lastTransitionTime"] if previous and previous["status"] == status else now
        return {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": since}

    running = phase == "Running"
    containers = []
    for c in pod["spec"].get("containers", []):
        state: Obj
        if running:
            state = {"running": {"startedAt": now}}
        elif phase in ("Succeeded", "Failed"):
            code = 0 if phase == "Succeeded" else 1
            state = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                    "startedAt": pod["metadata"]["creationTimestamp"], "finishedAt": now}}
        else:
            state = {"waiting": {"reason": "ContainerCreating"}}
        containers.append({
            "name": c["name"], "image": c.get("image", "busybox"), "imageID": "",
            "containerID": f"containerd://{pod['metadata']['uid'].replace('-', '')}{restart_count}",
            "ready": running and ready, "started": running, "restartCount": restart_count,
            "state": state,
        })
    pod["status"] = {
        "phase": phase,
        "conditions": [
            condition("Initialized", True),
            condition("Ready", running and ready),
            condition("ContainersReady", running and ready),
            condition("PodScheduled", True),
        ],
        "hostIP": "127.0.0.1",
        "podIP": pod.get("status", {}).get("podIP") or _fake_pod_ip(pod),
        "startTime": pod.get("status", {}).get("startTime") or now,
        "containerStatuses": containers,
        "qosClass": "BestEffort",
    }


def _fake_pod_ip(pod: Obj) -> str:
    h = int(hashlib.sha1(pod["metadata"]["uid"].encode()).hexdigest(), 16)
    return f"10.244.{(h >> 8) % 250}.{h % 250 + 2}"


def pod_is_ready(pod: Obj) -> bool:
    for c in pod.get("status", {}).get("conditions", []):
        if c["type"] == "Ready":
            return bool(c["status"] == "True")
    return False


def pod_is_active(pod: Obj) -> bool:
    return "deletionTimestamp" not in pod["metadata"] and \
        pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")


def container_ports(pod: Obj) -> list[Obj]:
    return [p for c in pod["spec"].get("containers", []) for p in c.get("ports", [])]


def backend_specs(pod: Obj) -> dict[int, Obj]:
    """containerPort -> {"kind": http|echo|source, "refuse": bool} for every declared port."""
    extra = json.loads(pod["metadata"].get("annotations", {}).get(BACKENDS_ANNOTATION, "{}"))
    return {int(p["containerPort"]): {"kind": "http", "refuse": False, **extra.get(str(p["containerPort"]), {})}
            for p in container_ports(pod)}


def status(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    out: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code}
    if details:
        out["details"] = details
    return out

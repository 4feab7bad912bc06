"""Scenario files: a compact YAML description of a cluster's workloads, turned into Kubernetes
objects for the store. See trayapp/sim/README.md for the format.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trayapp.sim.backends import BACKEND_KINDS
from trayapp.sim.objects import (
    BACKENDS_ANNOTATION,
    PHASE_ANNOTATION,
    READY_DELAY_ANNOTATION,
    SCALE_DOWN_DELAY_ANNOTATION,
    Obj,
)

_WORKLOAD_KINDS = {
    "deployments": "Deployment", "statefulsets": "StatefulSet", "daemonsets": "DaemonSet",
    "replicasets": "ReplicaSet", "replicationcontrollers": "ReplicationController", "jobs": "Job",
    "cronjobs": "CronJob",
}
_SECTIONS = {"nodes", "namespaces", "pods", "services", "objects", *_WORKLOAD_KINDS}


class ScenarioError(ValueError):
    pass


@dataclass(frozen=True)
class Scenario:
    objects: tuple[Obj, ...]
    cronjob_runs: tuple[tuple[str, str, int], ...] = ()  # (namespace, cronjob, jobs to create)


def load_scenario(source: str | Path | Mapping[str, Any]) -> Scenario:
    """Accept a dict, a path to a YAML file, or YAML text."""
    if isinstance(source, Mapping):
        data: Any = source
    elif isinstance(source, Path) or (isinstance(source, str) and "\n" not in source
                                      and source.endswith((".yaml", ".yml"))):
        data = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
    else:
        data = yaml.safe_load(source)
    if not isinstance(data, Mapping):
        raise ScenarioError("a scenario is a YAML mapping of sections (deployments, services, ...)")
    unknown = set(data) - _SECTIONS
    if unknown:
        raise ScenarioError(f"unknown scenario sections: {', '.join(sorted(unknown))}; "
                            f"known: {', '.join(sorted(_SECTIONS))}")
    return _build(data)


def _build(data: Mapping[str, Any]) -> Scenario:
    objects: list[Obj] = []
    runs: list[tuple[str, str, int]] = []
    for name in data.get("nodes") or []:
        objects.append({"kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                        "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    namespaces = {"default", *(data.get("namespaces") or [])}
    for section in ("pods", "services", *_WORKLOAD_KINDS):
        for item in data.get(section) or []:
            namespaces.add(item.get("namespace", "default"))
    for ns in sorted(namespaces):
        objects.append({"kind": "Namespace", "metadata": {"name": ns}, "spec": {"finalizers": ["kubernetes"]},
                        "status": {"phase": "Active"}})
    for item in data.get("objects") or []:
        objects.append(dict(item))
    for section, kind in _WORKLOAD_KINDS.items():
        for item in data.get(section) or []:
            objects.append(_workload(kind, item))
            if kind == "CronJob" and item.get("jobs"):
                runs.append((item.get("namespace", "default"), item["name"], int(item["jobs"])))
    for item in data.get("pods") or []:
        template = _template(item)
        objects.append({"kind": "Pod", "metadata": {"name": item["name"], "namespace": item.get("namespace", "default"),
                                                    **template["metadata"]},
                        "spec": template["spec"]})
    for item in data.get("services") or []:
        objects.append(_service(item))
    return Scenario(tuple(objects), tuple(runs))


def _container(item: Mapping[str, Any], default_name: str) -> tuple[Obj, dict[str, Any]]:
    ports, backends = [], {}
    for p in item.get("ports") or []:
        port: Obj = {"containerPort": int(p["containerPort"]), "protocol": p.get("protocol", "TCP")}
        if p.get("name"):
            port["name"] = p["name"]
        ports.append(port)
        kind = p.get("kind", "http")
        if kind not in BACKEND_KINDS:
            raise ScenarioError(f"port {p['containerPort']} of {default_name}: kind {kind!r} is not one of "
                                f"{', '.join(BACKEND_KINDS)}")
        if kind != "http" or p.get("refuse"):
            backends[str(port["containerPort"])] = {"kind": kind, "refuse": bool(p.get("refuse", False))}
    container: Obj = {"name": item.get("name", default_name), "image": item.get("image", "busybox:1.36"),
                      "ports": ports}
    return container, backends


def _template(item: Mapping[str, Any]) -> Obj:
    name = item["name"]
    labels = dict(item.get("labels") or {"app": name})
    annotations = {str(k): str(v) for k, v in (item.get("annotations") or {}).items()}
    specs = item.get("containers") or [{"name": name, "image": item.get("image", "busybox:1.36"),
                                        "ports": item.get("ports") or []}]
    containers, backends = [], {}
    for container_item in specs:
        container, more = _container(container_item, name)
        containers.append(container)
        backends.update(more)
    if backends:
        annotations[BACKENDS_ANNOTATION] = json.dumps(backends, sort_keys=True)
    if item.get("readyDelay") is not None:
        annotations[READY_DELAY_ANNOTATION] = str(float(item["readyDelay"]))
    if item.get("phase"):
        annotations[PHASE_ANNOTATION] = str(item["phase"])
    spec: Obj = {"containers": containers}
    if item.get("nodeName"):
        spec["nodeName"] = item["nodeName"]
    return {"metadata": {"labels": labels, "annotations": annotations}, "spec": spec}


def _workload(kind: str, item: Mapping[str, Any]) -> Obj:
    name, ns = item["name"], item.get("namespace", "default")
    template = _template(item)
    labels = template["metadata"]["labels"]
    meta: Obj = {"name": name, "namespace": ns, "labels": dict(item.get("objectLabels") or labels)}
    if kind == "Deployment" and item.get("scaleDownDelay") is not None:
        meta["annotations"] = {SCALE_DOWN_DELAY_ANNOTATION: str(float(item["scaleDownDelay"]))}
    if kind in ("Job", "CronJob"):
        template["spec"]["restartPolicy"] = "Never"
        job_spec: Obj = {"template": template, "completions": int(item.get("completions", 1)),
                         "parallelism": int(item.get("parallelism", 1)), "backoffLimit": 6}
        if kind == "Job":
            return {"kind": kind, "metadata": meta, "spec": job_spec}
        return {"kind": kind, "metadata": meta, "spec": {
            "schedule": item.get("schedule", "0 * * * *"), "concurrencyPolicy": "Allow", "suspend": False,
            "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
            "jobTemplate": {"metadata": {"labels": dict(labels)}, "spec": job_spec}}}
    spec: Obj = {"template": template}
    if kind == "ReplicationController":
        spec["selector"] = dict(labels)
    else:
        spec["selector"] = {"matchLabels": dict(labels)}
    if kind != "DaemonSet":
        spec["replicas"] = int(item.get("replicas", 1))
    if kind == "StatefulSet":
        spec["serviceName"] = item.get("serviceName", name)
    if kind == "Deployment":
        spec["strategy"] = {"type": "RollingUpdate",
                            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    return {"kind": kind, "metadata": meta, "spec": spec}


def _service(item: Mapping[str, Any]) -> Obj:
    name = item["name"]
    ports = []
    for p in item.get("ports") or []:
        port: Obj = {"port": int(p["port"]), "protocol": p.get("protocol", "TCP"),
                     "targetPort": p.get("targetPort", p["port"])}
        if p.get("name"):
            port["name"] = p["name"]
        ports.append(port)
    spec: Obj = {"type": item.get("type", "ClusterIP"), "ports": ports,
                 "selector": dict(item.get("selector") or {"app": name}),
                 "clusterIP": item.get("clusterIP", "10.96.0.10")}
    return {"kind": "Service", "metadata": {"name": name, "namespace": item.get("namespace", "default"),
                                            "labels": dict(item.get("labels") or {})}, "spec": spec}

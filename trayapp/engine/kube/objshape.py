"""What the engine assumes about a cluster object's shape, checked once as the object is cached.

The readers in pods.py, resolve.py and discovery.py trust the API server's schema: they call
`.get` on what should be a mapping and iterate what should be a list. A real API server never
breaks that schema, but a broken or hostile one can; the informer drops such an object (and logs
it) instead of letting it crash a resolver that other tunnels share. Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Kinds whose spec.selector is a plain label map; the others use a LabelSelector.
_MAP_SELECTOR_KINDS = frozenset({"services", "replicationcontrollers"})


def _optional(value: object, kind: type | tuple[type, ...]) -> bool:
    return value is None or isinstance(value, kind)


def _string_map(value: object) -> bool:
    return value is None or (
        isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    )


def _list_of_dicts(value: object) -> bool:
    return value is None or (isinstance(value, list) and all(isinstance(item, dict) for item in value))


def _port_entries(value: object, number: str) -> bool:
    if value is None:
        return True
    if not isinstance(value, list) or not _list_of_dicts(value):
        return False
    for entry in value:
        if not _optional(entry.get(number), int) or isinstance(entry.get(number), bool):
            return False
        if not (_optional(entry.get("name"), str) and _optional(entry.get("protocol"), str)):
            return False
        if not _optional(entry.get("targetPort"), (int, str)):
            return False
    return True


def _label_selector(value: object) -> bool:
    if value is None:
        return True
    if not isinstance(value, dict) or not _string_map(value.get("matchLabels")):
        return False
    expressions = value.get("matchExpressions")
    if not _list_of_dicts(expressions):
        return False
    for expression in expressions or ():  # a list of dicts, checked above
        values = expression.get("values")
        if not (_optional(expression.get("key"), str) and _optional(expression.get("operator"), str)):
            return False
        if not (values is None or (isinstance(values, list) and all(isinstance(v, str) for v in values))):
            return False
    return True


def _metadata_problem(metadata: object) -> str | None:
    if not isinstance(metadata, dict):
        return "its metadata is not an object"
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        return "it has no name"
    if not _optional(metadata.get("namespace"), str):
        return "its namespace is not a string"
    for field in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp"):
        if not _optional(metadata.get(field), str):
            return f"its metadata.{field} is not a string"
    if not _string_map(metadata.get("labels")) or not _string_map(metadata.get("annotations")):
        return "its labels or annotations are not a map of strings"
    if not _list_of_dicts(metadata.get("ownerReferences")):
        return "its ownerReferences are not a list of objects"
    return None


def _spec_problem(kind: str, spec: Mapping[str, Any]) -> str | None:
    selector = spec.get("selector")
    if not (_string_map(selector) if kind in _MAP_SELECTOR_KINDS else _label_selector(selector)):
        return "its spec.selector has the wrong shape"
    if not _port_entries(spec.get("ports"), "port"):
        return "its spec.ports have the wrong shape"
    for group in ("containers", "initContainers"):
        containers = spec.get(group)
        if not _list_of_dicts(containers):
            return f"its spec.{group} are not a list of objects"
        if not all(_port_entries(container.get("ports"), "containerPort") for container in containers or ()):
            return f"the ports in its spec.{group} have the wrong shape"
    for field in ("nodeName", "clusterIP", "type"):
        if not _optional(spec.get(field), str):
            return f"its spec.{field} is not a string"
    return None


def _status_problem(status: Mapping[str, Any]) -> str | None:
    if not _optional(status.get("phase"), str):
        return "its status.phase is not a string"
    if not _list_of_dicts(status.get("conditions")):
        return "its status.conditions are not a list of objects"
    statuses = status.get("containerStatuses")
    if not _list_of_dicts(statuses):
        return "its status.containerStatuses are not a list of objects"
    for entry in statuses or ():
        count = entry.get("restartCount")
        if not _optional(count, int) or isinstance(count, bool):
            return "a restartCount in its status is not a number"
    return None


def shape_problem(kind: str, obj: object) -> str | None:
    """Why `obj` (of plural `kind`) cannot be used, as a clause for a log line; None if it can."""
    if not isinstance(obj, dict):
        return "it is not a JSON object"
    problem = _metadata_problem(obj.get("metadata"))
    if problem:
        return problem
    spec, status = obj.get("spec"), obj.get("status")
    if not _optional(spec, dict):
        return "its spec is not an object"
    if not _optional(status, dict):
        return "its status is not an object"
    if spec and (problem := _spec_problem(kind, spec)):
        return problem
    if status and (problem := _status_problem(status)):
        return problem
    return None

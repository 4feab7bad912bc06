"""The `auto: exclude:` list: objects the user told kubetray not to forward automatically.

One flow mapping per line, so deleting the line undoes it (the tray's "Don't forward this
automatically" writes them through config/edit.py `exclude_auto`):

    auto:
      exclude:
        - {kind: service, namespace: dev, name: web, port: 8080}   # one port of a service
        - {kind: pod, namespace: dev, name: "dbg-*"}               # every port; a glob on the name

Only automatic forwards are affected: a rule the user wrote is always forwarded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from trayapp.config.problems import Problem, describe_type, did_you_mean
from trayapp.config.yamlnodes import LineDict, LineList
from trayapp.model import Origin, ResourceType

EXCLUDE_KEYS = ("kind", "namespace", "name", "port")
# Automatic forwards name a service, a pod, or the workload that owns a pod (engine/discovery.py).
_KINDS = {**{kind.value: kind for kind in ResourceType}, **{kind.short: kind for kind in ResourceType},
          "po": ResourceType.POD}
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_EXAMPLE = "{kind: service, namespace: dev, name: web, port: 8080}"


@dataclass(frozen=True)
class Exclusion:
    """Automatic forwards of this object (a glob on its name), one port or all, are not made."""

    kind: ResourceType  # a service, a pod, or a pod's workload: what automatic rules name
    namespace: str
    name: str  # the object's name, or a glob such as "web-*"
    port: int | str | None = None  # None: every port
    origin: Origin | None = field(default=None, compare=False)


def _entry(entry: Any, file: str, index: int, line: int) -> tuple[Exclusion | None, list[Problem]]:
    prefix = f"auto.exclude[{index}]"
    if not isinstance(entry, LineDict):
        return None, [Problem(file, line, prefix, f"Each exclusion must be a mapping like {_EXAMPLE}; "
                                                  f"found {describe_type(entry)}.")]
    problems: list[Problem] = []

    def problem(key: str, message: str) -> None:
        problems.append(Problem(file, entry.line_of(key), f"{prefix}.{key}", message))

    for key in entry:
        if key not in EXCLUDE_KEYS:
            problem(str(key), f'Unknown field "{key}".{did_you_mean(str(key), EXCLUDE_KEYS)} '
                              f"An exclusion's fields are: {', '.join(EXCLUDE_KEYS)}.")
    values: dict[str, str] = {}
    for key in ("kind", "namespace", "name"):
        value = entry.get(key)
        if not isinstance(value, str) or not value.strip():
            problem(key, f'This exclusion\'s "{key}" must be text; found {describe_type(value)}.')
        else:
            values[key] = value.strip()
    kind = _KINDS.get(values.get("kind", "").lower())
    if "kind" in values and kind is None:
        problem("kind", f'Unknown kind "{values["kind"]}"; automatic forwards are of a service, a pod or a workload (deployment, statefulset, ...).')
    if "namespace" in values and not _NAMESPACE.fullmatch(values["namespace"]):
        problem("namespace", f'"{values["namespace"]}" is not a namespace name.')
    port = entry.get("port")
    if isinstance(port, str) and port.strip().isdigit():
        port = int(port.strip())
    if port is not None and not (
        (isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535)
        or (isinstance(port, str) and _PORT_NAME.fullmatch(port.strip()))
    ):
        problem("port", f'"port" must be a port number or a port name; found {describe_type(port)}. '
                        "Leave it out to exclude every port.")
    if problems or kind is None:
        return None, problems
    return Exclusion(kind, values["namespace"], values["name"], port.strip() if isinstance(port, str) else port,
                     Origin(file=file, line=entry.line, index=index)), []


def parse_exclusions(value: Any, file: str, line: int) -> tuple[tuple[Exclusion, ...], list[Problem]]:
    """The `auto.exclude` entries that are fine, and the problems of the others."""
    if value is None:
        return (), []
    if not isinstance(value, LineList):
        return (), [Problem(file, line, "auto.exclude", f'"exclude" must be a list of entries like {_EXAMPLE}; '
                                                        f"found {describe_type(value)}.")]
    found: list[Exclusion] = []
    problems: list[Problem] = []
    for index, entry in enumerate(value):
        exclusion, more = _entry(entry, file, index, value.line_of(index))
        problems += more
        if exclusion is not None:
            found.append(exclusion)
    return tuple(found), problems

"""One `portForward` entry -> a `Rule` or the problems that stop it being one.

The fields are Skaffold's `portForward` schema, field for field, plus kubetray's own `name`,
`scheme`, `path` and `transport`. Every field is checked even after the first problem, so a user fixing a rule
sees everything wrong with it at once. Also here: repeated and competing rules within one list.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trayapp.config.problems import Problem, describe_type, did_you_mean, suggest
from trayapp.config.yamlnodes import LineDict, LineList
from trayapp.model import DEFAULT_ADDRESS, DEFAULT_NAMESPACE, Origin, ResourceType, Rule, Transport

SKAFFOLD_FIELDS = ("resourceType", "resourceName", "namespace", "port", "address", "localPort")
KUBETRAY_FIELDS = ("name", "scheme", "path", "transport")
RULE_FIELDS = SKAFFOLD_FIELDS + KUBETRAY_FIELDS
RESOURCE_TYPES = tuple(kind.value for kind in ResourceType)
TRANSPORTS = tuple(transport.value for transport in Transport)

# kubectl's short names are not accepted by Skaffold, but people type them; point them home.
_SHORT_TO_FULL = {kind.short: kind.value for kind in ResourceType}
# Container port names are IANA service names and Service port names DNS labels; this pattern
# admits both, so every name Kubernetes accepts passes.
_PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_DIGITS = re.compile(r"[0-9]+")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_PORT_HELP = 'a port number like 8080 or a port name like "http"'


@dataclass(frozen=True)
class Where:
    """The file and field path of the list being read, e.g. ("config.yaml", "portForward")."""

    file: str
    field: str

    def item(self, index: int) -> str:
        return f"{self.field}[{index}]"


class _Checker:
    """Reads one entry, collecting problems instead of stopping at the first."""

    def __init__(self, entry: LineDict, where: Where, index: int) -> None:
        self.entry = entry
        self.file = where.file
        self.prefix = where.item(index)
        self.problems: list[Problem] = []
        # Fields some misspelled key probably meant: "missing" would only repeat that problem.
        self.misspelled: set[str] = set()

    def missing(self, key: str, help_text: str = "") -> None:
        if key in self.misspelled:
            return
        why = "has no value" if key in self.entry else "is missing"
        self.problem(key, f'This rule\'s "{key}" {why}; it is required{help_text}.')

    def problem(self, key: str | None, message: str) -> None:
        field = self.prefix if key is None else f"{self.prefix}.{key}"
        line = self.entry.line if key is None else self.entry.line_of(key)
        self.problems.append(Problem(self.file, line, field, message))

    def string(self, key: str, *, required: bool = False) -> str | None:
        value = self.entry.get(key)
        if value is None:
            if required:
                self.missing(key)
            return None
        if not isinstance(value, str):
            hint = (
                " Put it in quotes if you meant it as text."
                if isinstance(value, (int, float))
                else ""
            )
            self.problem(key, f'"{key}" must be a string; found {describe_type(value)}.{hint}')
            return None
        if not value.strip():
            self.problem(key, f'"{key}" is empty; give it a value or leave the field out.')
            return None
        return value.strip()

    def port_number(self, key: str, value: Any) -> int | None:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            self.problem(
                key, f'"{key}" must be a port number from 1 to 65535; found {describe_type(value)}.'
            )
            return None
        number = int(value)
        if not 1 <= number <= 65535:
            self.problem(key, f'"{key}" is {number}, which is outside the port range 1-65535.')
            return None
        return number


def _resource_type(check: _Checker) -> ResourceType | None:
    text = check.string("resourceType", required=True)
    if text is None:
        return None
    try:
        return ResourceType.parse(text)
    except ValueError:
        pass
    allowed = ", ".join(RESOURCE_TYPES)
    guess = _SHORT_TO_FULL.get(text.lower()) or suggest(text, RESOURCE_TYPES)
    hint = f' Did you mean "{guess}"?' if guess else ""
    check.problem("resourceType", f'Unknown resource type "{text}".{hint} Allowed: {allowed}.')
    return None


def _port(check: _Checker) -> int | str | None:
    if check.entry.get("port") is None:
        check.missing("port", f" ({_PORT_HELP})")
        return None
    value = check.entry["port"]
    if isinstance(value, str) and not _DIGITS.fullmatch(value.strip()):
        name = value.strip()
        if _PORT_NAME.fullmatch(name):
            return name
        check.problem(
            "port",
            f'"{value}" is not {_PORT_HELP}; port names use lowercase letters, digits and "-", '
            "at most 63 characters.",
        )
        return None
    if isinstance(value, str):
        value = value.strip()  # a quoted number such as "8080" means that number
    return check.port_number("port", value)


def _local_port(check: _Checker) -> int | None:
    value = check.entry.get("localPort")
    if value is None:
        return None
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = value.strip()
    elif isinstance(value, str):
        check.problem(
            "localPort", f'"localPort" must be a port number from 1 to 65535; found "{value}".'
        )
        return None
    return check.port_number("localPort", value)


def _address(check: _Checker) -> str:
    text = check.string("address")
    if text is None:
        return DEFAULT_ADDRESS
    if text.lower() == "localhost":
        return "localhost"
    try:
        # Normalised so "::0001" and "::1" are seen as the same address when looking for clashes.
        return str(ipaddress.ip_address(text))
    except ValueError:
        check.problem(
            "address", f'"{text}" is not an IP address (like 127.0.0.1 or ::1) or "localhost".'
        )
        return DEFAULT_ADDRESS


def _scheme(check: _Checker) -> str | None:
    text = check.string("scheme")
    if text is not None and not _SCHEME.fullmatch(text.lower()):
        check.problem(
            "scheme",
            f'"{text}" is not a URL scheme; use http, https or another scheme made of a letter '
            'followed by letters, digits, "+", "." or "-".',
        )
        return None
    return text.lower() if text is not None else None


def _path(check: _Checker) -> str:
    text = check.string("path")
    if text is None:
        return "/"
    if not text.startswith("/"):
        check.problem("path", f'"{text}" must start with "/", as in "/{text}".')
        return "/"
    return text


def _transport(check: _Checker) -> Transport:
    text = check.string("transport")
    if text is None:
        return Transport.AUTO
    try:
        return Transport(text.lower())
    except ValueError:
        pass
    check.problem(
        "transport",
        f'Unknown transport "{text}".{did_you_mean(text.lower(), TRANSPORTS)} Allowed: '
        f"{', '.join(TRANSPORTS)} (auto, the default, lets kubetray pick the best one the cluster speaks).",
    )
    return Transport.AUTO


def _key_problems(check: _Checker) -> None:
    for key, line, first in check.entry.duplicate_keys:
        check.problems.append(
            Problem(
                check.file,
                line,
                f"{check.prefix}.{key}",
                f'"{key}" is written twice in this rule (first on line {first}); say it once.',
            )
        )
    for key in check.entry:
        if key in RULE_FIELDS:
            continue
        text = str(key)
        guess = suggest(text, RULE_FIELDS)
        if guess is not None:
            check.misspelled.add(guess)
        check.problem(
            text,
            f'Unknown field "{text}".{did_you_mean(text, RULE_FIELDS)} '
            f"A rule's fields are: {', '.join(RULE_FIELDS)}.",
        )


def parse_rule(
    entry: Any, where: Where, index: int, line: int
) -> tuple[Rule | None, list[Problem]]:
    """The Rule `entry` describes, or None and every problem found in it."""
    if not isinstance(entry, LineDict):
        return None, [
            Problem(
                where.file,
                line,
                where.item(index),
                "Each rule must be a mapping with fields such as resourceType, resourceName and "
                f"port; found {describe_type(entry)}.",
            )
        ]
    check = _Checker(entry, where, index)
    _key_problems(check)
    resource_type = _resource_type(check)
    resource_name = check.string("resourceName", required=True)
    namespace = check.string("namespace") or DEFAULT_NAMESPACE
    port = _port(check)
    local_port = _local_port(check)
    address = _address(check)
    name = check.string("name")
    scheme = _scheme(check)
    path = _path(check)
    transport = _transport(check)
    if check.problems or resource_type is None or resource_name is None or port is None:
        return None, check.problems
    rule = Rule(
        resource_type=resource_type,
        resource_name=resource_name,
        port=port,
        namespace=namespace,
        local_port=local_port,
        address=address,
        name=name,
        scheme=scheme,
        path=path,
        transport=transport,
        origin=Origin(file=where.file, line=entry.line, index=index),
    )
    return rule, []


def parse_rule_list(value: Any, where: Where, line: int) -> tuple[list[Rule], list[Problem]]:
    """Every valid rule in a `portForward` list, and the problems of the others (None: no rules)."""
    if value is None:
        return [], []
    if not isinstance(value, LineList):
        return [], [
            Problem(
                where.file,
                line,
                where.field,
                f'"portForward" must be a list of rules; found {describe_type(value)}.',
            )
        ]
    rules: list[Rule] = []
    problems: list[Problem] = []
    for index, entry in enumerate(value):
        rule, found = parse_rule(entry, where, index, value.line_of(index))
        problems.extend(found)
        if rule is not None:
            rules.append(rule)
    kept, clashes = drop_duplicates(rules, where)
    return kept, problems + clashes


def _endpoint(address: str, port: int | None) -> str:
    host = f"[{address}]" if ":" in address else address
    return host if port is None else f"{host}:{port}"


def _bind_address(address: str) -> str:
    # "localhost" listens on 127.0.0.1 (engine/forward/ports.py), so the two ask for the same socket.
    return "127.0.0.1" if address == "localhost" else address


def _line(rule: Rule) -> str:
    return str(rule.origin.line) if rule.origin and rule.origin.line is not None else "?"


def _may_be_same_service_port(rule: Rule, earlier: Rule) -> bool:
    """A named and a numbered port of one service: the same port if the name stands for it."""
    return (
        rule.resource_type is earlier.resource_type is ResourceType.SERVICE
        and (rule.namespace, rule.resource_name, rule.address, rule.local_port)
        == (earlier.namespace, earlier.resource_name, earlier.address, earlier.local_port)
        and isinstance(rule.port, str) != isinstance(earlier.port, str)
    )


def drop_duplicates(rules: Sequence[Rule], where: Where) -> tuple[list[Rule], list[Problem]]:
    """Drop rules that repeat an earlier one, and warn about rules that compete with one.

    A rule repeats another when both forward the same target to the same local port (a named
    port without `localPort` counts as the same local port); it is dropped with a warning. The
    same target on two local ports is two forwards, as in Skaffold. Two targets asking for one
    local port both run: the later one falls back to the next free port at run time, so this
    is a warning, not a reason to drop either. Whether `port: http` and `port: 80` name the same
    service port only the cluster knows; the engine forwards such a pair once (see
    engine/forward/resolve.py `same_target`), and this only points it out.
    """
    kept: list[Rule] = []
    problems: list[Problem] = []
    by_forward: dict[tuple[tuple[str, ...], int | None], Rule] = {}
    by_endpoint: dict[tuple[str, int], Rule] = {}
    for rule in rules:
        assert rule.origin is not None  # parse_rule always sets it
        field = where.item(rule.origin.index or 0)
        local = rule.requested_local_port

        def warn(message: str, rule: Rule = rule, field: str = field) -> None:
            assert rule.origin is not None
            problems.append(Problem(where.file, rule.origin.line, field, message, warning=True))

        earlier = by_forward.get((rule.key, local))
        if earlier is not None:
            warn(
                f"This rule repeats the rule on line {_line(earlier)}: the same "
                f"{rule.resource_type.value} {rule.namespace}/{rule.resource_name} "
                f"port {rule.port} to {_endpoint(rule.address, local)}. "
                "kubetray forwards it once; remove one of them."
            )
            continue
        same_port = next((r for r in kept if _may_be_same_service_port(rule, r)), None)
        if same_port is not None:
            named, number = (rule, same_port) if isinstance(rule.port, str) else (same_port, rule)
            warn(
                f"This rule and the rule on line {_line(same_port)} differ only in naming "
                f"service {rule.namespace}/{rule.resource_name}'s port as "
                f'"{named.port}" and as {number.port}. If "{named.port}" is port {number.port}, '
                "they are one forward and kubetray runs it once, for the rule on line "
                f"{_line(same_port)}."
            )
        clash = by_endpoint.get((_bind_address(rule.address), local)) if local is not None else None
        if clash is not None and same_port is None:
            warn(
                f"This rule asks for local address {_endpoint(rule.address, local)}, which "
                f"the rule on line {_line(clash)} asks for too. kubetray forwards both and gives "
                "this one the next free port (the next ten, then 4503-4533, as Skaffold does); "
                'give it another "localPort" to choose the port yourself.'
            )
        by_forward[(rule.key, local)] = rule
        if local is not None:
            by_endpoint.setdefault((_bind_address(rule.address), local), rule)
        kept.append(rule)
    return kept, problems

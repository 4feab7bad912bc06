"""The rules file's `auto:` section -> `AutoSettings`, or the problems that stop parts of it.

`auto:` says what kubetray forwards without a rule naming it: what Skaffold deployed or is
debugging, what opts in with the `kubetray.dev/forward` annotation, and what label selectors
pick. Turning that into rules needs the cluster and happens in `engine/discovery.py`; this module
only reads and checks the settings, with a file, line and field for every problem.

A field with a problem turns its source off until it is fixed (a bad `skaffold:` value means no
Skaffold forwards, a bad selector entry is dropped), so a typo never forwards more than was asked.

What is on by default: `skaffold` (services a Skaffold run deployed and pods in Skaffold debug
mode, what `skaffold dev --port-forward` and `skaffold debug` forward themselves), not
`annotation`: an annotation exists only to make kubetray open a port, and anyone who may edit a
pod or service in the namespace can write one, so it is for the user to turn on. Either way an
automatic forward listens only on loopback, never takes a port below 1024 or one the user's rules
name, and is announced when it appears.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from trayapp.config.exclusions import Exclusion, parse_exclusions
from trayapp.config.problems import Problem, describe_type, did_you_mean, suggest
from trayapp.config.yamlnodes import LineDict, LineList
from trayapp.model import Origin, ResourceType
from trayapp.selectors import Selector, parse_selector

ALL_NAMESPACES = "*"
AUTO_KEYS = ("skaffold", "annotation", "namespace", "selectors", "exclude")
SELECTOR_KEYS = ("kind", "namespace", "selector", "ports")
SELECTOR_KINDS = (ResourceType.SERVICE.value, ResourceType.POD.value)

# A namespace name is a DNS label (RFC 1123), as the API server validates it.
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# Service port names are DNS labels and container port names IANA service names; this admits both.
_PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_DIGITS = re.compile(r"[0-9]+")
_BOOLEAN_TEXT = {"true": True, "false": False, "yes": True, "no": False, "on": True, "off": False}


@dataclass(frozen=True)
class SelectorRule:
    """Forward every service or pod a label selector picks (`auto.selectors[i]`)."""

    kind: ResourceType  # SERVICE or POD
    namespace: str | None  # None: the `auto.namespace` setting; "*": every namespace
    selector: Selector
    selector_text: str  # as written, for messages and `kubetray check`
    ports: tuple[int | str, ...] = ()  # numbers or port names; empty: every port
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class AutoSettings:
    """What `auto:` asks for; the defaults are what a rules file without `auto:` gets."""

    skaffold: bool = True  # services Skaffold deployed and pods in Skaffold debug mode
    # Services and pods annotated kubetray.dev/forward; off unless asked for, since anyone who
    # may edit an object in the namespace can write the annotation.
    annotation: bool = False
    namespace: str | None = None  # None: the context's namespace; "*": every namespace
    selectors: tuple[SelectorRule, ...] = ()
    exclude: tuple[Exclusion, ...] = ()  # what the user said not to forward automatically

    @property
    def enabled(self) -> bool:
        """Whether discovery has anything to do (the engine need not watch when it has not)."""
        return self.skaffold or self.annotation or bool(self.selectors)


class _Reader:
    """Checks one mapping of the `auto:` section, collecting problems instead of stopping."""

    def __init__(self, file: str, mapping: LineDict, prefix: str) -> None:
        self.file = file
        self.mapping = mapping
        self.prefix = prefix
        self.problems: list[Problem] = []
        self.misspelled: set[str] = set()  # keys some unknown key probably meant

    def problem(self, key: str | None, message: str) -> None:
        field_path = self.prefix if key is None else f"{self.prefix}.{key}"
        line = self.mapping.line if key is None else self.mapping.line_of(key)
        self.problems.append(Problem(self.file, line, field_path, message))

    def keys(self, allowed: tuple[str, ...], what: str) -> None:
        for key, line, first in self.mapping.duplicate_keys:
            self.problems.append(
                Problem(
                    self.file,
                    line,
                    f"{self.prefix}.{key}",
                    f'"{key}" is written twice (first on line {first}); '
                    "only the last one would be used, so say it once.",
                )
            )
        for key in self.mapping:
            if key in allowed:
                continue
            text = str(key)
            guess = suggest(text, allowed)
            if guess is not None:
                self.misspelled.add(guess)
            self.problem(
                text,
                f'Unknown field "{text}".{did_you_mean(text, allowed)} '
                f"{what} fields are: {', '.join(allowed)}.",
            )

    def boolean(self, key: str, default: bool) -> bool:
        if key not in self.mapping:
            # A misspelled `skafold: false` most likely meant to turn the source off.
            return False if key in self.misspelled else default
        value = self.mapping[key]
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        hint = ""
        if isinstance(value, str) and value.strip().lower() in _BOOLEAN_TEXT:
            hint = f" Write {str(_BOOLEAN_TEXT[value.strip().lower()]).lower()} without quotes."
        self.problem(
            key,
            f'"{key}" must be true or false; found {describe_type(value)}.{hint} '
            "Until this is fixed it counts as false.",
        )
        return False

    def namespace(self, key: str, *, allow_all: bool) -> tuple[str | None, bool]:
        """The namespace written under `key` (None when absent) and whether it was valid."""
        value = self.mapping.get(key)
        if value is None:
            return None, True
        if not isinstance(value, str):
            self.problem(
                key,
                f'"{key}" must be a namespace name or "*" for every namespace; '
                f"found {describe_type(value)}.",
            )
            return None, False
        text = value.strip()
        if text == ALL_NAMESPACES and allow_all:
            return text, True
        if not _NAMESPACE.fullmatch(text):
            self.problem(
                key,
                f'"{value}" is not a namespace name: use lowercase letters, digits and "-", '
                'at most 63 characters, or "*" for every namespace.',
            )
            return None, False
        return text, True


def _selectors(value: Any, file: str, line: int) -> tuple[tuple[SelectorRule, ...], list[Problem]]:
    if value is None:
        return (), []
    if not isinstance(value, LineList):
        return (), [
            Problem(
                file,
                line,
                "auto.selectors",
                '"selectors" must be a list of entries like '
                '{kind: service, selector: "app=web"}; '
                f"found {describe_type(value)}.",
            )
        ]
    rules: list[SelectorRule] = []
    problems: list[Problem] = []
    for index, entry in enumerate(value):
        rule, found = _selector_rule(entry, file, index, value.line_of(index))
        problems.extend(found)
        if rule is not None:
            rules.append(rule)
    return tuple(rules), problems


def _selector_rule(
    entry: Any, file: str, index: int, line: int
) -> tuple[SelectorRule | None, list[Problem]]:
    prefix = f"auto.selectors[{index}]"
    if not isinstance(entry, LineDict):
        return None, [
            Problem(
                file,
                line,
                prefix,
                "Each selector entry must be a mapping like "
                '{kind: service, selector: "app=web", ports: [80]}; '
                f"found {describe_type(entry)}.",
            )
        ]
    reader = _Reader(file, entry, prefix)
    reader.keys(SELECTOR_KEYS, "A selector entry's")
    kind = _kind(reader)
    namespace, _ = reader.namespace("namespace", allow_all=True)  # a bad one is a problem
    text, selector = _selector(reader)
    ports = _ports(reader)
    if reader.problems or kind is None or selector is None or text is None or ports is None:
        return None, reader.problems
    rule = SelectorRule(
        kind=kind,
        namespace=namespace,
        selector=selector,
        selector_text=text,
        ports=ports,
        origin=Origin(file=file, line=entry.line, index=index),
    )
    return rule, []


def _required_string(reader: _Reader, key: str, help_text: str) -> str | None:
    value = reader.mapping.get(key)
    if value is None:
        if key not in reader.misspelled:
            why = "has no value" if key in reader.mapping else "is missing"
            reader.problem(key, f'This entry\'s "{key}" {why}; it is required ({help_text}).')
        return None
    if not isinstance(value, str):
        reader.problem(
            key, f'"{key}" must be a string ({help_text}); found {describe_type(value)}.'
        )
        return None
    if not value.strip():
        reader.problem(key, f'"{key}" is empty; it is required ({help_text}).')
        return None
    return value.strip()


def _kind(reader: _Reader) -> ResourceType | None:
    text = _required_string(reader, "kind", "service or pod")
    if text is None:
        return None
    lowered = text.lower()
    if lowered in SELECTOR_KINDS:
        return ResourceType(lowered)
    shorts = {"svc": "service", "services": "service", "po": "pod", "pods": "pod"}
    guess = shorts.get(lowered) or suggest(text, SELECTOR_KINDS)
    if guess is None and lowered in {kind.value for kind in ResourceType}:
        hint = f" To forward a {lowered}'s pods, use kind: pod with a selector its pods match."
    else:
        hint = f' Did you mean "{guess}"?' if guess else ""
    reader.problem(
        "kind", f'Unknown kind "{text}".{hint} Automatic selectors forward a service or a pod.'
    )
    return None


def _selector(reader: _Reader) -> tuple[str | None, Selector | None]:
    text = _required_string(reader, "selector", 'a label selector like "app=web,tier!=db"')
    if text is None:
        return None, None
    try:
        return text, parse_selector(text)
    except ValueError as error:
        reader.problem("selector", str(error))
        return None, None


def _ports(reader: _Reader) -> tuple[int | str, ...] | None:
    """The ports filter: () for every port, None when it has a problem."""
    value = reader.mapping.get("ports")
    if value is None:
        return ()
    if not isinstance(value, LineList):
        hint = f" Write it as a list: ports: [{value}]." if isinstance(value, (int, str)) else ""
        reader.problem(
            "ports",
            '"ports" must be a list of port numbers or port names; '
            f"found {describe_type(value)}.{hint}",
        )
        return None
    if not value:
        reader.problem(
            "ports",
            '"ports" is an empty list, which forwards nothing; leave it out to forward every port.',
        )
        return None
    ports: list[int | str] = []
    ok = True
    for index, item in enumerate(value):
        port = _port(item)
        if port is None:
            ok = False
            reader.problems.append(
                Problem(
                    reader.file,
                    value.line_of(index),
                    f"{reader.prefix}.ports[{index}]",
                    _port_problem(item),
                )
            )
        elif port not in ports:
            ports.append(port)
    return tuple(ports) if ok else None


def _port(item: Any) -> int | str | None:
    if isinstance(item, bool):
        return None
    if isinstance(item, str) and _DIGITS.fullmatch(item.strip()):
        item = int(item.strip())
    if isinstance(item, int):
        return item if 1 <= item <= 65535 else None
    if isinstance(item, str) and _PORT_NAME.fullmatch(item.strip()):
        return item.strip()
    return None


def _port_problem(item: Any) -> str:
    if isinstance(item, int) and not isinstance(item, bool):
        return f"Port {item} is outside the port range 1-65535."
    if isinstance(item, str):
        return (
            f'"{item}" is not a port number or a port name; port names use lowercase letters, '
            'digits and "-", at most 63 characters.'
        )
    return f"Each port must be a port number or a port name; found {describe_type(item)}."


def parse_auto(node: Any, file: str, line: int | None = None) -> tuple[AutoSettings, list[Problem]]:
    """The settings the `auto:` value `node` describes (None: the defaults) and its problems.

    `line` is where the `auto:` key is, for a problem with the section as a whole.
    """
    if node is None:
        return AutoSettings(), []
    if not isinstance(node, LineDict):
        # Nothing can be trusted, so nothing is forwarded automatically until it is fixed.
        return AutoSettings(skaffold=False, annotation=False), [
            Problem(
                file,
                line,
                "auto",
                f'"auto" must be a mapping; found {describe_type(node)}. '
                "For example: auto: {skaffold: true, annotation: false}.",
            )
        ]
    reader = _Reader(file, node, "auto")
    reader.keys(AUTO_KEYS, "The auto section's")
    skaffold = reader.boolean("skaffold", True)
    annotation = reader.boolean("annotation", False)
    namespace, _ = reader.namespace("namespace", allow_all=True)
    selectors, found = _selectors(node.get("selectors"), file, node.line_of("selectors"))
    exclude, excluded = parse_exclusions(node.get("exclude"), file, node.line_of("exclude"))
    settings = AutoSettings(
        skaffold=skaffold, annotation=annotation, namespace=namespace, selectors=selectors,
        exclude=exclude,
    )
    return settings, reader.problems + found + excluded

"""The rules written in a rules file, found by what a person calls them, and the edit errors.

A selector is a rule's `name`, TYPE/NAME or TYPE/NAME:PORT (kubectl's type names: svc, deploy,
...), or @LINE, the line the rule starts on. `kubetray remove` and the tray use the same ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ruamel.yaml.nodes import Node, ScalarNode, SequenceNode

from trayapp.config.yamltext import lookup, pairs
from trayapp.errors import KubetrayError
from trayapp.model import ResourceType, Rule

_TYPE_NAMES = {kind.value: kind for kind in ResourceType} | {kind.short: kind for kind in ResourceType}
_TYPE_NAMES |= {"po": ResourceType.POD, "cj": ResourceType.CRONJOB, "jobs": ResourceType.JOB}
_TYPE_NAMES |= {kind.value + "s": kind for kind in ResourceType}


class RulesEditError(KubetrayError):
    """The rules file was not changed; the message says why and what to do."""

    title = "Rules file not changed"


class RulesFileHasProblems(RulesEditError):
    """The loader finds problems in the file; editing it now could hide or worsen them."""


class AmbiguousRule(RulesEditError):
    """Several rules match what was asked for; the message names each with its line."""


class NoSuchRule(RulesEditError):
    """No rule in the file matches what was asked for."""


class InvalidRule(RulesEditError):
    """The rule to write would itself be a problem (an empty name, a port out of range)."""


class DuplicateRule(RulesEditError):
    """The file already has this rule."""


def parse_resource_type(text: str) -> ResourceType:
    """kubectl's names for a resource type: full, short (svc, deploy, ...) or plural."""
    kind = _TYPE_NAMES.get(text.strip().lower())
    if kind is None:
        allowed = ", ".join(sorted({kind.short for kind in ResourceType} | {"po", "cj"}))
        raise InvalidRule(f'"{text}" is not a resource type kubetray can forward; use one of {allowed} '
                          "or their full names.")
    return kind


def selector_of(rule: Rule) -> str:
    return f"{rule.resource_type.value}/{rule.resource_name}:{rule.port}"


@dataclass
class Found:
    """A rule's entry in the file: where it is and what its scalar fields say."""

    context: str | None
    key: ScalarNode
    seq: SequenceNode
    index: int
    node: Node
    fields: dict[str, str]

    @property
    def line(self) -> int:
        return int(self.node.start_mark.line) + 1

    def describe(self) -> str:
        where = f"context {self.context}" if self.context is not None else "top level"
        kind, name = self.fields.get("resourceType", "?"), self.fields.get("resourceName", "?")
        return f"line {self.line} ({kind}/{name}:{self.fields.get('port', '?')}, {where})"


def rule_entries(root: Node | None) -> list[Found]:
    """Every entry of the top-level `portForward` and of each context's, in file order."""
    lists: list[tuple[str | None, tuple[ScalarNode, Node]]] = []
    top = lookup(root, "portForward")
    if top is not None:
        lists.append((None, top))
    contexts = lookup(root, "contexts")
    for key, body in pairs(contexts[1]) if contexts is not None else []:
        entry = lookup(body, "portForward")
        if entry is not None:
            lists.append((str(key.value), entry))
    found = []
    for context, (key, seq) in lists:
        if isinstance(seq, SequenceNode):
            for index, node in enumerate(seq.value):
                fields = {str(k.value): str(v.value) for k, v in pairs(node) if isinstance(v, ScalarNode)}
                found.append(Found(context, key, seq, index, node, fields))
    return found


def matches(fields: Mapping[str, str], line: int | None, selector: str) -> bool:
    """Whether a rule with these fields (as written) is one `selector` names: a rule's `name`,
    TYPE/NAME or TYPE/NAME:PORT (kubectl's type names), @LINE (the line the rule starts on), or
    any of the first three followed by @LINE, which must both hold."""
    text = selector.strip()
    if text.startswith("@"):
        return text[1:].isdigit() and line == int(text[1:])
    target, at, where = text.rpartition("@")
    if at and target and where.isdigit():  # TYPE/NAME:PORT@LINE: both must hold
        return line == int(where) and matches(fields, line, target)
    if "/" not in text:
        return fields.get("name") == text
    kind_text, _, rest = text.partition("/")
    name, _, port = rest.partition(":")
    try:
        kind = parse_resource_type(kind_text)
        written = ResourceType.parse(fields.get("resourceType", ""))
    except (InvalidRule, ValueError):
        return False
    same_port = not port or fields.get("port", "").strip() == port.strip()
    return written is kind and fields.get("resourceName", "").strip() == name.strip() and same_port


def rule_matches(rule: Rule, selector: str) -> bool:
    """`matches` for a Rule the loader read (a Skaffold file's, which has no nodes here)."""
    fields = {"resourceType": rule.resource_type.value, "resourceName": rule.resource_name,
              "port": str(rule.port), **({"name": rule.name} if rule.name else {})}
    return matches(fields, None, selector)

"""Label and field selectors as the API server parses them from `labelSelector` / `fieldSelector`.

Parsing turns the query text into frozen requirement values once per request; matching is then a
cheap check per object. A malformed selector raises SelectorError, which the API turns into 400.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trayapp.selectors import EVERYTHING, Selector, from_label_selector, from_map, parse_selector


class SelectorError(ValueError):
    pass


# Label selectors are the engine's: one parser and one matcher serve both sides of the wire.
LabelSelector = Selector


def parse_label_selector(text: str | None) -> LabelSelector:
    if not text or not text.strip():
        return EVERYTHING
    try:
        return parse_selector(text)
    except ValueError as exc:
        raise SelectorError(str(exc)) from exc


def selector_from_match_labels(match_labels: Mapping[str, str]) -> LabelSelector:
    return from_map(match_labels)


def selector_from_label_selector(spec: Mapping[str, Any] | None) -> LabelSelector:
    """A workload's `spec.selector` (matchLabels + matchExpressions); an empty one selects all."""
    return from_label_selector(spec) if spec else EVERYTHING


@dataclass(frozen=True)
class FieldSelector:
    terms: tuple[tuple[str, bool, str], ...] = ()  # (dotted path, equal?, value)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for path, equal, value in self.terms:
            if (_lookup(obj, path) == value) != equal:
                return False
        return True


def _lookup(obj: Mapping[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return ""
        node = node[part]
    return "" if node is None else str(node)


_FIELD_RE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9.]*)\s*(==|!=|=)\s*(.*?)\s*$")


def parse_field_selector(text: str | None) -> FieldSelector:
    if not text or not text.strip():
        return FieldSelector()
    terms = []
    for part in text.split(","):
        m = _FIELD_RE.match(part)
        if m is None:
            raise SelectorError(f"invalid field selector: {part.strip()!r}")
        path, op, value = m.groups()
        terms.append((path, op != "!=", value))
    return FieldSelector(tuple(terms))

"""Label and field selectors as the API server parses them from `labelSelector` / `fieldSelector`.

Parsing turns the query text into frozen requirement values once per request; matching is then a
cheap check per object. A malformed selector raises SelectorError, which the API turns into 400.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class SelectorError(ValueError):
    pass


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return present and value in self.values
        if self.op == "!=":
            return not present or value not in self.values
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return not present or value not in self.values
        if self.op == "exists":
            return present
        return not present


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)


_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_SET_RE = re.compile(rf"^\s*(!?)\s*({_KEY})\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ_RE = re.compile(rf"^\s*({_KEY})\s*(==|!=|=)\s*([-A-Za-z0-9_.]*)\s*$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside `in (...)` parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def parse_label_selector(text: str | None) -> LabelSelector:
    if not text or not text.strip():
        return LabelSelector()
    reqs: list[Requirement] = []
    for part in _split_top_level(text):
        eq = _EQ_RE.match(part)
        if eq:
            key, op, value = eq.groups()
            reqs.append(Requirement(key, "!=" if op == "!=" else "=", frozenset({value})))
            continue
        st = _SET_RE.match(part)
        if st is None:
            raise SelectorError(f"unable to parse requirement: {part.strip()!r}")
        bang, key, op, values = st.groups()
        if op:
            if bang:
                raise SelectorError(f"unable to parse requirement: {part.strip()!r}")
            vals = frozenset(v.strip() for v in values.split(",") if v.strip())
            reqs.append(Requirement(key, op, vals))
        else:
            reqs.append(Requirement(key, "!exists" if bang else "exists"))
    return LabelSelector(tuple(reqs))


def selector_from_match_labels(match_labels: Mapping[str, str]) -> LabelSelector:
    return LabelSelector(tuple(Requirement(k, "=", frozenset({v})) for k, v in match_labels.items()))


def selector_from_label_selector(spec: Mapping[str, Any] | None) -> LabelSelector:
    """A workload's `spec.selector` (matchLabels + matchExpressions) as a LabelSelector."""
    if not spec:
        return LabelSelector()
    reqs = list(selector_from_match_labels(spec.get("matchLabels") or {}).requirements)
    for expr in spec.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}[expr["operator"]]
        reqs.append(Requirement(expr["key"], op, frozenset(expr.get("values") or ())))
    return LabelSelector(tuple(reqs))


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

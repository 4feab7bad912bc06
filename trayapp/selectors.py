"""Kubernetes label selectors: the LabelSelector object, the plain map, and the string form.

Semantics follow apimachinery's `labels` package and `metav1.LabelSelectorAsSelector`:
a `None` LabelSelector matches nothing, one with no requirements matches everything, `NotIn`
and `!=` match when the label is absent, `Exists`/`!key` test presence only. The string form is
what `kubectl get -l` accepts: `a=b,c!=d,e in (x,y),f notin (z),g,!h` (plus `==`, `>` and `<`).
Pure functions, standard library only.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Obj = Mapping[str, Any]  # a LabelSelector dict as the API returns it


class Operator(str, enum.Enum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"
    GT = "Gt"
    LT = "Lt"


# apimachinery validation: a label name is at most 63 characters, alphanumeric at both ends,
# with '-', '_' and '.' inside; a key may carry a DNS-subdomain prefix and a slash.
_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_PREFIX = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")


def _check_key(key: str) -> None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _PREFIX.match(prefix)):
        raise ValueError(
            f'Label key "{key}" has an invalid prefix; '
            'it must be a DNS subdomain such as "example.com".'
        )
    if not _NAME.match(name):
        raise ValueError(
            f'Label key "{key}" is not valid: a name is 1-63 characters, '
            'letters, digits, "-", "_" or "." '
            "starting and ending with a letter or digit."
        )


def _check_value(value: str) -> None:
    if value and not _NAME.match(value):
        raise ValueError(
            f'Label value "{value}" is not valid: it is empty or 1-63 characters, '
            'letters, digits, "-", "_" '
            'or ".", starting and ending with a letter or digit.'
        )


@dataclass(frozen=True)
class Requirement:
    """One condition on one label key."""

    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        _check_key(self.key)
        if self.operator in (Operator.IN, Operator.NOT_IN):
            if not self.values:
                raise ValueError(
                    f'The "{self.operator.value}" requirement on "{self.key}" '
                    "needs at least one value."
                )
            for value in self.values:
                _check_value(value)
        elif self.operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
            if self.values:
                raise ValueError(
                    f'The "{self.operator.value}" requirement on "{self.key}" must not have values.'
                )
        else:  # Gt / Lt compare integers, as apimachinery's Requirement does
            if len(self.values) != 1 or not _is_int(next(iter(self.values))):
                raise ValueError(
                    f'The "{self.operator.value}" requirement on "{self.key}" '
                    "needs exactly one integer value."
                )

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator is Operator.IN:
            return present and labels[self.key] in self.values
        if self.operator is Operator.NOT_IN:
            return not present or labels[self.key] not in self.values
        if self.operator is Operator.EXISTS:
            return present
        if self.operator is Operator.DOES_NOT_EXIST:
            return not present
        if not present or not _is_int(labels[self.key]):
            return False
        limit = int(next(iter(self.values)))
        actual = int(labels[self.key])
        return actual > limit if self.operator is Operator.GT else actual < limit


def _is_int(text: str) -> bool:
    return re.fullmatch(r"-?[0-9]+", text) is not None


@dataclass(frozen=True)
class Selector:
    """All requirements must hold. No requirements: matches every label set.

    `nothing=True` is what a `None` LabelSelector means (metav1.LabelSelectorAsSelector returns
    labels.Nothing()): no label set matches.
    """

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(req.matches(labels) for req in self.requirements)

    @property
    def selects_everything(self) -> bool:
        return not self.nothing and not self.requirements


NOTHING = Selector(nothing=True)
EVERYTHING = Selector()

_OPERATORS = {
    "In": Operator.IN,
    "NotIn": Operator.NOT_IN,
    "Exists": Operator.EXISTS,
    "DoesNotExist": Operator.DOES_NOT_EXIST,
}


def from_label_selector(selector: Obj | None) -> Selector:
    """Turn a LabelSelector dict (`matchLabels`, `matchExpressions`) into a Selector.

    Raises ValueError naming the bad part when the selector is invalid, as the API server would.
    """
    if selector is None:
        return NOTHING
    requirements: list[Requirement] = []
    for key, value in sorted((selector.get("matchLabels") or {}).items()):
        _check_value(str(value))
        requirements.append(Requirement(str(key), Operator.IN, frozenset({str(value)})))
    for expr in selector.get("matchExpressions") or ():
        op_name = expr.get("operator")
        operator = _OPERATORS.get(op_name)
        if operator is None:
            raise ValueError(
                f'The label selector operator "{op_name}" is not one of '
                "In, NotIn, Exists, DoesNotExist."
            )
        values = frozenset(str(v) for v in expr.get("values") or ())
        requirements.append(Requirement(str(expr.get("key", "")), operator, values))
    return Selector(tuple(requirements))


def from_map(selector: Mapping[str, str] | None) -> Selector:
    """A plain equality map (Service and ReplicationController `spec.selector`).

    As `labels.SelectorFromSet`, an empty or missing map has no requirements and matches
    everything; callers that must not pick arbitrary pods check for emptiness first.
    """
    requirements = []
    for key, value in sorted((selector or {}).items()):
        _check_value(str(value))
        requirements.append(Requirement(str(key), Operator.IN, frozenset({str(value)})))
    return Selector(tuple(requirements))


def matches_label_selector(selector: Obj | None, labels: Mapping[str, str] | None) -> bool:
    """Does a LabelSelector dict select these labels? `None` selects nothing, `{}` everything."""
    return from_label_selector(selector).matches(labels)


def matches_map_selector(
    selector: Mapping[str, str] | None, labels: Mapping[str, str] | None
) -> bool:
    """Does a plain equality map select these labels? Empty selects everything (see `from_map`)."""
    return from_map(selector).matches(labels)


# ---- the string form -------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(==|!=|=|!|\(|\)|,|<|>|[^\s=!(),<>]+)")


def _tokenize(text: str) -> list[tuple[str, int]]:
    tokens: list[tuple[str, int]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:  # only trailing whitespace is left
            break
        tokens.append((match.group(1), match.start(1)))
        pos = match.end()
    return tokens


_SYMBOLS = frozenset({"==", "!=", "=", "!", "(", ")", ",", "<", ">"})


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0

    def fail(self, what: str) -> ValueError:
        if self.index < len(self.tokens):
            token, pos = self.tokens[self.index]
            where = f'"{token}" at position {pos + 1}'
        else:
            where = "the end"
        return ValueError(
            f'Label selector "{self.text}" is not valid: expected {what}, found {where}.'
        )

    def peek(self) -> str | None:
        return self.tokens[self.index][0] if self.index < len(self.tokens) else None

    def take(self) -> str | None:
        token = self.peek()
        self.index += 1
        return token

    def identifier(self, what: str) -> str:
        token = self.peek()
        if token is None or token in _SYMBOLS:
            raise self.fail(what)
        self.index += 1
        return token

    def parse(self) -> Selector:
        requirements: list[Requirement] = []
        if self.peek() is None:
            return EVERYTHING
        while True:
            requirements.append(self.requirement())
            token = self.peek()
            if token is None:
                return Selector(tuple(requirements))
            if token != ",":
                raise self.fail('"," between requirements')
            self.take()

    def requirement(self) -> Requirement:
        if self.peek() == "!":
            self.take()
            return self._build(
                self.identifier('a label key after "!"'), Operator.DOES_NOT_EXIST, ()
            )
        key = self.identifier("a label key")
        token = self.peek()
        if token is None or token == ",":
            return self._build(key, Operator.EXISTS, ())
        self.take()
        if token in ("=", "=="):
            return self._build(key, Operator.IN, (self.exact_value(),))
        if token == "!=":
            return self._build(key, Operator.NOT_IN, (self.exact_value(),))
        if token in ("<", ">"):
            value = self.identifier("an integer")
            return self._build(key, Operator.LT if token == "<" else Operator.GT, (value,))
        if token in ("in", "notin"):
            return self._build(
                key, Operator.IN if token == "in" else Operator.NOT_IN, self.value_set()
            )
        self.index -= 1
        raise self.fail('an operator ("=", "==", "!=", "in", "notin", "<" or ">")')

    def exact_value(self) -> str:
        token = self.peek()
        if token is None or token == ",":  # `a=` means the value is the empty string
            return ""
        return self.identifier("a value")

    def value_set(self) -> tuple[str, ...]:
        if self.take() != "(":
            self.index -= 1
            raise self.fail('"(" to start the value list')
        values: list[str] = []
        expect_value = True
        while True:
            token = self.peek()
            if token == ")":
                self.take()
                if (
                    expect_value and values
                ):  # `(a,)`: a trailing empty value, as apimachinery reads it
                    values.append("")
                return tuple(values)
            if token == ",":
                self.take()
                if expect_value:
                    values.append("")
                expect_value = True
                continue
            if not expect_value:
                raise self.fail('"," or ")" in the value list')
            values.append(self.identifier('a value or ")"'))
            expect_value = False

    def _build(self, key: str, operator: Operator, values: Iterable[str]) -> Requirement:
        try:
            return Requirement(key, operator, frozenset(values))
        except ValueError as exc:
            message = str(exc)
            raise ValueError(
                f'Label selector "{self.text}" is not valid: {message[0].lower()}{message[1:]}'
            ) from None


def parse_selector(text: str) -> Selector:
    """Parse the string form (`kubectl -l`). Empty text matches everything.

    Raises ValueError with the offending token and its 1-based position on bad syntax.
    """
    return _Parser(text).parse()

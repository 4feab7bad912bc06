"""The one shape every rules-file complaint takes, and the "did you mean" hint they share."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """Something wrong in a rules or Skaffold file, pointing at the file, line and field.

    A warning is about something kubetray can still run as written (two rules asking for one
    local port, a listener open to the network); the rule stays. Anything else stops its rule.
    """

    file: str
    line: int | None
    field: str | None  # e.g. "portForward[2].resourceType"
    message: str  # a full sentence
    warning: bool = False

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.field:
            where = f"{where}: {self.field}"
        return f"{where}: warning: {self.message}" if self.warning else f"{where}: {self.message}"


def _squash(text: str) -> str:
    return text.lower().replace("_", "").replace("-", "")


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """The choice the user most likely meant, or None when nothing is close."""
    options = list(choices)
    # `local_port`, `LocalPort` and `local-port` all mean localPort; difflib alone may miss that.
    for option in options:
        if _squash(option) == _squash(word):
            return option
    close = difflib.get_close_matches(word.lower(), [o.lower() for o in options], n=1, cutoff=0.6)
    if not close:
        return None
    return next(option for option in options if option.lower() == close[0])


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' Did you mean "x"?' (with the leading space) or an empty string."""
    guess = suggest(word, choices)
    return f' Did you mean "{guess}"?' if guess else ""


def describe_type(value: Any) -> str:
    """How a YAML value reads to a person: 'a number', 'a list', 'nothing (null)'."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a true/false value ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return f'a string ("{value}")'
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__} ({value})"

"""Add-then-remove on many generated layouts: every combination of list styles, indents, comments,
line ends and final newline gives back the same bytes, and every step loads without problems."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from trayapp.config import load_rules
from trayapp.config.edit import RuleDraft, add_rule, remove_rule, set_local_port, set_pinned

RULE_A = ("resourceType: service", "resourceName: 'a'", "port: 80")


def rule_list(style: str, column: int, offset: int) -> list[str]:
    pad = " " * column
    if style == "none":
        return []
    if style == "empty":
        return [" []"]
    if style == "flow-items":
        return ["", f"{pad}{' ' * offset}- {{resourceType: service, resourceName: \"a\", port: 80}}  # a"]
    if style == "flow-list":
        return [" [{resourceType: service, resourceName: a, port: 80}]"]
    dash = f"{pad}{' ' * offset}- "
    inner = " " * len(dash)
    return ["", dash + RULE_A[0], *(inner + line for line in RULE_A[1:]), f"{inner}# after a"]


def layout(top: str, context: str, indent: int, offset: int, comments: bool) -> str:
    lines = ["# my rules"] if comments else []
    body = rule_list(top, 0, offset)
    if body:
        lines.append("portForward:" + body[0])
        lines += body[1:]
    if context != "none":
        lines.append("contexts:  # per cluster" if comments else "contexts:")
        lines.append(" " * indent + "dev:")
        inner = rule_list(context, indent * 2, offset)
        lines.append(" " * indent * 2 + "portForward:" + inner[0])
        lines += inner[1:]
    lines += ["auto:", " " * indent + "skaffold: true"]
    return "\n".join(lines)


STYLES = ["none", "empty", "flow-items", "flow-list", "block"]
CASES = [
    (top, context, indent, offset, comments, newline, final)
    for top, context, indent, offset, comments, newline, final in itertools.product(
        STYLES, STYLES, (2, 4), (0, 2), (True, False), ("\n", "\r\n"), (True, False))
]


@pytest.mark.parametrize("case", random.Random(11).sample(CASES, 120), ids=str)
def test_generated_layouts_round_trip(tmp_path: Path, case: tuple[str, str, int, int, bool, str, bool]) -> None:
    top, context, indent, offset, comments, newline, final = case
    text = layout(top, context, indent, offset, comments).replace("\n", newline) + (newline if final else "")
    path = tmp_path / "config.yaml"
    path.write_bytes(text.encode())
    assert not load_rules(path).problems, text
    for scope in (None, "dev", "prod"):
        added = add_rule(path, RuleDraft("deploy", "new", 8080, name="new one"), scope)
        assert not load_rules(path).problems
        assert added.line is not None
        remove_rule(path, "new one")
        assert path.read_bytes() == text.encode(), (scope, text)
    set_pinned(path, "dev", True)
    set_pinned(path, "dev", False)
    assert path.read_bytes() == text.encode()
    if top not in ("none", "empty") and context == "none":
        set_local_port(path, "svc/a", 18080)
        assert [rule.local_port for rule in load_rules(path).rules] == [18080]

"""The text `kubetray check` prints for a RuleSet, and its exit status."""

from __future__ import annotations

from trayapp.config.rules import RuleSet
from trayapp.model import Rule

GLOBAL_SCOPE = "(all contexts)"
_HEADERS = ("SCOPE", "RESOURCE", "NAMESPACE", "FORWARD", "NAME", "WRITTEN AT")


def _endpoint(address: str, port: int | None) -> str:
    shown = (
        "auto" if port is None else str(port)
    )  # a named port's local port is chosen at connect time
    return f"[{address}]:{shown}" if ":" in address else f"{address}:{shown}"


def _row(scope: str, rule: Rule) -> tuple[str, ...]:
    return (
        scope,
        f"{rule.resource_type.value}/{rule.resource_name}",
        rule.namespace,
        f"{rule.port} -> {_endpoint(rule.address, rule.requested_local_port)}",
        rule.name or "-",
        str(rule.origin) if rule.origin else "-",
    )


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows
    ]


def check_report(ruleset: RuleSet) -> tuple[str, int]:
    """What `kubetray check` prints and its exit status: 1 when there are problems, else 0."""
    if ruleset.problems:
        count = len(ruleset.problems)
        lines = [str(problem) for problem in ruleset.problems]
        noun = "problem" if count == 1 else "problems"
        lines.append(f"{count} {noun} found; rules with problems are ignored until they are fixed.")
        return "\n".join(lines) + "\n", 1
    if ruleset.path is None:
        where = f" at {ruleset.searched}" if ruleset.searched else ""
        return f"OK\nThere is no rules file{where}, so there are no rules.\n", 0
    rows = [_row(GLOBAL_SCOPE, rule) for rule in ruleset.rules]
    rows += [
        _row(f"context {pattern}", rule)
        for pattern, rules in ruleset.context_rules
        for rule in rules
    ]
    if not rows:
        return f"OK\n{ruleset.path} has no rules.\n", 0
    noun = "rule" if len(rows) == 1 else "rules"
    text = ["OK", f"{ruleset.path}: {len(rows)} {noun}.", *_table([_HEADERS, *rows])]
    return "\n".join(text) + "\n", 0

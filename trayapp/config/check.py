"""The text `kubetray check` prints for a RuleSet, and its exit status."""

from __future__ import annotations

from trayapp.config.auto import ALL_NAMESPACES, AutoSettings
from trayapp.config.problems import Problem
from trayapp.config.rules import RuleSet
from trayapp.model import Rule, is_loopback

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
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip() for row in rows
    ]


def _scope(namespace: str | None) -> str:
    if namespace is None:
        return "the context's namespace"
    return "every namespace" if namespace == ALL_NAMESPACES else f'namespace "{namespace}"'


def _auto_lines(settings: AutoSettings) -> list[str]:
    """One line for the built-in sources, a second one when there are selectors."""
    if not settings.enabled:
        return ["Automatic forwarding: off."]
    sources = []
    if settings.skaffold:
        sources.append("Skaffold services and debug pods")
    if settings.annotation:
        sources.append("services and pods annotated kubetray.dev/forward")
    scope = _scope(settings.namespace)
    built_in = "; ".join(sources) if sources else "selectors only"
    lines = [f"Automatic forwarding in {scope}: {built_in}."]
    if settings.selectors:
        described = []
        for rule in settings.selectors:
            ports = (
                f"ports {', '.join(str(port) for port in rule.ports)}"
                if rule.ports
                else "every port"
            )
            namespace = _scope(rule.namespace) if rule.namespace is not None else scope
            described.append(
                f'{rule.kind.value}s matching "{rule.selector_text}" in {namespace} ({ports})'
            )
        lines.append(f"Automatic selectors: {'; '.join(described)}.")
    return lines


def _open_to_network(ruleset: RuleSet) -> list[Problem]:
    """A warning for each rule whose listener other machines can reach."""
    found: list[Problem] = []
    every = [*ruleset.rules, *(rule for _, rules in ruleset.context_rules for rule in rules)]
    for rule in every:
        if is_loopback(rule.address) or rule.origin is None:
            continue
        wildcard = rule.address in ("0.0.0.0", "::")
        whose = "your network" if wildcard else f"the network of {rule.address}"
        local = rule.requested_local_port
        shown = _endpoint(rule.address, local) if local is not None else rule.address
        found.append(
            Problem(
                rule.origin.file,
                rule.origin.line,
                None,
                f"{shown} is open to {whose}: anyone who can reach this machine there can "
                'use this tunnel, with your cluster credentials. Leave out "address" '
                "(127.0.0.1) unless you mean that.",
                warning=True,
            )
        )
    return found


def _warning_lines(warnings: list[Problem]) -> list[str]:
    if not warnings:
        return []
    noun = "warning" if len(warnings) == 1 else "warnings"
    return [
        *(str(w) for w in warnings),
        f"{len(warnings)} {noun}; kubetray runs these rules as said.",
    ]


def check_report(ruleset: RuleSet) -> tuple[str, int]:
    """What `kubetray check` prints and its exit status: 1 when there are problems, else 0.

    Warnings (rules that compete for a local port, listeners open to the network) are printed
    but do not fail the check: kubetray runs those rules.
    """
    warnings = sorted(
        [*ruleset.warnings, *_open_to_network(ruleset)], key=lambda p: (p.file, p.line or 0)
    )
    if ruleset.problems:
        count = len(ruleset.problems)
        lines = [str(problem) for problem in ruleset.problems]
        noun = "problem" if count == 1 else "problems"
        if ruleset.readable:
            lines.append(
                f"{count} {noun} found; rules with problems are ignored until they are fixed."
            )
        else:
            lines.append(
                f"{count} {noun} found; kubetray cannot use this file as it is. A running kubetray "
                "keeps the rules it read last until the file is fixed."
            )
        return "\n".join([*lines, *_warning_lines(warnings)]) + "\n", 1
    auto = _auto_lines(ruleset.auto)
    if ruleset.path is None:
        where = f" at {ruleset.searched}" if ruleset.searched else ""
        lines = [
            "OK",
            f"There is no rules file{where}, so there are no rules.",
            *auto,
            *_missing_file_hint(ruleset),
        ]
        return "\n".join(lines) + "\n", 0
    rows = [_row(GLOBAL_SCOPE, rule) for rule in ruleset.rules]
    rows += [
        _row(f"context {pattern}", rule)
        for pattern, rules in ruleset.context_rules
        for rule in rules
    ]
    if not rows:
        return "\n".join(["OK", f"{ruleset.path} has no rules.", *auto]) + "\n", 0
    noun = "rule" if len(rows) == 1 else "rules"
    text = ["OK", f"{ruleset.path}: {len(rows)} {noun}.", *_table([_HEADERS, *rows]), *auto]
    return "\n".join([*text, *_warning_lines(warnings)]) + "\n", 0


def _missing_file_hint(ruleset: RuleSet) -> list[str]:
    target = ruleset.searched or "the rules file"
    hint = (
        f"To forward ports, write rules in {target}: `kubetray check --example` prints a commented "
        "example to start from, `kubetray check --help` sums up the format, and the tray's "
        '"Open rules file" creates the file with that example in it.'
    )
    return [hint]

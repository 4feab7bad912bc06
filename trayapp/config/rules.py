"""The rules file: its top-level keys, per-context rules, Skaffold imports and the `auto` section.

`load_rules` never raises for anything written in the files: every problem becomes a `Problem`,
the rules that are fine are still returned, and a missing rules file just means no rules.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from trayapp.config.auto import AutoSettings, parse_auto
from trayapp.config.paths import default_rules_path
from trayapp.config.problems import Problem, describe_type, did_you_mean
from trayapp.config.schema import Where, parse_rule_list
from trayapp.config.skaffold import RuleGroup, load_skaffold
from trayapp.config.yamlnodes import LineDict, LineList, YamlLoadError, load_documents
from trayapp.model import Rule

TOP_LEVEL_KEYS = ("portForward", "contexts", "skaffold", "auto")
CONTEXT_KEYS = ("portForward", "pinned")
_GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class RuleSet:
    """Everything read from a rules file: the rules that are usable and the problems found."""

    path: Path | None  # the rules file; None when there was none
    rules: tuple[Rule, ...] = ()  # for every context: the file's own, then Skaffold-imported
    context_rules: tuple[tuple[str, tuple[Rule, ...]], ...] = ()  # (glob pattern, rules)
    auto: AutoSettings = field(
        default_factory=AutoSettings
    )  # what to forward without a rule; top level only
    problems: tuple[Problem, ...] = ()  # each stops its rule (or setting) from being used
    searched: Path | None = None  # where the rules file was looked for, even when missing
    warnings: tuple[Problem, ...] = ()  # worth knowing; the rules run as written
    # False when the file as a whole could not be used (unreadable, not YAML, not a mapping):
    # then nothing above comes from it, and a running kubetray keeps its last good rules.
    readable: bool = True
    # Contexts whose entry says `pinned: true`, in file order: each forwards the rules under its
    # own entry whatever the current context is. Only exact names (never globs) get here.
    pinned: tuple[str, ...] = ()

    def pinned_rules(self, context: str) -> tuple[Rule, ...]:
        """The rules written under `context`'s own entry (not those of globs matching it)."""
        return next((rules for pattern, rules in self.context_rules if pattern == context), ())

    def pinned_plans(self) -> dict[str, tuple[Rule, ...]]:
        """Every pinned context and the rules it forwards, in file order."""
        return {context: self.pinned_rules(context) for context in self.pinned}

    def rules_for(self, context: str) -> tuple[Rule, ...]:
        """Global rules plus those of every pattern matching `context`.

        A context's rules for a target replace the global rules for that target, in the place
        of the first of them; the remaining context rules follow in file order. When two
        patterns both match and name the same target, the one written first wins.
        """
        chosen: dict[tuple[str, ...], list[Rule]] = {}
        for pattern, rules in self.context_rules:
            # Case-sensitive on every OS: kube context names are.
            if fnmatchcase(context, pattern):
                here: dict[tuple[str, ...], list[Rule]] = {}
                for rule in rules:  # one target on two local ports is two rules of one pattern
                    here.setdefault(rule.key, []).append(rule)
                for key, group in here.items():
                    chosen.setdefault(key, group)
        result: list[Rule] = []
        used: set[tuple[str, ...]] = set()
        for rule in self.rules:
            replacement = chosen.get(rule.key)
            if replacement is None:
                result.append(rule)
            elif rule.key not in used:
                used.add(rule.key)
                result.extend(replacement)
        result.extend(rule for key, group in chosen.items() if key not in used for rule in group)
        return tuple(result)


class _Reader:
    """Walks one rules file's top-level mapping, collecting rules and problems."""

    def __init__(self, path: Path, root: LineDict) -> None:
        self.path = path
        self.file = str(path)
        self.root = root
        self.problems: list[Problem] = []
        self.pinned: list[str] = []

    def problem(self, line: int | None, field: str | None, message: str) -> None:
        self.problems.append(Problem(self.file, line, field, message))

    def duplicates(self, mapping: LineDict, field_of: Callable[[Any], str]) -> None:
        for key, line, first in mapping.duplicate_keys:
            self.problem(
                line,
                field_of(key),
                f'"{key}" is written twice (first on line {first}); '
                "only the last one would be used, so say it once.",
            )

    def keys(self, mapping: LineDict, allowed: tuple[str, ...], prefix: str, what: str) -> None:
        self.duplicates(mapping, lambda key: f"{prefix}{key}")
        for key in mapping:
            if key in allowed:
                continue
            text = str(key)
            hint = did_you_mean(text, allowed)
            if text == "auto" and prefix.startswith("contexts"):
                hint = ' "auto" applies to every context; write it at the top level.'
            if not hint and "apiVersion" in mapping and "kind" in mapping:
                hint = ' This looks like a skaffold.yaml; list its path under "skaffold:" instead.'
            self.problem(
                mapping.line_of(key),
                f"{prefix}{text}",
                f'Unknown {what} "{text}".{hint} Allowed: {", ".join(allowed)}.',
            )

    def global_rules(self) -> list[RuleGroup]:
        rules, found = parse_rule_list(
            self.root.get("portForward"),
            Where(self.file, "portForward"),
            self.root.line_of("portForward"),
        )
        self.problems.extend(found)
        return [RuleGroup(tuple(rules), "portForward")]

    def contexts(self) -> list[tuple[str, tuple[Rule, ...]]]:
        section = self.root.get("contexts")
        if section is None:
            return []
        if not isinstance(section, LineDict):
            self.problem(
                self.root.line_of("contexts"),
                "contexts",
                '"contexts" must be a mapping from a context name or glob to '
                f"{{portForward: [...]}}; found {describe_type(section)}.",
            )
            return []
        self.duplicates(section, lambda key: f'contexts["{key}"]')
        result: list[tuple[str, tuple[Rule, ...]]] = []
        for pattern, body in section.items():
            line = section.line_of(pattern)
            if not isinstance(pattern, str):
                self.problem(
                    line,
                    f"contexts[{pattern}]",
                    f"A context name or glob must be text; found {describe_type(pattern)}. "
                    "Put it in quotes.",
                )
                continue
            prefix = f'contexts["{pattern}"]'
            if body is None:
                continue
            if not isinstance(body, LineDict):
                self.problem(
                    line,
                    prefix,
                    f"Each context must be a mapping like {{portForward: [...]}}; "
                    f"found {describe_type(body)}.",
                )
                continue
            self.keys(body, CONTEXT_KEYS, f"{prefix}.", "field")
            self.pin(pattern, body, prefix)
            rules, found = parse_rule_list(
                body.get("portForward"),
                Where(self.file, f"{prefix}.portForward"),
                body.line_of("portForward"),
            )
            self.problems.extend(found)
            result.append((pattern, tuple(rules)))
        return result

    def pin(self, pattern: str, body: LineDict, prefix: str) -> None:
        """Read a context entry's `pinned:`: true or false, and true only for an exact name."""
        if "pinned" not in body:
            return
        value = body["pinned"]
        line = body.line_of("pinned")
        if not isinstance(value, bool):
            self.problem(
                line,
                f"{prefix}.pinned",
                f'"pinned" must be true or false; found {describe_type(value)}.',
            )
            return
        if value and _GLOB_CHARACTERS & set(pattern):
            self.problem(
                line,
                f"{prefix}.pinned",
                f'"{pattern}" is a glob, and only a context named exactly can be pinned: a pinned '
                "context forwards whatever the current context is, and a glob names no context "
                "until one is current. Give each context to keep forwarding its own entry.",
            )
            return
        if value:
            self.pinned.append(pattern)

    def skaffold(self) -> tuple[list[RuleGroup], list[Problem]]:
        section = self.root.get("skaffold")
        if section is None:
            return [], []
        if not isinstance(section, LineList):
            hint = (
                f' Write it as a list: skaffold: ["{section}"].' if isinstance(section, str) else ""
            )
            self.problem(
                self.root.line_of("skaffold"),
                "skaffold",
                f'"skaffold" must be a list of paths to skaffold.yaml files; found '
                f"{describe_type(section)}.{hint}",
            )
            return [], []
        groups: list[RuleGroup] = []
        imported: list[Problem] = []
        seen: dict[Path, int] = {}
        for index, entry in enumerate(section):
            line, field_path = section.line_of(index), f"skaffold[{index}]"
            if not isinstance(entry, str) or not entry.strip():
                self.problem(
                    line,
                    field_path,
                    f"Each Skaffold entry must be a path to a skaffold.yaml; "
                    f"found {describe_type(entry)}.",
                )
                continue
            target = self.resolve(entry.strip())
            if target in seen:
                self.problem(
                    line,
                    field_path,
                    f'"{entry}" is already listed on line {seen[target]}; '
                    "list each Skaffold file once.",
                )
                continue
            seen[target] = line
            try:
                found_groups, found = load_skaffold(target)
            except (OSError, UnicodeDecodeError) as error:
                reason = (
                    error.strerror if isinstance(error, OSError) and error.strerror else str(error)
                )
                self.problem(
                    line, field_path, f'Cannot read the Skaffold file "{target}": {reason}.'
                )
                continue
            groups.extend(found_groups)
            imported.extend(found)
        return groups, imported

    def resolve(self, entry: str) -> Path:
        target = Path(os.path.expanduser(entry))
        if not target.is_absolute():
            target = self.path.parent / target
        # A folder stands for the skaffold.yaml in it, as `skaffold dev` run there would read.
        return target / "skaffold.yaml" if target.is_dir() else target

    def auto(self) -> AutoSettings:
        settings, found = parse_auto(self.root.get("auto"), self.file, self.root.line_of("auto"))
        self.problems.extend(found)
        return settings


def _merge(groups: list[RuleGroup]) -> tuple[Rule, ...]:
    # The same target listed in two places (the rules file restating a Skaffold rule, two Skaffold
    # profiles) is normal, not a mistake: the first list naming it, the rules file's own, wins.
    # Within one list, one target on two local ports is two forwards (drop_duplicates).
    seen: set[tuple[str, ...]] = set()
    merged: list[Rule] = []
    for group in groups:
        here = [rule for rule in group.rules if rule.key not in seen]
        seen.update(rule.key for rule in group.rules)
        merged.extend(here)
    return tuple(merged)


def _ordered(problems: list[Problem]) -> tuple[Problem, ...]:
    files: dict[str, int] = {}
    for problem in problems:
        files.setdefault(problem.file, len(files))
    return tuple(sorted(problems, key=lambda p: (files[p.file], p.line or 0)))


def load_rules_text(text: str, path: Path) -> RuleSet:
    """Read rules from `text` as if it were the file at `path` (relative Skaffold paths use it)."""
    file = str(path)
    try:
        documents = load_documents(text)
    except YamlLoadError as error:
        return RuleSet(
            path=path,
            problems=(Problem(file, error.line, None, error.message),),
            searched=path,
            readable=False,
        )
    problems: list[Problem] = []
    if len(documents) > 1:
        problems.append(
            Problem(
                file,
                documents[1].line,
                None,
                "The rules file holds more than one YAML document; only the first is read.",
            )
        )
    root = documents[0].value if documents else None
    if root is None:
        return RuleSet(path=path, problems=tuple(problems), searched=path)
    if not isinstance(root, LineDict):
        problems.append(
            Problem(
                file,
                documents[0].line,
                None,
                f"The rules file must be a mapping with keys such as {', '.join(TOP_LEVEL_KEYS)}; "
                f"found {describe_type(root)}.",
            )
        )
        return RuleSet(path=path, problems=tuple(problems), searched=path, readable=False)
    reader = _Reader(path, root)
    reader.keys(root, TOP_LEVEL_KEYS, "", "top-level key")
    groups = reader.global_rules()
    context_rules = reader.contexts()
    skaffold_groups, skaffold_problems = reader.skaffold()
    auto = reader.auto()
    found = _ordered(problems + reader.problems) + _ordered(skaffold_problems)
    return RuleSet(
        path=path,
        rules=_merge(groups + skaffold_groups),
        context_rules=tuple(context_rules),
        auto=auto,
        problems=tuple(p for p in found if not p.warning),
        searched=path,
        warnings=tuple(p for p in found if p.warning),
        pinned=tuple(reader.pinned),
    )


def load_rules(path: Path | None = None) -> RuleSet:
    """The rules in `path` (default: the per-user rules file). Raises nothing for file content."""
    path = default_rules_path() if path is None else Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return RuleSet(path=None, searched=path)
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        return RuleSet(
            path=path,
            problems=(Problem(str(path), None, None, f"Cannot read the rules file: {reason}."),),
            searched=path,
            readable=False,
        )
    return load_rules_text(text, path)

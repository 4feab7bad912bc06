"""Rules from a skaffold.yaml: the `portForward` lists in every document and every profile.

Only `portForward` is read. Everything else in a Skaffold file (build, deploy, profile activation,
`requires`, fields from newer schema versions) is Skaffold's business and is never reported, so
any file Skaffold accepts stays acceptable here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trayapp.config.problems import Problem
from trayapp.config.schema import Where, parse_rule_list
from trayapp.config.yamlnodes import LineDict, LineList, YamlLoadError, load_documents
from trayapp.model import Rule


@dataclass(frozen=True)
class RuleGroup:
    """The rules of one `portForward` list; duplicates are only problems within one group."""

    rules: tuple[Rule, ...]
    where: str  # field path of the list, e.g. "profiles[1].portForward"


def rules_from_skaffold_text(text: str, file: str) -> tuple[list[RuleGroup], list[Problem]]:
    """The portForward groups of every document and profile in a Skaffold file's text."""
    try:
        documents = load_documents(text)
    except YamlLoadError as error:
        return [], [Problem(file, error.line, None, error.message)]
    groups: list[RuleGroup] = []
    problems: list[Problem] = []

    def read(holder: LineDict, field: str) -> None:
        if "portForward" not in holder:
            return
        rules, found = parse_rule_list(
            holder["portForward"], Where(file, field), holder.line_of("portForward")
        )
        problems.extend(found)
        groups.append(RuleGroup(tuple(rules), field))

    for document in documents:
        if not isinstance(document.value, LineDict):
            continue  # not a Skaffold config at all; Skaffold itself will say so
        read(document.value, "portForward")
        profiles = document.value.get("profiles")
        if not isinstance(profiles, LineList):
            continue
        for index, profile in enumerate(profiles):
            # Every profile's rules are included: kubetray cannot know which profile is active.
            if isinstance(profile, LineDict):
                read(profile, f"profiles[{index}].portForward")
    return groups, problems


def load_skaffold(path: Path) -> tuple[list[RuleGroup], list[Problem]]:
    """Like rules_from_skaffold_text; raises OSError or UnicodeDecodeError if unreadable."""
    text = path.read_text(encoding="utf-8-sig")
    return rules_from_skaffold_text(text, str(path))

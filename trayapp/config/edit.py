"""Changing the user's rules file for them: add, remove and change rules, pin contexts, exclusions.

The tray and `kubetray add/remove/list` call these. Each edit reads the file, refuses when the
loader finds problems in it (the user must fix those first; nothing is written), splices the
change into the text (config/yamltext.py: every other byte stays as written, comments, quoting,
order and layout included), loads the result again to prove it says what was meant, and only
then replaces the file atomically. A running kubetray sees the new file through its file watcher.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ruamel.yaml.nodes import MappingNode

from trayapp.config.ruleentries import (
    AmbiguousRule,
    DuplicateRule,
    InvalidRule,
    NoSuchRule,
    RulesEditError,
    RulesFileHasProblems,
    parse_resource_type,
    rule_entries,
    selector_of,
)
from trayapp.config.rules import RuleSet, load_rules, load_rules_text
from trayapp.config.rulesfile import RulesFile, shown
from trayapp.config.yamltext import (
    Splice,
    Style,
    TextEditError,
    apply,
    compose,
    end_index,
    insert_lines,
    is_flow,
    lookup,
)
from trayapp.model import ResourceType, Rule

__all__ = [
    "AmbiguousRule", "DuplicateRule", "EditResult", "InvalidRule", "ListedRule", "NoSuchRule", "RuleDraft",
    "RulesEditError", "RulesFileHasProblems", "add_rule", "exclude_auto", "list_rules", "parse_resource_type",
    "remove_rule", "selector_for", "set_local_port", "set_pinned",
]

HEADER = (
    "# kubetray rules, in Skaffold's portForward format; kubetray applies this file when it is saved.\n"
    "# `kubetray check` validates it and `kubetray check --example` prints every field.\n"
)


@dataclass(frozen=True)
class RuleDraft:
    """A rule to add. `namespace` None means the default namespace (the field is left out)."""

    resource_type: ResourceType | str
    resource_name: str
    port: int | str
    namespace: str | None = None
    local_port: int | None = None
    name: str | None = None
    scheme: str | None = None
    address: str | None = None

    def fields(self) -> dict[str, Any]:
        """The rule's YAML fields, in the order Skaffold's documentation writes them."""
        kind = self.resource_type
        kind_text = kind.value if isinstance(kind, ResourceType) else parse_resource_type(kind).value
        written: dict[str, Any] = {"resourceType": kind_text, "resourceName": self.resource_name}
        port = int(self.port) if isinstance(self.port, str) and self.port.strip().isdigit() else self.port
        optional = {"namespace": self.namespace, "port": port, "localPort": self.local_port,
                    "address": self.address, "name": self.name, "scheme": self.scheme}
        written |= {key: value for key, value in optional.items() if value is not None}
        return written


@dataclass(frozen=True)
class EditResult:
    """What an edit did: the file, a sentence for the user, the line changed (None: no line)."""

    path: Path
    message: str
    line: int | None
    warnings: tuple[str, ...] = ()  # the loader's warnings about the changed rule


@dataclass(frozen=True)
class ListedRule:
    """A rule as `kubetray list` shows it."""

    file: Path
    line: int | None
    context: str | None  # the `contexts:` key it is under; None for the top level
    label: str  # TYPE/NAME:PORT, with the rule's name when it has one
    rule: Rule


# ---- the public edits ------------------------------------------------------------------------


def _scope_rules(ruleset: RuleSet, path: Path, context: str | None) -> list[Rule]:
    if context is None:
        return [rule for rule in ruleset.rules if rule.origin is not None and rule.origin.file == str(path)]
    return [rule for pattern, rules in ruleset.context_rules if pattern == context for rule in rules]


def _draft_rule(draft: RuleDraft, path: Path) -> Rule:
    """The Rule the draft stands for, read by the loader itself; InvalidRule when it is not one."""
    fields = draft.fields()
    ruleset = load_rules_text("portForward:\n- " + Style().flow(fields) + "\n", path)
    if ruleset.problems or len(ruleset.rules) != 1:
        reasons = " ".join(problem.message for problem in ruleset.problems)
        raise InvalidRule(f"This rule cannot be added: {reasons} Nothing was changed.")
    return ruleset.rules[0]


def _where(context: str | None) -> str:
    return "" if context is None else f" for context {context}"


def add_rule(path: Path, draft: RuleDraft, context: str | None = None) -> EditResult:
    """Add a rule to the top-level `portForward`, or to `contexts: CONTEXT: portForward:`."""
    path = Path(path)
    rule = _draft_rule(draft, path)
    file = RulesFile(path)
    for existing in _scope_rules(file.ruleset, path, context):
        if existing.key == rule.key and existing.requested_local_port == rule.requested_local_port:
            line = existing.origin.line if existing.origin else None
            raise DuplicateRule(f"{shown(path)} already forwards {selector_of(rule)}{_where(context)} "
                                f"(line {line}); nothing was changed.")
    keys = ["portForward"] if context is None else ["contexts", context, "portForward"]
    new_text = apply(file.text, _put(file, keys, [draft.fields()]))
    if not file.exists:
        new_text = HEADER + new_text
    ruleset = file.reload(new_text)
    added = [found for found in _scope_rules(ruleset, path, context) if found == rule]
    if len(added) != 1 or added[0].origin is None:
        raise RulesEditError(f"kubetray could not add {selector_of(rule)} to {shown(path)} as asked, so it left "
                             "the file as it was; add it by hand instead.")
    line = added[0].origin.line
    file.save(new_text)
    warnings = tuple(str(w) for w in ruleset.warnings if w.line == line)
    return EditResult(path, f"Added {selector_of(rule)}{_where(context)} to {shown(path)}, line {line}.",
                      line, warnings)


def _put(file: RulesFile, keys: list[str], leaf: Any) -> list[Splice]:
    try:
        return file.put(keys, leaf)
    except TextEditError as error:
        raise RulesEditError(f"kubetray cannot change {shown(file.path)} there: {error}. Nothing was "
                             "changed; edit it by hand instead.") from error


def _entry_count(text: str) -> int:
    try:
        return len(rule_entries(compose(text)))
    except TextEditError:
        return -1


def remove_rule(path: Path, selector: str) -> EditResult:
    """Remove the one rule `selector` names: its name, TYPE/NAME, TYPE/NAME:PORT or @LINE."""
    path = Path(path)
    file = RulesFile(path)
    entry = file.find(selector)
    try:
        new_text = apply(file.text, file.remove_item(entry))
    except TextEditError as error:
        raise RulesEditError(f"kubetray cannot remove the rule on line {entry.line} of {shown(path)}: {error}. "
                             "Nothing was changed; remove it by hand instead.") from error
    file.reload(new_text)
    if _entry_count(new_text) != len(file.entries()) - 1:
        raise RulesEditError(f"kubetray could not remove the rule on line {entry.line} of {shown(path)} "
                             "cleanly, so it left the file as it was; remove it by hand instead.")
    file.save(new_text)
    what = f"{entry.fields.get('resourceType', '?')}/{entry.fields.get('resourceName', '?')}:" \
           f"{entry.fields.get('port', '?')}"
    return EditResult(path, f"Removed {what}{_where(entry.context)} from {shown(path)} (it was on line "
                            f"{entry.line}).", entry.line)


def set_local_port(path: Path, selector: str, local_port: int) -> EditResult:
    """Write `localPort: N` into the one rule `selector` names (see remove_rule)."""
    path = Path(path)
    if isinstance(local_port, bool) or not 1 <= int(local_port) <= 65535:
        raise InvalidRule(f"{local_port} is not a port number from 1 to 65535; nothing was changed.")
    file = RulesFile(path)
    entry = file.find(selector)
    node, number = entry.node, str(int(local_port))
    current, port = lookup(node, "localPort"), lookup(node, "port")
    if current is not None:
        splices = [Splice(int(current[1].start_mark.index), end_index(current[1], current[0]), number)]
    elif port is not None and is_flow(node):
        at = end_index(port[1], port[0])
        splices = [Splice(at, at, f", localPort: {number}")]
    elif port is not None:
        end = end_index(port[1], port[0])
        if not file.lines.only_comment_after(end):
            raise RulesEditError(f"kubetray cannot change the rule on line {entry.line} of {shown(path)}: its "
                                 "port shares a line with other text. Nothing was changed.")
        at = file.lines.line_after(end)
        line = " " * file.column(port[0]) + f"localPort: {number}"
        splices = [insert_lines(file.text, at, [line], file.style.newline)]
    else:  # pragma: no cover - a rule without a port is a loader problem, refused above
        raise NoSuchRule(f"The rule on line {entry.line} of {shown(path)} has no port.")
    new_text = apply(file.text, splices)
    ruleset = file.reload(new_text)
    changed = [rule for rule in (*ruleset.rules, *(r for _, rs in ruleset.context_rules for r in rs))
               if rule.origin is not None and rule.origin.line == entry.line and rule.origin.file == str(path)]
    if not changed or changed[0].local_port != int(local_port):
        raise RulesEditError(f"kubetray could not change the rule on line {entry.line} of {shown(path)} as "
                             "asked, so it left the file as it was.")
    file.save(new_text)
    return EditResult(path, f"{selector_of(changed[0])}{_where(entry.context)} now asks for local port "
                            f"{number} ({shown(path)}, line {entry.line}).", entry.line)


def _line_of(text: str, keys: list[str]) -> int | None:
    node = compose(text)
    pair = None
    for key in keys:
        pair = lookup(node, key)
        if pair is None:
            return None
        node = pair[1]
    return int(pair[0].start_mark.line) + 1 if pair is not None else None


def set_pinned(path: Path, context: str, pinned: bool) -> EditResult:
    """`pinned: true` under `contexts: CONTEXT:` (made when missing); False removes the key."""
    path = Path(path)
    file = RulesFile(path, fixing=f'contexts["{context}"].pinned')
    keys = ["contexts", context, "pinned"]
    contexts = lookup(file.root, "contexts")
    entry = lookup(contexts[1], context) if contexts is not None else None
    current = lookup(entry[1], "pinned") if entry is not None else None
    is_on = current is not None and str(current[1].value).lower() == "true"
    if (pinned and is_on) or (not pinned and current is None):
        state = "already pinned" if pinned else "not pinned"
        return EditResult(path, f"Context {context} is {state} in {shown(path)}; nothing changed.",
                          _line_of(file.text, keys))
    if pinned and entry is not None and current is None and isinstance(entry[1], MappingNode) \
            and entry[1].value and not is_flow(entry[1]):
        first = entry[1].value[0][0]  # written first, as a reader looks for it there
        written = " " * file.column(first) + "pinned: true"
        splices = [insert_lines(file.text, file.lines.line_start(int(first.start_mark.index)), [written],
                                file.style.newline)]
    elif pinned:
        splices = _put(file, keys, True)
    else:
        assert contexts is not None and entry is not None and current is not None
        chain = [(file.root, contexts[0], contexts[1]), (contexts[1], *entry), (entry[1], *current)]
        splices = file.remove_pair(chain)  # type: ignore[arg-type]
    new_text = apply(file.text, splices)
    if not file.exists:
        new_text = HEADER + new_text
    file.reload(new_text)
    file.save(new_text)
    if pinned:
        at = _line_of(new_text, keys)
        return EditResult(path, f"Context {context} is now pinned: kubetray forwards its rules whatever the "
                                f"current context is ({shown(path)}, line {at}).", at)
    return EditResult(path, f"Context {context} is no longer pinned: its rules follow the current context "
                            f"again ({shown(path)}).", None)


def exclude_auto(path: Path, namespace: str, kind: str, name: str, port: int | str | None) -> EditResult:
    """Stop forwarding one automatically found object (or one port of it), written as a line under
    `auto: exclude:` that the user can delete to undo."""
    path = Path(path)
    resource = parse_resource_type(kind)  # a pod's automatic rule names its workload (engine/discovery.py)
    if isinstance(port, str) and port.strip().isdigit():
        port = int(port)
    file = RulesFile(path)
    fields: dict[str, Any] = {"kind": resource.value, "namespace": namespace, "name": name}
    if port is not None:
        fields["port"] = port
    shown_target = f"{resource.short}/{name}" + (f":{port}" if port is not None else "") + f" in {namespace}"
    if any(_excludes(item, resource, namespace, name, port) for item in file.ruleset.auto.exclude):
        return EditResult(path, f"{shown_target} is already excluded in {shown(path)}; nothing changed.", None)
    file.style = replace(file.style, flow_rules=True)  # one line per exclusion: deleting it undoes it
    new_text = apply(file.text, _put(file, ["auto", "exclude"], [fields]))
    if not file.exists:
        new_text = HEADER + new_text
    ruleset = file.reload(new_text)
    written = [item for item in ruleset.auto.exclude if _excludes(item, resource, namespace, name, port)]
    if not written or written[0].origin is None:
        raise RulesEditError(f"kubetray could not write the exclusion into {shown(path)}, so it left the file "
                             "as it was.")
    line = written[0].origin.line
    file.save(new_text)
    return EditResult(path, f"kubetray no longer forwards {shown_target} automatically ({shown(path)}, line "
                            f"{line}; delete that line to undo).", line)


def _excludes(item: Any, kind: ResourceType, namespace: str, name: str, port: int | str | None) -> bool:
    return bool(item.kind is kind and item.namespace == namespace and item.name == name
                and (item.port is None or str(item.port) == str(port)))


def selector_for(rule: Rule) -> str:
    """The selector naming exactly this rule as the loader read it (TYPE/NAME:PORT@LINE), for
    remove_rule and set_local_port; the line alone could be two rules written on one line."""
    line = rule.origin.line if rule.origin is not None else None
    return selector_of(rule) + (f"@{line}" if line is not None else "")


def list_rules(path: Path) -> list[ListedRule]:
    """Every usable rule the file gives, with where it is written (Skaffold imports included)."""
    ruleset = load_rules(Path(path))
    scoped: list[tuple[str | None, Rule]] = [(None, rule) for rule in ruleset.rules]
    scoped += [(pattern, rule) for pattern, rules in ruleset.context_rules for rule in rules]
    listed = []
    for context, rule in scoped:
        label = selector_of(rule) + (f" ({rule.name})" if rule.name else "")
        origin = rule.origin
        listed.append(ListedRule(Path(origin.file) if origin else Path(path), origin.line if origin else None,
                                 context, label, rule))
    return listed

"""The user's rules file opened for an edit: its text, how it is written, its rules, and splices.

`RulesFile` refuses a file the loader finds problems in, finds rules by name, TYPE/NAME[:PORT] or
@LINE, works out the file's style (indents, flow or block rules, quotes, line ends) and turns
"put this under that key" and "remove that rule" into splices (config/yamltext.py). config/edit.py
holds the public edits built on it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from trayapp.config.problems import Problem
from trayapp.config.ruleentries import (
    AmbiguousRule,
    Found,
    NoSuchRule,
    RulesEditError,
    RulesFileHasProblems,
    matches,
    rule_entries,
    rule_matches,
)
from trayapp.config.rules import RuleSet, load_rules_text
from trayapp.config.yamltext import (
    Splice,
    Style,
    Text,
    TextEditError,
    compose,
    end_index,
    insert_lines,
    is_flow,
    is_null,
    lookup,
    pairs,
    remove_lines,
    scalar_styles,
)


def shown(path: Path) -> str:
    """The path as a person reads it: the home folder as ~."""
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home):] if home not in ("", "/") and text.startswith(home + os.sep) else text


def blocking(problems: tuple[Problem, ...], path: Path, fixing: str | None = None) -> list[Problem]:
    """The problems that stop an edit: those of this file, except one about the very field the
    edit rewrites (`pinned:` left empty is what "Keep forwarding" is there to set)."""
    return [p for p in problems if p.file == str(path) and (fixing is None or p.field != fixing)]


def problem_list(problems: list[Problem]) -> str:
    listed = "; ".join(str(problem).rstrip(".") for problem in problems[:5])
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return listed + more


class RulesFile:
    """One rules file being edited: its text, how it is written, and its nodes."""

    def __init__(self, path: Path, fixing: str | None = None) -> None:
        self.path = Path(path)
        self.exists = self.path.exists()
        self.bom = False
        self.raw: bytes | None = None
        text = ""
        if self.exists:
            try:
                self.raw = raw = self.path.read_bytes()
                self.bom = raw.startswith(b"\xef\xbb\xbf")
                text = raw[3 if self.bom else 0:].decode("utf-8")
            except (OSError, UnicodeDecodeError) as error:
                reason = error.strerror if isinstance(error, OSError) and error.strerror else "it is not UTF-8 text"
                raise RulesEditError(f"Cannot read {shown(self.path)}: {reason}. Nothing was changed.") from error
        self.text = text
        self.ruleset = load_rules_text(text, self.path)
        found = blocking(self.ruleset.problems, self.path, fixing)
        if found:
            raise RulesFileHasProblems(
                f"{shown(self.path)} has problems to fix first, so kubetray did not change it: "
                f"{problem_list(found)}. `kubetray check` lists them all.")
        try:
            self.root = compose(text)
        except TextEditError as error:  # pragma: no cover - the loader found it first
            raise RulesEditError(f"{shown(self.path)} could not be read for editing: {error}.") from error
        self.lines = Text(text)
        self.style = self._style()

    # ---- how the file is written ----------------------------------------------------------

    def _style(self) -> Style:
        text = self.text
        newline = "\r\n" if text.count("\r\n") * 2 > text.count("\n") else "\n"
        mapping_indent = sequence_offset = None
        for key, value in self._walk(self.root):
            if is_flow(value) or not value.value or not isinstance(value, (MappingNode, SequenceNode)):
                continue
            column = self.lines.column(int(key.start_mark.index))
            if isinstance(value, MappingNode) and mapping_indent is None:
                mapping_indent = self.lines.column(int(value.start_mark.index)) - column
            if isinstance(value, SequenceNode) and sequence_offset is None:
                sequence_offset = self.lines.column(int(value.start_mark.index)) - column
        items = [entry.node for entry in self.entries()]
        flow = [node for node in items if is_flow(node)]
        styles = [style for style in scalar_styles(self.root) if style in ("'", '"')]
        brace_space = bool(flow) and self.text[int(flow[0].start_mark.index) + 1] == " "
        item_offset = 2
        for node in items:
            if isinstance(node, MappingNode) and not is_flow(node):
                try:
                    item_offset = max(2, int(node.start_mark.index) - self.lines.dash_of(node))
                except TextEditError:
                    continue
                break
        return Style(
            newline=newline,
            mapping_indent=mapping_indent if mapping_indent and mapping_indent > 0 else 2,
            sequence_offset=sequence_offset if sequence_offset is not None and sequence_offset >= 0 else 2,
            item_offset=item_offset,
            flow_rules=len(flow) * 2 > len(items),
            brace_space=brace_space,
            quote="'" if styles.count("'") > styles.count('"') else '"',
        )

    def _walk(self, node: Node | None) -> list[tuple[ScalarNode, Node]]:
        found: list[tuple[ScalarNode, Node]] = []
        for key, value in pairs(node) if node is not None else []:
            found.append((key, value))
            found += self._walk(value)
        return found

    def item_offset(self, seq: SequenceNode) -> int:
        first = seq.value[0]
        return max(2, int(first.start_mark.index) - self.lines.dash_of(first))

    # ---- finding rules ----------------------------------------------------------------------

    def entries(self) -> list[Found]:
        return rule_entries(self.root)

    def find(self, selector: str) -> Found:
        found = [entry for entry in self.entries() if matches(entry.fields, entry.line, selector)]
        if not found:
            imported = [rule for rule in self.ruleset.rules if rule.origin is not None
                        and rule.origin.file != str(self.path) and rule_matches(rule, selector)]
            if imported:
                raise NoSuchRule(f'"{selector}" is a rule of the Skaffold file {imported[0].origin}, which '
                                 "kubetray reads but does not edit; change it there. Nothing was changed.")
            raise NoSuchRule(f'No rule in {shown(self.path)} matches "{selector}"; `kubetray list` shows '
                             "the rules with their lines. Nothing was changed.")
        if len(found) > 1:
            named = "; ".join(entry.describe() for entry in found)
            raise AmbiguousRule(
                f'{len(found)} rules in {shown(self.path)} match "{selector}": {named}. Say which one '
                f'by its line, as in "@{found[0].line}", or by its name. Nothing was changed.')
        return found[0]

    # ---- writing ----------------------------------------------------------------------------

    def save(self, new_text: str) -> None:
        """Replace the file atomically, keeping its mode; a reader sees the old or the new file."""
        try:
            self._replace(new_text)
        except OSError as error:
            reason = error.strerror or str(error)
            raise RulesEditError(f"kubetray could not write {shown(self.path)}: {reason}. The file was not "
                                 "changed.") from error

    def _replace(self, new_text: str) -> None:
        data = (b"\xef\xbb\xbf" if self.bom else b"") + new_text.encode("utf-8")
        # A rules file linked from a dotfiles repository stays a link: the file it points at is replaced.
        target = self.path.resolve() if self.path.is_symlink() else self.path
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            now = target.read_bytes()
        except FileNotFoundError:
            now = None
        if now != self.raw:
            raise RulesEditError(f"{shown(self.path)} changed while kubetray was editing it, so kubetray left "
                                 "it as it now is; try again.")
        mode = target.stat().st_mode & 0o7777 if self.exists else None
        handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            if mode is not None:
                os.chmod(temp, mode)
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        try:  # the rename itself survives a crash only once the folder is synced
            folder = os.open(target.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(folder)
        except OSError:
            pass
        finally:
            os.close(folder)

    def reload(self, new_text: str) -> RuleSet:
        """The loader's reading of the edited text; refuses when the edit made problems."""
        ruleset = load_rules_text(new_text, self.path)
        found = blocking(ruleset.problems, self.path)
        if found:
            raise RulesEditError(
                f"kubetray could not make this change to {shown(self.path)} without a problem "
                f"({problem_list(found)}), so it left the file as it was; edit it by hand instead.")
        return ruleset

    # ---- splicing ---------------------------------------------------------------------------

    def column(self, node: Node) -> int:
        return self.lines.column(int(node.start_mark.index))

    def put(self, keys: list[str], leaf: Any) -> list[Splice]:
        """Splices that make the mapping path `keys` hold `leaf` (a list is appended to)."""
        text, style = self.text, self.style
        node = self.root
        if node is None:
            value: Any = leaf
            for key in reversed(keys[1:]):
                value = {key: value}
            return [insert_lines(text, len(text), style.block(keys[0], value, 0), style.newline)]
        for depth, key in enumerate(keys):
            value = leaf
            for inner in reversed(keys[depth + 1:]):
                value = {inner: value}
            pair = lookup(node, key)
            if pair is None:
                return self._add_pair(node, key, value)
            key_node, child = pair
            if isinstance(child, SequenceNode) and is_flow(child) and not child.value and isinstance(value, list):
                return self._fill_flow(node, key_node, child, value)
            if isinstance(child, MappingNode) and is_flow(child) and not child.value and isinstance(value, dict):
                inside = int(child.start_mark.index) + 1, int(child.end_mark.index) - 1
                return [Splice(*inside, style.flow(value)[1:-1])]  # `{}` stays a flow mapping
            if (is_null(child) or (is_flow(child) and not child.value)) and isinstance(value, (dict, list)):
                return self._fill(key_node, child, value)
            if is_null(child):  # `pinned:` with no value
                colon = text.index(":", int(key_node.end_mark.index)) + 1
                return [Splice(colon, colon, " " + style.scalar(value))]
            if depth < len(keys) - 1:
                node = child
                continue
            if isinstance(child, SequenceNode) and isinstance(leaf, list):
                return self._append(child, leaf)
            if isinstance(child, ScalarNode):
                return [Splice(int(child.start_mark.index), end_index(child, key_node), style.scalar(leaf))]
        raise RulesEditError(f"{shown(self.path)} is not laid out as kubetray expects; nothing was changed.")

    def _fill_flow(self, mapping: Node, key: ScalarNode, empty: SequenceNode, items: list[Any]) -> list[Splice]:
        """Rules into `[]`, staying a flow list (one rule a line), so removing them gives `[]` back."""
        style = self.style
        inside = int(empty.start_mark.index) + 1, int(empty.end_mark.index) - 1
        if is_flow(mapping):
            return [Splice(*inside, ", ".join(style.flow(item) for item in items))]
        pad = " " * (self.column(key) + style.mapping_indent)
        rules = ("," + style.newline).join(pad + style.flow(item) for item in items)
        return [Splice(*inside, style.newline + rules + style.newline + " " * self.column(key))]

    def _add_pair(self, mapping: Node, key: str, value: Any) -> list[Splice]:
        style = self.style
        if is_flow(mapping):
            at = end_index(mapping.value[-1][1]) if mapping.value else int(mapping.end_mark.index) - 1
            sep = ", " if mapping.value else ""
            return [Splice(at, at, f"{sep}{style.scalar(key)}: {style.flow(value)}")]
        last_key, last_value = mapping.value[-1]
        _, at = self.lines.whole_lines(int(last_key.start_mark.index), end_index(last_value, last_key))
        column = self.column(mapping.value[0][0])
        at = self.lines.past_comments(at, column)
        return [insert_lines(self.text, at, style.block(key, value, column), style.newline)]

    def _fill(self, key: ScalarNode, empty: Node, value: Any) -> list[Splice]:
        """Give a key with no value (or `[]`, `{}`, `~`) the block `value` on the lines after it."""
        style, column = self.style, self.column(key)
        splices = []
        if not (isinstance(empty, ScalarNode) and empty.value == ""):
            splices.append(Splice(int(key.end_mark.index), int(empty.end_mark.index), ":"))
        if isinstance(value, dict):
            lines = [line for k, v in value.items() for line in style.block(k, v, column + style.mapping_indent)]
        else:
            lines = [line for item in value for line in style.item(item, column + style.sequence_offset, style.item_offset)]
        at = self.lines.line_after(end_index(empty, key))
        return [*splices, insert_lines(self.text, at, lines, style.newline)]

    def _append(self, seq: SequenceNode, items: list[Any]) -> list[Splice]:
        style, last = self.style, seq.value[-1]
        end = end_index(last)
        if is_flow(seq):
            multi_line = last.start_mark.line != seq.start_mark.line
            sep = "," + style.newline + " " * self.column(last) if multi_line else ", "
            return [Splice(end, end, "".join(sep + style.flow(item) for item in items))]
        dash = self.lines.dash_of(seq.value[0])
        _, at = self.lines.whole_lines(self.lines.dash_of(last), end)
        at = self.lines.past_comments(at, self.lines.column(dash))
        offset = self.item_offset(seq)
        lines = [line for item in items for line in style.item(item, self.lines.column(dash), offset)]
        return [insert_lines(self.text, at, lines, style.newline)]

    def remove_item(self, entry: Found) -> list[Splice]:
        seq, node, text = entry.seq, entry.node, self.text
        end = end_index(node)
        key_line = self.lines.line_start(int(entry.key.start_mark.index))
        if is_flow(seq):
            items = seq.value
            chain = self._parents(entry.key)
            inside = int(seq.start_mark.index) + 1, int(seq.end_mark.index) - 1
            if len(items) == 1 and not self.lines.has_comment(*inside):
                after = self.lines.line_after(int(seq.end_mark.index))
                if chain and is_flow(chain[-1][0]) and not self.lines.has_comment(key_line, after):
                    return self.remove_pair(chain)  # as it was added: `portForward: [...]` in a flow mapping
                return [Splice(*inside, "")]  # `[]`, as it was before the first rule went in
            if entry.index < len(items) - 1:
                return [Splice(int(node.start_mark.index), int(items[entry.index + 1].start_mark.index), "")]
            start = end_index(items[entry.index - 1]) if entry.index else int(node.start_mark.index)
            return [Splice(start, end, "")]
        start, stop = self.lines.whole_lines(self.lines.dash_of(node), end)
        key = entry.key
        if len(seq.value) == 1 and not self.lines.comment_within(
                key_line, int(seq.end_mark.index), self.column(key), (start, stop)):
            return self.remove_pair(self._parents(key))
        return [remove_lines(text, start, stop)]

    def _parents(self, key: ScalarNode) -> list[tuple[Node, ScalarNode, Node]]:
        """(mapping, key, value) from the root down to the pair whose key is `key`."""
        def down(node: Node | None) -> list[tuple[Node, ScalarNode, Node]] | None:
            for k, v in pairs(node) if node is not None else []:
                if k is key:
                    return [(node, k, v)]  # type: ignore[list-item]
                below = down(v)
                if below is not None:
                    return [(node, k, v), *below]  # type: ignore[list-item]
            return None
        return down(self.root) or []

    def remove_pair(self, chain: list[tuple[Node, ScalarNode, Node]]) -> list[Splice]:
        """Remove the last pair of `chain`; a mapping it leaves empty goes too, with its key."""
        mapping, key, value = chain[-1]
        while len(chain) > 1 and len(pairs(mapping)) == 1:
            parent_mapping, parent_key, _ = chain[-2]
            if is_flow(mapping) and not is_flow(parent_mapping):
                break  # `key: {}` stays as it was written
            hole = (self.lines.line_start(int(key.start_mark.index)),
                    self.lines.line_after(end_index(value, key)))
            if self.lines.comment_within(int(parent_key.start_mark.index), int(mapping.end_mark.index),
                                         self.column(parent_key), hole):
                break  # a comment in the entry: it stays, with the comment
            chain = chain[:-1]
            mapping, key, value = chain[-1]
        if is_flow(mapping):
            items = mapping.value
            index = next(i for i, (k, _) in enumerate(items) if k is key)
            if index < len(items) - 1:
                return [Splice(int(key.start_mark.index), int(items[index + 1][0].start_mark.index), "")]
            start = end_index(items[index - 1][1]) if index else int(key.start_mark.index)
            return [Splice(start, end_index(value, key), "")]
        start, stop = self.lines.whole_lines(int(key.start_mark.index), end_index(value, key))
        return [remove_lines(self.text, start, stop)]

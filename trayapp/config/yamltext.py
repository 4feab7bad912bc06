"""Editing YAML text in place: node spans, splices and new text written in the file's own style.

ruamel.yaml's round-trip composer gives every node of the user's file with its exact start and
end, and the style it was written in (flow or block, quotes). The edits are spliced into the
original text at those places, so every byte outside the part being changed stays as the user
wrote it. ruamel's own dump is not used for whole files: it re-indents every collection to one
setting, drops quotes it thinks unneeded and wraps long flow mappings, which would rewrite rules
the user never asked to change.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError as RuamelError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_PLAIN_SAFE = re.compile(r"[A-Za-z0-9_./][A-Za-z0-9_./ @+=-]*")


class TextEditError(Exception):
    """The text cannot be edited as asked without touching other parts of it; says why."""


def compose(text: str) -> Node | None:
    """The node tree of the first document (None for a file with no document)."""
    try:
        node: Node | None = YAML(typ="rt").compose(text)
    except RuamelError as error:  # the loader's own check reports it with its line first
        raise TextEditError(f"The file is not valid YAML: {error}") from error
    return node


def pairs(node: Node) -> list[tuple[ScalarNode, Node]]:
    """A mapping node's (key, value) pairs; keys that are not scalars are skipped."""
    if not isinstance(node, MappingNode):
        return []
    return [(key, value) for key, value in node.value if isinstance(key, ScalarNode)]


def lookup(node: Node | None, key: str) -> tuple[ScalarNode, Node] | None:
    """The last (key, value) pair of a mapping node with this key text, as YAML loaders read it."""
    found = None
    for pair in pairs(node) if node is not None else []:
        if pair[0].value == key:
            found = pair
    return found


def is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and str(node.tag).endswith(":null") and node.value in ("", "~", "null")


def is_flow(node: Node) -> bool:
    return isinstance(node, (MappingNode, SequenceNode)) and bool(node.flow_style)


def end_index(node: Node, key: Node | None = None) -> int:
    """Where the node's own text ends (block collections end at their last value, not at the next token)."""
    if isinstance(node, ScalarNode):
        if node.value == "" and node.style is None and key is not None:
            return int(key.end_mark.index)  # an empty value's marks sit at the next token
        return int(node.end_mark.index)
    if is_flow(node) or not node.value:
        return int(node.end_mark.index)
    if isinstance(node, MappingNode):
        last_key, last_value = node.value[-1]
        return end_index(last_value, last_key)
    return end_index(node.value[-1])


def scalar_styles(node: Node | None) -> Iterator[str | None]:
    """The style of every scalar under `node` (None: plain, "'" or '"': quoted)."""
    if node is None:
        return
    if isinstance(node, ScalarNode):
        yield node.style
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            yield from scalar_styles(key)
            yield from scalar_styles(value)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            yield from scalar_styles(item)


@dataclass(frozen=True)
class Style:
    """How the file is written, so new text looks like the rest of it."""

    newline: str = "\n"
    mapping_indent: int = 2  # a nested mapping's keys, right of its parent key
    sequence_offset: int = 2  # a block list's dashes, right of its parent key
    item_offset: int = 2  # a block list item's keys, right of its dash
    flow_rules: bool = False  # rules written as {resourceType: ..., port: ...}
    brace_space: bool = False  # `{ a: 1 }` rather than `{a: 1}`
    quote: str = '"'

    def scalar(self, value: Any) -> str:
        """A scalar as YAML text that PyYAML, the loader, reads back as `value` in block and flow context."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        text = str(value)
        if _PLAIN_SAFE.fullmatch(text) and not text.endswith(" ") and _reads_back(text):
            return text
        if self.quote == "'" and text.isprintable():
            return "'" + text.replace("'", "''") + "'"
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"' if text.isprintable() else _json(text)

    def flow(self, value: Any) -> str:
        if isinstance(value, Mapping):
            inner = ", ".join(f"{self.scalar(k)}: {self.flow(v)}" for k, v in value.items())
            return "{ " + inner + " }" if self.brace_space and inner else "{" + inner + "}"
        if isinstance(value, Sequence) and not isinstance(value, str):
            return "[" + ", ".join(self.flow(item) for item in value) + "]"
        return self.scalar(value)

    def block(self, key: str, value: Any, column: int) -> list[str]:
        """Lines (without line ends) writing `key: value` as a block mapping entry at `column`."""
        pad = " " * column
        if isinstance(value, Mapping):
            lines = [f"{pad}{self.scalar(key)}:"]
            for child_key, child in value.items():
                lines += self.block(child_key, child, column + self.mapping_indent)
            return lines
        if isinstance(value, Sequence) and not isinstance(value, str):
            lines = [f"{pad}{self.scalar(key)}:"]
            for item in value:
                lines += self.item(item, column + self.sequence_offset, self.item_offset)
            return lines
        return [f"{pad}{self.scalar(key)}: {self.scalar(value)}"]

    def item(self, value: Any, dash: int, offset: int) -> list[str]:
        """Lines writing one block list item: its dash at `dash`, its keys `offset` right of it."""
        pad = " " * dash
        if not isinstance(value, Mapping) or self.flow_rules:
            return [f"{pad}-{' ' * (offset - 1)}{self.flow(value)}"]
        lines: list[str] = []
        for index, (key, child) in enumerate(value.items()):
            entry = self.block(key, child, dash + offset)
            if index == 0:
                entry[0] = f"{pad}-{' ' * (offset - 1)}{entry[0].lstrip(' ')}"
            lines += entry
        return lines


def _reads_back(text: str) -> bool:
    try:
        return bool(
            yaml.safe_load(f"k: {text}") == {"k": text} and yaml.safe_load(f"[{text}]") == [text]
        )
    except yaml.YAMLError:
        return False


def _json(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid double-quoted YAML scalar


class Text:
    """The file's text and helpers to find lines and columns around node marks."""

    def __init__(self, text: str) -> None:
        self.text = text

    def line_start(self, index: int) -> int:
        return self.text.rfind("\n", 0, index) + 1

    def line_after(self, index: int) -> int:
        """The start of the line after the one `index` is on (the end of the text on the last)."""
        end = self.text.find("\n", index)
        return len(self.text) if end < 0 else end + 1

    def column(self, index: int) -> int:
        return index - self.line_start(index)

    def only_space_before(self, index: int) -> bool:
        return not self.text[self.line_start(index) : index].strip()

    def only_comment_after(self, index: int) -> bool:
        rest = self.text[index : self.line_after(index)].strip()
        if rest.startswith(":"):  # a key with no value ends before its colon
            rest = rest[1:].strip()
        return not rest or rest.startswith("#")

    def has_comment(self, start: int, end: int) -> bool:
        """Whether [start, end) holds a comment (a '#' at a line start or after a space)."""
        return re.search(r"(^|\s)#", self.text[start:end], re.MULTILINE) is not None

    def comment_within(self, start: int, end: int, column: int, hole: tuple[int, int]) -> bool:
        """Whether [start, end), outside `hole`, has a comment right of `column`: one that is part
        of the value of a key written at `column`, which would be lost with that key."""
        for match in re.finditer(r"(?<![^\s])#", self.text[start:end]):
            at = start + match.start()
            if not hole[0] <= at < hole[1] and self.column(at) > column:
                return True
        return False

    def past_comments(self, at: int, column: int) -> int:
        """`at` (a line start) moved past the comment lines right after it indented more than
        `column`: they end the entry above, and a new entry goes below them."""
        end, scan = at, at
        while scan < len(self.text):
            following = self.line_after(scan)
            line = self.text[scan:following]
            stripped = line.strip()
            if stripped.startswith("#") and self.column(scan + line.index("#")) > column:
                end = scan = following
            elif not stripped:
                scan = following
            else:
                break
        return end

    def dash_of(self, item: Node) -> int:
        """The index of the `-` that starts a block list item."""
        index = int(item.start_mark.index) - 1
        while index >= 0 and self.text[index] in " \t":
            index -= 1
        if index < 0 or self.text[index] != "-" or not self.only_space_before(index):
            raise TextEditError("a list item is not written on lines of its own")
        return index

    def whole_lines(self, start: int, end: int) -> tuple[int, int]:
        """[start, end) grown to whole lines; refuses when other text shares those lines."""
        if not self.only_space_before(start) or not self.only_comment_after(end):
            raise TextEditError("another part of the file shares its lines")
        return self.line_start(start), self.line_after(end)


@dataclass(frozen=True)
class Splice:
    """Replace text[start:end] with `new`."""

    start: int
    end: int
    new: str


def apply(text: str, splices: Sequence[Splice]) -> str:
    """The text with non-overlapping splices applied (from the end, so indexes stay right)."""
    for splice in sorted(splices, key=lambda s: s.start, reverse=True):
        text = text[: splice.start] + splice.new + text[splice.end :]
    return text


def insert_lines(text: str, at: int, lines: Sequence[str], newline: str) -> Splice:
    """Insert whole lines at a line start `at`, keeping whether the file ends with a line break."""
    body = "".join(line + newline for line in lines)
    if at == len(text) and text and not text.endswith("\n"):
        return Splice(at, at, newline + body[: -len(newline)])
    return Splice(at, at, body)


def remove_lines(text: str, start: int, end: int) -> Splice:
    """Remove the whole lines [start, end), the inverse of `insert_lines`."""
    if end == len(text) and not text.endswith("\n") and start > 0:
        before = start - 1
        if before > 0 and text[before - 1] == "\r":
            before -= 1
        return Splice(before, end, "")
    return Splice(start, end, "")

"""Line-aware YAML loading: plain dicts and lists that remember the line each key and item is on.

PyYAML's safe loader throws the marks away once it has built Python values, yet every config
problem must point at a line. `LineDict` and `LineList` are ordinary `dict`/`list` subclasses (so
the rest of the code treats them as plain data) carrying 1-based line numbers, and `LineDict`
also remembers keys written twice, which plain YAML loading silently collapses.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, SequenceNode


class LineDict(dict):  # type: ignore[type-arg]
    """A mapping from YAML; `line` is where it starts, `key_lines[key]` where each key is."""

    line: int
    key_lines: dict[Any, int]
    duplicate_keys: list[tuple[Any, int, int]]  # (key, line of the repeat, line of the first)

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list):  # type: ignore[type-arg]
    """A sequence from YAML; `line` is where it starts, `item_lines[i]` where item i starts."""

    line: int
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if 0 <= index < len(self.item_lines) else self.line


@dataclass(frozen=True)
class Document:
    """One `---` document of a YAML stream and the line it starts on."""

    value: Any
    line: int


class YamlLoadError(Exception):
    """The text is not valid YAML; `line` is 1-based when PyYAML knew where it stopped."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def _line(node: Node) -> int:
    return node.start_mark.line + 1


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences come out as LineDict and LineList."""


def _construct_mapping(loader: _LineLoader, node: MappingNode) -> Iterator[LineDict]:
    data = LineDict()
    data.line = _line(node)
    data.key_lines = {}
    data.duplicate_keys = []
    yield data  # yielded first so recursive (aliased) structures resolve, as SafeConstructor does
    # Keys brought in by a `<<` merge may legitimately be overridden, so only keys written in this
    # mapping itself count as repeats.
    own_keys = [key_node for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge"]
    loader.flatten_mapping(node)
    own_ids = {id(key_node) for key_node in own_keys}
    own_seen: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            raise ConstructorError(
                "while reading a mapping",
                node.start_mark,
                "found a key that is a list or mapping",
                key_node.start_mark,
            )
        if id(key_node) in own_ids:
            if key in own_seen:
                data.duplicate_keys.append((key, _line(key_node), own_seen[key]))
            else:
                own_seen[key] = _line(key_node)
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_lines[key] = _line(key_node)


def _construct_sequence(loader: _LineLoader, node: SequenceNode) -> Iterator[LineList]:
    data = LineList()
    data.line = _line(node)
    data.item_lines = [_line(item) for item in node.value]
    yield data
    data.extend(loader.construct_object(item, deep=True) for item in node.value)


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)
# `!!omap`/`!!pairs` and `!!set` keep SafeLoader's plain types; rules files have no use for them.


def _describe(error: yaml.YAMLError) -> YamlLoadError:
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        parts = [part for part in (error.context, error.problem) if part]
        text = "; ".join(parts) or "it could not be parsed"
        return YamlLoadError(f"This is not valid YAML: {text}.", mark.line + 1 if mark else None)
    return YamlLoadError(f"This is not valid YAML: {error}.", None)


def load_documents(text: str) -> list[Document]:
    """Every document in `text`, in order. Raises YamlLoadError for text that is not YAML."""
    loader = _LineLoader(text)
    documents: list[Document] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node() said there was one
                break
            value = loader.construct_document(node)
            documents.append(Document(value=value, line=_line(node)))
    except yaml.YAMLError as error:
        raise _describe(error) from error
    finally:
        loader.dispose()
    return documents

from __future__ import annotations

import pytest

from trayapp.config.yamlnodes import LineDict, LineList, YamlLoadError, load_documents


def test_mappings_and_lists_remember_their_lines() -> None:
    [doc] = load_documents("a: 1\nb:\n  - x\n  - {c: 2}\n")
    root = doc.value
    assert isinstance(root, LineDict) and root == {"a": 1, "b": ["x", {"c": 2}]}
    assert (root.line, root.line_of("a"), root.line_of("b")) == (1, 1, 2)
    assert isinstance(root["b"], LineList)
    assert root["b"].item_lines == [3, 4]
    assert root["b"][1].line == 4


def test_repeated_keys_are_recorded_and_the_last_value_kept() -> None:
    [doc] = load_documents("a: 1\nb: 2\na: 3\n")
    assert doc.value["a"] == 3
    assert doc.value.duplicate_keys == [("a", 3, 1)]


def test_merge_keys_may_be_overridden_without_counting_as_repeats() -> None:
    [_, doc] = load_documents("x: 1\n---\nbase: &b {k: 1, j: 2}\nm:\n  <<: *b\n  k: 2\n")
    assert doc.line == 3
    assert doc.value["m"] == {"k": 2, "j": 2}
    assert doc.value["m"].duplicate_keys == []


def test_empty_text_has_no_documents_and_empty_document_is_none() -> None:
    assert load_documents("") == []
    assert [d.value for d in load_documents("---\n")] == [None]


@pytest.mark.parametrize(
    ("text", "line"),
    [("a: b: c\n", 1), ("a: 1\nb: [1, 2\n", 3), ("a:\n  - x\n y: 2\n", 3), ("? [a]\n: 1\n", 1)],
)
def test_invalid_yaml_raises_with_a_line(text: str, line: int) -> None:
    with pytest.raises(YamlLoadError) as caught:
        load_documents(text)
    assert caught.value.line == line
    assert caught.value.message.startswith("This is not valid YAML: ")


@pytest.mark.parametrize("text", ["a: &x [*x]\n", "a: !!python/object:os.system {}\n"])
def test_recursive_and_unsafe_yaml_is_refused_not_followed(text: str) -> None:
    with pytest.raises(YamlLoadError) as caught:
        load_documents(text)
    assert caught.value.line == 1

"""New YAML text written in the file's style reads back, with PyYAML, as the value meant."""

from __future__ import annotations

import pytest
import yaml

from trayapp.config.yamltext import Style, Text, TextEditError, apply, compose, insert_lines, lookup, remove_lines

AWKWARD = ["web", "the db", "true", "yes", "No", "null", "~", "5432", "0x1F", "1e3", "1.5", "a: b", "a #b", "#x",
           "-x", "- x", "", " lead", "trail ", "it's", 'say "hi"', "café", "tab\there", "line\nbreak", "[x]",
           "{x}", "*alias", "&anchor", "!tag", "%pct", "@at", "`tick", "x,y", "kind-*", "a\\b", "\u2028"]


@pytest.mark.parametrize("quote", ["'", '"'])
@pytest.mark.parametrize("text", AWKWARD)
def test_scalars_read_back_in_block_and_flow(text: str, quote: str) -> None:
    style = Style(quote=quote)
    assert yaml.safe_load(f"k: {style.scalar(text)}\n") == {"k": text}
    assert yaml.safe_load(style.flow({"k": text, text: 1})) == {"k": text, text: 1}
    assert yaml.safe_load("\n".join(style.block("k", {text: [{"a": text}]}, 0))) == {"k": {text: [{"a": text}]}}


def test_plain_when_plain_reads_the_same() -> None:
    assert Style().scalar("web") == "web" and Style().scalar("the db") == "the db"
    assert Style(quote="'").scalar("true") == "'true'" and Style().scalar("5432") == '"5432"'
    assert Style().scalar(5432) == "5432" and Style().scalar(True) == "true"


def test_lines_go_in_and_come_out_the_same() -> None:
    for text in ["", "a: 1\n", "a: 1", "a: 1\r\nb: 2\r\n", "a: 1\r\nb: 2"]:
        newline = "\r\n" if "\r\n" in text else "\n"
        added = apply(text, [insert_lines(text, len(text), ["c: 3", "d: 4"], newline)])
        assert yaml.safe_load(added) == {**(yaml.safe_load(text) or {}), "c": 3, "d": 4}
        start = added.index("c: 3")
        assert apply(added, [remove_lines(added, start, len(added))]) == text


def test_a_list_item_that_shares_its_line_is_refused() -> None:
    text = "a: [1, 2]\nb:\n- x\n"
    node = compose(text)
    pair = lookup(node, "a")
    assert pair is not None
    with pytest.raises(TextEditError):
        Text(text).dash_of(pair[1].value[0])

"""Label selector semantics (apimachinery `labels`, metav1.LabelSelectorAsSelector), no I/O."""

from __future__ import annotations

import pytest

from trayapp.selectors import (
    EVERYTHING,
    NOTHING,
    Operator,
    Requirement,
    from_label_selector,
    from_map,
    matches_label_selector,
    matches_map_selector,
    parse_selector,
)

WEB = {"app": "web", "tier": "frontend", "pod-template-hash": "abc"}


# ---- LabelSelector dicts ----------------------------------------------------------------------


def test_none_label_selector_matches_nothing() -> None:
    assert not matches_label_selector(None, WEB)
    assert not matches_label_selector(None, {})
    assert from_label_selector(None) is NOTHING


def test_empty_label_selector_matches_everything() -> None:
    assert matches_label_selector({}, WEB)
    assert matches_label_selector({}, {})
    assert matches_label_selector({"matchLabels": {}, "matchExpressions": []}, {})
    assert from_label_selector({}).selects_everything


def test_match_labels_all_must_match() -> None:
    assert matches_label_selector({"matchLabels": {"app": "web"}}, WEB)
    assert matches_label_selector({"matchLabels": {"app": "web", "tier": "frontend"}}, WEB)
    assert not matches_label_selector({"matchLabels": {"app": "web", "tier": "backend"}}, WEB)
    assert not matches_label_selector({"matchLabels": {"app": "web"}}, {})
    assert not matches_label_selector({"matchLabels": {"app": "web"}}, None)


@pytest.mark.parametrize(
    "expr, labels, expected",
    [
        ({"key": "app", "operator": "In", "values": ["web", "api"]}, WEB, True),
        ({"key": "app", "operator": "In", "values": ["api"]}, WEB, False),
        ({"key": "missing", "operator": "In", "values": ["x"]}, WEB, False),
        ({"key": "app", "operator": "NotIn", "values": ["api"]}, WEB, True),
        ({"key": "app", "operator": "NotIn", "values": ["web"]}, WEB, False),
        (
            {"key": "missing", "operator": "NotIn", "values": ["x"]},
            WEB,
            True,
        ),  # absent label passes NotIn
        ({"key": "tier", "operator": "Exists"}, WEB, True),
        ({"key": "missing", "operator": "Exists"}, WEB, False),
        ({"key": "missing", "operator": "DoesNotExist"}, WEB, True),
        ({"key": "tier", "operator": "DoesNotExist"}, WEB, False),
        ({"key": "tier", "operator": "Exists", "values": []}, WEB, True),
    ],
)
def test_match_expressions(expr: dict, labels: dict, expected: bool) -> None:
    assert matches_label_selector({"matchExpressions": [expr]}, labels) is expected


def test_match_labels_and_expressions_combine_with_and() -> None:
    selector = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["frontend"]}],
    }
    assert matches_label_selector(selector, WEB)
    assert not matches_label_selector(selector, {"app": "web", "tier": "backend"})


@pytest.mark.parametrize(
    "expr, message",
    [
        ({"key": "app", "operator": "Equals", "values": ["x"]}, "not one of In, NotIn"),
        ({"key": "app", "operator": "In", "values": []}, "at least one value"),
        ({"key": "app", "operator": "NotIn"}, "at least one value"),
        ({"key": "app", "operator": "Exists", "values": ["x"]}, "must not have values"),
        ({"key": "bad key", "operator": "Exists"}, "not valid"),
        ({"key": "app", "operator": "In", "values": ["-bad"]}, "not valid"),
    ],
)
def test_invalid_label_selector_raises(expr: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        matches_label_selector({"matchExpressions": [expr]}, WEB)


def test_prefixed_keys() -> None:
    selector = {"matchLabels": {"app.kubernetes.io/name": "web"}}
    assert matches_label_selector(selector, {"app.kubernetes.io/name": "web"})
    with pytest.raises(ValueError, match="prefix"):
        from_label_selector({"matchLabels": {"Bad_Prefix/name": "web"}})


# ---- plain maps ---------------------------------------------------------------------------------


def test_map_selector() -> None:
    assert matches_map_selector({"app": "web"}, WEB)
    assert not matches_map_selector({"app": "api"}, WEB)
    assert not matches_map_selector({"app": "web", "x": "y"}, WEB)


def test_empty_map_selector_matches_everything_like_selector_from_set() -> None:
    assert matches_map_selector({}, WEB)
    assert matches_map_selector(None, WEB)
    assert from_map(None).selects_everything


# ---- the string form ----------------------------------------------------------------------------


def test_parse_full_example() -> None:
    selector = parse_selector("a=b,c!=d,e in (x,y),f notin (z),g,!h")
    assert selector.requirements == (
        Requirement("a", Operator.IN, frozenset({"b"})),
        Requirement("c", Operator.NOT_IN, frozenset({"d"})),
        Requirement("e", Operator.IN, frozenset({"x", "y"})),
        Requirement("f", Operator.NOT_IN, frozenset({"z"})),
        Requirement("g", Operator.EXISTS),
        Requirement("h", Operator.DOES_NOT_EXIST),
    )
    good = {"a": "b", "c": "other", "e": "y", "f": "q", "g": ""}
    assert selector.matches(good)
    assert not selector.matches({**good, "h": "1"})
    assert not selector.matches({**good, "c": "d"})
    assert not selector.matches({**good, "e": "z"})
    assert not selector.matches({**good, "f": "z"})
    assert selector.matches(
        {k: v for k, v in good.items() if k not in ("c", "f")}
    )  # absent passes != / notin
    assert not selector.matches({k: v for k, v in good.items() if k != "g"})


def test_parse_whitespace_and_double_equals() -> None:
    selector = parse_selector("  app == web ,  tier in ( frontend , edge )  ")
    assert selector.matches(WEB)
    assert selector.matches({"app": "web", "tier": "edge"})
    assert not selector.matches({"app": "web", "tier": "backend"})


def test_parse_empty_matches_everything() -> None:
    assert parse_selector("") == EVERYTHING
    assert parse_selector("   ").matches({})


def test_parse_empty_value_and_prefixed_key() -> None:
    assert parse_selector("a=").matches({"a": ""})
    assert not parse_selector("a=").matches({"a": "x"})
    assert parse_selector("app.kubernetes.io/name=web").matches({"app.kubernetes.io/name": "web"})


def test_parse_gt_lt() -> None:
    assert parse_selector("replicas>2").matches({"replicas": "3"})
    assert not parse_selector("replicas>2").matches({"replicas": "2"})
    assert parse_selector("replicas<2").matches({"replicas": "1"})
    assert not parse_selector("replicas<2").matches({"replicas": "x"})
    assert not parse_selector("replicas<2").matches({})


@pytest.mark.parametrize(
    "text, message",
    [
        ("a=b,", "expected a label key, found the end"),
        ("a in x", r'expected "\(" to start the value list, found "x" at position 6'),
        ("a in ()", "needs at least one value"),
        ("a b", "expected an operator"),
        ("!", 'expected a label key after "!"'),
        ("a=b c", 'expected "," between requirements, found "c" at position 5'),
        ("a in (x", r'expected "," or "\)" in the value list, found the end'),
        ("a in (x y)", r'found "y" at position 9'),
        ("=b", 'expected a label key, found "=" at position 1'),
        ("a>x", "exactly one integer"),
        ("a=b=c", 'expected "," between requirements'),
        ("bad key!=x", "expected an operator"),
        ("-a=b", 'label key "-a" is not valid'),
        ("a=-b", 'label value "-b" is not valid'),
    ],
)
def test_parse_errors_are_clear(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_selector(text)
    assert f'Label selector "{text}" is not valid' in str(info.value)


def test_parse_trailing_comma_in_set_means_empty_value() -> None:
    # apimachinery reads `(a,)` as {"a", ""}
    selector = parse_selector("x in (a,)")
    assert selector.matches({"x": ""})
    assert selector.matches({"x": "a"})

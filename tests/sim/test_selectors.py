import pytest

from trayapp.sim.selectors import SelectorError, parse_field_selector, parse_label_selector

LABELS = {"app": "web", "tier": "front", "track": "stable"}


@pytest.mark.parametrize(("text", "expected"), [
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app!=web", False),
    ("app=web,tier=back", False),
    ("tier in (front, back)", True),
    ("tier notin (front)", False),
    ("tier in (back),app=web", False),
    ("track", True),
    ("!track", False),
    ("!missing", True),
    ("missing!=x", True),
    ("missing in (x)", False),
    ("missing notin (x)", True),
])
def test_label_selector(text: str, expected: bool) -> None:
    assert parse_label_selector(text).matches(LABELS) is expected


def test_bad_label_selector() -> None:
    with pytest.raises(SelectorError):
        parse_label_selector("app in front")


def test_field_selector() -> None:
    obj = {"metadata": {"name": "web-1", "namespace": "default"}, "status": {"phase": "Running"}}
    assert parse_field_selector("metadata.name=web-1").matches(obj)
    assert parse_field_selector("metadata.namespace==default,status.phase=Running").matches(obj)
    assert not parse_field_selector("metadata.name!=web-1").matches(obj)
    assert not parse_field_selector("metadata.namespace=other").matches(obj)

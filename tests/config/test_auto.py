"""The rules file's `auto:` section: defaults, every setting, and every problem with its line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.config.conftest import only
from trayapp.config import Problem, RuleSet
from trayapp.config.auto import AutoSettings, SelectorRule, parse_auto
from trayapp.model import Origin, ResourceType
from trayapp.selectors import parse_selector

Load = Callable[[str], RuleSet]


def where(problems: tuple[Problem, ...]) -> list[tuple[int | None, str | None]]:
    return [(p.line, p.field) for p in problems]


def test_no_auto_section_means_the_defaults(load: Load) -> None:
    for text in ("portForward: []\n", "auto:\n", "auto: {}\n"):
        rs = load(text)
        assert (rs.auto, rs.problems) == (AutoSettings(), ())
        assert (rs.auto.skaffold, rs.auto.annotation, rs.auto.namespace) == (True, False, None)
        assert rs.auto.selectors == ()
        assert rs.auto.enabled


def test_parse_auto_without_a_node_is_the_defaults() -> None:
    assert parse_auto(None, "config.yaml") == (AutoSettings(), [])


def test_every_setting(load: Load, tmp_path: Path) -> None:
    rs = load("""
        auto:
          skaffold: false
          annotation: yes
          namespace: dev
          selectors:
            - {kind: service, namespace: "*", selector: "app=web,tier!=db", ports: [80, 443]}
            - kind: Pod
              selector: "app in (debugger)"
              ports: [debug, "9229", 80]
            - {kind: pod, namespace: tools, selector: "!canary"}
    """)
    assert rs.problems == ()
    file = str(tmp_path / "config.yaml")
    web, debugger, tools = rs.auto.selectors
    assert rs.auto == AutoSettings(
        skaffold=False,
        annotation=True,
        namespace="dev",
        selectors=(
            SelectorRule(
                ResourceType.SERVICE,
                "*",
                parse_selector("app=web,tier!=db"),
                "app=web,tier!=db",
                (80, 443),
            ),
            SelectorRule(
                ResourceType.POD,
                None,
                parse_selector("app in (debugger)"),
                "app in (debugger)",
                ("debug", 9229, 80),
            ),
            SelectorRule(ResourceType.POD, "tools", parse_selector("!canary"), "!canary", ()),
        ),
    )
    assert web.origin == Origin(file, 6, 0)
    assert debugger.origin == Origin(file, 7, 1)
    assert tools.origin == Origin(file, 10, 2)
    assert web.selector.matches({"app": "web"})
    assert not web.selector.matches({"app": "web", "tier": "db"})


def test_everything_off(load: Load) -> None:
    rs = load("auto: {skaffold: false, annotation: false}\n")
    assert rs.problems == () and not rs.auto.enabled


def test_unknown_keys_have_did_you_mean(load: Load, tmp_path: Path) -> None:
    rs = load("""
        auto:
          skafold: false
          namespaces: dev
          selectors:
            - {kind: pod, selector: a, port: [1]}
    """)
    assert where(rs.problems) == [
        (2, "auto.skafold"),
        (3, "auto.namespaces"),
        (5, "auto.selectors[0].port"),
    ]
    first, second, third = rs.problems
    assert first.file == str(tmp_path / "config.yaml")
    assert first.message == (
        'Unknown field "skafold". Did you mean "skaffold"? '
        "The auto section's fields are: skaffold, annotation, namespace, selectors, exclude."
    )
    assert 'Did you mean "namespace"?' in second.message
    assert third.message == (
        'Unknown field "port". Did you mean "ports"? '
        "A selector entry's fields are: kind, namespace, selector, ports."
    )
    # The misspelled switch most likely meant "off": it is off until the spelling is fixed.
    assert rs.auto.skaffold is False
    assert rs.auto.annotation is False  # not written: the default, off
    # The entry with a problem is dropped rather than forwarding every port.
    assert rs.auto.selectors == ()


def test_repeated_keys(load: Load) -> None:
    rs = load("""
        auto:
          skaffold: true
          skaffold: false
          selectors:
            - kind: pod
              kind: service
              selector: a
    """)
    assert where(rs.problems) == [(3, "auto.skaffold"), (6, "auto.selectors[0].kind")]
    assert rs.problems[0].message.startswith('"skaffold" is written twice (first on line 2)')


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            '"no"',
            (
                '"skaffold" must be true or false; found a string ("no"). Write false without quotes. '
                "Until this is fixed it counts as false."
            ),
        ),
        (
            "1",
            (
                '"skaffold" must be true or false; found a number (1). '
                "Until this is fixed it counts as false."
            ),
        ),
        (
            "[true]",
            '"skaffold" must be true or false; found a list. Until this is fixed it counts as false.',
        ),
    ],
)
def test_switches_must_be_booleans(load: Load, value: str, message: str) -> None:
    rs = load(f"auto:\n  annotation: false\n  skaffold: {value}\n")
    problem = only(rs.problems)
    assert (problem.line, problem.field, problem.message) == (3, "auto.skaffold", message)
    assert rs.auto.skaffold is False


def test_annotation_switch_is_checked_too(load: Load) -> None:
    problem = only(load('auto:\n  annotation: "true"\n').problems)
    assert (problem.line, problem.field) == (2, "auto.annotation")
    assert "Write true without quotes." in problem.message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "Dev",
            (
                '"Dev" is not a namespace name: use lowercase letters, digits and "-", at most 63 '
                'characters, or "*" for every namespace.'
            ),
        ),
        (
            "3",
            '"namespace" must be a namespace name or "*" for every namespace; found a number (3).',
        ),
        ('"all"', None),
        ('"-x"', '"-x" is not a namespace name'),
    ],
)
def test_namespace(load: Load, value: str, message: str | None) -> None:
    rs = load(f"auto:\n  namespace: {value}\n")
    if message is None:
        assert (rs.problems, rs.auto.namespace) == ((), "all")
        return
    problem = only(rs.problems)
    assert (problem.line, problem.field) == (2, "auto.namespace")
    assert problem.message.startswith(message)
    # A namespace with a problem falls back to the narrowest scope: the context's namespace.
    assert rs.auto.namespace is None


def test_selectors_must_be_a_list(load: Load) -> None:
    problem = only(load("auto:\n  selectors: {kind: pod}\n").problems)
    assert (problem.line, problem.field, problem.message) == (
        2,
        "auto.selectors",
        (
            '"selectors" must be a list of entries like {kind: service, selector: "app=web"}; '
            "found a mapping."
        ),
    )


def test_each_selector_entry_must_be_a_mapping(load: Load) -> None:
    rs = load("""
        auto:
          selectors:
            - {kind: pod, selector: a}
            - app=web
    """)
    problem = only(rs.problems)
    assert (problem.line, problem.field) == (4, "auto.selectors[1]")
    assert problem.message.endswith('found a string ("app=web").')
    assert [rule.selector_text for rule in rs.auto.selectors] == ["a"]


def test_bad_selector_syntax_gives_the_parser_message(load: Load) -> None:
    rs = load("""
        auto:
          selectors:
            - {kind: service, selector: "app=web"}
            - kind: service
              selector: "app in (a"
    """)
    problem = only(rs.problems)
    assert (problem.line, problem.field) == (5, "auto.selectors[1].selector")
    with pytest.raises(ValueError) as error:
        parse_selector("app in (a")
    assert problem.message == str(error.value)


@pytest.mark.parametrize(
    ("entry", "field", "message"),
    [
        (
            "{kind: svc, selector: a}",
            "kind",
            (
                'Unknown kind "svc". Did you mean "service"? '
                "Automatic selectors forward a service or a pod."
            ),
        ),
        (
            "{kind: deployment, selector: a}",
            "kind",
            (
                'Unknown kind "deployment". To forward a deployment\'s pods, use kind: pod with a '
                "selector its pods match. Automatic selectors forward a service or a pod."
            ),
        ),
        (
            "{kind: servce, selector: a}",
            "kind",
            'Unknown kind "servce". Did you mean "service"?',
        ),
        ("{selector: a}", "kind", 'This entry\'s "kind" is missing; it is required'),
        ("{kind: 5, selector: a}", "kind", '"kind" must be a string (service or pod); found a'),
        ("{kind: pod}", "selector", 'This entry\'s "selector" is missing; it is required'),
        ("{kind: pod, selector: }", "selector", 'This entry\'s "selector" has no value'),
        ('{kind: pod, selector: " "}', "selector", '"selector" is empty; it is required'),
        ("{kind: pod, selector: a, namespace: A_B}", "namespace", '"A_B" is not a namespace'),
        (
            "{kind: pod, selector: a, ports: 80}",
            "ports",
            (
                '"ports" must be a list of port numbers or port names; found a number (80). '
                "Write it as a list: ports: [80]."
            ),
        ),
        (
            "{kind: pod, selector: a, ports: []}",
            "ports",
            '"ports" is an empty list, which forwards nothing; leave it out to forward every port.',
        ),
        (
            "{kind: pod, selector: a, ports: [80, 0]}",
            "ports[1]",
            "Port 0 is outside the port range 1-65535.",
        ),
        (
            "{kind: pod, selector: a, ports: [65536]}",
            "ports[0]",
            "Port 65536 is outside the port range 1-65535.",
        ),
        (
            '{kind: pod, selector: a, ports: ["HTTP"]}',
            "ports[0]",
            (
                '"HTTP" is not a port number or a port name; port names use lowercase letters, '
                'digits and "-", at most 63 characters.'
            ),
        ),
        (
            "{kind: pod, selector: a, ports: [true]}",
            "ports[0]",
            "Each port must be a port number or a port name; found a true/false value (true).",
        ),
    ],
)
def test_selector_entry_problems(load: Load, entry: str, field: str, message: str) -> None:
    rs = load(f"auto:\n  selectors:\n    - {{kind: pod, selector: ok}}\n    - {entry}\n")
    problem = only(rs.problems)
    assert (problem.line, problem.field) == (4, f"auto.selectors[1].{field}")
    assert problem.message.startswith(message), problem.message
    # The good entry stays; the bad one is dropped.
    assert [rule.selector_text for rule in rs.auto.selectors] == ["ok"]


def test_every_problem_of_one_entry_at_once(load: Load) -> None:
    rs = load("""
        auto:
          selectors:
            - kind: deploy
              namespace: Prod
              selector: "a=("
              ports:
                - 70000
                - http
                - "Bad Name"
    """)
    assert where(rs.problems) == [
        (3, "auto.selectors[0].kind"),
        (4, "auto.selectors[0].namespace"),
        (5, "auto.selectors[0].selector"),
        (7, "auto.selectors[0].ports[0]"),
        (9, "auto.selectors[0].ports[2]"),
    ]


def test_repeated_ports_are_kept_once(load: Load) -> None:
    rs = load('auto:\n  selectors: [{kind: pod, selector: a, ports: [80, "80", http, http]}]\n')
    assert rs.problems == ()
    assert rs.auto.selectors[0].ports == (80, "http")


def test_problem_text_names_file_line_and_field(load: Load, tmp_path: Path) -> None:
    rs = load("auto:\n  selectors:\n    - {kind: pod, selector: a}\n    - {kind: pod}\n")
    assert str(only(rs.problems)) == (
        f'{tmp_path / "config.yaml"}:4: auto.selectors[1].selector: This entry\'s "selector" '
        'is missing; it is required (a label selector like "app=web,tier!=db").'
    )

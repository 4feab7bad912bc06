"""The rules file as a whole: top-level keys, contexts, duplicates, auto, missing and broken files."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.config.conftest import only, write
from trayapp.config import Problem, RuleSet, load_rules, load_rules_text
from trayapp.config.auto import AutoSettings
from trayapp.model import ResourceType, Rule

Load = Callable[[str], RuleSet]


def test_missing_file_is_no_rules_and_no_problems(tmp_path: Path) -> None:
    rs = load_rules(tmp_path / "nope" / "config.yaml")
    assert rs == RuleSet(path=None, searched=tmp_path / "nope" / "config.yaml")
    assert rs.rules_for("any") == ()


def test_empty_file_and_comment_only_file(load: Load, tmp_path: Path) -> None:
    for text in ("", "# nothing yet\n", "portForward:\ncontexts:\nskaffold:\nauto:\n"):
        rs = load(text)
        assert (rs.path, rs.rules, rs.problems, rs.auto) == (
            tmp_path / "config.yaml",
            (),
            (),
            AutoSettings(),
        )


def test_unreadable_file_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    folder = tmp_path / "config.yaml"
    folder.mkdir()
    problem = only(load_rules(folder).problems)
    assert (problem.file, problem.line, problem.field) == (str(folder), None, None)
    assert problem.message.startswith("Cannot read the rules file: ")


def test_not_utf8_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"portForward: \xff\xfe\n")
    assert "Cannot read the rules file" in only(load_rules(path).problems).message


def test_invalid_yaml_names_the_line(load: Load, tmp_path: Path) -> None:
    rs = load("""
        portForward:
          - resourceType: pod
            resourceName: a
           port: 1
    """)
    problem = only(rs.problems)
    assert (problem.file, problem.line, problem.field) == (str(tmp_path / "config.yaml"), 4, None)
    assert problem.message.startswith("This is not valid YAML: ")
    assert str(problem) == f"{tmp_path / 'config.yaml'}:4: {problem.message}"


def test_a_file_that_cannot_be_used_as_a_whole_is_not_readable(load: Load, tmp_path: Path) -> None:
    assert not load("portForward:\n  - resourceType: pod\n   port: 1\n").readable
    assert not load("- just\n- a list\n").readable
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    assert not load_rules(folder).readable
    # a rule-level problem leaves the file readable: the other rules are used
    rs = load("portForward:\n  - {resourceType: sevice, resourceName: a, port: 1}\n")
    assert rs.readable and rs.problems
    assert load_rules(tmp_path / "missing.yaml").readable


@pytest.mark.parametrize(
    ("text", "found"), [("- a\n- b\n", "a list"), ("hello\n", 'a string ("hello")')]
)
def test_file_that_is_not_a_mapping(load: Load, text: str, found: str) -> None:
    problem = only(load(text).problems)
    assert (problem.line, problem.field) == (1, None)
    assert problem.message == (
        "The rules file must be a mapping with keys such as portForward, contexts, "
        f"skaffold, auto; found {found}."
    )


def test_second_document_is_reported_and_the_first_still_read(load: Load) -> None:
    rs = load("""
        portForward: [{resourceType: pod, resourceName: a, port: 1}]
        ---
        portForward: [{resourceType: pod, resourceName: b, port: 2}]
    """)
    assert [r.resource_name for r in rs.rules] == ["a"]
    problem = only(rs.problems)
    assert problem.line == 3 and "more than one YAML document" in problem.message


def test_unknown_top_level_key_with_suggestion(load: Load) -> None:
    rs = load("""
        portForward: []
        context: {}
        extras: 1
    """)
    assert [(p.line, p.field, p.message) for p in rs.problems] == [
        (
            2,
            "context",
            (
                'Unknown top-level key "context". Did you mean "contexts"? '
                "Allowed: portForward, contexts, skaffold, auto."
            ),
        ),
        (
            3,
            "extras",
            'Unknown top-level key "extras". Allowed: portForward, contexts, skaffold, auto.',
        ),
    ]


def test_a_skaffold_yaml_used_as_rules_file_gets_a_hint(load: Load) -> None:
    rs = load("""
        apiVersion: skaffold/v4beta11
        kind: Config
        portForward: []
    """)
    assert len(rs.problems) == 2
    assert all('list its path under "skaffold:" instead' in p.message for p in rs.problems)


def test_repeated_top_level_key(load: Load) -> None:
    rs = load("""
        portForward: [{resourceType: pod, resourceName: a, port: 1}]
        portForward: [{resourceType: pod, resourceName: b, port: 2}]
    """)
    problem = only(rs.problems)
    assert (problem.line, problem.field) == (2, "portForward")
    assert "written twice (first on line 1)" in problem.message


def test_valid_rules_are_kept_beside_invalid_ones(load: Load) -> None:
    rs = load("""
        portForward:
          - {resourceType: service, resourceName: web, port: 80}
          - {resourceType: sevice, resourceName: bad, port: 81}
          - {resourceType: pod, resourceName: dbg, port: 99999}
          - {resourceType: deployment, resourceName: api, port: http}
        contexts:
          prod:
            portForward:
              - {resourceType: pod, resourceName: x, port: 1, address: moon}
              - {resourceType: pod, resourceName: y, port: 2}
    """)
    assert [r.resource_name for r in rs.rules] == ["web", "api"]
    assert [(p, [r.resource_name for r in rules]) for p, rules in rs.context_rules] == [
        ("prod", ["y"])
    ]
    assert [(p.line, p.field) for p in rs.problems] == [
        (3, "portForward[1].resourceType"),
        (4, "portForward[2].port"),
        (9, 'contexts["prod"].portForward[0].address'),
    ]
    assert [r.origin.index for r in rs.rules if r.origin] == [0, 3]


def test_a_repeated_rule_is_forwarded_once_with_a_warning(load: Load) -> None:
    rs = load("""
        portForward:
          - {resourceType: service, resourceName: web, port: 80}
          - {resourceType: Service, resourceName: web, port: "80", localPort: 80, name: again}
          - {resourceType: service, resourceName: web, port: http}
          - {resourceType: service, resourceName: web, port: http}
    """)
    assert rs.problems == ()
    first, second = rs.warnings[0], rs.warnings[2]
    assert (first.line, first.field, first.warning) == (3, "portForward[1]", True)
    assert first.message == (
        "This rule repeats the rule on line 2: the same service default/web port 80 to "
        "127.0.0.1:80. kubetray forwards it once; remove one of them."
    )
    assert str(first).startswith(f"{rs.path}:3: portForward[1]: warning: This rule repeats")
    assert (second.line, second.field) == (5, "portForward[3]")
    assert [(r.port, r.name) for r in rs.rules] == [(80, None), ("http", None)]


def test_the_same_target_on_two_local_ports_is_two_rules(load: Load) -> None:
    rs = load("""
        portForward:
          - {resourceType: service, resourceName: web, port: 80, localPort: 8080}
          - {resourceType: service, resourceName: web, port: 80, localPort: 9090}
          - {resourceType: service, resourceName: web, port: http, localPort: 7070}
          - {resourceType: service, resourceName: web, port: http}
    """)
    assert (rs.problems, rs.warnings) == ((), ())
    assert [r.local_port for r in rs.rules] == [8080, 9090, 7070, None]
    assert rs.rules_for("any") == rs.rules


def test_same_target_on_another_address_is_not_a_duplicate(load: Load) -> None:
    rs = load("""
        portForward:
          - {resourceType: service, resourceName: web, port: 80}
          - {resourceType: service, resourceName: web, port: 80, address: "::1"}
          - {resourceType: service, resourceName: web, port: 80, namespace: other, localPort: 81}
    """)
    assert (rs.problems, rs.warnings) == ((), ())
    assert len(rs.rules) == 3


def test_two_rules_asking_for_one_local_port_both_stay_with_a_warning(load: Load) -> None:
    rs = load("""
        portForward:
          - {resourceType: service, resourceName: web, port: 8080}
          - {resourceType: service, resourceName: api, port: 80, localPort: 8080}
          - {resourceType: service, resourceName: api, port: 81, localPort: 8080, address: 127.0.0.2}
          - {resourceType: service, resourceName: db, port: 82, localPort: 8080, address: localhost}
    """)
    assert rs.problems == ()
    assert [(w.line, w.field) for w in rs.warnings] == [(3, "portForward[1]"), (5, "portForward[3]")]
    assert rs.warnings[0].message.startswith(
        "This rule asks for local address 127.0.0.1:8080, which the rule on line 2 asks for too. "
        "kubetray forwards both and gives this one the next free port"
    )
    assert "localhost:8080" in rs.warnings[1].message and "line 2" in rs.warnings[1].message
    assert [r.resource_name for r in rs.rules] == ["web", "api", "api", "db"]


def test_a_named_and_a_numbered_port_of_one_service_are_pointed_out(load: Load) -> None:
    rs = load("""
        portForward:
          - {resourceType: service, resourceName: web, port: 80, localPort: 8080}
          - {resourceType: service, resourceName: web, port: http, localPort: 8080}
          - {resourceType: service, resourceName: web, port: http, localPort: 9090}
          - {resourceType: deployment, resourceName: web, port: http, localPort: 7000}
          - {resourceType: deployment, resourceName: web, port: 80, localPort: 7000}
    """)
    assert rs.problems == ()
    warning = only(tuple(w for w in rs.warnings if "differ only" in w.message))
    assert warning.line == 3
    assert warning.message == (
        'This rule and the rule on line 2 differ only in naming service default/web\'s port as '
        '"http" and as 80. If "http" is port 80, they are one forward and kubetray runs it once, '
        "for the rule on line 2."
    )
    assert len(rs.rules) == 5  # the engine decides, once it knows the service's ports


def test_named_ports_without_local_port_never_clash(load: Load) -> None:
    rs = load("""
        portForward:
          - {resourceType: service, resourceName: web, port: http}
          - {resourceType: service, resourceName: api, port: http}
    """)
    assert (rs.problems, rs.warnings) == ((), ())


def test_scopes_are_separate_for_shared_local_ports(load: Load) -> None:
    rs = load("""
        portForward:
          - {resourceType: service, resourceName: web, port: 80}
        contexts:
          kind-*:
            portForward:
              - {resourceType: service, resourceName: web, port: 80, localPort: 9080}
              - {resourceType: pod, resourceName: x, port: 9080}
    """)
    assert rs.problems == ()
    warning = only(rs.warnings)
    assert (warning.line, warning.field) == (7, 'contexts["kind-*"].portForward[1]')
    assert "line 6" in warning.message


def test_a_context_names_one_target_on_two_ports(load: Load) -> None:
    rs = load("""
        portForward:
          - {resourceType: service, resourceName: web, port: 80}
          - {resourceType: service, resourceName: web, port: 80, localPort: 8081}
          - {resourceType: pod, resourceName: x, port: 1}
        contexts:
          kind-*:
            portForward:
              - {resourceType: service, resourceName: web, port: 80, localPort: 9080}
              - {resourceType: service, resourceName: web, port: 80, localPort: 9081}
    """)
    # The context's rules for the target take the global ones' place, both of them.
    assert [(r.resource_name, r.local_port) for r in rs.rules_for("kind-a")] == [
        ("web", 9080), ("web", 9081), ("x", None)
    ]
    assert [(r.resource_name, r.local_port) for r in rs.rules_for("prod")] == [
        ("web", None), ("web", 8081), ("x", None)
    ]


def test_contexts_and_rules_for(load: Load) -> None:
    rs = load("""
        portForward:
          - {resourceType: service, resourceName: web, port: 80}
          - {resourceType: service, resourceName: api, port: 81}
        contexts:
          kind-*:
            portForward:
              - {resourceType: pod, resourceName: debug, port: 2345}
              - {resourceType: service, resourceName: api, port: 81, localPort: 9081}
          kind-dev:
            portForward:
              - {resourceType: service, resourceName: api, port: 81, localPort: 7081}
              - {resourceType: pod, resourceName: dev-only, port: 1}
          "prod-[ab]":
            portForward:
              - {resourceType: service, resourceName: web, port: 80, address: localhost}
    """)
    assert rs.problems == ()
    assert [p for p, _ in rs.context_rules] == ["kind-*", "kind-dev", "prod-[ab]"]

    def summary(context: str) -> list[tuple[str, int | None]]:
        return [(r.resource_name, r.local_port) for r in rs.rules_for(context)]

    assert summary("minikube") == [("web", None), ("api", None)]
    # The context's api rule replaces the global one in its place; new rules follow.
    assert summary("kind-x") == [("web", None), ("api", 9081), ("debug", None)]
    # Both patterns match: the first written wins for the shared target.
    assert summary("kind-dev") == [
        ("web", None),
        ("api", 9081),
        ("debug", None),
        ("dev-only", None),
    ]
    # Different address, so a different target: both stay.
    assert [r.address for r in rs.rules_for("prod-a")] == ["127.0.0.1", "127.0.0.1", "localhost"]
    assert len(rs.rules_for("prod-c")) == 2
    assert len(rs.rules_for("KIND-x")) == 2  # context names are case-sensitive


def test_context_section_problems(load: Load) -> None:
    rs = load("""
        contexts:
          a:
            portforward: []
          b: [1]
          3: {}
          c:
          d:
            portForward: {}
    """)
    assert [(p.line, p.field) for p in rs.problems] == [
        (3, 'contexts["a"].portforward'),
        (4, 'contexts["b"]'),
        (5, "contexts[3]"),
        (8, 'contexts["d"].portForward'),
    ]
    assert 'Did you mean "portForward"?' in rs.problems[0].message
    assert "found a list" in rs.problems[1].message
    assert "A context name or glob must be text; found a number (3)." in rs.problems[2].message


def test_contexts_must_be_a_mapping(load: Load) -> None:
    problem = only(load("contexts: [kind]\n").problems)
    assert (problem.line, problem.field) == (1, "contexts")


def test_repeated_context_pattern(load: Load) -> None:
    rs = load("""
        contexts:
          kind: {portForward: []}
          kind: {portForward: []}
    """)
    problem = only(rs.problems)
    assert (problem.line, problem.field) == (3, 'contexts["kind"]')


def test_auto_is_parsed_into_settings(load: Load) -> None:
    rs = load("""
        auto:
          skaffold: false
          namespace: "*"
    """)
    assert rs.problems == ()
    assert rs.auto == AutoSettings(skaffold=False, annotation=False, namespace="*")


def test_auto_problems_join_the_rule_set(load: Load, tmp_path: Path) -> None:
    rs = load("""
        portForward:
          - {resourceType: pod, resourceName: a, port: 1}
        auto:
          annotaton: false
    """)
    problem = only(rs.problems)
    assert (problem.file, problem.line, problem.field) == (
        str(tmp_path / "config.yaml"),
        4,
        "auto.annotaton",
    )
    assert rs.rules == (Rule(ResourceType.POD, "a", 1),)


def test_auto_must_be_a_mapping(load: Load) -> None:
    rs = load("auto: yes\n")
    problem = only(rs.problems)
    assert (problem.line, problem.field, problem.message) == (
        1,
        "auto",
        (
            '"auto" must be a mapping; found a true/false value (true). '
            "For example: auto: {skaffold: true, annotation: false}."
        ),
    )
    assert not rs.auto.enabled


def test_auto_is_top_level_only(load: Load) -> None:
    problem = only(load("contexts:\n  kind:\n    auto: {skaffold: false}\n").problems)
    assert (problem.line, problem.field) == (3, 'contexts["kind"].auto')
    assert '"auto" applies to every context; write it at the top level.' in problem.message


def test_load_rules_text_needs_no_file(tmp_path: Path) -> None:
    rs = load_rules_text(
        "portForward: [{resourceType: job, resourceName: j, port: 1}]\n", tmp_path / "x.yaml"
    )
    assert rs.rules == (Rule(ResourceType.JOB, "j", 1),)
    assert rs.rules[0].origin is not None and rs.rules[0].origin.file == str(tmp_path / "x.yaml")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_CONFIG_HOME is Linux's")
def test_default_path_is_used_when_none_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The XDG variable is how users move the file on Linux, so setting it is a real scenario.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    write(
        tmp_path / "kubetray" / "config.yaml",
        "portForward: [{resourceType: pod, resourceName: a, port: 1}]\n",
    )
    rs = load_rules()
    assert rs.path == tmp_path / "kubetray" / "config.yaml"
    assert len(rs.rules) == 1


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"\xef\xbb\xbfportForward: [{resourceType: pod, resourceName: a, port: 1}]\n")
    rs = load_rules(path)
    assert (rs.problems, len(rs.rules)) == ((), 1)


def test_problem_text_leaves_out_what_it_does_not_know() -> None:
    assert str(Problem("f.yaml", 3, "port", "Bad.")) == "f.yaml:3: port: Bad."
    assert str(Problem("f.yaml", None, "port", "Bad.")) == "f.yaml: port: Bad."
    assert str(Problem("f.yaml", None, None, "Bad.")) == "f.yaml: Bad."

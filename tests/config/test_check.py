"""`kubetray check`: the OK table, the problem list and their exit statuses."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.config.conftest import write
from trayapp.config import check_report, load_rules


def test_ok_lists_the_rules_it_understood(tmp_path: Path) -> None:
    rules_file = write(
        tmp_path / "config.yaml",
        """
        portForward:
          - {resourceType: Service, resourceName: web, port: "80", localPort: 8080, name: Web UI}
          - {resourceType: deployment, resourceName: api, namespace: shop, port: http}
        contexts:
          kind-*:
            portForward:
              - {resourceType: pod, resourceName: dbg, port: 2345, address: "::1"}
    """,
    )
    text, status = check_report(load_rules(rules_file))
    assert status == 0
    lines = text.splitlines()
    assert lines[0] == "OK"
    assert lines[1] == f"{rules_file}: 3 rules."
    assert lines[2].split() == [
        "SCOPE",
        "RESOURCE",
        "NAMESPACE",
        "FORWARD",
        "NAME",
        "WRITTEN",
        "AT",
    ]
    assert lines[3].split() == [
        "(all",
        "contexts)",
        "service/web",
        "default",
        "80",
        "->",
        "127.0.0.1:8080",
        "Web",
        "UI",
        f"{rules_file}:2",
    ]
    assert lines[4].split() == [
        "(all",
        "contexts)",
        "deployment/api",
        "shop",
        "http",
        "->",
        "127.0.0.1:auto",
        "-",
        f"{rules_file}:3",
    ]
    assert lines[6].startswith("Automatic forwarding in the context's namespace: ")
    assert lines[5].split() == [
        "context",
        "kind-*",
        "pod/dbg",
        "default",
        "2345",
        "->",
        "[::1]:2345",
        "-",
        f"{rules_file}:7",
    ]
    # Columns line up: every row's resource starts where the header's does.
    column = lines[2].index("RESOURCE")
    assert {line[column:].split()[0].split("/")[0] for line in lines[3:6]} == {
        "service",
        "deployment",
        "pod",
    }


def test_problems_are_listed_then_counted(tmp_path: Path) -> None:
    rules_file = write(
        tmp_path / "config.yaml",
        """
        portForward:
          - {resourceType: sevice, resourceName: web, port: 80}
          - {resourceType: pod, resourceName: ok, port: 1}
          - {resourceType: pod, resourceName: bad, port: 0}
    """,
    )
    text, status = check_report(load_rules(rules_file))
    assert status == 1
    lines = text.splitlines()
    assert lines[0].startswith(
        f'{rules_file}:2: portForward[0].resourceType: Unknown resource type "sevice".'
    )
    assert (
        lines[1]
        == f'{rules_file}:4: portForward[2].port: "port" is 0, which is outside the port range 1-65535.'
    )
    assert lines[2] == "2 problems found; rules with problems are ignored until they are fixed."
    assert len(lines) == 3


def test_one_problem_is_singular(tmp_path: Path) -> None:
    text, status = check_report(load_rules(write(tmp_path / "config.yaml", "bogus: 1\n")))
    assert (status, text.splitlines()[-1]) == (
        1,
        "1 problem found; rules with problems are ignored until they are fixed.",
    )


DEFAULT_AUTO = (
    "Automatic forwarding in the context's namespace: Skaffold services and debug pods.\n"
)


def test_missing_and_empty_files_are_ok(tmp_path: Path) -> None:
    missing = tmp_path / "config.yaml"
    text, status = check_report(load_rules(missing))
    assert status == 0
    assert text.startswith(
        f"OK\nThere is no rules file at {missing}, so there are no rules.\n{DEFAULT_AUTO}"
    )
    # ... and it says where the file goes and how to start one
    hint = text.splitlines()[-1]
    assert f"write rules in {missing}" in hint and "kubetray check --example" in hint
    write(missing, "# later\n")
    assert check_report(load_rules(missing)) == (f"OK\n{missing} has no rules.\n{DEFAULT_AUTO}", 0)


def test_ok_ends_with_the_auto_settings(tmp_path: Path) -> None:
    rules_file = write(
        tmp_path / "config.yaml",
        """
        portForward:
          - {resourceType: pod, resourceName: a, port: 1}
        auto:
          annotation: false
          namespace: dev
          selectors:
            - {kind: service, namespace: "*", selector: "app=web,tier!=db", ports: [80, 443]}
            - {kind: pod, selector: "app=debugger"}
    """,
    )
    text, status = check_report(load_rules(rules_file))
    assert status == 0
    assert text.splitlines()[-2:] == [
        'Automatic forwarding in namespace "dev": Skaffold services and debug pods.',
        (
            'Automatic selectors: services matching "app=web,tier!=db" in every namespace '
            '(ports 80, 443); pods matching "app=debugger" in namespace "dev" (every port).'
        ),
    ]


def test_auto_off_is_one_line(tmp_path: Path) -> None:
    rules_file = write(tmp_path / "config.yaml", "auto: {skaffold: false, annotation: false}\n")
    text, _ = check_report(load_rules(rules_file))
    assert text == f"OK\n{rules_file} has no rules.\nAutomatic forwarding: off.\n"


def test_warnings_are_printed_but_the_check_passes(tmp_path: Path) -> None:
    rules_file = write(
        tmp_path / "config.yaml",
        """
        portForward:
          - {resourceType: service, resourceName: web, port: 80, localPort: 8080}
          - {resourceType: service, resourceName: api, port: 80, localPort: 8080}
          - {resourceType: pod, resourceName: dbg, port: 2345, address: 0.0.0.0}
          - {resourceType: pod, resourceName: dbg, port: http, address: "::"}
          - {resourceType: pod, resourceName: lan, port: 22, address: 192.168.1.5}
          - {resourceType: pod, resourceName: six, port: 23, address: "::1"}
          - {resourceType: pod, resourceName: name, port: 24, address: localhost}
    """,
    )
    text, status = check_report(load_rules(rules_file))
    assert status == 0
    lines = text.splitlines()
    assert lines[0] == "OK" and lines[1] == f"{rules_file}: 7 rules."
    warnings = lines[-5:-1]
    assert warnings[0].startswith(
        f"{rules_file}:3: portForward[1]: warning: This rule asks for local address 127.0.0.1:8080"
    )
    assert warnings[1].startswith(
        f"{rules_file}:4: warning: 0.0.0.0:2345 is open to your network: anyone who can reach"
    )
    assert warnings[2].startswith(f"{rules_file}:5: warning: :: is open to your network")
    assert warnings[3].startswith(
        f"{rules_file}:6: warning: 192.168.1.5:22 is open to the network of 192.168.1.5"
    )
    assert lines[-1] == "4 warnings; kubetray runs these rules as said."


def test_warnings_follow_the_problems(tmp_path: Path) -> None:
    rules_file = write(
        tmp_path / "config.yaml",
        """
        portForward:
          - {resourceType: sevice, resourceName: web, port: 80}
          - {resourceType: pod, resourceName: dbg, port: 2345, address: 0.0.0.0}
    """,
    )
    text, status = check_report(load_rules(rules_file))
    assert status == 1
    lines = text.splitlines()
    assert lines[1] == "1 problem found; rules with problems are ignored until they are fixed."
    assert "0.0.0.0:2345 is open to your network" in lines[2]
    assert lines[3] == "1 warning; kubetray runs these rules as said."


def test_the_example_is_a_valid_rules_file(tmp_path: Path) -> None:
    from trayapp.config.example import EXAMPLE_RULES

    rules_file = write(tmp_path / "config.yaml", EXAMPLE_RULES)
    ruleset = load_rules(rules_file)
    assert (ruleset.problems, ruleset.warnings) == ((), ())
    assert EXAMPLE_RULES.startswith("# kubetray rules.")


def test_check_help_shows_the_format_and_where_the_file_goes(capsys, monkeypatch, tmp_path: Path) -> None:
    import pytest

    from trayapp.cli import main

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    with pytest.raises(SystemExit) as exited:
        main(["check", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "portForward:" in out and "resourceType: service" in out
    assert "kubetray check --example" in out
    if sys.platform.startswith("linux"):
        assert str(tmp_path / "xdg" / "kubetray" / "config.yaml") in out


def test_check_example_prints_a_file_that_checks(capsys, tmp_path: Path) -> None:
    from trayapp.cli import main

    assert main(["check", "--example"]) == 0
    example = capsys.readouterr().out
    rules_file = write(tmp_path / "config.yaml", example)
    assert main(["check", "--config", str(rules_file)]) == 0
    assert capsys.readouterr().out.startswith(f"OK\n{rules_file} has no rules.")


def test_a_file_that_is_not_yaml_says_the_last_good_rules_stay(tmp_path: Path) -> None:
    rules_file = write(tmp_path / "config.yaml", "portForward:\n  - resourceType: pod\n   port: 1\n")
    text, status = check_report(load_rules(rules_file))
    assert status == 1
    lines = text.splitlines()
    assert lines[0].startswith(f"{rules_file}:3: This is not valid YAML")
    assert lines[1] == (
        "1 problem found; kubetray cannot use this file as it is. A running kubetray keeps the "
        "rules it read last until the file is fixed."
    )

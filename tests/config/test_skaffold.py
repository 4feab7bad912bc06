"""Skaffold import: every document, every profile, Skaffold-only fields ignored, unreadable files."""

from __future__ import annotations

from pathlib import Path

from tests.config.conftest import only, write
from trayapp.config import load_rules
from trayapp.config.skaffold import rules_from_skaffold_text
from trayapp.model import Origin

SKAFFOLD = """
    apiVersion: skaffold/v4beta11
    kind: Config
    metadata:
      name: shop
    requires:
      - path: ../common
    build:
      artifacts:
        - image: web
          docker: {dockerfile: Dockerfile}
    manifests:
      rawYaml: [k8s/*.yaml]
    deploy:
      kubectl: {}
    portForward:
      - resourceType: Service
        resourceName: web
        port: 80
        localPort: 8080
    profiles:
      - name: dev
        activation: [{kubeContext: kind-*}]
        patches: [{op: replace, path: /build/artifacts/0/image, value: web-dev}]
        portForward:
          - {resourceType: deployment, resourceName: api, namespace: shop, port: http}
      - name: nothing-to-forward
        build: {local: {push: false}}
    ---
    apiVersion: skaffold/v4beta11
    kind: Config
    metadata: {name: db}
    portForward:
      - {resourceType: statefulset, resourceName: db, port: "5432"}
    profiles:
      - name: ci
        portForward:
          - {resourceType: service, resourceName: web, port: 80, localPort: 8080}
"""


def test_every_document_and_profile_is_read_and_skaffold_fields_ignored(tmp_path: Path) -> None:
    skaffold = write(tmp_path / "app" / "skaffold.yaml", SKAFFOLD)
    rules_file = write(tmp_path / "config.yaml", "skaffold: [app/skaffold.yaml]\n")
    rs = load_rules(rules_file)
    assert rs.problems == ()
    assert [
        (r.resource_type.value, r.resource_name, r.namespace, r.port, r.local_port)
        for r in rs.rules
    ] == [
        ("service", "web", "default", 80, 8080),
        ("deployment", "api", "shop", "http", None),
        ("statefulset", "db", "default", 5432, None),
        # the ci profile's web rule repeats the first document's: kept once
    ]
    assert [r.origin for r in rs.rules] == [
        Origin(str(skaffold), 16, 0),
        Origin(str(skaffold), 25, 0),
        Origin(str(skaffold), 33, 0),
    ]


def test_rules_file_rules_come_first_and_win_over_skaffold(tmp_path: Path) -> None:
    write(tmp_path / "skaffold.yaml", SKAFFOLD)
    rules_file = write(
        tmp_path / "config.yaml",
        """
        portForward:
          - {resourceType: service, resourceName: web, port: 80, name: Shop}
        skaffold: [.]
    """,
    )
    rs = load_rules(rules_file)
    assert rs.problems == ()
    assert [r.name for r in rs.rules] == ["Shop", None, None]
    assert rs.rules[0].origin == Origin(str(rules_file), 2, 0)


def test_paths_are_relative_to_the_rules_file_and_expand_home(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    write(
        home / "proj" / "skaffold.yaml",
        "portForward: [{resourceType: pod, resourceName: a, port: 1}]\n",
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    rules_file = write(tmp_path / "cfg" / "config.yaml", "skaffold: [~/proj/skaffold.yaml]\n")
    assert [r.resource_name for r in load_rules(rules_file).rules] == ["a"]


def test_missing_skaffold_file_names_the_rules_file_line(tmp_path: Path) -> None:
    rules_file = write(
        tmp_path / "config.yaml",
        """
        portForward: []
        skaffold:
          - missing/skaffold.yaml
    """,
    )
    problem = only(load_rules(rules_file).problems)
    assert (problem.file, problem.line, problem.field) == (str(rules_file), 3, "skaffold[0]")
    assert problem.message == (
        f'Cannot read the Skaffold file "{tmp_path / "missing" / "skaffold.yaml"}": '
        "No such file or directory."
    )


def test_skaffold_section_problems(tmp_path: Path) -> None:
    write(tmp_path / "skaffold.yaml", "portForward: []\n")
    rules_file = write(
        tmp_path / "config.yaml",
        """
        skaffold:
          - skaffold.yaml
          - 5
          - ./skaffold.yaml
    """,
    )
    problems = load_rules(rules_file).problems
    assert [(p.line, p.field) for p in problems] == [(3, "skaffold[1]"), (4, "skaffold[2]")]
    assert "found a number (5)" in problems[0].message
    assert "already listed on line 2" in problems[1].message


def test_skaffold_must_be_a_list(tmp_path: Path) -> None:
    rules_file = write(tmp_path / "config.yaml", "skaffold: skaffold.yaml\n")
    problem = only(load_rules(rules_file).problems)
    assert (problem.line, problem.field) == (1, "skaffold")
    assert problem.message.endswith('Write it as a list: skaffold: ["skaffold.yaml"].')


def test_problems_inside_skaffold_name_the_skaffold_file(tmp_path: Path) -> None:
    skaffold = write(
        tmp_path / "skaffold.yaml",
        """
        apiVersion: skaffold/v4beta11
        kind: Config
        ---
        apiVersion: skaffold/v4beta11
        kind: Config
        portForward:
          - {resourceType: pod, resourceName: good, port: 1}
          - {resourceType: sevice, resourceName: web, port: 80}
        profiles:
          - name: dev
            portForward:
              - {resourceType: pod, resourceName: a, port: 1, localPort: 0}
    """,
    )
    rules_file = write(tmp_path / "config.yaml", "skaffold: [skaffold.yaml]\n")
    rs = load_rules(rules_file)
    assert [(p.file, p.line, p.field) for p in rs.problems] == [
        (str(skaffold), 8, "portForward[1].resourceType"),
        (str(skaffold), 12, "profiles[0].portForward[0].localPort"),
    ]
    assert [r.resource_name for r in rs.rules] == ["good"]


def test_invalid_skaffold_yaml(tmp_path: Path) -> None:
    skaffold = write(tmp_path / "skaffold.yaml", "portForward:\n  - a: [\n")
    rs = load_rules(write(tmp_path / "config.yaml", "skaffold: [skaffold.yaml]\n"))
    problem = only(rs.problems)
    assert (problem.file, problem.field) == (str(skaffold), None)
    assert problem.line == 3 and problem.message.startswith("This is not valid YAML")


def test_a_shared_local_port_is_a_warning_within_one_list_only() -> None:
    groups, problems = rules_from_skaffold_text(
        """portForward:
  - {resourceType: pod, resourceName: a, port: 1}
  - {resourceType: pod, resourceName: b, port: 1}
profiles:
  - name: p
    portForward:
      - {resourceType: pod, resourceName: c, port: 1}
""",
        "skaffold.yaml",
    )
    problem = only(tuple(problems))
    assert (problem.line, problem.field, problem.warning) == (3, "portForward[1]", True)
    # Both run; the later one falls back to another local port at run time.
    assert [(g.where, [r.resource_name for r in g.rules]) for g in groups] == [
        ("portForward", ["a", "b"]),
        ("profiles[0].portForward", ["c"]),
    ]


def test_non_config_documents_are_ignored() -> None:
    groups, problems = rules_from_skaffold_text(
        "- a list\n---\nplain\n---\nprofiles: 3\n", "s.yaml"
    )
    assert (groups, problems) == ([], [])

"""Editing real rules files: every byte outside the changed rule stays, add-then-remove is a no-op."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from trayapp.config import load_rules
from trayapp.config.edit import (
    AmbiguousRule,
    DuplicateRule,
    InvalidRule,
    NoSuchRule,
    RuleDraft,
    RulesEditError,
    RulesFileHasProblems,
    add_rule,
    exclude_auto,
    list_rules,
    remove_rule,
    set_local_port,
    set_pinned,
)
from trayapp.config.example import EXAMPLE_RULES
from trayapp.model import ResourceType, Rule

BLOCK = """\
# My forwards. Keep them tidy.
portForward:   # the ones I always want
  - resourceType: deployment    # the API
    resourceName: 'api'
    port: 8080

  # - resourceType: service   (off for now)
  - resourceType: "service"
    resourceName: web
    namespace: shop
    port: http
contexts:
    staging:
        portForward:
        - {resourceType: service, resourceName: "db", port: 5432, localPort: 15432}
    'kind-*':
        portForward: []
auto:
  skaffold: true  # what skaffold dev deploys
"""

FLOW = """\
portForward:
- {resourceType: service, resourceName: web, port: 80}
- { resourceType: pod, resourceName: 'dbg', port: 2345, name: "dlv" }
"""

FLOW_SEQUENCE = "portForward: [{resourceType: service, resourceName: web, port: 80}]  # one\n"
NO_FINAL_NEWLINE = "portForward:\n- resourceType: service\n  resourceName: web\n  port: 80"
CRLF = "# windows\r\nportForward:\r\n  - resourceType: service\r\n    resourceName: web\r\n    port: 80\r\n"
ONLY_COMMENTS = "# nothing here yet\n\n# really\n"
AUTO_ONLY = "auto:\n  annotation: true\n"

FILES = {
    "block": BLOCK, "flow": FLOW, "flow-sequence": FLOW_SEQUENCE, "no-final-newline": NO_FINAL_NEWLINE,
    "crlf": CRLF, "empty": "", "only-comments": ONLY_COMMENTS, "auto-only": AUTO_ONLY,
    "example": EXAMPLE_RULES,  # what the tray's "Open rules file" writes
}
DRAFTS = [
    RuleDraft("svc", "db", 5432, local_port=15433, name="the db: main"),
    RuleDraft("sts", "cache", "redis", namespace="infra"),
    RuleDraft("deploy", "true", "8443", scheme="https", address="::1"),  # a name YAML would read as a bool
]


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


@pytest.mark.parametrize("draft", DRAFTS, ids=["named", "port-name", "odd-values"])
@pytest.mark.parametrize("context", [None, "staging", "prod", "kind-*"])
@pytest.mark.parametrize("name", list(FILES))
def test_add_then_remove_leaves_the_file_byte_for_byte(tmp_path: Path, name: str, context: str | None,
                                                       draft: RuleDraft) -> None:
    original = FILES[name]
    path = write(tmp_path, original)
    added = add_rule(path, draft, context)
    edited = path.read_bytes().decode()
    if "\r\n" in original:
        assert "\n" not in edited.replace("\r\n", "")  # new lines use the file's line ends
    ruleset = load_rules(path)
    assert not ruleset.problems
    scope = ruleset.rules if context is None else dict(ruleset.context_rules)[context]
    rule = next(r for r in scope if r == expected(draft))  # the added rule loads back to the same Rule
    assert rule.origin is not None and rule.origin.line == added.line
    selector = draft.name or f"{draft.resource_type}/{draft.resource_name}:{draft.port}"
    removed = remove_rule(path, selector)
    assert removed.line == added.line
    assert path.read_bytes() == original.encode()


def expected(draft: RuleDraft) -> Rule:
    kind = {"svc": ResourceType.SERVICE, "deploy": ResourceType.DEPLOYMENT, "sts": ResourceType.STATEFULSET}[
        str(draft.resource_type)]
    port = int(draft.port) if str(draft.port).isdigit() else draft.port
    return Rule(kind, draft.resource_name, port, namespace=draft.namespace or "default",
                local_port=draft.local_port, address=draft.address or "127.0.0.1", name=draft.name,
                scheme=draft.scheme)


def test_hand_written_rules_are_untouched_and_new_ones_follow_the_file_style(tmp_path: Path) -> None:
    path = write(tmp_path, BLOCK)
    result = add_rule(path, RuleDraft("svc", "db", 5432))
    assert result.message == f"Added service/db:5432 to {path}, line 12."
    lines = path.read_text().splitlines()
    assert lines[:11] == BLOCK.splitlines()[:11]
    assert lines[11:14] == ["  - resourceType: service", "    resourceName: db", "    port: 5432"]
    assert lines[14:] == BLOCK.splitlines()[11:]
    flow = write(tmp_path, FLOW, "flow.yaml")
    add_rule(flow, RuleDraft("svc", "api", 9090, name="api"), "dev")
    assert flow.read_text() == FLOW + (
        "contexts:\n  dev:\n    portForward:\n    - {resourceType: service, resourceName: api, port: 9090, "
        "name: api}\n")


def test_a_context_entry_gets_its_rule_at_its_own_indent(tmp_path: Path) -> None:
    path = write(tmp_path, BLOCK)
    add_rule(path, RuleDraft("svc", "queue", 5672), "staging")
    text = path.read_text()
    assert ('        - {resourceType: service, resourceName: "db", port: 5432, localPort: 15432}\n'
            "        - resourceType: service\n          resourceName: queue\n          port: 5672\n") in text
    add_rule(path, RuleDraft("svc", "queue", 5672), "kind-*")  # into `portForward: []`
    assert ("    'kind-*':\n        portForward: [\n            {resourceType: service, resourceName: queue, "
            "port: 5672}\n        ]\n") in path.read_text()
    assert not load_rules(path).problems


def test_an_empty_flow_list_takes_rules_one_a_line_and_gives_back_the_empty_list(tmp_path: Path) -> None:
    text = "# example\nportForward: []  # none yet\ncontexts:\n  dev:\n    portForward: []\n"
    path = write(tmp_path, text)
    first = add_rule(path, RuleDraft("svc", "db", 5432))
    second = add_rule(path, RuleDraft("svc", "web", 80))
    in_dev = add_rule(path, RuleDraft("svc", "web", 80), "dev")
    assert path.read_text() == (
        "# example\nportForward: [\n  {resourceType: service, resourceName: db, port: 5432},\n"
        "  {resourceType: service, resourceName: web, port: 80}\n]  # none yet\ncontexts:\n  dev:\n"
        "    portForward: [\n      {resourceType: service, resourceName: web, port: 80}\n    ]\n")
    assert (first.line, second.line, in_dev.line) == (3, 4, 9)
    assert [rule.resource_name for rule in load_rules(path).rules] == ["db", "web"]
    for line in (in_dev.line, second.line, first.line):
        remove_rule(path, f"@{line}")
    assert path.read_text() == text


def test_a_missing_file_is_created_with_a_header(tmp_path: Path) -> None:
    path = tmp_path / "new" / "config.yaml"
    result = add_rule(path, RuleDraft("svc", "db", 5432))
    text = path.read_text()
    assert text.startswith("# kubetray rules")
    assert text.endswith("portForward:\n  - resourceType: service\n    resourceName: db\n    port: 5432\n")
    assert result.line == 4 and [r.resource_name for r in load_rules(path).rules] == ["db"]


def test_a_broken_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    broken = "portForward:\n  - resourceType: servce\n    resourceName: db\n    port: 5432\n"
    path = write(tmp_path, broken)
    with pytest.raises(RulesFileHasProblems) as error:
        add_rule(path, RuleDraft("svc", "web", 80))
    assert f"{path}:2: portForward[0].resourceType" in error.value.message
    not_yaml = write(tmp_path, "portForward: [\n", "bad.yaml")
    with pytest.raises(RulesFileHasProblems, match="not valid YAML"):
        remove_rule(not_yaml, "svc/web")
    assert path.read_text() == broken and not_yaml.read_text() == "portForward: [\n"


def test_selectors_name_one_rule_or_say_which_match(tmp_path: Path) -> None:
    path = write(tmp_path, BLOCK)
    add_rule(path, RuleDraft("service", "db", 5432), None)
    with pytest.raises(AmbiguousRule) as error:
        remove_rule(path, "svc/db")
    assert "line 12 (service/db:5432, top level)" in error.value.message
    assert "line 18 (service/db:5432, context staging)" in error.value.message
    with pytest.raises(NoSuchRule):
        remove_rule(path, "svc/db:1234")
    assert remove_rule(path, "deploy/api:8080").line == 3
    assert remove_rule(path, "svc/web:http").message == f"Removed service/web:http from {path} (it was on line 5)."
    assert [(r.line, r.context, r.label) for r in list_rules(path)] == [(5, None, "service/db:5432"), (11, "staging", "service/db:5432")]


def test_duplicates_and_bad_drafts_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, BLOCK)
    with pytest.raises(DuplicateRule, match="already forwards deployment/api:8080 \\(line 3\\)"):
        add_rule(path, RuleDraft("deployment", "api", 8080))
    with pytest.raises(InvalidRule, match="outside the port range"):
        add_rule(path, RuleDraft("svc", "x", 70000))
    with pytest.raises(InvalidRule, match="not a resource type"):
        add_rule(path, RuleDraft("ingress", "x", 80))
    assert path.read_text() == BLOCK


def test_set_local_port_changes_only_that_rule(tmp_path: Path) -> None:
    path = write(tmp_path, BLOCK)
    result = set_local_port(path, "svc/db", 25432)
    assert "25432" in result.message and result.line == 15
    assert path.read_text() == BLOCK.replace("localPort: 15432", "localPort: 25432")
    set_local_port(path, "deploy/api", 18080)
    assert path.read_text().splitlines()[3:6] == [
        "    resourceName: 'api'", "    port: 8080", "    localPort: 18080"]
    flow = write(tmp_path, FLOW, "flow.yaml")
    set_local_port(flow, "dlv", 12345)
    assert "port: 2345, localPort: 12345, name:" in flow.read_text()


def test_pinned_is_written_first_and_removed_with_an_entry_it_leaves_empty(tmp_path: Path) -> None:
    path = write(tmp_path, BLOCK)
    result = set_pinned(path, "staging", True)
    assert result.line == 14
    assert "    staging:\n        pinned: true\n        portForward:\n" in path.read_text()
    assert set_pinned(path, "staging", True).message.endswith("already pinned in " + str(path) + "; nothing changed.")
    set_pinned(path, "staging", False)
    assert path.read_text() == BLOCK
    set_pinned(path, "prod", True)
    assert "    prod:\n        pinned: true\n" in path.read_text()
    set_pinned(path, "prod", False)
    assert path.read_text() == BLOCK
    empty = write(tmp_path, "", "empty.yaml")
    set_pinned(empty, "prod", True)
    assert empty.read_text() == "contexts:\n  prod:\n    pinned: true\n"
    set_pinned(empty, "prod", False)
    assert empty.read_text() == ""


def test_exclusions_are_one_line_each_and_load_back(tmp_path: Path) -> None:
    path = write(tmp_path, BLOCK)
    result = exclude_auto(path, "dev", "service", "web", 8080)
    assert "delete that line to undo" in result.message
    lines = path.read_text().splitlines()
    assert lines[result.line - 1] == "    - {kind: service, namespace: dev, name: web, port: 8080}"
    assert lines[result.line - 2] == "  exclude:"
    exclusions = load_rules(path).auto.exclude
    assert [(e.kind, e.namespace, e.name, e.port) for e in exclusions] == [(ResourceType.SERVICE, "dev", "web", 8080)]
    assert exclude_auto(path, "dev", "svc", "web", 8080).line is None  # already there: nothing changes


def test_the_write_is_atomic_and_keeps_the_mode(tmp_path: Path) -> None:
    path = write(tmp_path, BLOCK)
    os.chmod(path, 0o600)
    add_rule(path, RuleDraft("svc", "db", 5432))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]  # no temp file left


def test_a_byte_order_mark_stays(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + BLOCK.encode())
    result = add_rule(path, RuleDraft("svc", "db", 5432))
    remove_rule(path, f"@{result.line}")
    assert path.read_bytes() == b"\xef\xbb\xbf" + BLOCK.encode()


ODD_FILES = {
    "document-start": "---\n# c\nportForward:\n- {resourceType: service, resourceName: a, port: 1}\n",
    "comments-after-items": (
        "portForward:\n  - resourceType: service\n    resourceName: a\n    port: 1\n    # trailing note\n"
        "contexts:\n  dev:  # dev cluster\n    portForward:\n      - resourceType: pod\n        resourceName: p\n"
        "        port: 2\n      # end of dev\n# eof"),
    "mixed-styles": "portForward:\n- {resourceType: service, resourceName: a, port: 1}\n- resourceType: service\n"
                    "  resourceName: b\n  port: 2\n",
    "multi-line-flow-list": "portForward: [\n  {resourceType: service, resourceName: a, port: 1},\n"
                            "  {resourceType: service, resourceName: b, port: 2},\n]\n",
    "flow-contexts": "contexts: {dev: {portForward: [{resourceType: service, resourceName: a, port: 1}]}}\n",
    "indent-4": "contexts:\n    dev:\n        portForward:\n            -   resourceType: service\n"
                "                resourceName: a\n                port: 1\n",
    "port-first": "portForward:\n  - port: 1\n    resourceType: service\n    resourceName: a\n",
    "document-end": "portForward:\n- {resourceType: service, resourceName: a, port: 1}\n...\n",
    "quoted-keys": '"portForward":\n  - {"resourceType": "service", "resourceName": "a", "port": 1}\n',
    "flow-root": "{portForward: [{resourceType: service, resourceName: a, port: 1}]}\n",
    "empty-flow-contexts": "portForward: [{resourceType: service, resourceName: a, port: 1}]\ncontexts: {}\n",
    "empty-flow-entry": "portForward:\n- {resourceType: service, resourceName: a, port: 1}\ncontexts:\n  dev: {}\n",
    "commented-entry": "portForward:\n- {resourceType: service, resourceName: a, port: 1}\ncontexts:\n  dev:\n"
                       "    # nothing here yet\n",
}


@pytest.mark.parametrize("name", list(ODD_FILES))
def test_odd_layouts_round_trip(tmp_path: Path, name: str) -> None:
    original = ODD_FILES[name]
    path = write(tmp_path, original)
    for context in (None, "dev", "new"):
        add_rule(path, RuleDraft("svc", "zz", 99, name="zz"), context)
        assert not load_rules(path).problems
        remove_rule(path, "zz")
        assert path.read_text() == original, context
        set_pinned(path, context or "dev", True)
        set_pinned(path, context or "dev", False)
        assert path.read_text() == original, context
    set_local_port(path, "svc/a", 4444)
    ruleset = load_rules(path)
    every = [*ruleset.rules, *(rule for _, rules in ruleset.context_rules for rule in rules)]
    assert [rule.local_port for rule in every if rule.resource_name == "a"] == [4444]
    assert not ruleset.problems


def test_a_linked_rules_file_stays_a_link(tmp_path: Path) -> None:
    real = write(tmp_path, BLOCK, "dotfiles-rules.yaml")
    link = tmp_path / "config.yaml"
    link.symlink_to(real)
    add_rule(link, RuleDraft("svc", "db", 5432))
    assert link.is_symlink() and "resourceName: db" in real.read_text()


def test_a_file_changed_during_the_edit_is_left_as_it_now_is(tmp_path: Path) -> None:
    from trayapp.config.rulesfile import RulesEditError, RulesFile

    path = write(tmp_path, BLOCK)
    opened = RulesFile(path)
    path.write_text(BLOCK + "# saved from an editor meanwhile\n")
    with pytest.raises(RulesEditError, match="changed while kubetray was editing it"):
        opened.save(BLOCK + "# kubetray's version\n")
    assert path.read_text().endswith("# saved from an editor meanwhile\n")


def test_a_skaffold_rule_is_pointed_at_not_edited(tmp_path: Path) -> None:
    skaffold = tmp_path / "skaffold.yaml"
    skaffold.write_text("apiVersion: skaffold/v4beta11\nkind: Config\nportForward:\n"
                        "- {resourceType: service, resourceName: frontend, port: 80}\n")
    path = write(tmp_path, "skaffold: [skaffold.yaml]\n")
    with pytest.raises(NoSuchRule, match=r"is a rule of the Skaffold file .*skaffold.yaml:4"):
        remove_rule(path, "svc/frontend")
    listed = list_rules(path)
    assert [(entry.file, entry.line, entry.label) for entry in listed] == [(skaffold, 4, "service/frontend:80")]


def test_exclusions_of_pods_and_of_the_workloads_automatic_rules_name(tmp_path: Path) -> None:
    # A pod's automatic rule names its workload (engine/discovery.py), so that is what is excluded.
    path = write(tmp_path, "")
    result = exclude_auto(path, "dev", "pod", "dbg-7d9f", "2345")
    assert path.read_text() == "auto:\n  exclude:\n    - {kind: pod, namespace: dev, name: dbg-7d9f, port: 2345}\n"
    assert result.line == 3
    exclude_auto(path, "dev", "deploy", "dbg", "dlv")
    assert path.read_text().endswith("    - {kind: deployment, namespace: dev, name: dbg, port: dlv}\n")


@pytest.mark.parametrize("written", ["pinned: false", "pinned:", "pinned: true  # always"])
def test_pinned_over_what_was_written(tmp_path: Path, written: str) -> None:
    text = f"contexts:\n  prod:\n    {written}\n    portForward: []\n"
    path = write(tmp_path, text)
    set_pinned(path, "prod", True)
    assert "    pinned: true" in path.read_text()
    assert path.read_text().count("pinned") == 1
    set_pinned(path, "prod", False)
    assert path.read_text() == "contexts:\n  prod:\n    portForward: []\n"


def test_a_new_list_is_indented_like_the_others(tmp_path: Path) -> None:
    text = "portForward:\n-   resourceType: service\n    resourceName: a\n    port: 1\n"
    path = write(tmp_path, text)
    add_rule(path, RuleDraft("svc", "b", 2), "dev")
    assert path.read_text() == text + (
        "contexts:\n  dev:\n    portForward:\n    -   resourceType: service\n        resourceName: b\n"
        "        port: 2\n")


def test_the_loaders_warnings_about_the_new_rule_come_back(tmp_path: Path) -> None:
    path = write(tmp_path, FLOW)
    result = add_rule(path, RuleDraft("svc", "api", 8080, local_port=80))
    assert len(result.warnings) == 1
    assert f"{path}:4:" in result.warnings[0] and "the rule on line 2 asks for too" in result.warnings[0]


def test_a_place_kubetray_cannot_write_is_said_in_words(tmp_path: Path) -> None:
    blocker = write(tmp_path, "not a folder", "kubetray")
    with pytest.raises(RulesEditError, match="could not write .*kubetray/config.yaml: .*The file was not changed"):
        add_rule(blocker / "config.yaml", RuleDraft("svc", "db", 5432))
    assert blocker.read_text() == "not a folder"


def test_selector_for_names_one_rule_even_on_a_shared_line(tmp_path: Path) -> None:
    from trayapp.config.edit import selector_for

    text = "portForward: [{resourceType: service, resourceName: a, port: 1}, {resourceType: pod, resourceName: a, port: 1}]\n"
    path = write(tmp_path, text)
    pod = load_rules(path).rules[1]
    assert selector_for(pod) == "pod/a:1@1"
    with pytest.raises(AmbiguousRule):
        remove_rule(path, "@1")
    remove_rule(path, selector_for(pod))
    assert [rule.resource_type for rule in load_rules(path).rules] == [ResourceType.SERVICE]


def test_a_file_that_is_not_utf8_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes("# caf\xe9\nportForward: []\n".encode("latin-1"))
    with pytest.raises(RulesEditError, match="it is not UTF-8 text. Nothing was changed"):
        add_rule(path, RuleDraft("svc", "db", 5432))
    assert path.read_bytes() == "# caf\xe9\nportForward: []\n".encode("latin-1")

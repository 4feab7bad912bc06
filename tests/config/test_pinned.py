"""`pinned:` on a context entry: which contexts forward whatever the current context is."""

from __future__ import annotations

from collections.abc import Callable

from trayapp.config import RuleSet

Load = Callable[[str], RuleSet]


def test_pinned_contexts_and_their_own_rules(load: Load) -> None:
    rs = load(
        """
        portForward:
          - {resourceType: service, resourceName: web, port: 80}
        contexts:
          "stag*":
            portForward:
              - {resourceType: service, resourceName: cache, port: 6379}
          staging:
            pinned: true   # keep forwarding
            portForward:
              - {resourceType: service, resourceName: db, port: 5432, localPort: 15432}
          prod:
            pinned: false
            portForward:
              - {resourceType: service, resourceName: db, port: 5432}
          ops:
            pinned: true
        """
    )
    assert rs.problems == ()
    assert rs.pinned == ("staging", "ops")
    # Only the rules under the context's own entry: not the top level, not the glob's.
    assert [(r.resource_name, r.local_port) for r in rs.pinned_rules("staging")] == [("db", 15432)]
    assert rs.pinned_rules("ops") == ()
    assert rs.pinned_rules("prod") == rs.context_rules[2][1]
    assert list(rs.pinned_plans()) == ["staging", "ops"]
    # As the current context, a pinned context still gets everything that applies to it.
    assert [r.resource_name for r in rs.rules_for("staging")] == ["web", "cache", "db"]


def test_pinned_must_be_true_or_false(load: Load) -> None:
    rs = load(
        """
        contexts:
          staging:
            pinned: "yes"
            portForward:
              - {resourceType: service, resourceName: db, port: 5432}
        """
    )
    assert rs.pinned == ()
    [problem] = rs.problems
    assert (problem.file.endswith("config.yaml"), problem.line, problem.field) == (
        True, 3, 'contexts["staging"].pinned')
    assert problem.message == '"pinned" must be true or false; found a string ("yes").'
    # The entry's rules still apply when staging is the current context.
    assert [r.resource_name for r in rs.rules_for("staging")] == ["db"]


def test_a_glob_cannot_be_pinned(load: Load) -> None:
    rs = load(
        """
        contexts:
          "kind-*":
            pinned: true
            portForward:
              - {resourceType: service, resourceName: db, port: 5432}
          "prod-[ab]":
            pinned: false
        """
    )
    assert rs.pinned == ()
    [problem] = rs.problems
    assert (problem.line, problem.field) == (3, 'contexts["kind-*"].pinned')
    assert "only a context named exactly can be pinned" in problem.message
    assert "a glob names no context until one is current" in problem.message


def test_a_misspelled_pinned_gets_a_hint(load: Load) -> None:
    rs = load(
        """
        contexts:
          staging:
            pined: true
        """
    )
    [problem] = rs.problems
    assert problem.field == 'contexts["staging"].pined'
    assert 'Did you mean "pinned"?' in problem.message
    assert rs.pinned == ()

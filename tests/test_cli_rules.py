"""`kubetray add/remove/list` run as real processes on real files, and `add`'s check against the simulator."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from trayapp.config import load_rules
from trayapp.model import ResourceType
from trayapp.sim import SimCluster
from trayapp.sim.runner import SimThread, run_in_thread

SCENARIO = """
deployments:
  - name: web
    labels: {app: web}
    ports: [{name: http, containerPort: 8080}]
services:
  - name: web
    selector: {app: web}
    ports: [{name: http, port: 80, targetPort: http}]
"""

RULES = """\
# Team forwards; keep the comments.
portForward:
- {resourceType: service, resourceName: web, port: 80, localPort: 18080}   # the shop
contexts:
  "staging":
    portForward:
    - {resourceType: deployment, resourceName: 'api', port: 9090}
"""


def kubetray(*args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_STATE_HOME": tempfile.mkdtemp(prefix="kubetray-test-state-"),
           "XDG_CONFIG_HOME": tempfile.mkdtemp(prefix="kubetray-test-config-"),
           "KUBECONFIG": str(kubeconfig) if kubeconfig else "/nonexistent/kubeconfig"}
    return subprocess.run([sys.executable, "-m", "trayapp", *args], capture_output=True, text=True, env=env,
                          timeout=60)


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return path


def test_add_list_remove_round_trip(rules: Path) -> None:
    added = kubetray("add", "svc/db", "5432", "--local-port", "15432", "--namespace", "data", "--name", "db",
                     "--config", str(rules))
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith(f"Added service/db:5432 to {rules}, line 4.")
    assert "did not check that service data/db exists" in added.stderr  # no kubeconfig: said, not fatal
    rule = next(r for r in load_rules(rules).rules if r.name == "db")
    assert (rule.resource_type, rule.namespace, rule.port, rule.local_port) == (ResourceType.SERVICE, "data", 5432,
                                                                               15432)
    in_context = kubetray("add", "sts/cache", "redis", "--context", "staging", "--config", str(rules), "--no-check")
    assert in_context.returncode == 0 and "for context staging" in in_context.stdout
    listed = kubetray("list", "--config", str(rules))
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["WRITTEN", "AT", "SCOPE", "RULE", "NAMESPACE", "LOCAL"]
    assert [line.split()[0] for line in lines[1:]] == [f"{rules}:3", f"{rules}:4", f"{rules}:8", f"{rules}:9"]
    assert "service/db:5432 (db)" in lines[2] and "context staging" in lines[4]
    assert kubetray("remove", "sts/cache:redis", "--config", str(rules)).returncode == 0
    removed = kubetray("remove", "db", "--config", str(rules))
    assert removed.returncode == 0 and "(it was on line 4)" in removed.stdout
    assert rules.read_text() == RULES


def test_errors_name_the_problem_and_change_nothing(rules: Path, tmp_path: Path) -> None:
    bad_type = kubetray("add", "ingress/web", "80", "--config", str(rules))
    assert bad_type.returncode == 2 and '"ingress" is not a resource type' in bad_type.stderr
    repeat = kubetray("add", "service/web", "80", "--local-port", "18080", "--config", str(rules), "--no-check")
    assert repeat.returncode == 1 and "already forwards service/web:80 (line 3)" in repeat.stderr
    missing = kubetray("remove", "svc/nope", "--config", str(rules))
    assert missing.returncode == 1 and 'No rule in' in missing.stderr
    assert rules.read_text() == RULES
    broken = tmp_path / "broken.yaml"
    broken.write_text("portForward:\n  - resourceType: service\n    resourceName: web\n    port: 99999\n")
    refused = kubetray("add", "svc/db", "5432", "--config", str(broken), "--no-check")
    assert refused.returncode == 1
    assert f"{broken}:4: portForward[0].port" in refused.stderr and "kubetray did not change it" in refused.stderr


def test_the_global_config_option_works_as_for_check(rules: Path) -> None:
    result = kubetray("--config", str(rules), "list")
    assert result.returncode == 0 and "service/web:80" in result.stdout
    nowhere = kubetray("list")  # the default rules file under XDG_CONFIG_HOME, which does not exist
    assert nowhere.returncode == 0 and "There is no rules file at" in nowhere.stdout


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[tuple[SimThread, Path]]:
    cluster = SimCluster("cli", scenario=SCENARIO)
    with run_in_thread(cluster) as thread:
        yield thread, cluster.write_kubeconfig(tmp_path / "kubeconfig", context="sim")


def test_add_warns_when_the_cluster_has_no_such_resource(sim: tuple[SimThread, Path], rules: Path) -> None:
    _, kubeconfig = sim
    present = kubetray("add", "deploy/web", "8080", "--config", str(rules), kubeconfig=kubeconfig)
    assert present.returncode == 0 and present.stderr == ""
    absent = kubetray("add", "svc/nope", "5432", "--config", str(rules), kubeconfig=kubeconfig)
    assert absent.returncode == 0
    assert "Warning: context sim has no service default/nope (yet)" in absent.stderr
    assert any(rule.resource_name == "nope" for rule in load_rules(rules).rules)  # added all the same


def test_add_skips_the_check_when_the_cluster_does_not_answer(tmp_path: Path, rules: Path) -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(textwrap.dedent(f"""\
            apiVersion: v1
            kind: Config
            clusters: [{{name: quiet, cluster: {{server: "http://127.0.0.1:{silent.getsockname()[1]}"}}}}]
            users: [{{name: me, user: {{token: abc}}}}]
            contexts: [{{name: quiet, context: {{cluster: quiet, user: me}}}}]
            current-context: quiet
            """))
        result = kubetray("add", "svc/db", "5432", "--config", str(rules), kubeconfig=kubeconfig)
    assert result.returncode == 0
    assert "did not answer within 2 seconds" in result.stderr
    assert any(rule.resource_name == "db" for rule in load_rules(rules).rules)


def test_a_running_kubetray_follows_add_and_remove(sim: tuple[SimThread, Path], tmp_path: Path,
                                                   unused_tcp_port: int) -> None:
    import signal
    import urllib.request

    from tests.integration.test_headless import Kubetray

    _, kubeconfig = sim
    rules = tmp_path / "rules.yaml"
    rules.write_text("# empty for now\n")
    app = Kubetray("--headless", "--json", "--config", str(rules), "--kubeconfig", str(kubeconfig))
    try:
        added = kubetray("add", "svc/web", "80", "--local-port", str(unused_tcp_port), "--config", str(rules),
                         kubeconfig=kubeconfig)
        assert added.returncode == 0 and added.stderr == ""
        web = app.wait_for(lambda e: e["event"] == "forwarding" and e["resourceName"] == "web")
        assert web["localPort"] == unused_tcp_port
        with urllib.request.urlopen(f"http://127.0.0.1:{unused_tcp_port}/", timeout=10) as answer:
            assert answer.status == 200
        assert kubetray("remove", "svc/web", "--config", str(rules)).returncode == 0
        app.wait_for(lambda e: e["event"] == "stopped" and e["resourceName"] == "web")
        assert rules.read_text() == "# empty for now\n"
        assert app.stop(signal.SIGTERM) == 0
    finally:
        app.kill()


def test_without_config_the_running_kubetrays_rules_file_is_edited(sim: tuple[SimThread, Path], tmp_path: Path,
                                                                   unused_tcp_port: int) -> None:
    """A kubetray started with --config (or --demo) is what an edit without --config is meant for."""
    import signal

    from tests.integration.test_headless import Kubetray

    _, kubeconfig = sim
    rules = tmp_path / "mine.yaml"
    rules.write_text("# started with --config\n")
    app = Kubetray("--headless", "--json", "--config", str(rules), "--kubeconfig", str(kubeconfig))
    try:
        for _ in range(100):  # until it answers on its control socket (an empty file makes no events)
            if kubetray("status").returncode == 0:
                break
            time.sleep(0.1)
        # No --kubeconfig and none in the environment (the helper points KUBECONFIG nowhere): the
        # check asks the cluster of the kubetray whose file is edited, as with --demo.
        added = kubetray("add", "svc/web", "80", "--local-port", str(unused_tcp_port))
        assert added.returncode == 0, added.stderr
        assert f"kubetray is running with the rules file {rules}: editing that one." in added.stderr
        assert "did not check" not in added.stderr and "Warning" not in added.stderr
        assert "resourceName: web" in rules.read_text()
        app.wait_for(lambda e: e["event"] == "forwarding" and e["resourceName"] == "web")
        missing = kubetray("add", "svc/nope", "80", "--local-port", str(unused_tcp_port + 1))
        assert missing.returncode == 0, missing.stderr
        assert "has no service default/nope (yet)" in missing.stderr
        assert app.stop(signal.SIGTERM) == 0
    finally:
        app.kill()


AUTO_SCENARIO = """
deployments:
  - name: web
    labels: {app: web}
    ports: [{name: http, containerPort: 8080}]
services:
  - name: shop
    labels: {app.kubernetes.io/managed-by: skaffold}
    selector: {app: web}
    ports: [{name: http, port: 28080, targetPort: http}]
"""


def test_a_running_kubetray_stops_what_is_excluded(tmp_path: Path) -> None:
    import signal

    from tests.integration.test_headless import Kubetray
    from trayapp.config.edit import exclude_auto

    cluster = SimCluster("auto", scenario=AUTO_SCENARIO)
    with run_in_thread(cluster):
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig", context="sim")
        rules = tmp_path / "rules.yaml"
        rules.write_text("auto:\n  skaffold: true   # what skaffold dev deploys\n")
        app = Kubetray("--headless", "--json", "--config", str(rules), "--kubeconfig", str(kubeconfig))
        try:
            shop = app.wait_for(lambda e: e["event"] == "forwarding" and e["resourceName"] == "shop")
            assert shop["auto"] is True
            exclude_auto(rules, "default", "service", "shop", shop["port"])
            app.wait_for(lambda e: e["event"] == "stopped" and e["resourceName"] == "shop")
            assert app.stop(signal.SIGTERM) == 0
        finally:
            app.kill()


def test_list_names_exclusions_and_says_when_rules_have_problems(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("portForward:\n- {resourceType: service, resourceName: web, port: 80}\n"
                     "- {resourceType: sevice, resourceName: x, port: 80}\n"
                     "auto:\n  exclude:\n    - {kind: pod, namespace: dev, name: 'dbg-*'}\n")
    result = kubetray("list", "--config", str(rules))
    assert result.returncode == 1
    assert "service/web:80" in result.stdout and "resourceName: x" not in result.stdout
    assert f"Not forwarded automatically: pod dev/dbg-* ({rules}:6)." in result.stdout
    assert "The rules file has 1 problem; kubetray skips the rules with problems" in result.stderr


def test_add_says_why_it_could_not_ask_a_cluster_that_refuses(tmp_path: Path, rules: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(textwrap.dedent(f"""\
            apiVersion: v1
            kind: Config
            clusters: [{{name: gone, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
            users: [{{name: me, user: {{token: abc}}}}]
            contexts: [{{name: gone, context: {{cluster: gone, user: me}}}}]
            current-context: gone
            """))
        result = kubetray("add", "svc/db", "5432", "--config", str(rules), kubeconfig=kubeconfig)
    assert result.returncode == 0
    assert result.stderr.startswith("kubetray did not check that service default/db exists in context gone: ")
    assert "within 2 seconds" not in result.stderr


def test_add_pin_and_unpin_write_pinned_and_keep_the_file_theirs(rules: Path) -> None:
    added = kubetray("add", "svc/db", "5432", "--context", "prod", "--pin", "--no-check", "--config", str(rules))
    assert added.returncode == 0, added.stderr
    assert added.stdout.splitlines()[1].startswith("Context prod is now pinned")
    assert rules.read_text() == RULES + (
        "  prod:\n"
        "    pinned: true\n"
        "    portForward:\n"
        "    - {resourceType: service, resourceName: db, port: 5432}\n")
    assert [pattern for pattern in load_rules(rules).pinned] == ["prod"]
    assert kubetray("remove", "svc/db", "--config", str(rules)).returncode == 0
    assert kubetray("unpin", "prod", "--config", str(rules)).returncode == 0
    assert rules.read_text() == RULES

    pinned = kubetray("pin", "staging", "--config", str(rules))
    assert pinned.returncode == 0 and "Context staging is now pinned" in pinned.stdout
    assert rules.read_text() == RULES.replace('  "staging":\n', '  "staging":\n    pinned: true\n')
    again = kubetray("pin", "staging", "--config", str(rules))
    assert again.returncode == 0 and "already pinned" in again.stdout
    assert kubetray("unpin", "staging", "--config", str(rules)).returncode == 0
    assert rules.read_text() == RULES


def test_pin_refuses_what_cannot_be_pinned_and_changes_nothing(rules: Path) -> None:
    top_level = kubetray("add", "svc/db", "5432", "--pin", "--no-check", "--config", str(rules))
    assert top_level.returncode == 2 and "needs --context CTX" in top_level.stderr
    pattern = kubetray("pin", "kind-*", "--config", str(rules))
    assert pattern.returncode == 2 and "is a pattern" in pattern.stderr
    glob_rule = kubetray("add", "svc/db", "5432", "--context", "kind-*", "--pin", "--config", str(rules))
    assert glob_rule.returncode == 2 and "Nothing was changed." in glob_rule.stderr
    assert rules.read_text() == RULES
    assert "pin" in kubetray("--help").stdout and "--pin" in kubetray("add", "--help").stdout

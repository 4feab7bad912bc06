"""The menu's entries that change the rules file, in the running tray app on the real engine and
a simulated cluster, with real rules files: Change local port, Stop forwarding, Don't forward this
automatically, Keep forwarding. They need trayapp.config.edit; until it is there they are skipped."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from trayapp.model import Notice, TunnelState
from trayapp.ui.app import TrayApp
from trayapp.ui.menu_model import (
    ChangeLocalPort,
    ExcludeAuto,
    KeepForwarding,
    StopForwarding,
    build_menu,
    rule_selector,
)

from .test_app import wait_forwarding


class Answers:
    """The user's answers to the questions the commands ask."""

    def __init__(self, port: int | None = None, confirm: bool = True) -> None:
        self.port = port
        self.confirm_with = confirm
        self.asked: list[str] = []

    def local_port(self, label: str, current: int | None) -> int | None:
        self.asked.append(f"port for {label} (now {current})")
        return self.port

    def confirm(self, title: str, text: str, yes: str) -> bool:
        self.asked.append(title)
        return self.confirm_with


def told(app: TrayApp) -> list[Notice]:
    notices: list[Notice] = []
    app.bridge.notice_fallback.connect(notices.append)  # no notification service here: the balloon's
    return notices


edit = pytest.importorskip("trayapp.config.edit", reason="the rules file editor (trayapp.config.edit) is not here")


def rules_of(app: TrayApp) -> Path:
    path = app.tray.snapshot.rules_path
    assert path is not None
    return path


def test_change_local_port_rewrites_the_rule_and_the_tunnel_moves(qtbot, app: TrayApp,
                                                                    unused_tcp_port_factory) -> None:
    wait_forwarding(qtbot, app)
    rules = rules_of(app)
    rules.write_text("# my forwards\n" + rules.read_text(encoding="utf-8"), encoding="utf-8")
    view = app.tray.snapshot.tunnels[0]
    new_port = unused_tcp_port_factory()
    app.questions = Answers(port=new_port)  # type: ignore[assignment]
    entry = next(c for c in next(i for i in build_menu(app.tray.snapshot, app.prefs()) if i.tunnel_id).children
                 if c.text.startswith("Change local port"))
    assert entry.command == ChangeLocalPort(rules, "web", "web", view.local_port)
    app.run_command(entry.command)
    text = rules.read_text(encoding="utf-8")
    assert text.startswith("# my forwards\n") and f"localPort: {new_port}" in text
    qtbot.waitUntil(lambda: [t.local_port for t in app.tray.snapshot.tunnels] == [new_port]
                    and app.tray.snapshot.tunnels[0].state == TunnelState.FORWARDING, timeout=10000)
    with urllib.request.urlopen(f"http://127.0.0.1:{new_port}/", timeout=10) as answer:
        assert answer.status == 200


def test_stop_forwarding_asks_then_removes_the_rule(qtbot, app: TrayApp) -> None:
    wait_forwarding(qtbot, app)
    rules = rules_of(app)
    before = rules.read_text(encoding="utf-8")
    command = StopForwarding(rules, "web", "web", "rules.yaml, line 2")
    app.questions = Answers(confirm=False)  # type: ignore[assignment]
    app.run_command(command)
    assert rules.read_text(encoding="utf-8") == before  # the user said no
    app.questions = answers = Answers(confirm=True)  # type: ignore[assignment]
    app.run_command(command)
    assert answers.asked == ["Stop forwarding web?"]
    assert "resourceName: web" not in rules.read_text(encoding="utf-8")
    qtbot.waitUntil(lambda: app.tray.snapshot.tunnels == (), timeout=10000)


def test_a_rules_file_with_problems_is_refused_and_the_user_told(qtbot, app: TrayApp) -> None:
    wait_forwarding(qtbot, app)
    rules = rules_of(app)
    notices = told(app)
    broken = rules.read_text(encoding="utf-8") + "  - {resourceType: service, port: [\n"
    rules.write_text(broken, encoding="utf-8")
    app.questions = Answers(confirm=True)  # type: ignore[assignment]
    app.run_command(StopForwarding(rules, "web", "web", "rules.yaml, line 2"))
    qtbot.waitUntil(lambda: bool(notices), timeout=5000)
    assert notices[0].title == "kubetray could not stop forwarding web" and notices[0].sticky
    assert str(rules.name) in notices[0].body
    assert rules.read_text(encoding="utf-8") == broken  # untouched


def test_dont_forward_automatically_and_keep_forwarding_write_the_rules_file(qtbot, app: TrayApp) -> None:
    wait_forwarding(qtbot, app)
    rules = rules_of(app)
    notices = told(app)
    app.run_command(ExcludeAuto(rules, "default", "service", "shop", 8080, "shop:8080"))
    assert "shop" in rules.read_text(encoding="utf-8").split("auto:", 1)[1]
    qtbot.waitUntil(lambda: bool(notices), timeout=5000)
    assert notices[0].title == "kubetray no longer forwards shop:8080 automatically"
    app.run_command(KeepForwarding(rules, "sim-ctx", True))
    assert "pinned: true" in rules.read_text(encoding="utf-8")
    app.run_command(KeepForwarding(rules, "sim-ctx", False))
    assert "pinned" not in rules.read_text(encoding="utf-8")
    # The tunnel of the user's own rule went on through all of it.
    wait_forwarding(qtbot, app)


def test_selector_finds_the_rule_as_the_editor_does(tmp_path: Path) -> None:
    from trayapp.config.rules import load_rules

    rules = tmp_path / "rules.yaml"
    rules.write_text("portForward:\n  - {resourceType: statefulset, resourceName: api, port: grpc, localPort: 9090}\n"
                     "  - resourceType: service\n    resourceName: web\n    port: 80\n    name: web\n",
                     encoding="utf-8")
    loaded = load_rules(rules)
    for rule in loaded.rules:
        edit.set_local_port(rules, rule_selector(rule), 12345)
    assert rules.read_text(encoding="utf-8").count("12345") == 2

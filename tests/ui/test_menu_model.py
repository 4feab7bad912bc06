"""The menu, icon state and tooltip for every tunnel state, without Qt."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from trayapp.control import Snapshot
from trayapp.engine.runtime import TunnelView
from trayapp.model import AutoSource, Origin, ResourceType, Rule, Transport, TunnelState
from trayapp.ui.menu_model import (
    MENU_TUNNEL_LIMIT,
    ChangeLocalPort,
    CopyText,
    ExcludeAuto,
    Item,
    KeepForwarding,
    Mark,
    OpenUrl,
    Prefs,
    Restart,
    SetAutostart,
    SetEnabled,
    SetNotifications,
    SetPaused,
    SetToken,
    Simple,
    StopForwarding,
    SwitchContext,
    build_menu,
    overall,
    tooltip,
)

WEB = Rule(ResourceType.SERVICE, "web", 80, local_port=8080, name="web")
API = Rule(ResourceType.STATEFULSET, "api", "grpc", local_port=9090)
TLS = Rule(ResourceType.DEPLOYMENT, "gateway", 8443, namespace="edge")


def view(rule: Rule, state: TunnelState, port: int | None = None, pod: str | None = None,
         reason: str | None = None) -> TunnelView:
    return TunnelView(f"ctx/{rule.resource_name}", rule, state, port, pod, reason)


RULES = Path("/home/jo/.config/kubetray/config.yaml")


def snap(*tunnels: TunnelView, **kw) -> Snapshot:
    base = dict(context="kind-dev", namespace="default", contexts=("kind-dev", "prod"), tunnels=tunnels,
                rules_path=RULES)
    base.update(kw)
    return Snapshot(**base)


def texts(items: list[Item] | tuple[Item, ...]) -> list[str]:
    return [i.text for i in items if not i.separator]


def find(items: list[Item] | tuple[Item, ...], start: str) -> Item:
    return next(i for i in items if i.text.startswith(start))


def test_overall_state_and_tooltip() -> None:
    ok = view(WEB, TunnelState.FORWARDING, 8080, "web-1")
    waiting = view(API, TunnelState.WAITING, 9090)
    failed = view(TLS, TunnelState.FAILED, reason="No pod matches.")
    assert overall(snap()) == Mark.IDLE
    assert overall(snap(ok)) == Mark.OK
    assert overall(snap(ok, waiting)) == Mark.BUSY
    assert overall(snap(ok, view(API, TunnelState.RECONNECTING, 9090))) == Mark.BUSY
    assert overall(snap(ok, waiting, failed)) == Mark.FAILED
    assert overall(snap(ok, problem="The kubeconfig is broken.")) == Mark.FAILED
    assert tooltip(snap(ok, waiting, failed)) == "kind-dev: 3 tunnels, 1 waiting, 1 failed"
    assert tooltip(snap(ok)) == "kind-dev: 1 tunnel"
    assert tooltip(snap(paused=True)) == "kind-dev: 0 tunnels, paused"
    assert tooltip(Snapshot(problem="No kubeconfig was found.")) == "kubetray: No kubeconfig was found."


def test_header_and_context_switching() -> None:
    items = build_menu(snap(), Prefs())
    assert items[0].text == "kind-dev  \u00b7  namespace default" and items[0].heading
    switch = find(items, "Switch context")
    assert [(c.text, c.checked, c.command) for c in switch.children[:2]] == [
        ("kind-dev", True, SwitchContext("kind-dev")), ("prod", False, SwitchContext("prod"))]
    pinned = find(build_menu(snap(pinned=True), Prefs()), "Switch context")
    assert not pinned.enabled and "--context" in pinned.tooltip
    broken = build_menu(snap(problem="The kubeconfig /k is not YAML."), Prefs())
    assert find(broken, "\u26a0").tooltip == "The kubeconfig /k is not YAML."


def test_tunnel_entries_for_each_state() -> None:
    items = build_menu(snap(
        view(WEB, TunnelState.FORWARDING, 8080, "web-7d9-x2k"),
        view(API, TunnelState.WAITING, 9090, reason="No pod of statefulset api is ready yet."),
        view(Rule(ResourceType.POD, "db", 5432), TunnelState.RECONNECTING, 5432, "db"),
        view(Rule(ResourceType.POD, "gone", 7000), TunnelState.FAILED, None, reason="Pod gone was deleted."),
        view(Rule(ResourceType.POD, "off", 7001), TunnelState.STOPPED, None, reason="Stopped from the tray."),
    ), Prefs())
    web = find(items, "web")
    assert web.text == "web  \u2192 localhost:8080  web-7d9-x2k" and web.mark == Mark.OK
    assert web.command == OpenUrl("http://localhost:8080/")
    assert "Click to open http://localhost:8080/" in web.tooltip and "pod web-7d9-x2k" in web.tooltip
    assert [(c.text, c.command, c.enabled) for c in web.children if not c.separator] == [
        ("Open", OpenUrl("http://localhost:8080/"), True),
        ("Copy URL", CopyText("http://localhost:8080/"), True),
        ("Copy address", CopyText("localhost:8080"), True),
        ("Copy port", CopyText("8080"), True),
        ("Restart", Restart("ctx/web"), True),
        ("Pause", SetEnabled("ctx/web", False), True),
        ("Change local port\u2026", ChangeLocalPort(RULES, "web", "web", 8080), True),
        ("Stop forwarding\u2026", StopForwarding(RULES, "web", "web", "config.yaml"), True),
    ]
    api = find(items, "sts/api")
    assert api.text == "sts/api :grpc  \u2192 localhost:9090  (waiting)" and api.mark == Mark.BUSY
    assert api.command is None  # nothing to open until it forwards
    assert api.children[0].text == "No pod of statefulset api is ready yet." and api.children[0].heading
    assert find(items, "pod/db").mark == Mark.BUSY
    failed = find(items, "pod/gone")
    assert failed.text == "pod/gone :7000  \u2192 (no port yet)  (failed)" and failed.mark == Mark.FAILED
    assert "Pod gone was deleted." in failed.tooltip
    stopped = find(items, "pod/off")
    assert stopped.mark == Mark.STOPPED
    assert [c.command for c in stopped.children if c.text == "Resume"] == [SetEnabled("ctx/off", True)]
    assert not next(c for c in stopped.children if c.text == "Restart").enabled


def test_https_and_scheme_from_the_rule() -> None:
    gateway = find(build_menu(snap(view(TLS, TunnelState.FORWARDING, 8443, "gw")), Prefs()), "deploy/gateway")
    assert gateway.command == OpenUrl("https://localhost:8443/")
    custom = Rule(ResourceType.SERVICE, "grafana", 3000, scheme="http", path="/login", name="grafana")
    item = find(build_menu(snap(view(custom, TunnelState.FORWARDING, 3001, "g")), Prefs()), "grafana")
    assert item.command == OpenUrl("http://localhost:3001/login")


def test_tunnels_grouped_by_namespace() -> None:
    items = build_menu(snap(view(WEB, TunnelState.FORWARDING, 8080, "w"), view(TLS, TunnelState.FORWARDING, 8443, "g")),
                       Prefs())
    names = texts(items)
    assert names.index("namespace default") < names.index("web  \u2192 localhost:8080  w")
    assert names.index("namespace edge") < names.index("deploy/gateway :8443  \u2192 localhost:8443  g")
    # One namespace, the context's own: no heading needed.
    assert "namespace default" not in texts(build_menu(snap(view(WEB, TunnelState.FORWARDING, 8080, "w")), Prefs()))


def test_actions() -> None:
    items = build_menu(snap(view(WEB, TunnelState.FORWARDING, 8080, "w")), Prefs(autostart=True, notifications=False))
    assert find(items, "Pause all").command == SetPaused(True)
    assert find(items, "Open rules file").command is Simple.OPEN_RULES
    assert find(items, "Open rules file").tooltip == "/home/jo/.config/kubetray/config.yaml"
    assert find(items, "Reload rules").command is Simple.RELOAD_RULES
    assert find(items, "Show log").command is Simple.SHOW_LOG
    assert find(items, "Set token for this context").command == SetToken("kind-dev")
    login = find(items, "Start at login")
    assert (login.checked, login.command) == (True, SetAutostart(False))
    notes = find(items, "Notifications")
    assert (notes.checked, notes.command) == (False, SetNotifications(True))
    assert items[-1].command is Simple.QUIT
    paused = build_menu(snap(paused=True), Prefs())
    assert find(paused, "Resume all").command == SetPaused(False)
    assert "No tunnels (paused)" in texts(paused)
    assert not find(build_menu(snap(), Prefs(autostart_supported=False)), "Start at login").enabled


def test_a_tunnel_that_is_not_http_offers_its_address_not_a_url() -> None:
    db = Rule(ResourceType.SERVICE, "db", 5432, name="db")
    item = find(build_menu(snap(view(db, TunnelState.FORWARDING, 5432, "db-0")), Prefs()), "db")
    assert item.text == "db  \u2192 localhost:5432  db-0"
    assert item.command == CopyText("localhost:5432")  # clicking it copies what a client needs
    assert item.tooltip.endswith("Click to copy localhost:5432")
    assert [(c.text, c.command) for c in item.children if not c.separator][:2] == [
        ("Copy address", CopyText("localhost:5432")), ("Copy port", CopyText("5432"))]
    # A port named http is a web page; grpc is not.
    named = Rule(ResourceType.STATEFULSET, "api", "http", local_port=9000)
    assert find(build_menu(snap(view(named, TunnelState.FORWARDING, 9000, "a")), Prefs()), "sts/api").command == \
        OpenUrl("http://localhost:9000/")
    assert find(build_menu(snap(view(API, TunnelState.FORWARDING, 9090, "a")), Prefs()), "sts/api").command == \
        CopyText("localhost:9090")


def test_ipv6_loopback_addresses_are_shown_and_copied_as_such() -> None:
    v6 = Rule(ResourceType.SERVICE, "db", 5432, address="::1", name="db")
    item = find(build_menu(snap(view(v6, TunnelState.FORWARDING, 5432, "db-0")), Prefs()), "db")
    assert item.text == "db  \u2192 [::1]:5432  db-0" and item.command == CopyText("[::1]:5432")


def test_a_listener_open_to_the_network_says_so() -> None:
    open_web = Rule(ResourceType.SERVICE, "web", 80, local_port=8080, address="0.0.0.0", name="web")
    item = find(build_menu(snap(view(open_web, TunnelState.FORWARDING, 8080, "w")), Prefs()), "web")
    assert item.text == "web  \u2192 0.0.0.0:8080, open to your network  w"
    assert "Listens on 0.0.0.0:8080, open to your network." in item.tooltip
    # The URL stays usable from this machine: 0.0.0.0 takes IPv4, so 127.0.0.1 rather than localhost.
    assert item.command == OpenUrl("http://127.0.0.1:8080/")


def test_automatic_tunnels_are_grouped_under_their_source_with_a_stop() -> None:
    def auto(name: str, port: int, source: AutoSource) -> Rule:
        return Rule(ResourceType.SERVICE, name, port, name=f"{name}:{port}", auto=True, source=source)

    items = build_menu(snap(
        view(auto("dbg", 5005, AutoSource.DEBUG), TunnelState.FORWARDING, 5005, "dbg"),
        view(WEB, TunnelState.FORWARDING, 8080, "w"),
        view(auto("shop", 8080, AutoSource.SKAFFOLD), TunnelState.FORWARDING, 8081, "s"),
        view(auto("opted", 7000, AutoSource.ANNOTATION), TunnelState.WAITING, 7000),
    ), Prefs())
    assert texts(items)[2:9] == [
        "web  \u2192 localhost:8080  w",
        "Automatic \u00b7 Skaffold", "shop:8080  \u2192 localhost:8081  s",
        "Automatic \u00b7 Skaffold debug", "dbg:5005  \u2192 localhost:5005  dbg",
        "Automatic \u00b7 kubetray.dev/forward annotation", "opted:7000  \u2192 localhost:7000  (waiting)",
    ]
    heading = find(items, "Automatic \u00b7 kubetray.dev/forward annotation")
    assert heading.heading and "annotated kubetray.dev/forward" in heading.tooltip
    shop = find(items, "shop:8080")
    assert "Forwarded automatically because Skaffold deployed it; Pause stops it for now." in shop.tooltip
    assert [c.command for c in shop.children if c.text == "Pause"] == [SetEnabled("ctx/shop", False)]
    assert [c.command for c in shop.children if c.text.startswith("Don't")] == [
        ExcludeAuto(RULES, "default", "service", "shop", 8080, "shop:8080")]
    assert not [c for c in shop.children if c.text.startswith(("Change local port", "Stop forwarding"))]


def test_rule_entries_name_the_rule_and_refuse_what_they_cannot_change() -> None:
    unnamed = find(build_menu(snap(view(API, TunnelState.FORWARDING, 9090, "api-0")), Prefs()), "sts/api")
    change = find(list(unnamed.children), "Change local port")
    assert change.command == ChangeLocalPort(RULES, "statefulset/api:grpc", "sts/api :grpc", 9090)
    assert "Copy URL" not in texts(unnamed.children)  # gRPC: nothing to open
    assert find(list(unnamed.children), "Copy address").command == CopyText("localhost:9090")

    written = replace(WEB, origin=Origin(str(RULES), line=12))
    stop = find(list(find(build_menu(snap(view(written, TunnelState.FORWARDING, 8080)), Prefs()), "web").children),
                "Stop forwarding")
    assert stop.command == StopForwarding(RULES, "web", "web", "config.yaml, line 12")
    assert stop.tooltip == "Removes its rule from config.yaml, line 12."

    # A rule imported from skaffold.yaml is changed there, not by the tray.
    imported = replace(WEB, origin=Origin("/src/app/skaffold.yaml", line=30))
    web = find(build_menu(snap(view(imported, TunnelState.FORWARDING, 8080)), Prefs()), "web")
    for name in ("Change local port", "Stop forwarding"):
        entry = find(list(web.children), name)
        assert not entry.enabled and entry.command is None
        assert entry.tooltip == "This rule comes from /src/app/skaffold.yaml; change it there."
    orphan = find(build_menu(snap(view(WEB, TunnelState.FORWARDING, 8080), rules_path=None), Prefs()), "web")
    assert not find(list(orphan.children), "Stop forwarding").enabled


@dataclass(frozen=True)
class SnapshotWithPins(Snapshot):
    """The snapshot as the pinned-contexts work extends it."""

    pinned_contexts: frozenset[str] = frozenset()


def test_keep_forwarding_per_context_in_the_switch_context_submenu() -> None:
    switch = find(build_menu(SnapshotWithPins(**{**snap().__dict__, "pinned_contexts": frozenset({"prod"})}),
                             Prefs()), "Switch context")
    assert texts(switch.children) == ["kind-dev", "prod", "Keep forwarding"]
    keep = find(list(switch.children), "Keep forwarding")
    assert [(c.text, c.checked, c.command) for c in keep.children] == [
        ("kind-dev", False, KeepForwarding(RULES, "kind-dev", True)),
        ("prod", True, KeepForwarding(RULES, "prod", False)),
    ]
    assert "pinned: true in config.yaml" in keep.children[0].tooltip
    # Without the snapshot field (before the pinned contexts work) nothing is checked.
    plain = find(list(find(build_menu(snap(), Prefs()), "Switch context").children), "Keep forwarding")
    assert [c.checked for c in plain.children] == [False, False]


def many(count: int, auto_from: int | None = None) -> Snapshot:
    views = []
    for n in range(count):
        automatic = auto_from is not None and n >= auto_from
        rule = Rule(ResourceType.SERVICE, f"svc{n:02}", 8000 + n, auto=automatic,
                    source=AutoSource.SKAFFOLD if automatic else None)
        views.append(view(rule, TunnelState.FAILED if n == 3 else TunnelState.FORWARDING, 8000 + n, f"p{n}"))
    return snap(*views)


def test_the_menu_stays_short_past_the_threshold() -> None:
    flat = build_menu(many(MENU_TUNNEL_LIMIT), Prefs())
    assert sum(1 for i in flat if i.tunnel_id) == MENU_TUNNEL_LIMIT  # every tunnel on the menu itself

    grouped = build_menu(many(40, auto_from=10), Prefs())
    assert not [i for i in grouped if i.tunnel_id]
    mine, skaffold = find(grouped, "namespace default (10)"), find(grouped, "Automatic \u00b7 Skaffold (30)")
    assert [c.tunnel_id for c in mine.children] == [f"ctx/svc{n:02}" for n in range(10)]
    assert len(skaffold.children) == 30 and all(c.tunnel_id for c in skaffold.children)
    assert mine.mark == Mark.FAILED and skaffold.mark == Mark.OK  # the group shows its worst tunnel
    assert mine.tooltip == "9 forwarding, 1 failed"
    assert "Skaffold deployed it" in skaffold.tooltip
    # The whole menu: a handful of entries, whatever the number of tunnels.
    assert len(texts(grouped)) == len(texts(build_menu(many(400, auto_from=10), Prefs())))
    assert find(grouped, "Show all tunnels").command is Simple.SHOW_TUNNELS


def test_show_all_tunnels_is_always_there() -> None:
    assert find(build_menu(snap(), Prefs()), "Show all tunnels\u2026").command is Simple.SHOW_TUNNELS


def test_past_the_threshold_each_context_gets_a_submenu(monkeypatch: pytest.MonkeyPatch) -> None:
    # As the pinned-contexts work sections the tunnels: a heading per context.
    import trayapp.ui.menu_model as menu_model

    snapshot = many(30, auto_from=20)
    current, pinned = snapshot.tunnels[:25], snapshot.tunnels[25:]

    def two_contexts(_: Snapshot) -> list[tuple[Item | None, tuple[TunnelView, ...], str | None]]:
        return [(Item("kind-dev \u00b7 current", heading=True, enabled=False, tooltip="The current context."),
                 current, "default"),
                (Item("staging \u00b7 pinned", heading=True, enabled=False, tooltip="Pinned."), pinned, None)]

    monkeypatch.setattr(menu_model, "by_context", two_contexts)
    items = build_menu(snapshot, Prefs())
    here, there = find(items, "kind-dev \u00b7 current (25)"), find(items, "staging \u00b7 pinned (5)")
    assert not [i for i in items if i.tunnel_id] and here.mark == Mark.FAILED and there.mark == Mark.OK
    # Inside: the context's own layout, grouped again where it is long, flat where it is short.
    assert texts(here.children) == ["namespace default (20)", "Automatic \u00b7 Skaffold (5)"]
    assert texts(there.children)[0] == "Automatic \u00b7 Skaffold" and len(there.children) == 6
    assert there.tooltip == "Pinned.\n5 forwarding"

    monkeypatch.setattr(menu_model, "by_context", lambda _: [
        (Item("kind-dev \u00b7 current", heading=True, enabled=False), snapshot.tunnels[:3], "default"),
        (Item("staging \u00b7 pinned", heading=True, enabled=False), pinned[:2], None)])
    few = build_menu(snap(*snapshot.tunnels[:3], *pinned[:2]), Prefs())
    assert texts(few)[2:10] == ["kind-dev \u00b7 current", "svc/svc00 :8000  \u2192 localhost:8000  p0",
                                "svc/svc01 :8001  \u2192 localhost:8001  p1", "svc/svc02 :8002  \u2192 localhost:8002  p2",
                                "staging \u00b7 pinned", "Automatic \u00b7 Skaffold",
                                "svc/svc25 :8025  \u2192 localhost:8025  p25", "svc/svc26 :8026  \u2192 localhost:8026  p26"]


def test_a_tunnel_tooltip_names_its_transport_once_known() -> None:
    settled = replace(view(WEB, TunnelState.FORWARDING, 8080, "web-7d9-x2k"), transport=Transport.SPDY_WS)
    unknown = view(API, TunnelState.FORWARDING, 9090, "api-0")
    items = build_menu(snap(settled, unknown), Prefs())
    assert "pod web-7d9-x2k over spdy-ws" in find(items, "web").tooltip
    assert " over " not in find(items, "sts/api").tooltip

"""The tunnel list grouped by context when pinned contexts forward beside the current one."""

from __future__ import annotations

from pathlib import Path

from trayapp.control import Snapshot
from trayapp.engine.runtime import TunnelView
from trayapp.model import AutoSource, ResourceType, Rule, TunnelState
from trayapp.ui.menu_model import Item, Prefs, build_menu, by_context

WEB = Rule(ResourceType.SERVICE, "web", 80, local_port=8080, name="web")
DB = Rule(ResourceType.SERVICE, "db", 5432, local_port=15432, name="db")
CACHE = Rule(ResourceType.SERVICE, "cache", 6379, namespace="infra", name="cache")
AUTO = Rule(ResourceType.SERVICE, "api", 9000, auto=True, source=AutoSource.SKAFFOLD)


def view(rule: Rule, context: str | None, port: int = 1) -> TunnelView:
    return TunnelView(f"{context}/{rule.resource_name}", rule, TunnelState.FORWARDING, port, "pod-1", None,
                      context)


def snap(*tunnels: TunnelView, context: str | None = "dev", pinned: tuple[str, ...] = ()) -> Snapshot:
    return Snapshot(context=context, namespace="default", contexts=("dev", "prod", "staging"), tunnels=tunnels,
                    pinned_contexts=pinned, rules_path=Path("/home/jo/.config/kubetray/config.yaml"))


def tunnel_section(items: list[Item]) -> list[str]:
    """The entries between the first and second separator: the tunnel list."""
    cut = [i for i, item in enumerate(items) if item.separator]
    return [item.text for item in items[cut[0] + 1:cut[1]]]


def test_one_context_forwarding_has_no_context_headings() -> None:
    plain = snap(view(WEB, "dev"), view(AUTO, "dev"))
    assert by_context(plain) == [(None, plain.tunnels, "default")]
    # Views without a context (older snapshots) count as the current context's.
    assert by_context(snap(view(WEB, None)))[0][0] is None
    # Pinned, but current and alone: nothing to tell apart.
    assert tunnel_section(build_menu(snap(view(WEB, "dev"), pinned=("dev",)), Prefs()))[0].startswith("web")


def test_pinned_contexts_get_a_heading_each_after_the_current_one() -> None:
    menu = build_menu(snap(view(DB, "prod"), view(WEB, "dev"), view(AUTO, "dev"), view(CACHE, "staging"),
                           pinned=("prod", "staging")), Prefs())
    section = tunnel_section(menu)
    assert section[0] == "dev \u00b7 current"
    assert section[1].startswith("web")
    assert section[2] == "Automatic \u00b7 Skaffold"
    assert section[4] == "prod \u00b7 pinned"
    assert section[5].startswith("db")
    # A pinned context's namespace is not known, so a single namespace gets no heading of its own.
    assert section[6:] == ["staging \u00b7 pinned", section[7]] and section[7].startswith("cache")
    headings = [item for item in menu if item.heading and "pinned" in item.text]
    assert all(not item.enabled and "whatever the current context is" in item.tooltip for item in headings)


def test_the_current_context_says_when_it_is_pinned_too() -> None:
    sections = by_context(snap(view(WEB, "dev"), view(DB, "prod"), context="prod", pinned=("prod",)))
    assert [heading.text for heading, _, _ in sections if heading] == [
        "prod \u00b7 current \u00b7 pinned", "dev \u00b7 pinned"]
    assert [[v.rule.name for v in views] for _, views, _ in sections] == [["db"], ["web"]]


def test_pinned_tunnels_without_a_current_context_are_still_labelled() -> None:
    sections = by_context(snap(view(DB, "prod"), context=None, pinned=("prod",)))
    assert [(heading.text if heading else None, len(views)) for heading, views, _ in sections] == [
        ("prod \u00b7 pinned", 1)]

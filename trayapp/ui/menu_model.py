"""What the tray shows, decided without Qt: the menu's entries, the icon's state, the tooltip.

`build_menu(snapshot, prefs)` returns plain `Item`s whose `command` says what choosing them does;
tray.py turns them into QActions and hands chosen commands to the app. Kept pure so every state
and every entry is tested without a display.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field

from trayapp.control import Snapshot
from trayapp.engine.runtime import TunnelView
from trayapp.model import AutoSource, TunnelState, is_loopback, listen_text, local_address, tunnel_url


# Commands: what an entry does when chosen.
@dataclass(frozen=True)
class OpenUrl:
    url: str


@dataclass(frozen=True)
class CopyText:
    text: str


@dataclass(frozen=True)
class Restart:
    tunnel_id: str


@dataclass(frozen=True)
class SetEnabled:
    tunnel_id: str
    enabled: bool


@dataclass(frozen=True)
class SetPaused:
    paused: bool


@dataclass(frozen=True)
class SwitchContext:
    name: str


@dataclass(frozen=True)
class SetToken:
    context: str


@dataclass(frozen=True)
class SetAutostart:
    enabled: bool


@dataclass(frozen=True)
class SetNotifications:
    enabled: bool


class Simple(enum.Enum):
    OPEN_RULES = "open-rules"
    FORWARD = "forward"  # the picker window (ui/picker.py)
    RELOAD_RULES = "reload-rules"
    SHOW_LOG = "show-log"
    QUIT = "quit"


Command = (OpenUrl | CopyText | Restart | SetEnabled | SetPaused | SwitchContext | SetToken | SetAutostart
           | SetNotifications | Simple)


class Mark(str, enum.Enum):
    """The small state icon beside a tunnel (and the tray icon's overall state)."""

    IDLE = "idle"
    OK = "ok"
    BUSY = "busy"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Item:
    text: str = ""
    command: Command | None = None
    tooltip: str = ""
    enabled: bool = True
    checked: bool | None = None  # None: not a checkbox
    mark: Mark | None = None
    children: tuple[Item, ...] = field(default=())
    separator: bool = False
    heading: bool = False  # a label, not an action
    tunnel_id: str | None = None  # set on tunnel entries: clicking them runs `command` even with children


@dataclass(frozen=True)
class Prefs:
    autostart: bool = False
    autostart_supported: bool = True
    notifications: bool = True
    keyring: bool = True


SEPARATOR = Item(separator=True)

_MARKS = {
    TunnelState.FORWARDING: Mark.OK,
    TunnelState.WAITING: Mark.BUSY,
    TunnelState.RECONNECTING: Mark.BUSY,
    TunnelState.FAILED: Mark.FAILED,
    TunnelState.STOPPED: Mark.STOPPED,
}


def overall(snapshot: Snapshot) -> Mark:
    """The tray icon: failed beats waiting beats forwarding; nothing running is idle."""
    states = {t.state for t in snapshot.tunnels}
    if snapshot.problem or TunnelState.FAILED in states:
        return Mark.FAILED
    if states & {TunnelState.WAITING, TunnelState.RECONNECTING}:
        return Mark.BUSY
    if TunnelState.FORWARDING in states:
        return Mark.OK
    return Mark.IDLE


def tooltip(snapshot: Snapshot) -> str:
    """One line, e.g. "kind-dev: 5 tunnels, 1 waiting"."""
    if snapshot.context is None:
        return "kubetray: " + (snapshot.problem or "no kube context yet")
    count = len(snapshot.tunnels)
    text = f"{snapshot.context}: {count} tunnel{'s' if count != 1 else ''}"
    states = Counter(t.state for t in snapshot.tunnels)
    extra = [f"{states[s]} {s.value}" for s in (TunnelState.WAITING, TunnelState.RECONNECTING,
                                                  TunnelState.FAILED, TunnelState.STOPPED) if states[s]]
    if snapshot.paused:
        extra.insert(0, "paused")
    if snapshot.problem:
        extra.append("kubeconfig problem")
    return text + (", " + ", ".join(extra) if extra else "")


def tunnel_text(view: TunnelView) -> str:
    """`web  -> localhost:9000  web-7d9-x2k`, plus the state when it is not forwarding.

    A listener other machines can reach says so: `-> 0.0.0.0:8080, open to your network`.
    """
    parts = [view.rule.label]
    parts.append(f"\u2192 {listen_text(view.rule.address, view.local_port)}" if view.local_port is not None
                 else "\u2192 (no port yet)")
    if view.pod and view.state == TunnelState.FORWARDING:
        parts.append(view.pod)
    if view.state != TunnelState.FORWARDING:
        parts.append(f"({view.state.value})")
    return "  ".join(parts)


def tunnel_item(view: TunnelView) -> Item:
    """A tunnel's entry: clicking it opens its URL where it is HTTP (Rule.is_http), else copies
    its address; the submenu has the same and Restart, Stop/Start."""
    rule = view.rule
    url = tunnel_url(rule, view.local_port)
    address = local_address(rule.address, view.local_port) if view.local_port is not None else None
    forwarding = view.state == TunnelState.FORWARDING
    stopped = view.state == TunnelState.STOPPED
    reach: list[Item]
    if url:
        reach = [Item("Open", OpenUrl(url), enabled=forwarding), Item("Copy URL", CopyText(url))]
    else:
        reach = [Item("Copy address", CopyText(address) if address else None, enabled=address is not None)]
    children = [
        *reach,
        Item("Copy port", CopyText(str(view.local_port)) if view.local_port else None,
             enabled=view.local_port is not None),
        SEPARATOR,
        Item("Restart", Restart(view.tunnel_id), enabled=not stopped),
        Item("Start" if stopped else "Stop", SetEnabled(view.tunnel_id, stopped)),
    ]
    if view.reason and not forwarding:
        children.insert(0, Item(view.reason, heading=True, enabled=False, tooltip=view.reason))
        children.insert(1, SEPARATOR)
    target = f"{rule.resource_type.short}/{rule.resource_name} :{rule.port}"
    tip = f"{target} in {rule.namespace}"
    if view.pod:
        tip += f", pod {view.pod}"
    if rule.auto:
        why = rule.source.why if rule.source else "automatic forwarding is on"
        tip += f"\nForwarded automatically because {why}; Stop ends it."
    if view.local_port is not None and not is_loopback(rule.address):
        tip += f"\nListens on {listen_text(rule.address, view.local_port)}."
    if view.reason and not forwarding:
        tip += f"\n{view.reason}"
    elif url:
        tip += f"\nClick to open {url}"
    elif address:
        tip += f"\nClick to copy {address}"
    command: Command | None = None
    if forwarding:
        command = OpenUrl(url) if url else CopyText(address) if address else None
    return Item(
        tunnel_text(view), command, tooltip=tip,
        mark=_MARKS.get(view.state, Mark.IDLE), children=tuple(children), tunnel_id=view.tunnel_id,
    )


def _source_heading(source: AutoSource | None) -> Item:
    title = source.heading if source else "other sources"
    why = f"kubetray forwards these because {source.why}." if source else ""
    return Item(f"Automatic \u00b7 {title}", heading=True, enabled=False,
                tooltip=f"{why} Turn this source off under auto: in the rules file.".strip())


def by_context(snapshot: Snapshot) -> list[tuple[Item | None, tuple[TunnelView, ...], str | None]]:
    """The tunnels per context, the current context first: (heading, tunnels, the namespace that
    needs no heading of its own). Only the current context forwarding: no heading at all, as
    before pinned contexts existed. Otherwise (the rules file pins some): a heading each, saying
    which is current and which forward because they are pinned."""
    groups: dict[str | None, list[TunnelView]] = {snapshot.context: []}
    for view in snapshot.tunnels:
        groups.setdefault(view.context or snapshot.context, []).append(view)
    if not groups[snapshot.context]:
        del groups[snapshot.context]
    if set(groups) <= {snapshot.context}:
        return [(None, snapshot.tunnels, snapshot.namespace)]
    sections: list[tuple[Item | None, tuple[TunnelView, ...], str | None]] = []
    for name, views in groups.items():
        if name == snapshot.context:
            tip = "The current kubeconfig context: top-level rules and automatic forwarding follow it."
            text = f"{name} \u00b7 current" + (" \u00b7 pinned" if name in snapshot.pinned_contexts else "")
            home = snapshot.namespace
        else:
            tip = ("Pinned in the rules file: these forward whatever the current context is, "
                   "with this context's own credentials.")
            text = f"{name} \u00b7 pinned"
            home = None  # only the current context's namespace is known; a rule names its own
        sections.append((Item(text, heading=True, enabled=False, tooltip=tip), tuple(views), home))
    return sections


def build_menu(snapshot: Snapshot, prefs: Prefs) -> list[Item]:
    items: list[Item] = []
    if snapshot.context is None:
        items.append(Item("No kube context", heading=True, enabled=False))
    else:
        items.append(Item(f"{snapshot.context}  \u00b7  namespace {snapshot.namespace}", heading=True,
                          enabled=False, tooltip=f"Current kubeconfig context: {snapshot.context}"))
    if snapshot.problem:
        items.append(Item("\u26a0 The kubeconfig has a problem", heading=True, enabled=False,
                          tooltip=snapshot.problem, mark=Mark.FAILED))
    contexts = tuple(Item(name, SwitchContext(name), checked=name == snapshot.context) for name in snapshot.contexts)
    if snapshot.pinned:
        items.append(Item("Switch context", enabled=False,
                          tooltip="kubetray was started with --context, so it does not follow context switches."))
    else:
        items.append(Item("Switch context", children=contexts, enabled=bool(contexts)))
    items.append(SEPARATOR)

    if not snapshot.tunnels:
        items.append(Item("No tunnels" + (" (paused)" if snapshot.paused else ""), heading=True, enabled=False,
                          tooltip="Add rules in the rules file, or turn on automatic forwarding there."))
    for context_heading, context_views, home in by_context(snapshot):
        if context_heading is not None:
            items.append(context_heading)
        # The user's own tunnels by namespace, then the automatic ones under the source that made
        # them (their labels name the namespace when it is not the context's).
        namespaces: dict[str, list[TunnelView]] = {}
        sources: dict[AutoSource | None, list[TunnelView]] = {}
        for view in context_views:
            if view.rule.auto:
                sources.setdefault(view.rule.source, []).append(view)
            else:
                namespaces.setdefault(view.rule.namespace, []).append(view)
        for namespace, views in sorted(namespaces.items()):
            if len(namespaces) > 1 or (home is not None and namespace != home):
                items.append(Item(f"namespace {namespace}", heading=True, enabled=False))
            items.extend(tunnel_item(view) for view in views)
        order = list(AutoSource)
        for source, views in sorted(sources.items(), key=lambda kv: order.index(kv[0]) if kv[0] else len(order)):
            items.append(_source_heading(source))
            items.extend(tunnel_item(view) for view in views)
    items.append(SEPARATOR)

    items.append(Item("Resume all", SetPaused(False)) if snapshot.paused else
                 Item("Pause all", SetPaused(True), enabled=bool(snapshot.tunnels)))
    items.append(Item("Forward\u2026", Simple.FORWARD, enabled=snapshot.context is not None,
                      tooltip="Choose a service, workload or pod port of the cluster and save it as a rule."))
    items.append(Item("Open rules file", Simple.OPEN_RULES,
                      tooltip=str(snapshot.rules_path) if snapshot.rules_path else ""))
    items.append(Item("Reload rules", Simple.RELOAD_RULES))
    items.append(Item("Show log", Simple.SHOW_LOG))
    if snapshot.context is not None:
        items.append(Item("Set token for this context\u2026", SetToken(snapshot.context), enabled=prefs.keyring,
                          tooltip="Stored in the OS keyring; used when the kubeconfig user has no credentials."))
    items.append(SEPARATOR)
    items.append(Item("Start at login", SetAutostart(not prefs.autostart), checked=prefs.autostart,
                      enabled=prefs.autostart_supported))
    items.append(Item("Notifications", SetNotifications(not prefs.notifications), checked=prefs.notifications))
    items.append(SEPARATOR)
    items.append(Item("Quit kubetray", Simple.QUIT))
    return items

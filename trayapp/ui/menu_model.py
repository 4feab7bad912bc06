"""What the tray shows, decided without Qt: the menu's entries, the icon's state, the tooltip.

`build_menu(snapshot, prefs)` returns plain `Item`s whose `command` says what choosing them does;
tray.py turns them into QActions and hands chosen commands to the app. Kept pure so every state
and every entry is tested without a display.
"""

from __future__ import annotations

import enum
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from trayapp.config.ruleentries import selector_of
from trayapp.control import Snapshot
from trayapp.engine.runtime import TunnelView
from trayapp.model import AutoSource, Rule, TunnelState, is_loopback, listen_text, local_address, tunnel_url


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


# Commands that edit the rules file (trayapp.config.edit); `selector` finds the rule as
# `kubetray remove` does: its name, or TYPE/NAME:PORT.
@dataclass(frozen=True)
class ChangeLocalPort:
    rules_path: Path
    selector: str
    label: str
    local_port: int | None  # the one it has now, proposed in the dialog


@dataclass(frozen=True)
class StopForwarding:
    """Remove the rule from the rules file (after asking): the tunnel ends for good."""

    rules_path: Path
    selector: str
    label: str
    where: str  # `rules.yaml, line 12`, for the question


@dataclass(frozen=True)
class ExcludeAuto:
    """"Don't forward this automatically": remembered in the rules file, undone by deleting that line."""

    rules_path: Path
    namespace: str
    kind: str
    name: str
    port: int | str | None
    label: str


@dataclass(frozen=True)
class KeepForwarding:
    """Pin a context (`pinned: true` under its entry), or unpin it."""

    rules_path: Path
    context: str
    pinned: bool


class Simple(enum.Enum):
    OPEN_RULES = "open-rules"
    FORWARD = "forward"  # the picker window (ui/picker.py)
    RELOAD_RULES = "reload-rules"
    SHOW_LOG = "show-log"
    SHOW_TUNNELS = "show-tunnels"
    QUIT = "quit"


Command = (OpenUrl | CopyText | Restart | SetEnabled | SetPaused | SwitchContext | SetToken | SetAutostart
           | SetNotifications | ChangeLocalPort | StopForwarding | ExcludeAuto | KeepForwarding | Simple)


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

# Past this many tunnels the menu lists groups (a namespace, an automatic source, a context) as
# submenus instead of every tunnel: a menu taller than the screen scrolls, and nobody finds
# anything in it. "Show all tunnels…" has the full, filterable list.
MENU_TUNNEL_LIMIT = 12

_MARKS = {
    TunnelState.FORWARDING: Mark.OK,
    TunnelState.WAITING: Mark.BUSY,
    TunnelState.RECONNECTING: Mark.BUSY,
    TunnelState.FAILED: Mark.FAILED,
    TunnelState.STOPPED: Mark.STOPPED,
}


def state_mark(state: TunnelState) -> Mark:
    """The dot beside a tunnel in its state."""
    return _MARKS.get(state, Mark.IDLE)


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


def rule_selector(rule: Rule) -> str:
    """How `kubetray remove` and trayapp.config.edit find a rule: its name, else TYPE/NAME:PORT."""
    return rule.name or selector_of(rule)


def _same_file(one: str | Path, other: Path) -> bool:
    return os.path.abspath(os.path.expanduser(one)) == os.path.abspath(os.path.expanduser(other))


def _not_editable(rule: Rule, rules_path: Path | None) -> str | None:
    """Why the tray cannot change this rule in the rules file, or None when it can."""
    if rules_path is None:
        return "kubetray has no rules file to change."
    if rule.origin is not None and not _same_file(rule.origin.file, rules_path):
        return f"This rule comes from {rule.origin.file}; change it there."
    return None


def _where(rule: Rule, rules_path: Path) -> str:
    line = rule.origin.line if rule.origin is not None else None
    return f"{rules_path.name}, line {line}" if line is not None else rules_path.name


def _rule_entries(view: TunnelView, rules_path: Path | None) -> list[Item]:
    """The entries that change the rules file: for good, unlike Pause."""
    rule = view.rule
    why_not = _not_editable(rule, rules_path)
    if why_not is not None or rules_path is None:
        names = ("Don't forward this automatically",) if rule.auto else ("Change local port\u2026",
                                                                         "Stop forwarding\u2026")
        return [Item(name, enabled=False, tooltip=why_not or "") for name in names]
    if rule.auto:
        return [Item("Don't forward this automatically",
                     ExcludeAuto(rules_path, rule.namespace, rule.resource_type.value, rule.resource_name, rule.port,
                                 rule.label),
                     tooltip=f"Adds it to auto: exclude: in {rules_path.name}; delete that line to undo.")]
    selector = rule_selector(rule)
    return [
        Item("Change local port\u2026", ChangeLocalPort(rules_path, selector, rule.label, view.local_port),
             tooltip=f"Writes the new port into its rule ({_where(rule, rules_path)})."),
        Item("Stop forwarding\u2026", StopForwarding(rules_path, selector, rule.label, _where(rule, rules_path)),
             tooltip=f"Removes its rule from {_where(rule, rules_path)}."),
    ]


def tunnel_item(view: TunnelView, rules_path: Path | None = None) -> Item:
    """A tunnel's entry: clicking it opens its URL where it is HTTP (Rule.is_http), else copies
    its address; the submenu has the same, Restart, Pause/Resume, and the entries that change its
    rule in the rules file."""
    rule = view.rule
    url = tunnel_url(rule, view.local_port)
    address = local_address(rule.address, view.local_port) if view.local_port is not None else None
    forwarding = view.state == TunnelState.FORWARDING
    stopped = view.state == TunnelState.STOPPED
    reach: list[Item] = []
    if url:
        reach = [Item("Open", OpenUrl(url), enabled=forwarding), Item("Copy URL", CopyText(url))]
    reach.append(Item("Copy address", CopyText(address) if address else None, enabled=address is not None))
    children = [
        *reach,
        Item("Copy port", CopyText(str(view.local_port)) if view.local_port else None,
             enabled=view.local_port is not None),
        SEPARATOR,
        Item("Restart", Restart(view.tunnel_id), enabled=not stopped),
        Item("Resume" if stopped else "Pause", SetEnabled(view.tunnel_id, stopped),
             tooltip="Until kubetray quits; the rule stays." if not stopped else ""),
        SEPARATOR,
        *_rule_entries(view, rules_path),
    ]
    if view.reason and not forwarding:
        children.insert(0, Item(view.reason, heading=True, enabled=False, tooltip=view.reason))
        children.insert(1, SEPARATOR)
    target = f"{rule.resource_type.short}/{rule.resource_name} :{rule.port}"
    tip = f"{target} in {rule.namespace}"
    if view.pod:
        tip += f", pod {view.pod}"
        if view.transport is not None:
            tip += f" over {view.transport.value}"
    if rule.auto:
        why = rule.source.why if rule.source else "automatic forwarding is on"
        tip += f"\nForwarded automatically because {why}; Pause stops it for now."
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
        mark=state_mark(view.state), children=tuple(children), tunnel_id=view.tunnel_id,
    )


def _source_heading(source: AutoSource | None) -> Item:
    title = source.heading if source else "other sources"
    why = f"kubetray forwards these because {source.why}." if source else ""
    return Item(f"Automatic \u00b7 {title}", heading=True, enabled=False,
                tooltip=f"{why} Turn this source off under auto: in the rules file.".strip())


@dataclass(frozen=True)
class Group:
    """Tunnels listed together: under a heading in a short menu, as a submenu in a long one."""

    heading: Item | None  # None: shown without one (the user's tunnels in the context's namespace)
    title: str  # the submenu's text when the menu is long
    views: tuple[TunnelView, ...]


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


def tunnel_groups(views: tuple[TunnelView, ...], home: str | None) -> list[Group]:
    """The user's own tunnels by namespace (the `home` namespace without a heading when it is the
    only one), then the automatic ones under the source that made them (their labels name the
    namespace when it is not the context's)."""
    namespaces: dict[str, list[TunnelView]] = {}
    sources: dict[AutoSource | None, list[TunnelView]] = {}
    for view in views:
        if view.rule.auto:
            sources.setdefault(view.rule.source, []).append(view)
        else:
            namespaces.setdefault(view.rule.namespace, []).append(view)
    groups: list[Group] = []
    for namespace, members in sorted(namespaces.items()):
        heading = Item(f"namespace {namespace}", heading=True, enabled=False)
        shown = len(namespaces) > 1 or (home is not None and namespace != home)
        groups.append(Group(heading if shown else None, heading.text, tuple(members)))
    order = list(AutoSource)
    for source, members in sorted(sources.items(), key=lambda kv: order.index(kv[0]) if kv[0] else len(order)):
        heading = _source_heading(source)
        groups.append(Group(heading, heading.text, tuple(members)))
    return groups


def worst(marks: list[Mark]) -> Mark:
    """A group's mark: the one that most needs the user's eye."""
    for mark in (Mark.FAILED, Mark.BUSY, Mark.OK, Mark.STOPPED):
        if mark in marks:
            return mark
    return Mark.IDLE


def _submenu(title: str, entries: list[Item], views: tuple[TunnelView, ...], about: str = "") -> Item:
    states = Counter(view.state for view in views)
    tip = ", ".join(f"{count} {state.value}" for state, count in states.items())
    return Item(f"{title} ({len(views)})", children=tuple(entries), tooltip=f"{about}\n{tip}" if about else tip,
                mark=worst([state_mark(view.state) for view in views]))


def _tunnel_layout(views: tuple[TunnelView, ...], home: str | None, rules_path: Path | None) -> list[Item]:
    """One context's tunnels: under their group headings, or past MENU_TUNNEL_LIMIT a submenu per group."""
    items: list[Item] = []
    for group in tunnel_groups(views, home):
        entries = [tunnel_item(view, rules_path) for view in group.views]
        if len(views) <= MENU_TUNNEL_LIMIT:
            items.extend([group.heading, *entries] if group.heading is not None else entries)
        else:
            items.append(_submenu(group.title, entries, group.views,
                                  group.heading.tooltip if group.heading is not None else ""))
    return items


def tunnel_section(snapshot: Snapshot) -> list[Item]:
    """Every tunnel, each context's under its heading; past MENU_TUNNEL_LIMIT in all, a submenu per
    context when several forward (else per group), so the menu stays short."""
    sections = by_context(snapshot)
    items: list[Item] = []
    for heading, views, home in sections:
        if len(sections) > 1 and len(snapshot.tunnels) > MENU_TUNNEL_LIMIT and heading is not None:
            items.append(_submenu(heading.text, _tunnel_layout(views, home, snapshot.rules_path), views,
                                  heading.tooltip))
            continue
        if heading is not None:
            items.append(heading)
        items.extend(_tunnel_layout(views, home, snapshot.rules_path))
    return items


def _kept_contexts(snapshot: Snapshot) -> frozenset[str]:
    """The contexts pinned in the rules file (`pinned: true`), which forward whatever the current one is."""
    return frozenset(snapshot.pinned_contexts)


def _switch_context(snapshot: Snapshot) -> Item:
    if snapshot.pinned:
        return Item("Switch context", enabled=False,
                    tooltip="kubetray was started with --context, so it does not follow context switches.")
    contexts: list[Item] = [Item(name, SwitchContext(name), checked=name == snapshot.context)
                            for name in snapshot.contexts]
    if contexts:
        kept = _kept_contexts(snapshot)
        path = snapshot.rules_path
        keep = tuple(
            Item(name, KeepForwarding(path, name, name not in kept) if path else None, checked=name in kept,
                 enabled=path is not None,
                 tooltip=(f"Forward the rules under contexts: {name}: even when another context is current "
                          f"(pinned: true in {path.name})." if path else "kubetray has no rules file to change."))
            for name in snapshot.contexts)
        contexts += [SEPARATOR, Item("Keep forwarding", children=keep,
                                     tooltip="Contexts whose own rules forward whatever the current context is.")]
    return Item("Switch context", children=tuple(contexts), enabled=bool(contexts))


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
    items.append(_switch_context(snapshot))
    items.append(SEPARATOR)

    if not snapshot.tunnels:
        items.append(Item("No tunnels" + (" (paused)" if snapshot.paused else ""), heading=True, enabled=False,
                          tooltip="Add rules in the rules file, or turn on automatic forwarding there."))
    items.extend(tunnel_section(snapshot))
    items.append(SEPARATOR)

    items.append(Item("Show all tunnels\u2026", Simple.SHOW_TUNNELS,
                      tooltip="A table of every tunnel with its traffic, to filter and sort."))
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

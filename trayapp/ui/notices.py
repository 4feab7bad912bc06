"""Which engine events become desktop notifications, and how many: the policy, with no I/O.

The engine tells everything; a person wants to hear only what changes their work, and not as
a storm. Events are gathered for a short window so that what happens at once is told at once:
more than a few notices become one summary, a context switch and the tunnels it starts become
one notice, and each tunnel speaks at most once per half minute (a failure after good news
still gets through once, because errors matter more).

Automatic tunnels (opened because of what is in the cluster, not a rule the user wrote) are
announced when they first appear: which object, which local port, and why (which `auto:` source),
with the way to stop them. All that appear together make one notice, and announcements come at
most once per ANNOUNCE_EVERY; those arriving in between wait and are told together.

A listener that other machines can reach is named as such in every notice about it.

No Qt here: the UI asks `deadline()` when to call `flush()` and arms one single-shot timer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from trayapp.model import Event, EventKind, Notice, is_loopback, listen_text

GATHER = 1.0  # seconds: events this close together are told together
PER_TUNNEL = 30.0  # seconds: at most one notice per tunnel in this window (a failure excepted once)
MAX_SEPARATE = 3  # more notices than this at once become one summary
SUMMARY_LABELS = 3  # tunnel labels named in a summary before "and N more"
ANNOUNCE_EVERY = 30.0  # seconds: at most one notice about new automatic tunnels in this window
ANNOUNCED_LINES = 5  # automatic tunnels described one by one in an announcement before "and N more"
# The first of these about an automatic tunnel announces it (it has a local port by then).
_ANNOUNCING = frozenset({EventKind.FORWARDING, EventKind.WAITING, EventKind.FALLBACK, EventKind.RECONNECTED})
STOP_HINT = ("To stop one, choose \"Don't forward this automatically\" in its submenu in the kubetray menu; "
             "to stop a source, turn it off under auto: in the rules file.")

_TOLD = frozenset({EventKind.FALLBACK, EventKind.RECONNECTED, EventKind.FAILED, EventKind.CONTEXT})
_FOLDABLE = frozenset({EventKind.FALLBACK, EventKind.RECONNECTED, EventKind.FAILED})

# How each kind is counted in summaries: (one, many).
_COUNTED = {
    EventKind.FALLBACK: ("{n} tunnel fell back to another port", "{n} tunnels fell back to other ports"),
    EventKind.RECONNECTED: ("{n} tunnel moved to a new pod", "{n} tunnels moved to new pods"),
    EventKind.FAILED: ("{n} failed", "{n} failed"),
}
_COUNTED_IN_CONTEXT = {
    **_COUNTED,
    EventKind.FAILED: ("{n} tunnel failed", "{n} tunnels failed"),
}


@dataclass(frozen=True)
class _Pending:
    event: Event
    url: str | None
    at: float


@dataclass(frozen=True)
class _Told:
    at: float
    error: bool


class NoticePolicy:
    """Turns engine events into notices: gathered, limited per tunnel, summarised."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, gather: float = GATHER,
                 per_tunnel: float = PER_TUNNEL, max_separate: int = MAX_SEPARATE,
                 announce_every: float = ANNOUNCE_EVERY) -> None:
        self._clock = clock
        self.gather = gather
        self.per_tunnel = per_tunnel
        self.max_separate = max_separate
        self.announce_every = announce_every
        self._enabled = True
        self._pending: list[_Pending] = []
        self._current: str | None = None  # the current kube context: others' tunnels are pinned ones
        self._due: float | None = None
        self._told: dict[str, _Told] = {}
        # Automatic tunnels: those announced (until they stop), those waiting to be, and when.
        self._announced: set[str] = set()
        self._announcing: dict[str, _Pending] = {}
        self._announce_due: float | None = None
        self._last_announced: float | None = None

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = value
        if not value:
            # Turning notices off also silences what was about to be shown.
            self._pending.clear()
            self._due = None
            self._announcing.clear()
            self._announce_due = None

    def admit(self, event: Event, url: str | None = None) -> None:
        """Queue an event; `url` is what clicking its notice opens (the tunnel's URL, if it has one)."""
        if not self._enabled:
            return
        if event.auto and event.tunnel_id is not None and self._announce(event, url):
            return
        if event.kind == EventKind.CONTEXT:
            self._current = event.context
        elif event.tunnel_id is not None and event.context and self._current and event.context != self._current:
            # A tunnel of a pinned context that is not the current one: its notice says where.
            event = replace(event, label=f"{event.context}: {_label(event)}")
        if event.kind not in _TOLD:
            return
        now = self._clock()
        if event.tunnel_id is not None and not self._may_tell(event.tunnel_id, event.kind == EventKind.FAILED, now):
            return
        self._pending.append(_Pending(event, url, now))
        if self._due is None:
            self._due = now + self.gather
        if event.kind == EventKind.CONTEXT:
            # The tunnels of the new context start right after the switch: wait for them so
            # that they fold into the one notice about the switch.
            self._due = max(self._due, now + self.gather)

    def _announce(self, event: Event, url: str | None) -> bool:
        """Track an automatic tunnel's life; True when this event is told as (part of) its announcement."""
        tid = event.tunnel_id
        assert tid is not None
        if event.kind == EventKind.STOPPED:
            # Gone before it was announced: nothing to tell. Gone after: told again if it comes back.
            self._announcing.pop(tid, None)
            self._announced.discard(tid)
            if not self._announcing:
                self._announce_due = None
            return False
        if tid in self._announced or event.kind not in _ANNOUNCING or event.local_port is None:
            return False
        now = self._clock()
        self._announced.add(tid)
        self._announcing[tid] = _Pending(event, url, now)
        # The tunnel's other news in this window is part of the announcement.
        self._told[tid] = _Told(now, False)
        if self._announce_due is None:
            earliest = now + self.gather
            if self._last_announced is not None:
                earliest = max(earliest, self._last_announced + self.announce_every)
            self._announce_due = earliest
        return True

    def deadline(self) -> float | None:
        """When `flush()` has something to return, on the policy's clock; None when nothing waits."""
        dues = [due for due in (self._due, self._announce_due) if due is not None]
        return min(dues) if dues else None

    def flush(self) -> list[Notice]:
        """The notices due now, in order; empty before the deadline."""
        now = self._clock()
        notices: list[Notice] = []
        if self._announce_due is not None and now >= self._announce_due:
            announcing = list(self._announcing.values())
            self._announcing, self._announce_due, self._last_announced = {}, None, now
            notices.append(_announcement(announcing))
        if self._due is not None and now >= self._due:
            pending, self._pending, self._due = self._pending, [], None
            notices.extend(self._render(pending))
        return notices

    def set_current_context(self, name: str | None) -> None:
        """What the tray shows as current (from its snapshots); switches also come as events."""
        self._current = name

    def _may_tell(self, tunnel_id: str, error: bool, now: float) -> bool:
        self._forget(now)
        told = self._told.get(tunnel_id)
        if told is not None and now - told.at < self.per_tunnel and (told.error or not error):
            return False
        # Either the first word in the window, or a failure after good news: that failure is
        # told once and holds the tunnel's slot from now on.
        self._told[tunnel_id] = _Told(now, error)
        return True

    def _forget(self, now: float) -> None:
        # Keeps the table as small as the set of tunnels that spoke in the last window.
        stale = [tid for tid, told in self._told.items() if now - told.at >= self.per_tunnel]
        for tid in stale:
            del self._told[tid]

    def _render(self, pending: list[_Pending]) -> list[Notice]:
        switch, folded, rest = _split(pending, self.gather)
        notices: list[Notice] = []
        if switch is not None:
            notices.append(_context_notice(switch, folded))
        separate = [_notice(p) for p in rest]
        if len(notices) + len(separate) > self.max_separate:
            notices.append(_summary(rest))
        else:
            notices.extend(separate)
        return notices


def _split(pending: list[_Pending], gather: float) -> tuple[_Pending | None, list[_Pending], list[_Pending]]:
    """(the last context switch, the tunnel events that fold into it, everything else)."""
    switches = [p for p in pending if p.event.kind == EventKind.CONTEXT]
    if not switches:
        return None, [], pending
    switch = switches[-1]
    # Earlier switches in the same moment are superseded: their tunnels are already gone again.
    left_behind = {p.event.context for p in switches[:-1]} - {switch.event.context}
    folded: list[_Pending] = []
    rest: list[_Pending] = []
    for p in pending:
        event = p.event
        if event.kind == EventKind.CONTEXT:
            continue
        if (event.tunnel_id is not None and event.kind in _FOLDABLE
                and event.context == switch.event.context and 0 <= p.at - switch.at <= gather):
            folded.append(p)
        elif event.tunnel_id is not None and event.context in left_behind:
            continue
        else:
            rest.append(p)
    return switch, folded, rest


def _label(event: Event) -> str:
    return event.label or event.tunnel_id or "a tunnel"


def _notice(pending: _Pending) -> Notice:
    event = pending.event
    label = _label(event)
    if event.kind == EventKind.FALLBACK:
        title = f"{label} wanted {event.requested_local_port}; it is on {event.local_port}"
    elif event.kind == EventKind.RECONNECTED:
        if event.pod is not None and event.old_pod == event.pod:
            title = f"{label}: pod {event.pod} restarted"
        else:
            title = f"{label} moved to pod {event.pod}" if event.pod else f"{label} reconnected"
    else:
        title = f"{label} failed" if event.tunnel_id is not None else "kubetray: a problem"
    return Notice(title, event.message + _exposure(event), sticky=event.kind == EventKind.FAILED,
                  url=pending.url, tunnel_id=event.tunnel_id)


def _exposure(event: Event) -> str:
    """A warning for a tunnel that other machines can reach; nothing for a loopback one."""
    if event.address is None or event.local_port is None or is_loopback(event.address):
        return ""
    return f" ({listen_text(event.address, event.local_port)}.)"


def _where(event: Event) -> str:
    assert event.local_port is not None
    return listen_text(event.address or "127.0.0.1", event.local_port)


def _object(event: Event) -> str:
    kind = event.resource_type.short if event.resource_type else "object"
    return f"{kind}/{event.namespace}/{event.resource_name} port {event.port}"


def _why(event: Event) -> str:
    return f"forwarded because {event.source.why}" if event.source else "forwarded automatically"


def _announcement(pendings: list[_Pending]) -> Notice:
    """One notice for the automatic tunnels that appeared: which object, which port, why, how to stop."""
    events = [p.event for p in pendings]
    if len(events) == 1:
        (event,) = events
        instead = (f" (it asked for {event.requested_local_port})"
                   if event.requested_local_port not in (None, event.local_port) else "")
        body = f"{_object(event)} is on {_where(event)}{instead}, {_why(event)}. {STOP_HINT}"
        return Notice(f"kubetray forwards {_label(event)} automatically", body,
                      url=pendings[0].url, tunnel_id=event.tunnel_id)
    lines = [f"{_label(e)} on {_where(e)}: {e.source.why if e.source else 'automatic'}"
             for e in events[:ANNOUNCED_LINES]]
    more = len(events) - len(lines)
    if more:
        lines.append(f"and {more} more (see the kubetray menu)")
    body = "; ".join(lines) + ". " + STOP_HINT
    return Notice(f"kubetray forwards {len(events)} new automatic tunnels", body)


def _counts(pendings: list[_Pending], wording: dict[EventKind, tuple[str, str]]) -> list[str]:
    parts = []
    for kind in (EventKind.FALLBACK, EventKind.RECONNECTED, EventKind.FAILED):
        n = sum(1 for p in pendings if p.event.kind == kind)
        if n:
            one, many = wording[kind]
            parts.append((one if n == 1 else many).format(n=n))
    return parts


def _joined(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _labels(pendings: list[_Pending]) -> str:
    labels = list(dict.fromkeys(_label(p.event) for p in pendings if p.event.tunnel_id is not None))
    shown = labels[:SUMMARY_LABELS]
    more = len(labels) - len(shown)
    return _joined(shown + ([f"{more} more"] if more else []))


def _single_tunnel(pendings: list[_Pending]) -> tuple[str | None, str | None]:
    """(url, tunnel id) when every event is about one tunnel; a summary of many opens nothing."""
    tunnels = {p.event.tunnel_id for p in pendings}
    if len(tunnels) != 1 or None in tunnels:
        return None, None
    urls = [p.url for p in pendings if p.url]
    return (urls[-1] if urls else None), pendings[0].event.tunnel_id


def _context_notice(switch: _Pending, folded: list[_Pending]) -> Notice:
    body = switch.event.message
    counts = _counts(folded, _COUNTED_IN_CONTEXT)
    if counts:
        body += f" Since then {_joined(counts)}: {_labels(folded)}."
    url, tunnel = _single_tunnel(folded)
    return Notice(f"Switched to {switch.event.context}", body,
                  sticky=any(p.event.kind == EventKind.FAILED for p in folded), url=url, tunnel_id=tunnel)


def _summary(pendings: list[_Pending]) -> Notice:
    about_tunnels = [p for p in pendings if p.event.tunnel_id is not None]
    tunnels = len({p.event.tunnel_id for p in about_tunnels})
    others = len(pendings) - len(about_tunnels)
    counts = _counts(about_tunnels, _COUNTED)
    if others:
        counts.append(f"{others} other problem{'s' if others != 1 else ''}")
    if not others:
        title = f"kubetray: {tunnels} tunnel{'s' if tunnels != 1 else ''} changed"
    else:
        title = f"kubetray: {len(pendings)} changes and problems"
    body = _joined(counts)
    body = body[0].upper() + body[1:] + "."
    labels = _labels(pendings)
    if labels:
        body += f" Tunnels: {labels}."
    url, tunnel = _single_tunnel(pendings)
    return Notice(title, body, sticky=any(p.event.kind == EventKind.FAILED for p in pendings),
                  url=url, tunnel_id=tunnel)

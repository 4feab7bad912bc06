"""The "Forward…" window without Qt: its rows, the search, and what choosing a port proposes.

`PickerModel` keeps the rows the engine sends (engine/browse.py) for the namespace shown, one
`Entry` per object and port, sorted once per update and filtered per keystroke. `propose()` turns
a chosen entry into a `Draft` of the rule to save: the target a rule should name (a pod's
controller rather than the pod and its hash), the local port the tunnel would get, a label
(`deploy/dbg dlv`) and a scheme. Pure, so every case is tested without a display.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property

from trayapp.engine.browse import KINDS, Namespaces, ObjectRow, PortRow, Problem, Rows, Update
from trayapp.engine.discovery import auto_label
from trayapp.engine.portproposal import LocalPortProposal
from trayapp.engine.runtime import TunnelView
from trayapp.model import HTTP_PORTS, HTTPS_PORTS, ResourceType, is_http_port_name

_ORDER = {kind: index for index, kind in enumerate(KINDS.values())}
# Kinds a rule should name instead of a pod or job they made (the pod's hash changes on rollout).
_FORWARDABLE_OWNERS = frozenset({ResourceType.DEPLOYMENT, ResourceType.STATEFULSET, ResourceType.DAEMONSET,
                                 ResourceType.REPLICASET, ResourceType.REPLICATIONCONTROLLER, ResourceType.JOB,
                                 ResourceType.CRONJOB})

Probe = Callable[[int], LocalPortProposal]  # requested local port -> what the tunnel would get


@dataclass(frozen=True)
class Entry:
    """One line of the window: an object and one of its ports (None: the object declares none)."""

    row: ObjectRow
    port: PortRow | None

    @property
    def object_text(self) -> str:
        return f"{self.row.kind.short}/{self.row.name}"

    @property
    def port_text(self) -> str:
        if self.port is None:
            return "(no ports)"
        return f"{self.port.name} {self.port.number}" if self.port.name else str(self.port.number)

    @property
    def note(self) -> str:
        """What the last column says: why it cannot be chosen, else whose it is."""
        if self.port is not None and (refused := refusal(self.port)):
            return refused
        if self.row.owner is not None:
            kind, name = self.row.owner
            return f"of {kind.short}/{name}"
        if self.port is None:
            return "declares no ports; forward it from the rules file by number"
        return f"container {self.port.container}" if self.port.container else ""

    @property
    def choosable(self) -> bool:
        return self.port is not None and refusal(self.port) is None

    @cached_property
    def haystack(self) -> str:
        """What the search looks in, lower case: kind/name, kind, name, the port, the owner."""
        return _haystack(self)

    def matches(self, terms: Iterable[str]) -> bool:
        hay = self.haystack
        return all(term in hay for term in terms)


def _haystack(entry: Entry) -> str:
    row, port = entry.row, entry.port
    parts = [f"{row.kind.short}/{row.name}", row.kind.value, row.name]
    if port is not None:
        parts += [str(port.number), port.name or "", port.protocol, port.container or ""]
    if row.owner is not None:
        parts.append(f"{row.owner[0].short}/{row.owner[1]}")
    return " ".join(parts).lower()


def refusal(port: PortRow) -> str | None:
    """Why a port cannot be forwarded, or None when it can."""
    protocol = port.protocol.upper()
    if protocol == "TCP":
        return None
    return f"{protocol}: Kubernetes port-forward carries TCP only"


def entries_of(row: ObjectRow) -> tuple[Entry, ...]:
    if not row.ports:
        return (Entry(row, None),)
    return tuple(Entry(row, port) for port in row.ports)


def _sort_key(row: ObjectRow) -> tuple[int, str]:
    return (_ORDER.get(row.kind, len(_ORDER)), row.name)


class PickerModel:
    """What the window shows. `apply()` takes engine updates; `visible` is the filtered list."""

    def __init__(self, namespace: str | None = None) -> None:
        self.namespace = namespace
        self.namespaces: tuple[str, ...] = ()
        self.rows: dict[tuple[ResourceType, str], ObjectRow] = {}
        self.complete = False
        self.problem: str | None = None  # why some kinds of this namespace cannot be listed now
        self.namespaces_problem: str | None = None
        self.query = ""
        self._sorted: list[Entry] | None = []
        self._visible: list[Entry] | None = []

    def apply(self, update: Update) -> bool:
        """Take one update from the engine; True when the list may have changed."""
        if isinstance(update, Namespaces):
            self.namespaces = update.names
            self.namespaces_problem = None  # listed again: whatever failed is over
            return False
        if isinstance(update, Problem):
            self.namespaces_problem = update.message
            return False
        if isinstance(update, Rows):
            if update.namespace != self.namespace:
                return False  # a late batch for the namespace shown before
            if update.reset:
                self.rows = {}
                self.complete = False
            for row in update.upserts:
                self.rows[row.key] = row
            for key in update.removed:
                self.rows.pop(key, None)
            self.problem = " ".join(update.problems) or None
            self.complete = self.complete or update.complete
            self._sorted = self._visible = None
            return True
        return False

    def show_namespace(self, namespace: str) -> None:
        """The user chose another namespace: forget this one's rows until the engine sends the new ones."""
        if namespace != self.namespace:
            self.namespace = namespace
            self.rows = {}
            self.complete = False
            self.problem = None
            self._sorted = self._visible = None

    def set_query(self, text: str) -> None:
        if text == self.query:
            return
        # Typing on narrows the list: what matches the longer query is among what matched before,
        # so only those are searched again (a keystroke in 2,000 objects stays cheap).
        narrower = self._visible is not None and self.query and text.startswith(self.query)
        previous = self._visible if narrower else None
        self.query = text
        self._visible = None
        if previous is not None:
            terms = text.lower().split()
            self._visible = [entry for entry in previous if entry.matches(terms)]

    @property
    def visible(self) -> list[Entry]:
        if self._sorted is None:
            self._sorted = [entry for row in sorted(self.rows.values(), key=_sort_key) for entry in entries_of(row)]
            self._visible = None
        if self._visible is None:
            terms = self.query.lower().split()
            self._visible = [e for e in self._sorted if e.matches(terms)] if terms else list(self._sorted)
        return self._visible

    def status(self) -> str:
        """One line under the list: how many objects, and whether listing is still going on."""
        if self.problem:
            return self.problem
        if self.namespaces_problem and not self.rows:
            return self.namespaces_problem
        objects = len(self.rows)
        shown = len({entry.row.key for entry in self.visible})
        text = f"{objects} object{'s' if objects != 1 else ''} in namespace {self.namespace}"
        if self.query.strip():
            text += f", {shown} matching"
        if not self.complete:
            text += " (still listing\u2026)"
        return text


# --- what choosing a port proposes ------------------------------------------------------------

@dataclass(frozen=True)
class Draft:
    """The rule the window would save; the fields of config.edit.RuleDraft."""

    resource_type: ResourceType
    resource_name: str
    port: int
    namespace: str
    local_port: int | None  # None: the port itself (the rule leaves localPort out)
    name: str
    scheme: str | None
    address: str | None = None  # None: the default, 127.0.0.1


@dataclass(frozen=True)
class Proposal:
    draft: Draft | None  # None: this entry cannot be forwarded (`text` says why)
    local_port: int | None  # what the tunnel would listen on
    text: str  # what the window says about the choice


def target_of(row: ObjectRow) -> tuple[ResourceType, str]:
    """What a rule should name: the controller of a pod or job (its name has a hash that changes),
    else the object itself."""
    if row.owner is not None and row.owner[0] in _FORWARDABLE_OWNERS and row.kind in (ResourceType.POD,
                                                                                        ResourceType.JOB):
        return row.owner
    return (row.kind, row.name)


def label_for(resource_type: ResourceType, resource_name: str, port: PortRow) -> str:
    """`deploy/dbg dlv`: the workload and the port's name (its number when it has none), as
    automatic forwards are named."""
    return auto_label(resource_type, resource_name, port.number, port.name)


def scheme_for(port: PortRow) -> str | None:
    """http or https for a port that is a web page by its name, appProtocol or number; else None."""
    names = [n for n in (port.name, port.app_protocol) if n]
    lowered = [n.lower() for n in names]
    if any("https" in n.replace("_", "-").split("-") for n in lowered) or port.number in HTTPS_PORTS:
        return "https"
    if any(is_http_port_name(n) for n in names) or port.number in HTTP_PORTS:
        return "http"
    return None


def taken_ports(tunnels: Iterable[TunnelView]) -> frozenset[int]:
    """Local ports kubetray's tunnels use or ask for: a new rule must not get one of them."""
    taken: set[int] = set()
    for view in tunnels:
        for port in (view.local_port, view.rule.requested_local_port):
            if port:
                taken.add(port)
    return frozenset(taken)


def _why_not(reasons: tuple[str, ...]) -> str:
    """The first reason a candidate port was passed over, and how many more were (80 needs
    privileges, and so do the ten after it, for a user who is not root)."""
    if len(reasons) <= 1:
        return "".join(reasons)
    more = len(reasons) - 1
    return f"{reasons[0]}; the next {more} candidate{'s were' if more > 1 else ' was'} not free either"


def propose(entry: Entry, namespace: str, probe: Probe) -> Proposal:
    """What saving this entry would write, with the local port `probe` says the tunnel would get."""
    port = entry.port
    if port is None:
        return Proposal(None, None, f"{entry.object_text} declares no ports, so there is nothing to choose here.")
    refused = refusal(port)
    if refused is not None:
        return Proposal(None, None, f"{port.protocol} port {port.number}{f' ({port.name})' if port.name else ''} "
                                    f"of {entry.object_text} cannot be forwarded: Kubernetes port-forward "
                                    "carries TCP only.")
    kind, name = target_of(entry.row)
    notes: list[str] = []
    if (kind, name) != entry.row.key:
        notes.append(f"The rule names {kind.short}/{name}, which owns {entry.object_text}, so it keeps "
                     "working when the pod is replaced.")
    local = probe(port.number)
    if local.port is None:
        notes.insert(0, f"No local port is free for it: {local.problem}")
    elif local.fell_back:
        why = _why_not(local.reasons) or f"{port.number} is taken"
        notes.insert(0, f"Local port {local.port}: {why}, so kubetray proposes the port Skaffold would pick.")
    else:
        notes.insert(0, f"Local port {local.port}, the same as the port.")
    draft = Draft(kind, name, port.number, namespace,
                  local.port if local.port is not None and local.port != port.number else None,
                  label_for(kind, name, port), scheme_for(port))
    return Proposal(draft, local.port, " ".join(notes))


def with_local_port(proposal: Proposal, local_port: int, probe: Probe) -> Proposal:
    """The user typed their own local port: keep it, and say if the tunnel would fall back from it."""
    draft = proposal.draft
    if draft is None:
        return proposal
    local = probe(local_port)
    text = f"Local port {local_port}."
    if local.port is None:
        text = f"Local port {local_port}: {local.problem}"
    elif local.fell_back:
        text = (f"Local port {local_port} is taken now ({_why_not(local.reasons)}); a tunnel starting "
                f"now would fall back to {local.port}.")
    chosen = None if local_port == draft.port else local_port
    return Proposal(Draft(draft.resource_type, draft.resource_name, draft.port, draft.namespace, chosen,
                          draft.name, draft.scheme, draft.address), local_port, text)


def already_forwarded(draft: Draft, tunnels: Iterable[TunnelView]) -> str | None:
    """A sentence when one of kubetray's tunnels already forwards the draft's target, else None."""
    for view in tunnels:
        rule = view.rule
        if (rule.resource_type, rule.resource_name, rule.namespace, str(rule.port)) == (
                draft.resource_type, draft.resource_name, draft.namespace, str(draft.port)):
            where = f" on local port {view.local_port}" if view.local_port is not None else ""
            return f"{rule.label} already forwards it{where}; Save adds another rule for it."
    return None

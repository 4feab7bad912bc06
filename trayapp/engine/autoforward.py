"""Automatic rules at work: watch the services and pods `auto:` looks at, and hand the rules that
discovery.py finds to the context run whenever they change.

Namespace "*" watches every namespace; when the user may not list them all (403), it falls back
to the context's namespace and says so once.

`AutoForwarder.guard` is the line a cluster object may not cross, applied by the context run to
every automatic rule: loopback only, and the ports the user's own rules name are reserved (the
forwarder also refuses ports below 1024 to them; engine/forward/ports.py `refusal_for`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from trayapp.engine.discovery import ALL_NAMESPACES, Settings, discover
from trayapp.engine.kube import ClusterCache
from trayapp.errors import AuthError, KubetrayError
from trayapp.model import DEFAULT_ADDRESS, Event, EventKind, Rule, is_loopback

log = logging.getLogger(__name__)

_KINDS = ("services", "pods")


def namespaces_to_watch(settings: Settings, context_namespace: str) -> set[str | None]:
    """Which namespaces to watch (None: all of them) for these settings."""
    scope = settings.namespace or context_namespace
    wanted: set[str | None] = set()
    if settings.skaffold or settings.annotation:
        wanted.add(None if scope == ALL_NAMESPACES else scope)
    for entry in settings.selectors:
        namespace = entry.namespace or scope
        wanted.add(None if namespace == ALL_NAMESPACES else namespace)
    return {None} if None in wanted else wanted


class AutoForwarder:
    """A ClusterCache subscriber that turns the watched objects into automatic rules."""

    def __init__(
        self,
        settings: Settings,
        context: str,
        context_namespace: str,
        cache: ClusterCache,
        publish: Callable[[Event], None],
        set_rules: Callable[[Sequence[Rule]], None],
    ) -> None:
        self.settings = settings
        self.context = context
        self.context_namespace = context_namespace
        self._cache = cache
        self._publish = publish
        self._set_rules = set_rules
        self._namespaces = namespaces_to_watch(settings, context_namespace)
        self._notes_told: set[str] = set()
        self._fell_back = False

    @staticmethod
    def guard(rules: Iterable[Rule], user_rules: Iterable[Rule]) -> tuple[Rule, ...]:
        """Automatic rules as they may run beside these user rules.

        Always on loopback (a cluster object never opens a port to the network), and with the
        local ports the user's rules ask for reserved, so the forwarder falls back from them as
        from a busy port, with a fallback event that says why.
        """
        reserved = frozenset(port for rule in user_rules if (port := rule.requested_local_port) is not None)
        return tuple(
            replace(rule, auto=True, reserved_ports=reserved,
                    address=rule.address if is_loopback(rule.address) else DEFAULT_ADDRESS)
            for rule in rules
        )

    def start(self) -> None:
        for namespace in self._namespaces:
            self._cache.subscribe(self, _KINDS, namespace)
        self.cluster_changed()

    def stop(self) -> None:
        self._cache.unsubscribe(self)

    def cluster_changed(self) -> None:
        if not all(self._cache.synced(_KINDS, ns) for ns in self._namespaces):
            return
        services = [obj for ns in self._namespaces for obj in self._cache.list("services", ns)]
        pods = [obj for ns in self._namespaces for obj in self._cache.list("pods", ns)]
        # After a fall-back only the context's namespace is watched, so "*" sees just that one.
        # ReplicaSets and Jobs are read only if the engine already watches them (for a rule that
        # names a workload); discovery knows Deployments without them (see workload_of).
        rules, notes = discover(self.settings, self.context_namespace, services, pods, self._cache.get)
        for note in notes:
            if note not in self._notes_told:  # each note once, not on every watch event
                self._notes_told.add(note)
                self._publish(Event(EventKind.WAITING, note, context=self.context))
        self._set_rules(rules)

    def cluster_failed(self, error: KubetrayError) -> None:
        if (isinstance(error, AuthError) and error.status == 403 and None in self._namespaces
                and not self._fell_back):
            self._fell_back = True
            self._cache.unsubscribe(self)
            self._namespaces = {self.context_namespace}
            self._publish(Event(
                EventKind.WAITING,
                f"Context {self.context!r} may not list services and pods in all namespaces, so automatic "
                f"forwarding looks only in namespace {self.context_namespace!r}.",
                context=self.context,
            ))
            self.start()


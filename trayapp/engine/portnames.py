"""What the named service ports of a context's rules stand for, kept current from the watch cache.

A rule may give a service port by name (`port: http`) and another by number (`port: 80`); whether
they are one forward only the service can say (resolve.py `one_per_forward`). This watches the
services of the namespaces where such a pair exists and tells the context run when a name's
number becomes known or changes, so the run can forward the pair once. What it learned is kept
while the run lives: a service deleted and created again usually keeps its ports, and forgetting
would start the repeated rule for the time the service is away.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from trayapp.engine.forward import PortNumbers, service_port_numbers
from trayapp.engine.kube import ClusterCache
from trayapp.errors import KubetrayError

log = logging.getLogger(__name__)

_KINDS = ("services",)


class PortNames:
    """A ClusterCache subscriber; `numbers` and `unsynced` are what `one_per_forward` takes."""

    def __init__(self, cache: ClusterCache, on_change: Callable[[], None]) -> None:
        self._cache = cache
        self._on_change = on_change
        self._namespaces: set[str] = set()
        self._numbers: dict[tuple[str, str, str], int] = {}
        self._unsynced: set[str] = set()
        self._given_up: set[str] = set()  # listing failed before it ever worked: decide without it
        self._closed = False

    @property
    def numbers(self) -> PortNumbers:
        return self._numbers

    @property
    def unsynced(self) -> set[str]:
        return self._unsynced

    def watch(self, namespaces: Iterable[str]) -> None:
        """Follow the services of these namespaces too (those already followed stay)."""
        new = set(namespaces) - self._namespaces
        if not new or self._closed:  # closed: the run stopped, its cache with it
            return
        self._namespaces |= new
        for namespace in new:
            self._cache.subscribe(self, _KINDS, namespace)
        self._read()

    def _read(self) -> bool:
        """Take in what the cache knows now; True when anything changed."""
        numbers = dict(self._numbers)
        unsynced = set()
        for namespace in self._namespaces:
            if not self._cache.synced(_KINDS, namespace):
                if namespace not in self._given_up:
                    unsynced.add(namespace)
                continue
            for service in self._cache.list("services", namespace):
                numbers.update(service_port_numbers(namespace, service))
        changed = numbers != self._numbers or unsynced != self._unsynced
        self._numbers, self._unsynced = numbers, unsynced
        return changed

    # ClusterCache subscriber
    def cluster_changed(self) -> None:
        if self._read():
            self._on_change()

    def cluster_failed(self, error: KubetrayError) -> None:
        # The tunnels report the error. A rule held back for a namespace whose services cannot
        # be listed (403, a server away at start) would stay hidden for good: start it instead,
        # and forward the pair once if the list works later.
        if self._unsynced:
            self._given_up |= self._unsynced
            self._unsynced = set()
            self._on_change()

    def close(self) -> None:
        self._closed = True
        self._cache.unsubscribe(self)

"""The cluster as the engine sees it: one informer per (kind, namespace) that some tunnel needs.

Tunnels subscribe to the kinds their rule depends on; a change wakes only those subscribers, and
several changes in one loop iteration wake each subscriber once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from trayapp.engine.kube.api import KubeApi
from trayapp.engine.kube.informer import Informer
from trayapp.errors import KubetrayError

log = logging.getLogger(__name__)


class Subscriber(Protocol):
    def cluster_changed(self) -> None: ...
    def cluster_failed(self, error: KubetrayError) -> None: ...


class ClusterCache:
    def __init__(self, api: KubeApi, on_error: Callable[[Informer, KubetrayError], None] | None = None) -> None:
        self.api = api
        self._on_error = on_error
        # namespace None: one informer over all namespaces (automatic rules with namespace "*")
        self._informers: dict[tuple[str, str | None], Informer] = {}
        self._subscribers: dict[tuple[str, str | None], set[Subscriber]] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._dirty: set[Subscriber] = set()
        self._flush_scheduled = False

    # ObjectSource, for resolve.py
    def get(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        informer = self._informers.get((kind, namespace))
        return informer.get(name) if informer else None

    def list(self, kind: str, namespace: str | None) -> Sequence[Mapping[str, Any]]:
        informer = self._informers.get((kind, namespace))
        return list(informer.objects.values()) if informer else []

    def synced(self, kinds: Sequence[str], namespace: str | None) -> bool:
        return all(
            (informer := self._informers.get((kind, namespace))) is not None and informer.synced.is_set()
            for kind in kinds
        )

    def subscribe(self, subscriber: Subscriber, kinds: Sequence[str], namespace: str | None) -> None:
        for kind in kinds:
            key = (kind, namespace)
            self._subscribers.setdefault(key, set()).add(subscriber)
            if key not in self._informers:
                informer = Informer(self.api, kind, namespace, self._changed, self._failed)
                self._informers[key] = informer
                informer.start()

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget the subscriber; an informer nobody needs any more stops watching."""
        for key, subscribers in list(self._subscribers.items()):
            subscribers.discard(subscriber)
            if not subscribers:
                del self._subscribers[key]
                informer = self._informers.pop(key, None)
                if informer is not None:
                    task = asyncio.get_running_loop().create_task(informer.stop(), name=f"{informer.name}:stop")
                    self._stopping.add(task)
                    task.add_done_callback(self._stopping.discard)
        self._dirty.discard(subscriber)

    def relist(self, kinds: Sequence[str], namespace: str | None) -> None:
        """List these kinds again at once (a dial found a pod gone that the cache still shows)."""
        for kind in kinds:
            informer = self._informers.get((kind, namespace))
            if informer is not None:
                informer.restart()

    def restart_all(self) -> None:
        """Every watch starts over with a fresh list: after sleep or a network change."""
        for informer in self._informers.values():
            informer.restart()

    def _changed(self, informer: Informer) -> None:
        self._dirty.update(self._subscribers.get((informer.kind, informer.namespace), ()))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, set()
        for subscriber in dirty:
            # One subscriber's bug must not keep the others from hearing about the change.
            try:
                subscriber.cluster_changed()
            except Exception:
                log.exception("a subscriber failed to handle a cluster change: %r", subscriber)

    def _failed(self, informer: Informer, error: KubetrayError) -> None:
        if self._on_error is not None:
            try:
                self._on_error(informer, error)
            except Exception:
                log.exception("the cluster error handler failed on: %s", error)
        for subscriber in list(self._subscribers.get((informer.kind, informer.namespace), ())):
            try:
                subscriber.cluster_failed(error)
            except Exception:
                log.exception("a subscriber failed to handle a cluster error: %r", subscriber)

    async def stop(self) -> None:
        informers, self._informers = list(self._informers.values()), {}
        self._subscribers.clear()
        self._dirty.clear()
        await asyncio.gather(*(informer.stop() for informer in informers), *self._stopping)


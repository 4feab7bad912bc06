"""The object store: every object of the simulated cluster, the resourceVersion counter, a bounded
history of changes and the fan-out of changes to watches.

One cluster-wide counter orders every change, as etcd's revision does. The history lets a watch
resume from an older resourceVersion; an RV that fell out of the window is Expired (410).
Everything runs on the simulator's event loop, so there are no locks; watchers are called
synchronously and must not block.
"""

from __future__ import annotations

import builtins
import copy
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from trayapp.selectors import EVERYTHING
from trayapp.sim.objects import Kind, Obj, kind_of, stamp_new
from trayapp.sim.selectors import FieldSelector, LabelSelector

Key = tuple[str, str, str]  # (plural, namespace or "", name)


class StoreError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


class Expired(StoreError):
    def __init__(self, rv: int, oldest: int) -> None:
        super().__init__(410, "Expired", f"too old resource version: {rv} ({oldest})")


@dataclass(frozen=True)
class Change:
    rv: int
    type: str  # ADDED, MODIFIED or DELETED
    plural: str
    namespace: str
    old: Obj | None  # the state before, to tell when an object enters or leaves a selector
    new: Obj  # for DELETED: the last state, stamped with the deletion's resourceVersion


@dataclass(frozen=True)
class WatchFilter:
    plural: str
    namespace: str | None = None
    labels: LabelSelector = field(default=EVERYTHING)
    fields: FieldSelector = field(default_factory=FieldSelector)

    def matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        if self.namespace is not None and obj["metadata"].get("namespace", "") != self.namespace:
            return False
        return self.labels.matches(obj["metadata"].get("labels")) and self.fields.matches(obj)

    def event_for(self, change: Change) -> tuple[str, Obj] | None:
        """The event this watch sees: objects moving into or out of the selector become
        ADDED or DELETED, as with a real API server."""
        if change.plural != self.plural:
            return None
        was, now = self.matches(change.old), self.matches(change.new)
        if change.type == "DELETED":
            return ("DELETED", change.new) if was or now else None
        if was and now:
            return change.type, change.new
        if now:
            return "ADDED", change.new
        if was:
            return "DELETED", change.new
        return None


Sink = Callable[[str, Obj], None]


@dataclass(eq=False)
class Watcher:
    filter: WatchFilter
    sink: Sink


class Store:
    def __init__(self, history_limit: int = 1000) -> None:
        self._objects: dict[Key, Obj] = {}
        self._history: deque[Change] = deque(maxlen=history_limit)
        self._watchers: list[Watcher] = []
        self._listeners: list[Callable[[Change], None]] = []
        # Admission hooks fill fields the API server's callers would (the kubelet's first status).
        self._admitters: dict[str, Callable[[Obj], None]] = {}
        self.rv = 1
        # Every change with rv > _oldest is still in the history.
        self._oldest = 1

    # -- reading -------------------------------------------------------------------------
    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        k = kind_of(kind)
        obj = self._objects.get((k.plural, namespace if k.namespaced else "", name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(self, kind: str, namespace: str | None = None,
             labels: LabelSelector | None = None, fields: FieldSelector | None = None) -> builtins.list[Obj]:
        f = WatchFilter(kind_of(kind).plural, namespace, labels or EVERYTHING, fields or FieldSelector())
        out = [copy.deepcopy(o) for (plural, _, _), o in self._objects.items()
               if plural == f.plural and f.matches(o)]
        out.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return out

    # -- writing -------------------------------------------------------------------------
    def create(self, obj: Obj, kind: str | None = None) -> Obj:
        k = kind_of(kind or obj["kind"])
        new = stamp_new(obj, k)
        if k.plural in self._admitters:
            self._admitters[k.plural](new)
        key = self._key(k, new)
        if key in self._objects:
            raise StoreError(409, "AlreadyExists",
                             f'{k.plural} "{key[2]}" already exists')
        return self._commit("ADDED", k, key, None, new)

    def update(self, obj: Obj) -> Obj:
        k = kind_of(obj["kind"])
        key = self._key(k, obj)
        old = self._objects.get(key)
        if old is None:
            raise StoreError(404, "NotFound", f'{k.plural} "{key[2]}" not found')
        new = copy.deepcopy(obj)
        if "generation" in old["metadata"] and new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = old["metadata"]["generation"] + 1
        if new == old:
            return copy.deepcopy(old)
        return self._commit("MODIFIED", k, key, old, new)

    def delete(self, kind: str, namespace: str, name: str) -> Obj | None:
        k = kind_of(kind)
        key = (k.plural, namespace if k.namespaced else "", name)
        old = self._objects.get(key)
        if old is None:
            return None
        return self._commit("DELETED", k, key, old, copy.deepcopy(old))

    def _key(self, k: Kind, obj: Obj) -> Key:
        meta = obj["metadata"]
        return (k.plural, meta.get("namespace", "") if k.namespaced else "", meta["name"])

    def _commit(self, type_: str, k: Kind, key: Key, old: Obj | None, new: Obj) -> Obj:
        self.rv += 1
        new["metadata"]["resourceVersion"] = str(self.rv)
        if type_ == "DELETED":
            del self._objects[key]
        else:
            self._objects[key] = new
        if len(self._history) == self._history.maxlen:
            self._oldest = self._history[0].rv
        change = Change(self.rv, type_, k.plural, key[1], old, new)
        self._history.append(change)
        for w in list(self._watchers):
            self._deliver(w, change)
        for listener in list(self._listeners):
            listener(change)
        return copy.deepcopy(new)

    # -- watching ------------------------------------------------------------------------
    def watch(self, filter_: WatchFilter, sink: Sink, since: int | None) -> Watcher:
        """Replay what the watch missed, then subscribe it, with no gap in between.

        `since` None means "from now, starting with the current state" (ADDED for each object);
        otherwise every change after `since` is replayed, or Expired is raised.
        """
        if since is not None and since < self._oldest:
            raise Expired(since, self._oldest)
        watcher = Watcher(filter_, sink)
        if since is None:
            for obj in self.list(filter_.plural, filter_.namespace, filter_.labels, filter_.fields):
                sink("ADDED", obj)
        else:
            for change in self._history:
                if change.rv > since:
                    self._deliver(watcher, change)
        self._watchers.append(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        if watcher in self._watchers:
            self._watchers.remove(watcher)

    def on_change(self, listener: Callable[[Change], None]) -> None:
        self._listeners.append(listener)

    def admit(self, kind: str, hook: Callable[[Obj], None]) -> None:
        self._admitters[kind_of(kind).plural] = hook

    def compact(self) -> None:
        """Forget the history, so that any older resourceVersion is Expired (like etcd compaction)."""
        self._history.clear()
        self._oldest = self.rv

    @staticmethod
    def _deliver(watcher: Watcher, change: Change) -> None:
        event = watcher.filter.event_for(change)
        if event is not None:
            watcher.sink(event[0], copy.deepcopy(event[1]))

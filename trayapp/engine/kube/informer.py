"""A watched cache of one kind in one namespace: list, then watch from the list's resourceVersion.

The cache calls `on_change` after each change, so tunnels re-resolve when the cluster moves and
never poll. A watch that ends normally resumes from the last resourceVersion seen; 410 Gone lists
again; any other failure retries with capped, jittered backoff while the cache keeps its last view.
A server that is away (unreachable, silent, 429/503) is reported through `on_error`, and once it
answers again `on_change` is called even if nothing changed, so subscribers can drop the warning.
Objects whose shape the engine cannot read are logged and skipped (objshape.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from trayapp.engine.backoff import Backoff
from trayapp.engine.kube.api import KubeApi
from trayapp.engine.kube.objshape import shape_problem
from trayapp.errors import ApiBusy, ApiError, ApiUnreachable, Gone, KubetrayError, ResponseTooLarge

log = logging.getLogger(__name__)

ChangeCallback = Callable[["Informer"], None]
ErrorCallback = Callable[["Informer", KubetrayError], None]

# A watch that stayed open this long was healthy: the next failure starts the backoff over.
STABLE_AFTER_SECONDS = 30.0
# The longest kubetray honours a server's Retry-After; past it, it asks again anyway.
RETRY_AFTER_CAP_SECONDS = 60.0
# Malformed objects logged as warnings per informer; the rest go to debug so a hostile server
# cannot flood the log.
_WARN_MALFORMED = 10
_EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK"})


class Informer:
    def __init__(
        self,
        api: KubeApi,
        kind: str,
        namespace: str | None,
        on_change: ChangeCallback,
        on_error: ErrorCallback | None = None,
        backoff: Backoff | None = None,
        *,
        stable_after: float = STABLE_AFTER_SECONDS,
        retry_after_cap: float = RETRY_AFTER_CAP_SECONDS,
    ) -> None:
        self.api = api
        self.kind = kind
        self.namespace = namespace
        self.objects: dict[str, Mapping[str, Any]] = {}
        self.synced = asyncio.Event()
        self.last_error: KubetrayError | None = None
        self.malformed = 0  # objects skipped because their shape was wrong, over the informer's life
        self._on_change = on_change
        self._on_error = on_error
        self._backoff = backoff or Backoff()
        self._stable_after = stable_after
        self._retry_after_cap = retry_after_cap
        self._task: asyncio.Task[None] | None = None
        self._resource_version: str | None = None
        # Set by the current watch: when it opened, and whether it delivered anything.
        self._opened_at: float | None = None
        self._delivered = False

    @property
    def name(self) -> str:
        return f"informer:{self.namespace or '*'}/{self.kind}"

    def _key(self, obj: Mapping[str, Any]) -> str | None:
        """Objects by name; across all namespaces names repeat, so there by namespace/name.

        None (after logging) for an object the engine cannot read.
        """
        problem = shape_problem(self.kind, obj)
        if problem is not None:
            self._skip(obj, problem)
            return None
        metadata = obj["metadata"]
        name = metadata["name"]
        return name if self.namespace is not None else f"{metadata.get('namespace') or ''}/{name}"

    def _skip(self, obj: object, problem: str) -> None:
        self.malformed += 1
        metadata = obj.get("metadata") if isinstance(obj, dict) else None
        name = metadata.get("name") if isinstance(metadata, dict) else None
        shown = repr(name)[:80] if isinstance(name, str) else "(unnamed)"
        level = logging.WARNING if self.malformed <= _WARN_MALFORMED else logging.DEBUG
        log.log(level, "%s: skipped the object %s because %s", self.name, shown, problem)
        if self.malformed == _WARN_MALFORMED:
            log.warning("%s: further malformed objects are logged at debug level only", self.name)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    def restart(self) -> None:
        """Drop the current list or watch and list again now: the view may be stale, the watch dead.

        Called when a dial says a pod is gone that the cache still holds, and after sleep or a
        network change, when every open connection may be silently dead.
        """
        old = self._task
        if old is None:
            return
        old.cancel()
        self._task = asyncio.get_running_loop().create_task(self._run_after(old), name=self.name)

    async def _run_after(self, old: asyncio.Task[None]) -> None:
        await asyncio.gather(old, return_exceptions=True)
        await self._run()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def get(self, name: str) -> Mapping[str, Any] | None:
        return self.objects.get(name)

    async def _run(self) -> None:
        failures = 0
        self._resource_version = None
        while True:
            try:
                if self._resource_version is None:
                    self._resource_version = await self._relist()
                await self._watch(self._resource_version)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Gone:
                log.debug("%s: resourceVersion %s expired; listing again", self.name, self._resource_version)
                self._resource_version = None
            except Exception as exc:  # anything unexpected is reported and retried, never fatal
                if not isinstance(exc, KubetrayError):
                    log.warning("%s failed unexpectedly", self.name, exc_info=True)
                    exc = ApiError(f"Watching {self.kind} in namespace {self.namespace!r} failed: {exc}.")
                if self._watch_was_healthy():
                    failures = 0  # one drop after a good run is not an outage: retry fast
                level = logging.WARNING if isinstance(exc, ResponseTooLarge) else logging.INFO
                log.log(level, "%s: %s", self.name, exc)
                self._report(exc)
                await asyncio.sleep(self._delay(exc, failures))
                failures += 1
                if isinstance(exc, ApiError) and exc.status and not isinstance(exc, ApiUnreachable):
                    self._resource_version = None  # a refusal: the next attempt lists from scratch
            finally:
                self._opened_at = None
                self._delivered = False

    def _watch_was_healthy(self) -> bool:
        if self._delivered:
            return True
        opened = self._opened_at
        return opened is not None and asyncio.get_running_loop().time() - opened >= self._stable_after

    def _delay(self, exc: KubetrayError, failures: int) -> float:
        delay = self._backoff.delay(failures)
        if isinstance(exc, ApiBusy) and exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self._retry_after_cap))
        return delay

    def _recovered(self) -> None:
        """The server answered again: subscribers showing the failure hear that it is over."""
        if self.last_error is not None:
            self.last_error = None
            self._on_change(self)

    async def _relist(self) -> str:
        listed = await self.api.list(self.kind, self.namespace)
        items = {key: item for item in listed.get("items") or [] if (key := self._key(item)) is not None}
        # After a failure, tell subscribers even if nothing changed: they may be showing it.
        changed = items != self.objects or self.last_error is not None
        first = not self.synced.is_set()
        self.objects = items
        self.last_error = None
        self.synced.set()
        if changed or first:
            self._on_change(self)
        metadata = listed.get("metadata")
        version = metadata.get("resourceVersion") if isinstance(metadata, dict) else None
        return str(version or "")

    def _opened(self) -> None:
        self._opened_at = asyncio.get_running_loop().time()
        self._recovered()

    async def _watch(self, resource_version: str) -> None:
        async for event in self.api.watch(self.kind, self.namespace, resource_version, on_open=self._opened):
            self._delivered = True
            metadata = event.object.get("metadata")
            version = metadata.get("resourceVersion") if isinstance(metadata, dict) else None
            if isinstance(version, str) and version:
                self._resource_version = version
            if event.type not in _EVENT_TYPES:
                log.debug("%s: ignored a watch event of type %r", self.name, event.type[:40])
                continue
            if event.type == "BOOKMARK":
                continue
            # A deletion needs only the name; the body of what is going away does not matter.
            key = self._deleted_key(event.object) if event.type == "DELETED" else self._key(event.object)
            if key is None:
                continue
            if event.type == "DELETED":
                if self.objects.pop(key, None) is None:
                    continue
            else:
                self.objects[key] = event.object
            self._on_change(self)

    def _deleted_key(self, obj: Mapping[str, Any]) -> str | None:
        metadata = obj.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
        if not isinstance(name, str) or not isinstance(namespace, str | None):
            self._skip(obj, "it has no name")
            return None
        return name if self.namespace is not None else f"{namespace or ''}/{name}"

    def _report(self, exc: KubetrayError) -> None:
        self.last_error = exc
        log.debug("%s: %s", self.name, exc)
        if self._on_error is not None:
            self._on_error(self, exc)

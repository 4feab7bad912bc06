"""A watched cache of one kind in one namespace: list, then watch from the list's resourceVersion.

The cache calls `on_change` after each change, so tunnels re-resolve when the cluster moves and
never poll. A watch that ends normally resumes from the last resourceVersion seen; 410 Gone lists
again; any other failure retries with capped, jittered backoff while the cache keeps its last view.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from trayapp.engine.backoff import Backoff
from trayapp.engine.kube import KubeApi
from trayapp.errors import ApiError, Gone, KubetrayError

log = logging.getLogger(__name__)

ChangeCallback = Callable[["Informer"], None]
ErrorCallback = Callable[["Informer", KubetrayError], None]


class Informer:
    def __init__(
        self,
        api: KubeApi,
        kind: str,
        namespace: str | None,
        on_change: ChangeCallback,
        on_error: ErrorCallback | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.api = api
        self.kind = kind
        self.namespace = namespace
        self.objects: dict[str, Mapping[str, Any]] = {}
        self.synced = asyncio.Event()
        self.last_error: KubetrayError | None = None
        self._on_change = on_change
        self._on_error = on_error
        self._backoff = backoff or Backoff()
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return f"informer:{self.namespace or '*'}/{self.kind}"

    def _key(self, obj: Mapping[str, Any]) -> str | None:
        """Objects by name; across all namespaces names repeat, so there by namespace/name."""
        metadata = obj.get("metadata") or {}
        name = metadata.get("name")
        if not name:
            return None
        return name if self.namespace is not None else f"{metadata.get('namespace', '')}/{name}"

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
        resource_version: str | None = None
        while True:
            try:
                if resource_version is None:
                    resource_version = await self._relist()
                resource_version = await self._watch(resource_version)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Gone:
                log.debug("%s: resourceVersion %s expired; listing again", self.name, resource_version)
                resource_version = None
            except Exception as exc:  # anything unexpected is reported and retried, never fatal
                if not isinstance(exc, KubetrayError):
                    log.warning("%s failed unexpectedly", self.name, exc_info=True)
                    exc = ApiError(f"Watching {self.kind} in namespace {self.namespace!r} failed: {exc}.")
                self._report(exc)
                await asyncio.sleep(self._backoff.delay(failures))
                failures += 1
                resource_version = None if isinstance(exc, ApiError) and exc.status else resource_version

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
        return str(listed.get("metadata", {}).get("resourceVersion", ""))

    async def _watch(self, resource_version: str) -> str:
        async for event in self.api.watch(self.kind, self.namespace, resource_version):
            metadata = event.object.get("metadata") or {}
            resource_version = str(metadata.get("resourceVersion") or resource_version)
            if event.type == "BOOKMARK":
                continue
            key = self._key(event.object)
            if key is None:
                continue
            if event.type == "DELETED":
                self.objects.pop(key, None)
            else:
                self.objects[key] = event.object
            self.last_error = None
            self._on_change(self)
        return resource_version

    def _report(self, exc: KubetrayError) -> None:
        self.last_error = exc
        log.debug("%s: %s", self.name, exc)
        if self._on_error is not None:
            self._on_error(self, exc)

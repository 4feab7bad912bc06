"""Run simulated clusters on their own event loop in a background thread, for synchronous code
(the official kubernetes client in tests, `kubetray --demo`), plus `Simulator` for several clusters
behind one kubeconfig.

Control calls from other threads go through `SimThread.call` (or a `ClusterProxy`), which runs
them on the simulator's loop and waits for the result.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from trayapp.sim.cluster import SimCluster
from trayapp.sim.kubeconfig import write_kubeconfig

T = TypeVar("T")


class Simulator:
    """Several clusters, one per kubeconfig context."""

    def __init__(self, clusters: Mapping[str, SimCluster] | None = None) -> None:
        self.clusters: dict[str, SimCluster] = dict(clusters or {})

    def add(self, context: str, cluster: SimCluster) -> SimCluster:
        self.clusters[context] = cluster
        return cluster

    def __getitem__(self, context: str) -> SimCluster:
        return self.clusters[context]

    async def start(self) -> Simulator:
        for cluster in self.clusters.values():
            await cluster.start()
        return self

    async def stop(self) -> None:
        for cluster in self.clusters.values():
            await cluster.stop()

    def write_kubeconfig(self, path: str | Path, current: str | None = None,
                         namespaces: Mapping[str, str] | None = None) -> Path:
        entries = [c.kubeconfig_entry(context, (namespaces or {}).get(context, "default"))
                   for context, c in self.clusters.items()]
        return write_kubeconfig(path, entries, current)


class SimThread:
    """An event loop in a daemon thread that owns the given clusters (or Simulator)."""

    def __init__(self, target: SimCluster | Simulator, *, start_timeout: float = 10.0) -> None:
        self.target = target
        self._timeout = start_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop_future: concurrent.futures.Future[None] | None = None

    def start(self) -> SimThread:
        if self._thread is not None:  # run_in_thread() started it; `with` must not start it again
            return self
        self._thread = threading.Thread(target=self._run, name="kubetray-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._timeout):
            raise RuntimeError("the simulator did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        self._error: BaseException | None = None
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.target.start())
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that called start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self.target.stop())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self._timeout)
        self._loop = None

    def __enter__(self) -> SimThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` on the simulator's loop (awaiting it if it is a coroutine
        function) and return its result here."""
        assert self._loop is not None, "the simulator thread is not running"

        async def run() -> Any:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(self._timeout)

    def proxy(self, cluster: SimCluster | None = None) -> ClusterProxy:
        target = cluster if cluster is not None else self.target
        assert isinstance(target, SimCluster)
        return ClusterProxy(self, target)

    @property
    def cluster(self) -> ClusterProxy:
        return self.proxy()


class ClusterProxy:
    """A SimCluster seen from another thread: methods run on the simulator's loop."""

    def __init__(self, thread: SimThread, cluster: SimCluster) -> None:
        self._thread = thread
        self._cluster = cluster

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._cluster, name)
        if callable(value):
            return lambda *a, **kw: self._thread.call(value, *a, **kw)
        return value


def run_in_thread(target: SimCluster | Simulator) -> SimThread:
    """Start `target` on a background loop; use as a context manager or call `.stop()`."""
    return SimThread(target).start()

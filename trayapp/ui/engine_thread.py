"""The engine's asyncio loop in its own thread, for a GUI that owns the main thread.

The tray starts it once, hands commands to it with `submit()` (thread-safe, returns a
concurrent Future) and stops it on quit; `stop()` sets the engine's stop event and waits for a
clean shutdown, so listeners are closed before the process exits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Main = Callable[[asyncio.Event], Coroutine[Any, Any, object]]


class EngineThread:
    def __init__(self, name: str = "kubetray-engine") -> None:
        self._name = name
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        # Set when main returns or raises: the tray quits on an engine that died.
        self.finished: concurrent.futures.Future[object] = concurrent.futures.Future()

    def start(self, main: Main) -> None:
        """Run `main(stop)` on a new loop in a new thread; returns once the loop is running."""
        if self._thread is not None:
            raise RuntimeError("the engine thread was already started")
        self._thread = threading.Thread(target=self._run, args=(main,), name=self._name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self, main: Main) -> None:
        async def body() -> object:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            return await main(self._stop)

        try:
            result = asyncio.run(body())
        except BaseException as exc:  # the tray shows why the engine ended instead of hanging
            log.exception("the engine stopped with an error")
            self._ready.set()
            self.finished.set_exception(exc)
        else:
            self.finished.set_result(result)

    @property
    def running(self) -> bool:
        return self._loop is not None and not self.finished.done()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run a coroutine on the engine loop from any thread."""
        if self._loop is None or self.finished.done():
            coro.close()
            failed: concurrent.futures.Future[T] = concurrent.futures.Future()
            failed.set_exception(RuntimeError("the engine is not running"))
            return failed
        try:
            return asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError:  # the loop closed between the check above and now
            coro.close()
            failed = concurrent.futures.Future()
            failed.set_exception(RuntimeError("the engine is not running"))
            return failed

    def stop(self, timeout: float = 10.0) -> bool:
        """Ask the engine to stop and wait for it; False if it did not finish within `timeout`."""
        if self._thread is None:
            return True
        if self._loop is not None and self._stop is not None and not self.finished.done():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:
                pass  # the loop closed meanwhile: nothing left to stop
        self._thread.join(timeout)
        return not self._thread.is_alive()

"""Sleep, wake and network signals on macOS, through pyobjc. Written and reviewed, not run here.

- Wake and sleep: NSWorkspace's DidWake and WillSleep notifications. NSWorkspace posts them on
  the main thread's run loop, which the tray's Qt event loop runs; `kubetray --headless` runs
  asyncio on the main thread instead and does not see them, and relies on the network change
  that a wake brings (the interfaces come back and the global IPv4/IPv6 state is set again).
- Network: SystemConfiguration's dynamic store, notified when State:/Network/Global/IPv4 or
  IPv6 (the primary interface, router and addresses) changes. Its run-loop source is scheduled
  on a thread of our own that runs a CFRunLoop, so it works in both modes.
Callbacks arrive on other threads and are handed to the event loop with call_soon_threadsafe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

from trayapp.platform.power import Emit, Reason, SourceUnavailable

# Imported only on its own OS (power.default_source); type checkers skip it elsewhere.
assert sys.platform == "darwin"

log = logging.getLogger(__name__)

WATCHED_KEYS = ["State:/Network/Global/IPv4", "State:/Network/Global/IPv6"]
START_TIMEOUT = 2.0


class MacSource:
    name = "NSWorkspace and the SystemConfiguration dynamic store"

    def __init__(self) -> None:
        self._observers: list[Any] = []
        self._center: Any = None
        self._runloop: Any = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    async def start(self, emit: Emit) -> None:
        try:
            import AppKit  # noqa: F401 - pyobjc-framework-Cocoa
            import SystemConfiguration  # noqa: F401 - pyobjc-framework-SystemConfiguration
        except ImportError:
            raise SourceUnavailable(
                "pyobjc's Cocoa and SystemConfiguration frameworks are not installed.") from None
        loop = asyncio.get_running_loop()

        def post(reason: Reason) -> None:  # from any thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: kubetray is stopping
                loop.call_soon_threadsafe(emit, reason)

        self._observe_workspace(post)
        ready = threading.Event()
        failure: list[str] = []
        self._thread = threading.Thread(target=self._run_store, args=(post, ready, failure),
                                        name="power:dynamic-store", daemon=True)
        self._thread.start()
        if not await asyncio.to_thread(ready.wait, START_TIMEOUT) or failure:
            await self.aclose()
            raise SourceUnavailable(failure[0] if failure else "the dynamic store did not start.")

    def _observe_workspace(self, post: Any) -> None:
        from AppKit import NSWorkspace, NSWorkspaceDidWakeNotification, NSWorkspaceWillSleepNotification

        self._center = NSWorkspace.sharedWorkspace().notificationCenter()
        for name, reason in ((NSWorkspaceDidWakeNotification, Reason.WOKE),
                             (NSWorkspaceWillSleepNotification, Reason.SLEEPING)):
            # queue None: the block runs on the posting thread (the main one); post() hops threads
            token = self._center.addObserverForName_object_queue_usingBlock_(
                name, None, None, _observer(post, reason))
            self._observers.append(token)

    def _run_store(self, post: Any, ready: threading.Event, failure: list[str]) -> None:
        from CoreFoundation import CFRunLoopAddSource, CFRunLoopGetCurrent, CFRunLoopRunInMode, kCFRunLoopDefaultMode
        from SystemConfiguration import (
            SCDynamicStoreCreate,
            SCDynamicStoreCreateRunLoopSource,
            SCDynamicStoreSetNotificationKeys,
        )

        def changed(_store: Any, _keys: Any, _info: Any) -> None:
            post(Reason.NETWORK)

        try:
            store = SCDynamicStoreCreate(None, "kubetray", changed, None)
            if store is None or not SCDynamicStoreSetNotificationKeys(store, WATCHED_KEYS, None):
                failure.append("the SystemConfiguration dynamic store refused the watch.")
                return
            source = SCDynamicStoreCreateRunLoopSource(None, store, 0)
            self._runloop = CFRunLoopGetCurrent()
            CFRunLoopAddSource(self._runloop, source, kCFRunLoopDefaultMode)
        finally:
            ready.set()
        while not self._stopping.is_set():  # a stop that came before the run loop ran is seen here
            CFRunLoopRunInMode(kCFRunLoopDefaultMode, 3600.0, False)  # aclose() stops it early

    async def aclose(self) -> None:
        if self._center is not None:
            for token in self._observers:
                self._center.removeObserver_(token)
        self._observers.clear()
        self._stopping.set()
        if self._runloop is not None:
            from CoreFoundation import CFRunLoopStop

            CFRunLoopStop(self._runloop)  # thread-safe, as CFRunLoop documents
            self._runloop = None
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, START_TIMEOUT)
            self._thread = None


def _observer(post: Callable[[Reason], None], reason: Reason) -> Callable[[Any], None]:
    """A block of exactly one argument (the NSNotification), as pyobjc expects for this API."""

    def observe(_notification: Any) -> None:
        post(reason)

    return observe

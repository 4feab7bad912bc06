"""Sleep, wake and network signals on Windows, through ctypes. Written and reviewed, not run here.

- Sleep and wake: powrprof's PowerRegisterSuspendResumeNotification with a callback (Windows 8
  and later). It delivers the same PBT_APMSUSPEND / PBT_APMRESUMEAUTOMATIC codes as the
  WM_POWERBROADCAST window message, without a window: a hidden message-only window would not
  get them at all (message-only windows receive no broadcasts), and a hidden top-level window
  would need a thread pumping its messages.
- Network: iphlpapi's NotifyUnicastIpAddressChange, called when an address is added, removed or
  changes on any interface (a new Wi-Fi network, a VPN coming up, a cable plugged in).
Both callbacks run on threads the OS owns and are handed to the event loop with
call_soon_threadsafe. The ctypes callback objects are kept on the source: freeing one while
Windows may still call it would crash the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import sys
from ctypes import wintypes
from typing import Any

from trayapp.platform.power import Emit, Reason, SourceUnavailable

# Imported only on its own OS (power.default_source); type checkers skip it elsewhere.
assert sys.platform == "win32"

log = logging.getLogger(__name__)

DEVICE_NOTIFY_CALLBACK = 2
PBT_APMSUSPEND = 0x0004
PBT_APMRESUMESUSPEND = 0x0007  # a resume the user caused; always preceded by RESUMEAUTOMATIC
PBT_APMRESUMEAUTOMATIC = 0x0012
AF_UNSPEC = 0
NO_ERROR = 0

# ULONG CALLBACK DeviceNotifyCallbackRoutine(PVOID Context, ULONG Type, PVOID Setting)
_POWER_CALLBACK = ctypes.WINFUNCTYPE(
    wintypes.ULONG, ctypes.c_void_p, wintypes.ULONG, ctypes.c_void_p)
# VOID NETIOAPI_API_ PUNICAST_IPADDRESS_CHANGE_CALLBACK(
#     PVOID CallerContext, PMIB_UNICASTIPADDRESS_ROW Row, MIB_NOTIFICATION_TYPE NotificationType)
_ADDRESS_CALLBACK = ctypes.WINFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)


class _SubscribeParameters(ctypes.Structure):
    """DEVICE_NOTIFY_SUBSCRIBE_PARAMETERS"""

    _fields_ = [("Callback", _POWER_CALLBACK), ("Context", ctypes.c_void_p)]


class WindowsSource:
    name = "power and address-change notifications"

    def __init__(self) -> None:
        self._power_handle = ctypes.c_void_p()
        self._address_handle = wintypes.HANDLE()
        self._keep: list[Any] = []  # ctypes callbacks and structures Windows holds pointers to
        self._powrprof: Any = None  # the DLLs whose functions _declare() typed
        self._iphlpapi: Any = None

    async def start(self, emit: Emit) -> None:
        loop = asyncio.get_running_loop()

        def post(reason: Reason) -> None:  # on an OS thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: kubetray is stopping
                loop.call_soon_threadsafe(emit, reason)

        def on_power(_context: Any, kind: int, _setting: Any) -> int:
            if kind == PBT_APMSUSPEND:
                post(Reason.SLEEPING)
            elif kind == PBT_APMRESUMEAUTOMATIC:
                post(Reason.WOKE)
            return 0

        def on_address(_context: Any, _row: Any, _kind: int) -> None:
            post(Reason.NETWORK)

        try:
            powrprof = self._powrprof = ctypes.WinDLL("powrprof")
            iphlpapi = self._iphlpapi = ctypes.WinDLL("iphlpapi")
            _declare(powrprof, iphlpapi)
        except (OSError, AttributeError) as exc:  # AttributeError: before Windows 8, no such call
            raise SourceUnavailable("Windows' power and network calls are not available "
                                    f"({type(exc).__name__}).") from None
        power_callback = _POWER_CALLBACK(on_power)
        parameters = _SubscribeParameters(power_callback, None)
        address_callback = _ADDRESS_CALLBACK(on_address)
        self._keep += [power_callback, parameters, address_callback]
        status = powrprof.PowerRegisterSuspendResumeNotification(
            DEVICE_NOTIFY_CALLBACK, ctypes.byref(parameters), ctypes.byref(self._power_handle))
        if status != NO_ERROR:
            raise SourceUnavailable(
                f"Windows refused the sleep and wake notification (error {status}).")
        status = iphlpapi.NotifyUnicastIpAddressChange(
            AF_UNSPEC, address_callback, None, False, ctypes.byref(self._address_handle))
        if status != NO_ERROR:
            log.info("Windows refused the address-change notification (error %d); kubetray hears "
                     "about sleep and wake only.", status)
            self._address_handle = wintypes.HANDLE()

    async def aclose(self) -> None:
        # Unregistering waits for a callback that is running to return: do it off the loop.
        await asyncio.to_thread(self._unregister)

    def _unregister(self) -> None:
        if self._power_handle.value:
            self._powrprof.PowerUnregisterSuspendResumeNotification(self._power_handle)
            self._power_handle = ctypes.c_void_p()
        if self._address_handle.value:
            self._iphlpapi.CancelMibChangeNotify2(self._address_handle)
            self._address_handle = wintypes.HANDLE()


def _declare(powrprof: Any, iphlpapi: Any) -> None:
    """Argument and result types, so that handles and pointers pass at their full 64-bit width."""
    handle_out = ctypes.POINTER(wintypes.HANDLE)
    powrprof.PowerRegisterSuspendResumeNotification.argtypes = [
        wintypes.DWORD, ctypes.POINTER(_SubscribeParameters), ctypes.POINTER(ctypes.c_void_p)]
    powrprof.PowerRegisterSuspendResumeNotification.restype = wintypes.DWORD
    powrprof.PowerUnregisterSuspendResumeNotification.argtypes = [ctypes.c_void_p]
    powrprof.PowerUnregisterSuspendResumeNotification.restype = wintypes.DWORD
    iphlpapi.NotifyUnicastIpAddressChange.argtypes = [
        wintypes.USHORT, _ADDRESS_CALLBACK, ctypes.c_void_p, wintypes.BOOLEAN, handle_out]
    iphlpapi.NotifyUnicastIpAddressChange.restype = wintypes.DWORD
    iphlpapi.CancelMibChangeNotify2.argtypes = [wintypes.HANDLE]
    iphlpapi.CancelMibChangeNotify2.restype = wintypes.DWORD

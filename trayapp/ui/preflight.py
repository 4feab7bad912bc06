"""Before Qt starts: can this session show a tray at all?

Qt aborts the whole process when its platform plugin cannot start (no display, or a system
library the X11 plugin needs is missing), with no way to catch it. kubetray checks the usual
causes first and runs headless instead, saying why, so forwarding still works.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path


def find_library(name: str) -> str | None:
    """ctypes.util.find_library, where a frozen bundle's own libraries count too: PyInstaller
    unpacks them into sys._MEIPASS, which the system's search (ldconfig, gcc, ld) never sees."""
    bundled = getattr(sys, "_MEIPASS", None)
    if bundled:
        for candidate in sorted(Path(bundled).glob(f"lib{name}.so*")):
            return candidate.name
    return ctypes.util.find_library(name)


def desktop_problem(
    environ: Mapping[str, str] | None = None,
    platform: str | None = None,
    find_library: Callable[[str], str | None] = find_library,
) -> str | None:
    """Why the tray cannot start here, as a sentence; None when it can (or we cannot tell)."""
    environ = os.environ if environ is None else environ
    platform = platform or sys.platform
    if not platform.startswith("linux") or environ.get("QT_QPA_PLATFORM"):
        return None  # macOS and Windows always have a desktop; an explicit platform is the user's call
    if not environ.get("DISPLAY") and not environ.get("WAYLAND_DISPLAY"):
        return "No desktop display was found (DISPLAY and WAYLAND_DISPLAY are not set)"
    if not environ.get("WAYLAND_DISPLAY") and find_library("xcb-cursor") is None:
        return ("Qt's X11 support needs the libxcb-cursor0 library, which is not installed "
                "(on Debian and Ubuntu: sudo apt install libxcb-cursor0)")
    return None

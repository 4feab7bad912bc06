"""Where kubetray keeps its files: the per-user config and state folders, standard library only.

Each function takes the platform, environment and home folder as optional arguments so tests can
ask "where would this be on macOS?" without patching anything.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

APP_NAME = "kubetray"
RULES_FILE_NAME = "config.yaml"


def _xdg_dir(environ: Mapping[str, str], variable: str, fallback: Path) -> Path:
    value = environ.get(variable, "")
    # The XDG spec says a relative path in these variables is invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return fallback


def _home(home: Path | None) -> Path:
    return home if home is not None else Path.home()


def config_dir(
    *,
    platform: str | None = None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Path:
    """The per-user folder for kubetray's rules file."""
    platform = platform or sys.platform
    environ = os.environ if environ is None else environ
    if platform == "win32":
        appdata = environ.get("APPDATA")
        base = Path(appdata) if appdata else _home(home) / "AppData" / "Roaming"
        return base / APP_NAME
    if platform == "darwin":
        return _home(home) / "Library" / "Application Support" / APP_NAME
    return _xdg_dir(environ, "XDG_CONFIG_HOME", _home(home) / ".config") / APP_NAME


def state_dir(
    *,
    platform: str | None = None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Path:
    """The per-user folder for what kubetray remembers between runs (not meant to be edited)."""
    platform = platform or sys.platform
    environ = os.environ if environ is None else environ
    if platform == "win32":
        local = environ.get("LOCALAPPDATA")
        base = Path(local) if local else _home(home) / "AppData" / "Local"
        return base / APP_NAME
    if platform == "darwin":
        # macOS has no separate state folder convention; Application Support serves both.
        return config_dir(platform=platform, environ=environ, home=home)
    return _xdg_dir(environ, "XDG_STATE_HOME", _home(home) / ".local" / "state") / APP_NAME


def default_rules_path(
    *,
    platform: str | None = None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Path:
    """The rules file read when none is named on the command line."""
    return config_dir(platform=platform, environ=environ, home=home) / RULES_FILE_NAME

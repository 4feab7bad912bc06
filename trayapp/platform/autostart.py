"""Start kubetray at desktop login: one small backend per OS behind `Autostart`, and a null fallback.

- Linux and the BSDs: an XDG autostart entry, `$XDG_CONFIG_HOME/autostart/kubetray.desktop`.
- macOS: a LaunchAgent, `~/Library/LaunchAgents/dev.kubetray.plist`.
- Windows: the value "kubetray" under HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run.
- Anything else: `NullAutostart`, which is never on and says so when asked to turn on.

Standard library only and no Qt, so the tray menu and `kubetray autostart` share it. The file
backends take `home` and `environ`, so tests write real files under a temporary folder.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from trayapp.errors import KubetrayError

APP_NAME = "kubetray"
LAUNCHD_LABEL = "dev.kubetray"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"


class AutostartError(KubetrayError):
    """Start at login could not be read or changed."""

    title = "Start at login"


@runtime_checkable
class Autostart(Protocol):
    """Start at login for one platform."""

    @property
    def location(self) -> str:
        """Where the entry lives (a file path or a registry value), for messages."""
        ...

    def enabled(self) -> bool:
        """Whether kubetray starts at login now."""
        ...

    def enable(self, command: Sequence[str]) -> Path | str:
        """Start `command` at login; returns where the entry was written."""
        ...

    def disable(self) -> None:
        """Stop starting at login; doing it twice is fine."""
        ...


def installed_command() -> list[str]:
    """The command the user installed, to be started at login.

    Prefer the `kubetray` script on PATH, made absolute (the login session's PATH may lack
    ~/.local/bin) but with symlinks kept: ~/.local/bin/kubetray or /opt/homebrew/bin/kubetray
    survive upgrades, while the versioned folder they point into does not. Without a script on
    PATH, run this interpreter with `-m trayapp`; sys.executable is kept unresolved too, so a
    virtual environment's python stays the one with kubetray installed. A script under the
    temporary folder (a build or test tree that will disappear) is never used. A bundled app
    (the .deb's /opt/kubetray, the macOS .app, the Windows .exe) starts its own executable.
    """
    temp = Path(tempfile.gettempdir()).resolve()
    found = shutil.which(APP_NAME)
    if getattr(sys, "frozen", False):
        # A bundle (PyInstaller): its own executable, or the link to it that the package put on
        # PATH (/usr/bin/kubetray -> /opt/kubetray/kubetray); never another kubetray on PATH.
        exe = Path(sys.executable).absolute()
        if "/AppTranslocation/" in str(exe):
            # macOS runs an app opened straight from a download from a random read-only copy
            # that is gone after a reboot; a login entry pointing there would start nothing.
            raise AutostartError(
                f"kubetray runs from a temporary copy macOS made ({exe}); move kubetray.app to "
                "/Applications, open it from there, then turn on start at login again.")
        if found and Path(found).resolve() == exe.resolve():
            return [str(Path(found).absolute())]
        return [str(exe)]
    if found:
        script = Path(found).absolute()
        if not script.resolve().is_relative_to(temp):
            return [str(script)]
    return [str(Path(sys.executable).absolute()), "-m", "trayapp"]


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, 0o644)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _check_command(command: Sequence[str]) -> list[str]:
    args = [str(arg) for arg in command]
    if not args or not args[0]:
        raise AutostartError("There is no command to start at login.")
    if any(ch in arg for arg in args for ch in "\0\n\r"):
        raise AutostartError("The command to start at login contains a line break or NUL character.")
    return args


# --- XDG (Linux, BSD) --------------------------------------------------------------------------

# Desktop Entry spec, "The Exec key": an argument holding any of these must be double-quoted.
_EXEC_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


def exec_quote(arg: str) -> str:
    """One argument for an Exec line: quoted per the spec, `%` doubled (field codes)."""
    arg = arg.replace("%", "%%")
    if arg and not (_EXEC_RESERVED & set(arg)):
        return arg
    inner = "".join("\\" + ch if ch in '"`$\\' else ch for ch in arg)
    return f'"{inner}"'


def exec_line(command: Sequence[str]) -> str:
    """The Exec value as written in the file: quoted arguments, then the string escape of `\\`."""
    value = " ".join(exec_quote(arg) for arg in command)
    # Exec is a string value, so the general escape rules apply on top of the quoting.
    return value.replace("\\", "\\\\")


def desktop_entry(command: Sequence[str]) -> str:
    return "\n".join([
        "[Desktop Entry]",
        "Type=Application",
        f"Name={APP_NAME}",
        "Comment=Keep Kubernetes port forwards alive",
        f"Exec={exec_line(command)}",
        f"Icon={APP_NAME}",
        "Terminal=false",
        "Categories=Development;",
        "X-GNOME-Autostart-enabled=true",
        "",
    ])


def xdg_config_home(environ: Mapping[str, str], home: Path) -> Path:
    value = environ.get("XDG_CONFIG_HOME", "")
    # The Base Directory spec says relative paths are invalid and are to be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return home / ".config"


class _FileAutostart:
    """A backend that is one file: on when it is there (and says so), off when it is gone."""

    path: Path

    @property
    def location(self) -> str:
        return str(self.path)

    def _write(self, content: bytes) -> Path:
        try:
            _atomic_write(self.path, content)
        except OSError as exc:
            raise AutostartError(f"Could not write {self.path}: {exc.strerror}.") from exc
        return self.path

    def disable(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise AutostartError(f"Could not remove {self.path}: {exc.strerror}.") from exc


class XdgAutostart(_FileAutostart):
    """An XDG autostart entry, read by GNOME, KDE, Xfce and the other desktops that follow the spec."""

    def __init__(self, environ: Mapping[str, str], home: Path) -> None:
        self.path = xdg_config_home(environ, home) / "autostart" / f"{APP_NAME}.desktop"

    def enabled(self) -> bool:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise AutostartError(f"Could not read {self.path}: {exc.strerror}.") from exc
        fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        # A desktop's own settings dialog may keep the file and switch it off with either key.
        hidden = fields.get("Hidden", "").strip() == "true"
        switched_off = fields.get("X-GNOME-Autostart-enabled", "").strip() == "false"
        return not (hidden or switched_off)

    def enable(self, command: Sequence[str]) -> Path:
        return self._write(desktop_entry(_check_command(command)).encode("utf-8"))


# --- macOS -------------------------------------------------------------------------------------

class LaunchAgentAutostart(_FileAutostart):
    """A per-user LaunchAgent that launchd loads at login."""

    def __init__(self, home: Path) -> None:
        self.path = home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"

    def enabled(self) -> bool:
        try:
            with self.path.open("rb") as handle:
                data = plistlib.load(handle)
        except FileNotFoundError:
            return False
        except (OSError, plistlib.InvalidFileException, ValueError) as exc:
            raise AutostartError(f"Could not read {self.path}; it is not a valid property list.") from exc
        return bool(data.get("RunAtLoad")) and not data.get("Disabled", False)

    def enable(self, command: Sequence[str]) -> Path:
        data = {
            "Label": LAUNCHD_LABEL,
            "ProgramArguments": _check_command(command),
            "RunAtLoad": True,
            "ProcessType": "Interactive",
        }
        return self._write(plistlib.dumps(data, fmt=plistlib.FMT_XML))


# --- Windows -----------------------------------------------------------------------------------

class RegistryAutostart:
    """The per-user Run key; winreg is imported on use, so this class imports everywhere."""

    @property
    def location(self) -> str:
        return f"HKEY_CURRENT_USER\\{RUN_KEY}\\{APP_NAME}"

    def enabled(self) -> bool:
        if sys.platform != "win32":
            raise AutostartError("The Windows Run key can only be used on Windows.")
        import winreg

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
                winreg.QueryValueEx(key, APP_NAME)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise AutostartError(f"Could not read {self.location}: {exc}.") from exc
        return True

    def enable(self, command: Sequence[str]) -> str:
        if sys.platform != "win32":
            raise AutostartError("The Windows Run key can only be used on Windows.")
        import winreg

        line = subprocess.list2cmdline(_check_command(command))
        try:
            with winreg.CreateKeyEx(winreg.HKEY_CURRENT_USER, RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:
                winreg.SetValueEx(key, APP_NAME, 0, winreg.REG_SZ, line)
        except OSError as exc:
            raise AutostartError(f"Could not write {self.location}: {exc}.") from exc
        return self.location

    def disable(self) -> None:
        if sys.platform != "win32":
            raise AutostartError("The Windows Run key can only be used on Windows.")
        import winreg

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:
                winreg.DeleteValue(key, APP_NAME)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise AutostartError(f"Could not remove {self.location}: {exc}.") from exc


# --- Fallback ----------------------------------------------------------------------------------

class NullAutostart:
    """For systems kubetray cannot start at login on: never on, and says so."""

    def __init__(self, platform: str) -> None:
        self.platform = platform

    @property
    def location(self) -> str:
        return ""

    def enabled(self) -> bool:
        return False

    def enable(self, command: Sequence[str]) -> str:
        raise AutostartError(f"kubetray cannot start at login on this system ({self.platform}).")

    def disable(self) -> None:
        return None


_BSDS = ("freebsd", "openbsd", "netbsd", "dragonfly")


def for_platform(
    platform: str = sys.platform,
    environ: Mapping[str, str] = os.environ,
    home: Path | None = None,
) -> Autostart:
    """The backend for `platform`; `environ` and `home` are injectable for tests."""
    home = Path(home) if home is not None else Path(environ.get("HOME") or Path.home())
    if platform.startswith("linux") or platform.startswith(_BSDS):
        return XdgAutostart(environ, home)
    if platform == "darwin":
        return LaunchAgentAutostart(home)
    if platform == "win32":
        return RegistryAutostart()
    return NullAutostart(platform)

"""Start at login: real files under tmp_path, with environ and home injected; no filesystem mocks."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from trayapp.platform.autostart import (
    AutostartError,
    LaunchAgentAutostart,
    NullAutostart,
    RegistryAutostart,
    XdgAutostart,
    exec_line,
    exec_quote,
    for_platform,
    installed_command,
)

REPO = Path(__file__).resolve().parents[2]
COMMAND = ["/opt/kubetray/bin/kubetray"]


def entry_fields(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "[Desktop Entry]"
    return dict(line.split("=", 1) for line in lines[1:] if line)


def test_linux_entry_content(tmp_path):
    backend = for_platform("linux", environ={}, home=tmp_path)
    assert isinstance(backend, XdgAutostart)
    where = backend.enable(COMMAND)
    assert where == tmp_path / ".config" / "autostart" / "kubetray.desktop"
    assert entry_fields(where) == {
        "Type": "Application",
        "Name": "kubetray",
        "Comment": "Keep Kubernetes port forwards alive",
        "Exec": "/opt/kubetray/bin/kubetray",
        "Icon": "kubetray",
        "Terminal": "false",
        "Categories": "Development;",
        "X-GNOME-Autostart-enabled": "true",
    }
    assert [p.name for p in where.parent.iterdir()] == ["kubetray.desktop"]  # no temp file left


def test_linux_round_trip(tmp_path):
    backend = for_platform("linux", environ={}, home=tmp_path)
    assert not backend.enabled()
    backend.enable(COMMAND)
    assert backend.enabled()
    assert backend.location == str(tmp_path / ".config" / "autostart" / "kubetray.desktop")
    backend.enable(["/other/kubetray"])  # replaces the entry
    assert entry_fields(Path(backend.location))["Exec"] == "/other/kubetray"
    backend.disable()
    assert not backend.enabled()
    assert not Path(backend.location).exists()
    backend.disable()  # twice is fine


def test_linux_entry_turned_off_by_the_desktop_counts_as_off(tmp_path):
    backend = for_platform("linux", environ={}, home=tmp_path)
    path = backend.enable(COMMAND)
    path.write_text(path.read_text().replace("X-GNOME-Autostart-enabled=true", "Hidden=true"))
    assert not backend.enabled()


def test_xdg_config_home_is_honoured(tmp_path):
    config = tmp_path / "elsewhere"
    backend = for_platform("linux", environ={"XDG_CONFIG_HOME": str(config)}, home=tmp_path / "home")
    assert backend.enable(COMMAND) == config / "autostart" / "kubetray.desktop"
    assert backend.enabled()


def test_relative_xdg_config_home_is_ignored(tmp_path):
    backend = for_platform("freebsd14", environ={"XDG_CONFIG_HOME": "rel"}, home=tmp_path)
    assert backend.location == str(tmp_path / ".config" / "autostart" / "kubetray.desktop")


@pytest.mark.parametrize(("arg", "quoted"), [
    ("/usr/bin/kubetray", "/usr/bin/kubetray"),
    ("/home/a b/kubetray", '"/home/a b/kubetray"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("$HOME`x`", '"\\$HOME\\`x\\`"'),
    ("50%", "50%%"),
    ("", '""'),
])
def test_exec_quote(arg, quoted):
    assert exec_quote(arg) == quoted


def test_exec_line_escapes_backslashes_as_a_string_value(tmp_path):
    # Quoting gives "a\\b" (escaped backslash); the string escape doubles it again in the file.
    assert exec_line(["a\\b"]) == '"a\\\\\\\\b"'


def test_exec_quoting_of_a_path_with_spaces(tmp_path):
    backend = for_platform("linux", environ={}, home=tmp_path)
    path = backend.enable(["/home/Jo Doe/my venv/bin/python", "-m", "trayapp"])
    assert entry_fields(path)["Exec"] == '"/home/Jo Doe/my venv/bin/python" -m trayapp'


def test_command_with_a_line_break_is_refused(tmp_path):
    backend = for_platform("linux", environ={}, home=tmp_path)
    with pytest.raises(AutostartError):
        backend.enable(["/bin/kubetray\nX-Evil=1"])
    assert not backend.enabled()


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None,
                    reason="desktop-file-validate is not installed (apt install desktop-file-utils)")
@pytest.mark.parametrize("command", [COMMAND, ["/home/Jo Doe/$x/py\\thon", "-m", "trayapp", "100%"]])
def test_entry_passes_desktop_file_validate(tmp_path, command):
    path = for_platform("linux", environ={}, home=tmp_path).enable(command)
    result = subprocess.run(["desktop-file-validate", str(path)], check=False,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "", result.stdout  # not even a hint


def test_macos_plist_round_trip(tmp_path):
    backend = for_platform("darwin", environ={}, home=tmp_path)
    assert isinstance(backend, LaunchAgentAutostart)
    assert not backend.enabled()
    command = ["/Applications/kube tray/kubetray", "--config", "/x"]
    path = backend.enable(command)
    assert path == tmp_path / "Library" / "LaunchAgents" / "dev.kubetray.plist"
    with path.open("rb") as handle:
        assert plistlib.load(handle) == {
            "Label": "dev.kubetray",
            "ProgramArguments": command,
            "RunAtLoad": True,
            "ProcessType": "Interactive",
        }
    assert backend.enabled()
    backend.disable()
    assert not backend.enabled() and not path.exists()


def test_macos_unreadable_plist_is_a_clear_error(tmp_path):
    backend = for_platform("darwin", environ={}, home=tmp_path)
    Path(backend.location).parent.mkdir(parents=True)
    Path(backend.location).write_text("not a plist")
    with pytest.raises(AutostartError, match="not a valid property list"):
        backend.enabled()


def test_windows_backend_imports_everywhere():
    backend = for_platform("win32", environ={})
    assert isinstance(backend, RegistryAutostart)
    assert backend.location.endswith(r"CurrentVersion\Run\kubetray")
    if sys.platform != "win32":
        with pytest.raises(AutostartError, match="only be used on Windows"):
            backend.enabled()


@pytest.mark.skipif(sys.platform != "win32", reason="the Run key exists only on Windows")
def test_windows_round_trip():
    backend = RegistryAutostart()
    was_on = backend.enabled()
    try:
        backend.enable(["C:\\Program Files\\kubetray\\kubetray.exe"])
        assert backend.enabled()
        backend.disable()
        assert not backend.enabled()
    finally:
        if was_on:
            backend.enable(installed_command())


def test_unknown_platform_gets_the_null_backend(tmp_path):
    backend = for_platform("sunos5", environ={}, home=tmp_path)
    assert isinstance(backend, NullAutostart)
    assert not backend.enabled()
    backend.disable()
    with pytest.raises(AutostartError, match="cannot start at login"):
        backend.enable(COMMAND)


def test_installed_command_is_absolute_and_runnable():
    command = installed_command()
    assert Path(command[0]).is_absolute()
    if len(command) > 1:
        assert command[1:] == ["-m", "trayapp"]


def test_installed_command_prefers_the_script_on_path_and_keeps_symlinks(tmp_path, monkeypatch):
    real = tmp_path / "Cellar" / "kubetray" / "1.0" / "bin" / "kubetray"
    real.parent.mkdir(parents=True)
    real.write_text("#!/bin/sh\n")
    real.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubetray").symlink_to(real)
    monkeypatch.setenv("PATH", str(bin_dir))
    # tmp_path is under the temporary folder, which installed_command refuses; move that aside.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "scratch"))
    assert installed_command() == [str(bin_dir / "kubetray")]


def test_installed_command_ignores_a_script_in_a_temporary_tree(tmp_path, monkeypatch):
    script = tmp_path / "build" / "kubetray"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(script.parent))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert installed_command() == [str(Path(sys.executable).absolute()), "-m", "trayapp"]


def run_cli(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CONFIG_HOME",)}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "cfg"), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "trayapp", "autostart", *args],
                          check=False, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checks the XDG file the CLI writes")
def test_cli_on_status_off(tmp_path):
    entry = tmp_path / "cfg" / "autostart" / "kubetray.desktop"
    status = run_cli(tmp_path, "status")
    assert status.returncode == 0, status.stderr
    assert status.stdout == f"Start at login is off; turning it on writes {entry}.\n"

    on = run_cli(tmp_path, "on")
    assert on.returncode == 0, on.stderr
    assert on.stdout == f"kubetray will start at login; the entry is {entry}.\n"
    assert entry_fields(entry)["Exec"]  # written, with the installed command
    assert run_cli(tmp_path, "status").stdout == f"Start at login is on; the entry is {entry}.\n"

    off = run_cli(tmp_path, "off")
    assert off.returncode == 0, off.stderr
    assert off.stdout == f"kubetray will no longer start at login; removed {entry}.\n"
    assert not entry.exists()
    assert run_cli(tmp_path, "off").stdout == "kubetray was not set to start at login; nothing changed.\n"


def test_a_bundle_starts_its_own_executable_or_the_link_to_it(tmp_path, monkeypatch):
    # As PyInstaller runs it: sys.frozen set, sys.executable the bundle's binary.
    bundle = tmp_path / "opt" / "kubetray" / "kubetray"
    bundle.parent.mkdir(parents=True)
    bundle.write_text("#!/bin/sh\n")
    bundle.chmod(0o755)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(bundle))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "scratch"))
    usr_bin = tmp_path / "usr" / "bin"
    usr_bin.mkdir(parents=True)
    (usr_bin / "kubetray").symlink_to(bundle)
    monkeypatch.setenv("PATH", str(usr_bin))
    assert installed_command() == [str(usr_bin / "kubetray")]
    # Another kubetray on PATH (a pipx one, say) is not the bundle: start the bundle itself.
    other = tmp_path / "pipx" / "kubetray"
    other.parent.mkdir()
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)
    monkeypatch.setenv("PATH", str(other.parent))
    assert installed_command() == [str(bundle)]


def test_a_translocated_macos_app_refuses_a_login_entry(tmp_path, monkeypatch):
    translocated = "/private/var/folders/xy/T/AppTranslocation/1A2B/d/kubetray.app/Contents/MacOS/kubetray"
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", translocated)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AutostartError, match="move kubetray.app to /Applications"):
        installed_command()

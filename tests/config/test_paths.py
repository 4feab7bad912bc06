from __future__ import annotations

from pathlib import Path

from trayapp.config.paths import config_dir, default_rules_path, state_dir

HOME = Path("/home/ada")


def test_linux_defaults_without_xdg_variables() -> None:
    assert (
        default_rules_path(platform="linux", environ={}, home=HOME)
        == HOME / ".config/kubetray/config.yaml"
    )
    assert state_dir(platform="linux", environ={}, home=HOME) == HOME / ".local/state/kubetray"


def test_linux_honours_xdg_variables() -> None:
    env = {"XDG_CONFIG_HOME": "/cfg", "XDG_STATE_HOME": "/st"}
    assert config_dir(platform="linux", environ=env, home=HOME) == Path("/cfg/kubetray")
    assert state_dir(platform="linux", environ=env, home=HOME) == Path("/st/kubetray")


def test_linux_ignores_relative_xdg_paths_as_the_spec_requires() -> None:
    env = {"XDG_CONFIG_HOME": "relative/cfg", "XDG_STATE_HOME": ""}
    assert config_dir(platform="linux", environ=env, home=HOME) == HOME / ".config/kubetray"
    assert state_dir(platform="linux", environ=env, home=HOME) == HOME / ".local/state/kubetray"


def test_macos_uses_application_support_for_both() -> None:
    expected = HOME / "Library/Application Support/kubetray"
    assert config_dir(platform="darwin", environ={}, home=HOME) == expected
    assert state_dir(platform="darwin", environ={}, home=HOME) == expected
    assert default_rules_path(platform="darwin", environ={}, home=HOME) == expected / "config.yaml"


def test_windows_uses_appdata_and_localappdata() -> None:
    env = {"APPDATA": "/roaming", "LOCALAPPDATA": "/local"}
    assert default_rules_path(platform="win32", environ=env, home=HOME) == Path(
        "/roaming/kubetray/config.yaml"
    )
    assert state_dir(platform="win32", environ=env, home=HOME) == Path("/local/kubetray")


def test_windows_without_variables_falls_back_under_home() -> None:
    assert config_dir(platform="win32", environ={}, home=HOME) == HOME / "AppData/Roaming/kubetray"
    assert state_dir(platform="win32", environ={}, home=HOME) == HOME / "AppData/Local/kubetray"


def test_defaults_use_the_running_platform() -> None:
    assert default_rules_path().name == "config.yaml"
    assert default_rules_path().parent == config_dir()
    assert state_dir().name == "kubetray"

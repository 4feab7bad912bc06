"""The wheel, as pip and pipx install it: into a fresh virtual environment, with its dependencies."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

from trayapp import __version__

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the freshly built wheel installed; returns its bin folder."""
    work = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"),
                            str(REPO)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (wheel,) = (work / "dist").glob("kubetray-*.whl")
    venv.create(work / "venv", with_pip=True)
    bin_dir = work / "venv" / ("Scripts" if sys.platform == "win32" else "bin")
    install = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    return bin_dir


def run(bin_dir: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir / "kubetray"), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.mark.slow
def test_version_and_check_run_from_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    version = run(installed, "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"kubetray {__version__}"
    rules = tmp_path / "rules.yaml"
    rules.write_text("portForward:\n  - {resourceType: service, resourceName: web, port: 80}\n", encoding="utf-8")
    check = run(installed, "check", "--config", str(rules), cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert "web" in check.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text("portForward:\n  - {resourceType: sevice, resourceName: web, port: 80}\n", encoding="utf-8")
    bad = run(installed, "check", "--config", str(broken), cwd=tmp_path)
    assert bad.returncode == 1 and f"{broken}:2" in bad.stdout + bad.stderr


@pytest.mark.slow
def test_the_wheel_carries_the_icons_and_finds_them(installed: Path, tmp_path: Path) -> None:
    probe = subprocess.run(
        [str(installed / "python"), "-c",
         "import trayapp.ui.tray as t, sys; d = t.resources_dir(); print(d); "
         "sys.exit(0 if (d / 'icons' / 'tray-ok.svg').is_file() else 1)"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert "site-packages" in probe.stdout  # the installed copy, not this checkout

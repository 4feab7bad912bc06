"""Fixtures for tests on a real (virtual) Linux desktop; see harness.py for how the session runs.

`desktop` is one session for the whole test run (~0.5 s to start), with trayer as its XEmbed tray
host; `sni_desktop` is a second one, started only when a test asks for it, with a
StatusNotifierItem host instead. `tray_desktop` runs a test once in each: for the tests about the
tray icon and its menu, whose behaviour depends on the host. Tests in this folder are marked
`desktop`, so `pytest -m "not desktop"` leaves them out; without the tools they skip, naming the
missing ones and the apt-get command that installs them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import TRAY_HOSTS, Desktop, start_desktop, unavailable_reason

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # This hook sees every collected test, not only this folder's: mark ours by path.
    for item in items:
        if HERE in Path(item.fspath).resolve().parents:
            item.add_marker(pytest.mark.desktop)


def _session(tmp_path_factory: pytest.TempPathFactory, host: str) -> Iterator[Desktop]:
    reason = unavailable_reason(host=host)
    if reason:
        pytest.skip(reason)
    session = start_desktop(tmp_path_factory.mktemp(f"desktop-{host}"), host)
    try:
        yield session
    finally:
        stragglers = session.close()
        if stragglers:  # killed all the same; worth knowing which service outlived its session
            warnings.warn(f"These desktop-session processes had to be killed: {', '.join(stragglers)}",
                          stacklevel=1)


@pytest.fixture(scope="session")
def desktop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desktop]:
    yield from _session(tmp_path_factory, "xembed")


@pytest.fixture(scope="session")
def sni_desktop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desktop]:
    yield from _session(tmp_path_factory, "sni")


@pytest.fixture(params=TRAY_HOSTS)
def tray_desktop(request: pytest.FixtureRequest) -> Desktop:
    """The test runs under each tray host: trayer (XEmbed) and a StatusNotifierItem host."""
    session: Desktop = request.getfixturevalue("desktop" if request.param == "xembed" else "sni_desktop")
    return session


@pytest.fixture(autouse=True)
def _fresh_desktop(request: pytest.FixtureRequest) -> None:
    """Each test that uses a desktop starts without the notifications and browser runs of the
    tests before it. Tests here that ask for no desktop do not start one."""
    for name in ("desktop", "sni_desktop", "tray_desktop"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()

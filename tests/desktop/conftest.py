"""Fixtures for tests on a real (virtual) Linux desktop; see harness.py for how the session runs.

`desktop` is one session for the whole test run (~0.5 s to start). Tests in this folder are marked
`desktop`, so `pytest -m "not desktop"` leaves them out; without the tools they skip, naming the
missing ones and the apt-get command that installs them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import Desktop, start_desktop, unavailable_reason

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # This hook sees every collected test, not only this folder's: mark ours by path.
    for item in items:
        if HERE in Path(item.fspath).resolve().parents:
            item.add_marker(pytest.mark.desktop)


@pytest.fixture(scope="session")
def desktop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desktop]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    session = start_desktop(tmp_path_factory.mktemp("desktop"))
    try:
        yield session
    finally:
        stragglers = session.close()
        if stragglers:  # killed all the same; worth knowing which service outlived its session
            warnings.warn(f"These desktop-session processes had to be killed: {', '.join(stragglers)}",
                          stacklevel=1)


@pytest.fixture(autouse=True)
def _fresh_desktop(request: pytest.FixtureRequest) -> None:
    """Each test that uses the desktop starts without the notifications and browser runs of the
    tests before it. Tests here that do not ask for `desktop` do not start it."""
    if "desktop" in request.fixturenames:
        request.getfixturevalue("desktop").reset()

"""The private system bus and the fake logind and NetworkManager on it (tests/platform/system_bus.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .system_bus import LOGIN1, NETWORK_MANAGER, FakeService, PrivateBus, fake_service, private_system_bus


@pytest.fixture
def system_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateBus]:
    with private_system_bus(tmp_path / "system-bus", monkeypatch) as bus:
        yield bus


@pytest.fixture
def logind(system_bus: PrivateBus) -> Iterator[FakeService]:
    with fake_service(system_bus, LOGIN1) as service:
        yield service


@pytest.fixture
def network_manager(system_bus: PrivateBus) -> Iterator[FakeService]:
    with fake_service(system_bus, NETWORK_MANAGER) as service:
        yield service

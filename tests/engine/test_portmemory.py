"""Remembered local ports: real files in tmp_path, across instances, corrupt files, the bound."""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from pathlib import Path

import pytest

from trayapp.engine.portmemory import PortKey, PortMemory
from trayapp.model import ResourceType, Rule

WEB = PortKey("kind-dev", "default", ResourceType.SERVICE, "web", 80)
API = PortKey("kind-dev", "shop", ResourceType.POD, "api-0", 8080)


def test_key_strings_are_stable() -> None:
    assert str(WEB) == "kind-dev/default/service/web/80"
    eks = PortKey("arn:aws:eks:eu-west-1:1:cluster/prod", "ns", ResourceType.POD, "p", "http")
    assert str(eks) == "arn:aws:eks:eu-west-1:1:cluster/prod/ns/pod/p/http"
    rule = Rule(ResourceType.SERVICE, "web", 80, auto=True, local_port=80)
    assert PortKey.of("kind-dev", rule) == WEB


def test_roundtrip_across_two_instances(tmp_path: Path) -> None:
    path = tmp_path / "state" / "kubetray" / "ports.json"
    first = PortMemory(path)
    assert first.get(WEB) is None
    first.remember(WEB, 8081)
    first.remember(API, 18080)
    second = PortMemory(path)
    assert (second.get(WEB), second.get(API), len(second)) == (8081, 18080, 2)
    second.remember(WEB, 8082)
    assert PortMemory(path).get(WEB) == 8082
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data == {
        "version": 1,
        "ports": {
            "kind-dev/shop/pod/api-0/8080": 18080,
            "kind-dev/default/service/web/80": 8082,
        },
    }


def test_missing_file_is_empty_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    memory = PortMemory(tmp_path / "nope" / "ports.json")
    assert (len(memory), memory.get(WEB), caplog.records) == (0, None, [])
    assert not (tmp_path / "nope").exists()  # reading creates nothing


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2]", b'{"version": 1, "ports": [80]}', b"\xff\xfe", b""],
)
def test_corrupt_file_starts_empty_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    path = tmp_path / "ports.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="trayapp.engine.portmemory"):
        memory = PortMemory(path)
    assert len(memory) == 0
    assert [record.levelno for record in caplog.records] == [logging.WARNING]
    assert str(path) in caplog.records[0].getMessage()
    # And it can be written over.
    memory.remember(WEB, 8081)
    assert PortMemory(path).get(WEB) == 8081


def test_bad_entries_are_dropped_one_by_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ports.json"
    ports = {str(WEB): 8081, "a": "8080", "b": 0, "c": True, "d": 70000, str(API): 9000}
    path.write_text(json.dumps({"version": 1, "ports": ports}), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="trayapp.engine.portmemory"):
        memory = PortMemory(path)
    assert (len(memory), memory.get(WEB), memory.get(API)) == (2, 8081, 9000)
    assert "not port numbers" in caplog.records[0].getMessage()


def test_write_is_atomic_private_and_leaves_no_temp_files(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    path = folder / "ports.json"
    memory = PortMemory(path)
    for number in range(1, 30):
        memory.remember(PortKey("c", "ns", ResourceType.POD, f"p{number}", 80), 20000 + number)
    assert sorted(os.listdir(folder)) == ["ports.json"]
    if sys.platform != "win32":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_no_write_when_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "ports.json"
    memory = PortMemory(path)
    memory.remember(WEB, 8081)
    # Replace the file behind its back: an unchanged remember must not write it again.
    path.write_text('{"version": 1, "ports": {}}', encoding="utf-8")
    memory.remember(WEB, 8081)
    assert path.read_text(encoding="utf-8") == '{"version": 1, "ports": {}}'
    memory.remember(WEB, 8082)
    assert PortMemory(path).get(WEB) == 8082


def test_bounded_to_the_most_recent_entries(tmp_path: Path) -> None:
    path = tmp_path / "ports.json"
    memory = PortMemory(path, limit=3)
    keys = [PortKey("c", "ns", ResourceType.SERVICE, f"s{i}", 80) for i in range(5)]
    for index, key in enumerate(keys[:3]):
        memory.remember(key, 30000 + index)
    memory.remember(keys[0], 30000)  # used again, unchanged: now the most recent
    memory.remember(keys[3], 30003)
    memory.remember(keys[4], 30004)
    reloaded = PortMemory(path, limit=3)
    assert [reloaded.get(key) for key in keys] == [30000, None, None, 30003, 30004]
    # A file written with a larger limit is cut to the newest entries on load.
    assert [PortMemory(path, limit=1).get(key) for key in keys] == [None] * 4 + [30004]


def test_default_bound_is_two_thousand(tmp_path: Path) -> None:
    path = tmp_path / "ports.json"
    ports = {f"c/ns/pod/p{i}/80": 1024 + i for i in range(2100)}
    path.write_text(json.dumps({"version": 1, "ports": ports}), encoding="utf-8")
    memory = PortMemory(path)
    assert len(memory) == 2000
    assert memory.get(PortKey("c", "ns", ResourceType.POD, "p99", 80)) is None
    assert memory.get(PortKey("c", "ns", ResourceType.POD, "p100", 80)) == 1124


@pytest.mark.skipif(sys.platform == "win32", reason="a file in place of the folder")
def test_failed_write_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the folder should be", encoding="utf-8")
    memory = PortMemory(blocker / "ports.json")
    with caplog.at_level(logging.WARNING, logger="trayapp.engine.portmemory"):
        memory.remember(WEB, 8081)
    assert memory.get(WEB) == 8081  # still remembered for this run
    assert "Cannot save the remembered ports" in caplog.records[-1].getMessage()


def test_not_a_port_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        PortMemory(tmp_path / "ports.json").remember(WEB, 0)

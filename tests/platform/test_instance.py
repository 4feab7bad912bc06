"""The single-instance socket: real Unix sockets in a private folder."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from trayapp.errors import KubetrayError
from trayapp.platform.instance import AlreadyRunning, InstanceServer, ask, instance_dir


async def echo(request: dict[str, Any]) -> dict[str, Any]:
    return {"got": request}


def test_instance_dir_prefers_the_runtime_dir(tmp_path: Path) -> None:
    assert instance_dir({"XDG_RUNTIME_DIR": str(tmp_path)}, "linux") == tmp_path / "kubetray"
    assert instance_dir({"XDG_RUNTIME_DIR": "relative"}, "linux").name == f"kubetray-{os.getuid()}"
    assert instance_dir({"LOCALAPPDATA": str(tmp_path)}, "win32") == tmp_path / "kubetray"


async def test_requests_are_answered_and_a_second_server_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "kubetray"
    first = InstanceServer(echo, folder)
    await first.start()
    try:
        assert (folder.stat().st_mode & 0o777) == 0o700
        answer = await asyncio.to_thread(ask, {"request": "status", "x": 1}, 3.0, folder)
        assert answer == {"got": {"request": "status", "x": 1}}
        assert (await asyncio.to_thread(ask, {"request": "ping"}, 3.0, folder)) == {"pid": os.getpid()}
        with pytest.raises(AlreadyRunning):
            await InstanceServer(echo, folder).start()
    finally:
        await first.close()
    assert not (folder / "instance.sock").exists()
    assert await asyncio.to_thread(ask, {"request": "ping"}, 3.0, folder) is None


async def test_a_socket_left_by_a_crash_is_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "kubetray"
    folder.mkdir(mode=0o700)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(folder / "instance.sock"))  # bound, never listening: nobody answers
    dead.close()
    server = InstanceServer(echo, folder)
    await server.start()
    try:
        assert await asyncio.to_thread(ask, {"request": "ping"}, 3.0, folder) == {"pid": os.getpid()}
    finally:
        await server.close()


async def test_a_folder_open_to_others_is_not_used(tmp_path: Path) -> None:
    folder = tmp_path / "kubetray"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    with pytest.raises(KubetrayError, match="open to others"):
        await InstanceServer(echo, folder).start()


async def test_garbage_requests_are_ignored(tmp_path: Path) -> None:
    folder = tmp_path / "kubetray"
    server = InstanceServer(echo, folder)
    await server.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(folder / "instance.sock"))
        writer.write(b"not json\n")
        assert await reader.read() == b""  # closed without an answer
        writer.close()
        assert await asyncio.to_thread(ask, {"request": "ping"}, 3.0, folder) is not None
    finally:
        await server.close()

"""The single-instance socket: real Unix sockets in a private folder, and the Windows way
(TCP on loopback with a key both sides prove they know) run here on Linux with real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from trayapp.errors import KubetrayError
from trayapp.platform.instance import AlreadyRunning, InstanceServer, InstanceUnavailable, ask, instance_dir


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


# --- when the lock cannot be taken for another reason than another kubetray --------------------

async def test_a_file_where_the_folder_should_be_is_said_in_a_sentence(tmp_path: Path) -> None:
    (tmp_path / "runtime").write_text("not a folder", encoding="utf-8")
    with pytest.raises(InstanceUnavailable) as caught:
        await InstanceServer(echo, tmp_path / "runtime" / "kubetray").start()
    message = caught.value.message
    assert message.startswith(f"kubetray could not make its instance folder {tmp_path / 'runtime' / 'kubetray'} (")
    assert "kubetray runs anyway" in message and "Errno" not in message


async def test_a_lock_file_that_cannot_be_opened_is_not_another_instance(tmp_path: Path) -> None:
    folder = tmp_path / "kubetray"
    folder.mkdir(mode=0o700)
    (folder / "instance.lock").mkdir()  # a folder where the lock file belongs
    with pytest.raises(InstanceUnavailable) as caught:
        await InstanceServer(echo, folder).start()
    assert "could not open its lock file" in caught.value.message
    assert "a folder stands where the file should be" in caught.value.message


def test_headless_kubetray_says_so_and_forwards_without_the_lock(tmp_path: Path) -> None:
    blocked = tmp_path / "runtime"
    blocked.write_text("a file where the runtime folder should be", encoding="utf-8")
    env = {**os.environ, "XDG_RUNTIME_DIR": str(blocked), "XDG_STATE_HOME": str(tmp_path / "state"),
           "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    app = subprocess.Popen([sys.executable, "-m", "trayapp", "--demo", "--headless", "--json"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert app.stdout is not None
        forwarding = None
        for line in app.stdout:
            event = json.loads(line)
            if event["event"] == "forwarding":
                forwarding = event
                break
        assert forwarding is not None
        app.send_signal(signal.SIGINT)
        assert app.wait(timeout=15) == 0
        stderr = app.stderr.read() if app.stderr else ""
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
    assert f"kubetray could not make its instance folder {blocked / 'kubetray'}" in stderr
    assert stderr.count("could not make its instance folder") == 1 and "Traceback" not in stderr


# --- TCP with a key (Windows' way), here on Linux --------------------------------------------------

async def test_over_tcp_both_sides_prove_the_key_and_it_never_crosses_the_wire(tmp_path: Path) -> None:
    folder = tmp_path / "kubetray"
    server = InstanceServer(echo, folder, tcp=True)
    await server.start()
    try:
        info = json.loads((folder / "instance.json").read_text(encoding="utf-8"))
        assert (folder / "instance.json").stat().st_mode & 0o077 == 0
        answer = await asyncio.to_thread(ask, {"request": "status"}, 3.0, folder, True)
        assert answer == {"got": {"request": "status"}}
        with pytest.raises(AlreadyRunning):
            await InstanceServer(echo, folder, tcp=True).start()

        # A client that does not know the key gets nothing from the handler.
        reader, writer = await asyncio.open_connection("127.0.0.1", info["port"])
        writer.write(json.dumps({"hello": "ab" * 16}).encode() + b"\n")
        challenge = json.loads(await reader.readline())
        assert set(challenge) == {"nonce", "proof"} and info["key"] not in json.dumps(challenge)
        writer.write(json.dumps({"request": "status", "proof": "0" * 64}).encode() + b"\n")
        assert json.loads(await reader.readline()) == {"error": "refused"}
        writer.close()

        # Nor does one that sends a request straight away, with the key itself (the old protocol).
        reader, writer = await asyncio.open_connection("127.0.0.1", info["port"])
        writer.write(json.dumps({"request": "status", "key": info["key"]}).encode() + b"\n")
        assert json.loads(await reader.readline()) == {"error": "refused"}
        writer.close()
    finally:
        await server.close()
    assert not (folder / "instance.json").exists()


class Impostor:
    """Another program on the port a crashed kubetray's instance file still names: it answers every
    line with what a kubetray would say, and keeps everything it is sent."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with self.listener:
            connection, _ = self.listener.accept()
            with connection:
                connection.settimeout(5)
                try:
                    while chunk := connection.recv(65536):
                        self.received += chunk
                        connection.sendall(b'{"nonce": "1234567890abcdef", "proof": "00", "pid": 1, "mode": "tray"}\n')
                except OSError:
                    pass


def test_a_stale_instance_file_does_not_let_another_program_answer(tmp_path: Path) -> None:
    folder = tmp_path / "kubetray"
    folder.mkdir(mode=0o700)
    key = "k" * 64
    impostor = Impostor()
    (folder / "instance.json").write_text(json.dumps({"port": impostor.port, "key": key}), encoding="utf-8")
    assert ask({"request": "ping"}, 3.0, folder, tcp=True) is None  # not taken for a running kubetray
    impostor.thread.join(10)
    assert impostor.received  # it was asked...
    assert key.encode() not in impostor.received  # ...but never given the key
    assert b"status" not in impostor.received and b"ping" not in impostor.received  # nor the request

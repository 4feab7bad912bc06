"""Tokens in the OS keyring: the command line, a missing keyring giving a clear message, and the
record that keeps kubetray away from the keyring for contexts without a stored token.

The round trip through a real keyring daemon (gnome-keyring) belongs to the desktop tests; here a
process whose keyring backend fails shows what the user sees when none is available, and real
keyring backends of our own (in memory, in a file) stand in for the OS keyring.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import keyring.errors
import pytest

from trayapp.platform.secrets import RECORD_NAME, SERVICE, SecretStore, SecretsUnavailable


def kubetray(*args: str, stdin: str = "", backend: str = "keyring.backends.fail.Keyring",
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": backend, **(env or {})}
    return subprocess.run([sys.executable, "-m", "trayapp", *args], input=stdin, capture_output=True,
                          text=True, env=env, timeout=60)


def test_missing_keyring_is_a_clear_message_and_exit_1() -> None:
    result = kubetray("token", "set", "prod", stdin="s3cret\n")
    assert result.returncode == 1
    assert "Keyring unavailable" in result.stderr and "keeps working" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout  # never echo the token


def test_empty_stdin_stores_nothing() -> None:
    result = kubetray("token", "set", "prod", stdin="  \n")
    assert result.returncode == 1 and "nothing was stored" in result.stderr


def test_delete_with_a_missing_keyring_is_a_clear_message() -> None:
    result = kubetray("token", "delete", "prod")
    assert result.returncode == 1 and "Keyring unavailable" in result.stderr


# --- the store against a real keyring backend ------------------------------------------------
# A small in-process backend, registered through keyring's own API (keyring.set_keyring), stands
# in for the OS keyring: every call kubetray makes reaches it, and it can be slow or silent.

class MemoryKeyring(keyring.backend.KeyringBackend):
    """A keyring in a dict that records each call; `gate`, when set, holds reads until released."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}
        self.calls: list[tuple[str, str]] = []
        self.gate: threading.Event | None = None

    def get_password(self, service: str, username: str) -> str | None:
        self.calls.append(("get", username))
        if self.gate is not None:
            self.gate.wait(60)
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.calls.append(("set", username))
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.calls.append(("delete", username))
        if self.items.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError("no such password")


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        if backend.gate is not None:
            backend.gate.set()
        keyring.set_keyring(previous)


def test_a_context_without_a_stored_token_never_reaches_the_keyring(
    memory_keyring: MemoryKeyring, tmp_path: Path
) -> None:
    memory_keyring.items[(SERVICE, "kubetray-demo")] = "left-by-someone-else"
    store = SecretStore(tmp_path)
    assert store.get_token("kubetray-demo") is None
    assert memory_keyring.calls == []  # not asked at all: no record says a token was stored


def test_set_records_the_context_get_reads_it_delete_forgets_it(memory_keyring: MemoryKeyring, tmp_path: Path) -> None:
    store = SecretStore(tmp_path)
    store.set_token("prod", "  s3cret\n")
    record = (tmp_path / RECORD_NAME).read_text(encoding="utf-8")
    assert json.loads(record) == ["prod"] and "s3cret" not in record  # names only, never the token
    assert store.get_token("prod") == "s3cret"
    assert SecretStore(tmp_path).get_token("prod") == "s3cret"  # the record outlives the process
    assert store.delete_token("prod") is True
    assert json.loads((tmp_path / RECORD_NAME).read_text(encoding="utf-8")) == []
    memory_keyring.calls.clear()
    assert store.get_token("prod") is None and memory_keyring.calls == []
    assert store.delete_token("prod") is False


def test_a_keyring_that_does_not_answer_is_no_token_and_a_late_answer_is_kept(
    memory_keyring: MemoryKeyring, tmp_path: Path
) -> None:
    store = SecretStore(tmp_path)
    store.set_token("prod", "s3cret")
    memory_keyring.gate = threading.Event()
    memory_keyring.calls.clear()
    with pytest.raises(SecretsUnavailable) as caught:
        store.get_token("prod")
    assert "did not answer within 1 s" in caught.value.message and "'prod'" in caught.value.message
    with pytest.raises(SecretsUnavailable):
        store.get_token("prod")  # still silent: waits on the same lookup, starts no second one
    memory_keyring.gate.set()
    assert store.get_token("prod") == "s3cret"
    assert memory_keyring.calls == [("get", "prod")]


def test_a_keyring_error_is_a_sentence_without_the_backends_text(tmp_path: Path) -> None:
    class Broken(MemoryKeyring):
        def get_password(self, service: str, username: str) -> str | None:
            raise RuntimeError("org.freedesktop.DBus.Error.ServiceUnknown: raw backend words")

    previous = keyring.get_keyring()
    keyring.set_keyring(Broken())
    try:
        (tmp_path / RECORD_NAME).write_text('["prod"]', encoding="utf-8")
        with pytest.raises(SecretsUnavailable) as caught:
            SecretStore(tmp_path).get_token("prod")
    finally:
        keyring.set_keyring(previous)
    assert "raw backend words" not in caught.value.message and "RuntimeError" not in caught.value.message
    assert caught.value.message.startswith("kubetray could not read from the OS keyring.")


def test_a_broken_record_counts_as_empty(memory_keyring: MemoryKeyring, tmp_path: Path) -> None:
    (tmp_path / RECORD_NAME).write_text("{not json", encoding="utf-8")
    store = SecretStore(tmp_path)
    assert store.get_token("prod") is None and memory_keyring.calls == []
    store.set_token("prod", "s3cret")  # writing it again repairs it
    assert store.get_token("prod") == "s3cret"


def test_the_cli_records_the_context_it_stored_a_token_for(tmp_path: Path) -> None:
    # keyrings.alt is not a dependency: a backend in a module of our own, chosen by
    # PYTHON_KEYRING_BACKEND like any other, keeps its secrets in a file.
    (tmp_path / "filekeyring.py").write_text(
        "import json, pathlib\n"
        "from keyring.backend import KeyringBackend\n"
        "from keyring.errors import PasswordDeleteError\n"
        "FILE = pathlib.Path(__file__).with_name('secrets.json')\n"
        "class Keyring(KeyringBackend):\n"
        "    priority = 1\n"
        "    def _all(self):\n"
        "        return json.loads(FILE.read_text()) if FILE.exists() else {}\n"
        "    def get_password(self, service, username):\n"
        "        return self._all().get(f'{service}/{username}')\n"
        "    def set_password(self, service, username, password):\n"
        "        FILE.write_text(json.dumps({**self._all(), f'{service}/{username}': password}))\n"
        "    def delete_password(self, service, username):\n"
        "        items = self._all()\n"
        "        if items.pop(f'{service}/{username}', None) is None:\n"
        "            raise PasswordDeleteError('none')\n"
        "        FILE.write_text(json.dumps(items))\n",
        encoding="utf-8",
    )
    state = tmp_path / "state"
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
           "XDG_STATE_HOME": str(state)}
    stored = kubetray("token", "set", "prod", stdin="s3cret\n", backend="filekeyring.Keyring", env=env)
    assert stored.returncode == 0, stored.stderr
    assert json.loads((state / "kubetray" / RECORD_NAME).read_text(encoding="utf-8")) == ["prod"]
    deleted = kubetray("token", "delete", "prod", backend="filekeyring.Keyring", env=env)
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads((state / "kubetray" / RECORD_NAME).read_text(encoding="utf-8")) == []

"""Tokens in the OS keyring: the command line, and a missing keyring giving a clear message.

The round trip through a real keyring daemon (gnome-keyring) belongs to the desktop tests; here a
process whose keyring backend fails shows what the user sees when none is available.
"""

from __future__ import annotations

import os
import subprocess
import sys


def kubetray(*args: str, stdin: str = "", backend: str = "keyring.backends.fail.Keyring") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": backend}
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

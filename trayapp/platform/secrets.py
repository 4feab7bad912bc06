"""Bearer tokens for contexts whose kubeconfig user holds no credentials, kept in the OS keyring.

Service "kubetray", user = the context name. Tokens never touch kubetray's own files or logs.

The keyring is consulted only for a context the user stored a token for: `set_token` adds the
context's name to a small non-secret record (a JSON list in kubetray's state folder) and
`delete_token` removes it, so a context that needs no token (the demo, a local cluster) never
starts a keyring service or puts up its password dialog.

Reading (`get_token`) is what the engine does on its way to the API server, so it never asks the
user anything: on the Secret Service (Linux) it looks the item up in every collection without
unlocking or creating one, and it gives up after `LOOKUP_TIMEOUT`. Writing is a user action
("Set token…", `kubetray token set`) and may make the keyring ask to be unlocked.
A keyring that is missing, locked or silent is a SecretsUnavailable error with a message saying
so; callers carry on without the token.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from trayapp.errors import KubetrayError

log = logging.getLogger(__name__)

SERVICE = "kubetray"
RECORD_NAME = "stored-tokens.json"
LOOKUP_TIMEOUT = 1.0  # seconds a read may take before kubetray goes on without the token
_ADVICE = "Unlock the keyring or install one (on Linux: gnome-keyring or KWallet); everything else keeps working."


class SecretsUnavailable(KubetrayError):
    title = "Keyring unavailable"


class KeyringLocked(SecretsUnavailable):
    title = "Keyring locked"


def _keyring() -> Any:
    import keyring  # imported late: it probes the desktop's keyring services when imported

    return keyring


def _fail(action: str, exc: BaseException) -> SecretsUnavailable:
    # The exception's own text is for the log: it can be a D-Bus error name or a backend's prose.
    log.debug("keyring %s failed: %s: %s", action, type(exc).__name__, exc)
    return SecretsUnavailable(f"kubetray could not {action} the OS keyring. {_ADVICE}")


class TokenRecord:
    """The names of the contexts the user stored a token for: a JSON list, no secrets."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def names(self) -> frozenset[str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return frozenset()
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            log.warning("kubetray could not read its list of stored tokens %s (%s); it treats it as empty "
                        "until `kubetray token set` writes it again.", self.path, type(exc).__name__)
            return frozenset()
        if not isinstance(data, list):
            return frozenset()
        return frozenset(name for name in data if isinstance(name, str))

    def add(self, context: str) -> None:
        self._write(self.names() | {context})

    def remove(self, context: str) -> None:
        names = self.names()
        if context in names:
            self._write(names - {context})

    def _write(self, names: frozenset[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(sorted(names), handle)
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


class SecretStore:
    """Tokens in the OS keyring, consulted only for the contexts `folder`'s record lists."""

    def __init__(self, folder: Path, lookup_timeout: float = LOOKUP_TIMEOUT) -> None:
        self.record = TokenRecord(Path(folder) / RECORD_NAME)
        self._timeout = lookup_timeout
        self._lock = threading.Lock()
        # One keyring read at a time per context, in a daemon thread: a keyring that never answers
        # holds that thread, never the caller and never kubetray's exit.
        self._pending: dict[str, concurrent.futures.Future[str | None]] = {}

    def has_token(self, context: str) -> bool:
        return context in self.record.names()

    def get_token(self, context: str) -> str | None:
        """The stored token, or None when the user stored none for `context` (no keyring call then).

        Never prompts. Raises SecretsUnavailable when the keyring is missing or locked, or has
        not answered within the lookup timeout (a late answer is kept for the next call).
        """
        if not self.has_token(context):
            return None
        with self._lock:
            future = self._pending.get(context)
            if future is None:
                future = concurrent.futures.Future()
                self._pending[context] = future
                threading.Thread(target=self._look_up, args=(context, future), daemon=True,
                                 name=f"keyring:{context}").start()
        try:
            return future.result(self._timeout)
        except concurrent.futures.TimeoutError:
            raise SecretsUnavailable(
                f"The OS keyring did not answer within {self._timeout:g} s when kubetray looked up the "
                f"token stored for context {context!r}; kubetray goes on without it. {_ADVICE}"
            ) from None
        finally:
            with self._lock:
                if future.done() and self._pending.get(context) is future:
                    del self._pending[context]

    def _look_up(self, context: str, future: concurrent.futures.Future[str | None]) -> None:
        try:
            future.set_result(_read_without_prompt(context))
        except KubetrayError as exc:
            future.set_exception(exc)
        except Exception as exc:  # keyring raises its own errors and backend-specific ones
            future.set_exception(_fail("read from", exc))

    def set_token(self, context: str, token: str) -> None:
        """Store the token (the keyring may ask the user to unlock it) and record the context."""
        token = token.strip()
        if not token:
            raise ValueError("The token is empty; nothing was stored.")
        try:
            _keyring().set_password(SERVICE, context, token)
        except Exception as exc:
            raise _fail("write to", exc) from None
        self._record(self.record.add, context)

    def delete_token(self, context: str) -> bool:
        """True when a token was there and is gone. The record forgets the context either way."""
        self._record(self.record.remove, context)
        keyring = _keyring()
        try:
            keyring.delete_password(SERVICE, context)
        except keyring.errors.PasswordDeleteError:
            return False
        except Exception as exc:
            raise _fail("delete from", exc) from None
        return True

    def _record(self, change: Any, context: str) -> None:
        try:
            change(context)
        except OSError as exc:
            raise SecretsUnavailable(
                f"kubetray could not update its list of stored tokens {self.record.path} "
                f"({exc.strerror or type(exc).__name__}), so it may not use the token for context {context!r}."
            ) from None


def _read_without_prompt(context: str) -> str | None:
    """Read a token from the keyring in use without asking the user anything, where it can."""
    keyring = _keyring()
    backend = keyring.get_keyring()
    for candidate in getattr(backend, "backends", None) or [backend]:  # a ChainerBackend tries each
        if _is_secret_service(candidate):
            value = _secret_service_lookup(candidate, context)
        else:
            value = candidate.get_password(SERVICE, context)
        if value:
            return str(value)
    return None


def _is_secret_service(backend: Any) -> bool:
    with contextlib.suppress(ImportError):
        from keyring.backends import SecretService

        return isinstance(backend, SecretService.Keyring)
    return False


def _secret_service_lookup(backend: Any, context: str) -> str | None:
    """Search every collection; an item in a locked one is reported, never unlocked.

    keyring's own get_password opens the default collection, which creates it (gnome-keyring's
    "Choose password for new keyring") or unlocks it (its password prompt): both wait for the user.
    """
    import secretstorage

    scheme = backend.schemes[backend.scheme]
    attributes = {scheme["service"]: SERVICE, scheme["username"]: context}
    with contextlib.closing(secretstorage.dbus_init()) as connection:
        locked = False
        for item in secretstorage.search_items(connection, attributes):
            if item.is_locked():
                locked = True
                continue
            return item.get_secret().decode("utf-8")
    if locked:
        raise KeyringLocked(
            f"The keyring that holds the token for context {context!r} is locked, and kubetray does not "
            "unlock it by itself; it goes on without the token. Unlock the keyring (or use Set token… "
            "again) and kubetray uses the token from the next connection the cluster refuses."
        )
    return None

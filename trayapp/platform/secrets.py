"""Bearer tokens for contexts whose kubeconfig user holds no credentials, kept in the OS keyring.

Service "kubetray", user = the context name. Tokens never touch kubetray's own files or logs.
A keyring that is missing or locked is a SecretsUnavailable error with a message saying so;
callers carry on without the token.
"""

from __future__ import annotations

import logging

from trayapp.errors import KubetrayError

log = logging.getLogger(__name__)

SERVICE = "kubetray"


class SecretsUnavailable(KubetrayError):
    title = "Keyring unavailable"


def _keyring():  # type: ignore[no-untyped-def]
    import keyring  # imported late: it probes the desktop's keyring services when imported

    return keyring


def _fail(action: str, exc: Exception) -> SecretsUnavailable:
    return SecretsUnavailable(
        f"kubetray could not {action} the OS keyring ({type(exc).__name__}: {exc}). "
        "Unlock the keyring or install one (on Linux: gnome-keyring or KWallet); everything else keeps working."
    )


class SecretStore:
    def get_token(self, context: str) -> str | None:
        try:
            return _keyring().get_password(SERVICE, context) or None
        except Exception as exc:  # keyring raises its own errors and backend-specific ones
            raise _fail("read from", exc) from exc

    def set_token(self, context: str, token: str) -> None:
        token = token.strip()
        if not token:
            raise ValueError("The token is empty; nothing was stored.")
        try:
            _keyring().set_password(SERVICE, context, token)
        except Exception as exc:
            raise _fail("write to", exc) from exc

    def delete_token(self, context: str) -> bool:
        """True when a token was there and is gone."""
        keyring = _keyring()
        try:
            keyring.delete_password(SERVICE, context)
        except keyring.errors.PasswordDeleteError:
            return False
        except Exception as exc:
            raise _fail("delete from", exc) from exc
        return True

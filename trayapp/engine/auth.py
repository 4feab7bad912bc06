"""Turn a kubeconfig context into what a connection needs: server, TLS context and credentials.

The kubernetes client's own config loader does the reading, so every way a kubeconfig can hold
credentials works as it does for the client: CA data or file, client certificate and key, bearer
token or token file, exec credential plugins (re-run when their token expires),
insecure-skip-tls-verify, tls-server-name and proxy-url.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from trayapp.errors import KubeconfigError, KubetrayError

log = logging.getLogger(__name__)

_TOKEN_TTL = 10.0  # seconds a fetched header is reused before asking the loader again


@dataclass(frozen=True)
class ClusterAccess:
    """How to reach one context's API server. Holds no secrets: those stay in `Credentials`."""

    context: str
    server: str  # scheme://host:port[/prefix], without a trailing slash
    namespace: str
    cluster: str
    user: str
    ssl_context: ssl.SSLContext | None = None
    server_hostname: str | None = None  # SNI and name checked against the certificate
    proxy: str | None = field(default=None, repr=False)  # the kubeconfig's proxy-url: may hold a password

    @property
    def host(self) -> str:
        return urlsplit(self.server).hostname or "localhost"

    @property
    def port(self) -> int:
        parts = urlsplit(self.server)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def path_prefix(self) -> str:
        return urlsplit(self.server).path.rstrip("/")

    @property
    def tls(self) -> bool:
        return urlsplit(self.server).scheme == "https"



class Credentials:
    """Produces the Authorization header for a context, refreshing it through the client's loader."""

    def __init__(
        self,
        paths: Sequence[Path],
        context: str | None,
        stored_token: Callable[[str], str | None] | None = None,
    ) -> None:
        self._paths = tuple(Path(p) for p in paths)
        self._context = context
        # For a kubeconfig user with no credentials: a token the user stored (the OS keyring).
        # Called from a worker thread, as keyrings block.
        self._stored_token = stored_token
        self._told_keyring = False
        self._stored_asked = False
        self._stored_lock = threading.Lock()
        self._stored_value: str | None = None
        self._configuration = None
        self._header: str | None = None
        self._fetched = False
        self._refused = False
        self._fetched_at = 0.0
        self._temp_dir = tempfile.TemporaryDirectory(prefix="kubetray-")

    def load(self) -> ClusterAccess:
        """Read the kubeconfig (blocking: it may run an exec plugin). Raises KubeconfigError."""
        from kubernetes import config as kube_config
        from kubernetes.client import Configuration

        files = [p for p in self._paths if p.exists()]
        shown = os.pathsep.join(str(p) for p in self._paths)
        if not files:
            raise KubeconfigError(f"No kubeconfig found at {shown}. kubetray needs one to reach a cluster.")
        joined = os.pathsep.join(str(p) for p in files)
        configuration = Configuration()
        # Only the kubeconfig's proxy-url: newer clients fill `proxy` from the environment too,
        # without NO_PROXY; connect.py applies the environment as kubectl does.
        configuration.proxy = None
        try:
            contexts, current = kube_config.list_kube_config_contexts(config_file=joined)
            name = self._context or (current or {}).get("name")
            chosen = next((c for c in contexts if c.get("name") == name), None)
            if chosen is None:
                known = ", ".join(sorted(str(c.get("name")) for c in contexts)) or "none"
                raise KubeconfigError(
                    f"The kubeconfig {shown} has no context named {name!r} (it has: {known}).",
                )
            kube_config.load_kube_config(
                config_file=joined,
                context=name,
                client_configuration=configuration,
                persist_config=False,
                temp_file_path=self._temp_dir.name,
            )
        except KubeconfigError:
            raise
        except Exception as exc:  # the loader raises bare ConfigException, yaml errors, OSErrors
            raise KubeconfigError(f"kubetray could not use the kubeconfig {shown}: {exc}") from exc
        self._configuration = configuration
        self._fetched = False
        self._stored_asked = False  # a new reading (e.g. after a 401) asks the keyring again
        details = chosen.get("context") or {}
        return ClusterAccess(
            context=name,
            server=configuration.host.rstrip("/"),
            namespace=details.get("namespace") or "default",
            cluster=str(details.get("cluster", "")),
            user=str(details.get("user", "")),
            ssl_context=_ssl_context(configuration) if configuration.host.startswith("https") else None,
            server_hostname=getattr(configuration, "tls_server_name", None) or None,
            proxy=configuration.proxy or None,
        )

    def _header_now(self) -> str | None:
        configuration = self._configuration
        if configuration is None:
            return None
        settings = configuration.auth_settings()  # runs the loader's refresh hook (exec plugins)
        bearer = settings.get("BearerToken") or {}
        value = bearer.get("value")
        if not value and not getattr(configuration, "cert_file", None) and self._stored_token and self._context:
            value = self._stored_header()
        # client-go trims token files; a trailing newline would also be an illegal header value.
        return value.strip() if value else None

    def _stored_header(self) -> str | None:
        """Asked once per kubeconfig reading: a locked keyring may ask the user to unlock it."""
        # Several watches ask at once when a context starts; without the lock the later ones saw
        # "already asked" before the answer arrived and went out with no token (a 401).
        with self._stored_lock:
            return self._stored_header_locked()

    def _stored_header_locked(self) -> str | None:
        if not self._stored_asked:
            self._stored_asked = True
            assert self._stored_token is not None and self._context is not None
            try:
                stored = self._stored_token(self._context)
            except KubetrayError as exc:
                # Most users without credentials in the kubeconfig need none (a local cluster, the
                # demo): say it once, for -v; `kubetray token set` shows it to whoever uses it.
                if not self._told_keyring:
                    self._told_keyring = True
                    log.info("%s", exc.message)
                stored = None
            self._stored_value = f"Bearer {stored}" if stored else None
        return self._stored_value

    async def authorization(self) -> str | None:
        """The Authorization header value, or None when the context uses client certificates only."""
        if self._refused:
            # Read the kubeconfig again: a rotated token file, or a fresh exec-plugin token.
            self._refused = False
            await asyncio.to_thread(self.load)
        if not self._fetched or time.monotonic() - self._fetched_at > _TOKEN_TTL:
            self._header = await asyncio.to_thread(self._header_now)
            self._fetched = True
            self._fetched_at = time.monotonic()
        return self._header

    def invalidate(self) -> None:
        """The server refused the credentials: read them afresh before the next request."""
        self._refused = True
        self._fetched = False

    async def reload(self) -> ClusterAccess:
        """Read the kubeconfig again, after the server refused the credentials."""
        return await asyncio.to_thread(self.load)

    def close(self) -> None:
        self._temp_dir.cleanup()


def _ssl_context(configuration: object) -> ssl.SSLContext:
    ca = getattr(configuration, "ssl_ca_cert", None)
    context = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
    if not getattr(configuration, "verify_ssl", True):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert = getattr(configuration, "cert_file", None)
    key = getattr(configuration, "key_file", None)
    if cert:
        context.load_cert_chain(cert, key or None)
    # Streams are long-lived and carry their own framing; HTTP/2 is not spoken here.
    context.set_alpn_protocols(["http/1.1"])
    return context

"""Turn a kubeconfig context into what a connection needs: server, TLS context and credentials.

kubeconfig.py finds the context's cluster and user entries; the kubernetes client's own config
loader then reads the server and the static credentials (bearer token or token file, auth
providers, basic auth, insecure-skip-tls-verify, tls-server-name, proxy-url), so those work as
they do for the client. Two things kubetray does itself, because the loader does them on the
calling thread with no way to stop them: TLS material (tlsfiles.py: checked for rotation before
each connection, a broken certificate is a kubeconfig problem with its file) and exec credential
plugins (execplugin.py: run one at a time per context, with a deadline, cancellable).

Reading the kubeconfig (`load`) never runs a plugin and never asks the keyring, so it is quick
and never holds up whoever holds a lock around it; both happen on the way to a request, in
`authorization()`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from trayapp.engine.kube.execplugin import EXEC_TIMEOUT, ExecCredential, ExecPlugin, ExecPluginFailed
from trayapp.engine.kube.kubeconfig import ContextEntries, NamedEntry, entry_path, read_context_entries
from trayapp.engine.kube.tlsfiles import Pem, TlsMaterial, TlsSettings, inline
from trayapp.errors import KubeconfigError, KubetrayError

log = logging.getLogger(__name__)

_TOKEN_TTL = 10.0  # seconds a fetched header is reused before asking the loader again
_EXEC_MARGIN = 5.0  # an exec credential this close to its expiry is fetched afresh
_EXEC_RETRY_AFTER = 5.0  # after a plugin failed, callers within this many seconds get the same error
# Kept from the kubeconfig for kubetray's own TLS and exec handling, away from the loader.
_TLS_KEYS = ("certificate-authority", "certificate-authority-data")
_USER_TLS_KEYS = ("client-certificate", "client-certificate-data", "client-key", "client-key-data")


@dataclass(frozen=True)
class ClusterAccess:
    """How to reach one context's API server. Holds no secrets: those stay in `Credentials`."""

    context: str
    server: str  # scheme://host:port[/prefix], without a trailing slash
    namespace: str
    cluster: str
    user: str
    tls_settings: TlsSettings | None = field(default=None, repr=False, compare=False)
    server_hostname: str | None = None  # SNI and name checked against the certificate
    proxy: str | None = field(default=None, repr=False)  # may hold a password: never in a repr

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS settings for a new connection, rebuilt when a certificate file was replaced."""
        return self.tls_settings.current() if self.tls_settings is not None else None

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
    """Produces the Authorization header for a context and keeps its TLS settings current."""

    def __init__(
        self,
        paths: Sequence[Path],
        context: str | None,
        stored_token: Callable[[str], str | None] | None = None,
        exec_timeout: float = EXEC_TIMEOUT,
    ) -> None:
        self._paths = tuple(Path(p) for p in paths)
        self._context = context
        # For a kubeconfig user with no credentials: a token the user stored (the OS keyring).
        # Called from a worker thread; it answers within a second (platform/secrets.py).
        self._stored_token = stored_token
        self._told_keyring = False
        self._stored_asked = False
        self._stored_lock = threading.Lock()
        self._stored_value: str | None = None
        self._configuration: Any = None
        self._has_client_certificate = False
        self._exec: ExecPlugin | None = None
        self._exec_timeout = exec_timeout
        self._exec_credential: ExecCredential | None = None
        self._exec_failure: tuple[float, str] | None = None  # when, and the message
        self._exec_runs = 0
        self._exec_lock = asyncio.Lock()  # one plugin run at a time for this context
        self._reread_lock = asyncio.Lock()
        self._read_stamp: tuple[object, ...] = ()
        self._told_reread: str | None = None
        self._header: str | None = None
        self._fetched = False
        self._refused = False
        self._fetched_at = 0.0
        self._temp_dir = tempfile.TemporaryDirectory(prefix="kubetray-")
        self._tls = TlsSettings(Path(self._temp_dir.name))

    def load(self) -> ClusterAccess:
        """Read the kubeconfig (blocking but quick: no plugin runs, no keyring). Raises KubeconfigError."""
        from kubernetes import config as kube_config
        from kubernetes.client import Configuration

        stamp = _files_stamp(self._paths)
        entries = read_context_entries(self._paths, self._context)
        name = entries.effective.name
        configuration = Configuration()
        # Only the kubeconfig's proxy-url: newer clients fill `proxy` from the environment too,
        # without NO_PROXY; connect.py applies the environment as kubectl does.
        configuration.proxy = None
        try:
            kube_config.load_kube_config_from_dict(  # type: ignore[no-untyped-call]
                _for_loader(entries),
                context=name,
                client_configuration=configuration,
                persist_config=False,
                temp_file_path=self._temp_dir.name,
            )
        except OSError as exc:  # a token file that is missing or unreadable
            raise KubeconfigError(
                f"kubetray could not read the file {exc.filename or 'it names'} for {_where_user(entries)} "
                f"({_reason(exc)})."
            ) from None
        except Exception as exc:  # the loader raises bare ConfigException and others for auth providers
            log.debug("the kubernetes config loader refused context %s: %s: %s", name, type(exc).__name__, exc)
            raise KubeconfigError(
                f"The kubernetes client could not use the credentials of {_where_user(entries)} (its token, "
                "token file or auth provider settings)."
            ) from None
        plugin = None
        if entries.user is not None and _uses_exec(entries):
            plugin = ExecPlugin.from_entries(entries.user, entries.cluster, name)
        https = configuration.host.startswith("https")
        material = _tls_material(entries) if https else None
        if material is not None:
            self._tls.update(material)  # a certificate that does not parse stops here, with its file
        if plugin != self._exec:
            self._exec_credential = None
            self._exec_failure = None
        self._exec = plugin
        self._context = name  # read again later (a 401, a changed file), it stays this context
        self._has_client_certificate = material is not None and material.cert is not None
        self._configuration = configuration
        self._read_stamp = stamp
        self._fetched = False
        self._stored_asked = False  # a new reading (e.g. after a 401) asks the keyring again
        return ClusterAccess(
            context=name,
            server=configuration.host.rstrip("/"),
            namespace=entries.effective.namespace,
            cluster=entries.effective.cluster,
            user=entries.effective.user,
            tls_settings=self._tls if https else None,
            # Read from the entry itself: the kubernetes client learned proxy-url and
            # tls-server-name only in later releases than the oldest kubetray supports.
            server_hostname=_text(entries.cluster.body.get("tls-server-name")),
            proxy=_text(entries.cluster.body.get("proxy-url")),
        )

    def _header_now(self) -> str | None:
        configuration = self._configuration
        if configuration is None:
            return None
        settings = configuration.auth_settings()  # runs the loader's refresh hook (auth providers)
        bearer = settings.get("BearerToken") or {}
        value = bearer.get("value")
        if not value and not self._has_client_certificate and self._stored_token and self._context:
            value = self._stored_header()
        # client-go trims token files; a trailing newline would also be an illegal header value.
        return value.strip() if value else None

    def _stored_header(self) -> str | None:
        """Asked once per kubeconfig reading; the store answers within a second."""
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
                # The user stored a token for this context (the store asks the keyring for no
                # other), so the keyring failing to hand it out is worth a line, once.
                if not self._told_keyring:
                    self._told_keyring = True
                    log.warning("%s", exc.message)
                stored = None
            self._stored_value = f"Bearer {stored}" if stored else None
        return self._stored_value

    async def authorization(self) -> str | None:
        """The Authorization header value, or None when the context uses client certificates only.

        Call it before opening the connection it is for: it also brings the TLS settings up to date
        (a changed kubeconfig, a client certificate from an exec plugin).
        """
        if self._refused or _files_stamp(self._paths) != self._read_stamp:
            # Refused: a rotated token file, or a fresh exec-plugin token. Changed: new credentials
            # for the next connection, whether or not the tunnels restart.
            refused, self._refused = self._refused, False
            await self._reread(refused)
        if self._exec is not None:
            credential = await self._exec_credential_now()
            return f"Bearer {credential.token}" if credential.token else None
        if not self._fetched or time.monotonic() - self._fetched_at > _TOKEN_TTL:
            self._header = await asyncio.to_thread(self._header_now)
            self._fetched = True
            self._fetched_at = time.monotonic()
        return self._header

    async def _reread(self, refused: bool) -> None:
        async with self._reread_lock:
            if not refused and _files_stamp(self._paths) == self._read_stamp:
                return  # another request read it meanwhile
            try:
                await asyncio.to_thread(self.load)
            except KubeconfigError as exc:
                # The supervisor reports a broken kubeconfig to the user; here it is only why the
                # old credentials stay in use.
                self._read_stamp = _files_stamp(self._paths)
                if exc.message != self._told_reread:
                    self._told_reread = exc.message
                    log.info("%s kubetray keeps the credentials it read before for context %s.",
                             exc.message, self._context)

    def _valid_exec_credential(self) -> ExecCredential | None:
        credential = self._exec_credential
        if credential is None or (credential.expires_at is not None
                                  and time.time() > credential.expires_at - _EXEC_MARGIN):
            return None
        return credential

    async def _exec_credential_now(self) -> ExecCredential:
        credential = self._valid_exec_credential()
        if credential is not None:
            return credential
        runs = self._exec_runs
        # The lock only orders the callers of this context's plugin; stopping never needs it,
        # and a cancelled caller kills the plugin it was running on its way out.
        async with self._exec_lock:
            credential = self._valid_exec_credential()
            if credential is not None:
                return credential
            failure = self._exec_failure
            if failure is not None and (self._exec_runs != runs
                                        or time.monotonic() - failure[0] < _EXEC_RETRY_AFTER):
                raise ExecPluginFailed(failure[1])  # the run this caller waited for failed
            plugin = self._exec
            assert plugin is not None
            try:
                credential = await plugin.run(self._exec_timeout)
                if credential.client_certificate and credential.client_key:
                    try:
                        self._tls.use_exec_certificate(credential.client_certificate, credential.client_key)
                    except KubeconfigError as exc:
                        raise ExecPluginFailed(f"{exc.message} kubetray tries again at the next connection.") from None
            except ExecPluginFailed as exc:
                self._exec_failure = (time.monotonic(), exc.message)
                self._exec_runs += 1
                raise
            self._exec_credential, self._exec_failure = credential, None
            self._exec_runs += 1
            return credential

    def invalidate(self) -> None:
        """The server refused the credentials: read them afresh before the next request."""
        self._refused = True
        self._fetched = False
        self._exec_credential = None
        self._exec_failure = None

    def close(self) -> None:
        self._temp_dir.cleanup()


def _files_stamp(paths: Sequence[Path]) -> tuple[object, ...]:
    """What tells a rewritten kubeconfig apart: inode, size and modification time of each file."""
    stamp: list[object] = []
    for path in paths:
        try:
            info = path.stat()
        except OSError:
            stamp.append(None)
            continue
        stamp.append((info.st_ino, info.st_size, info.st_mtime_ns))
    return tuple(stamp)


def _uses_exec(entries: ContextEntries) -> bool:
    """client-go's order: an auth provider or a token wins over an exec plugin."""
    user = entries.user.body if entries.user is not None else {}
    return bool(user.get("exec")) and not any(user.get(k) for k in ("auth-provider", "token", "tokenFile"))


def _for_loader(entries: ContextEntries) -> dict[str, Any]:
    """The one context, its cluster and its user for the client's loader, without what kubetray
    handles itself (TLS material, exec plugins) and with files made absolute."""
    name = entries.effective.name
    cluster = {k: v for k, v in entries.cluster.body.items() if k not in _TLS_KEYS}
    context: dict[str, Any] = {"cluster": entries.cluster.name}
    users: list[dict[str, Any]] = []
    if entries.user is not None:
        user = {k: v for k, v in entries.user.body.items() if k not in _USER_TLS_KEYS and k != "exec"}
        if _uses_exec(entries):
            user.pop("username", None)
            user.pop("password", None)
        if user.get("tokenFile"):
            user["tokenFile"] = str(entry_path(entries.user, str(user["tokenFile"])))
        context["user"] = entries.user.name
        users.append({"name": entries.user.name, "user": user})
    return {
        "current-context": name,
        "contexts": [{"name": name, "context": context}],
        "clusters": [{"name": entries.cluster.name, "cluster": cluster}],
        "users": users,
    }


def _tls_material(entries: ContextEntries) -> TlsMaterial:
    name = entries.effective.name
    cluster, user = entries.cluster, entries.user
    cluster_where = f"the cluster {cluster.name!r} in the kubeconfig {cluster.source} (context {name!r})"
    material = TlsMaterial(
        verify=not cluster.body.get("insecure-skip-tls-verify"),
        ca=_pem(cluster, "certificate-authority", "certificate authority", cluster_where),
    )
    if user is None:
        return material
    where = _where_user(entries)
    return TlsMaterial(
        verify=material.verify, ca=material.ca,
        cert=_pem(user, "client-certificate", "client certificate", where),
        key=_pem(user, "client-key", "client key", where),
    )


def _pem(entry: NamedEntry, key: str, what: str, where: str) -> Pem | None:
    data = entry.body.get(f"{key}-data")
    if data:
        return inline(what, where, f"{key}-data", data)
    path = entry.body.get(key)
    if path:
        return Pem(what, where, path=entry_path(entry, str(path)))
    return None


def _where_user(entries: ContextEntries) -> str:
    user = entries.user
    if user is None:
        return f"context {entries.effective.name!r}"
    return f"the user {user.name!r} in the kubeconfig {user.source} (context {entries.effective.name!r})"


def _reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "it does not exist"
    if isinstance(exc, PermissionError):
        return "kubetray is not allowed to read it"
    return exc.strerror or type(exc).__name__


def _text(value: object) -> str | None:
    """A kubeconfig string field, None when absent or empty."""
    return str(value) if value not in (None, "") else None

"""The TLS settings of one context: CA and client certificate from the kubeconfig, kept current.

A kubeconfig names its certificates either inline (`*-data`, base64) or as files. Files are
checked before each new connection (one stat each) and the SSL context is rebuilt when one was
replaced, so a rotated client certificate or a new CA is used from the next connection on while
open connections and tunnels carry on. A certificate that does not parse is a KubeconfigError
naming the kubeconfig, the entry and the file; after a rotation that leaves a broken file,
kubetray keeps the last good settings and says so in the log once.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from trayapp.errors import KubeconfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pem:
    """One certificate or key as the kubeconfig gives it: inline bytes or a file to read."""

    what: str  # for messages: "certificate authority", "client certificate", "client key"
    where: str  # for messages: "cluster 'c' in the kubeconfig /x (context 'ctx')"
    data: bytes | None = None
    path: Path | None = None

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            raise KubeconfigError(f"The {self.what} file {self.path} named by {self.where} does not exist.") from None
        except PermissionError:
            raise KubeconfigError(f"kubetray is not allowed to read the {self.what} file {self.path} "
                                  f"named by {self.where}.") from None
        except OSError as exc:
            raise KubeconfigError(f"kubetray could not read the {self.what} file {self.path} named by "
                                  f"{self.where} ({exc.strerror or type(exc).__name__}).") from None

    def describe(self) -> str:
        if self.path is not None:
            return f"The {self.what} file {self.path} named by {self.where}"
        return f"The {self.what} data of {self.where}"


def inline(what: str, where: str, field: str, value: object) -> Pem:
    """A `*-data` field: base64 of PEM text."""
    try:
        data = base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise KubeconfigError(f"The {field} of {where} is not valid base64, so it holds no {what}.") from None
    return Pem(what, where, data=data)


@dataclass(frozen=True)
class TlsMaterial:
    verify: bool = True
    ca: Pem | None = None
    cert: Pem | None = None
    key: Pem | None = None


class TlsSettings:
    """The SSL context for new connections of one context; `current()` is cheap and non-blocking
    enough for the event loop (a stat per file, a rebuild only after a change)."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder  # private (0700) folder for inline client certificates and keys
        self._lock = threading.Lock()
        self._material = TlsMaterial()
        self._exec_pair: tuple[bytes, bytes] | None = None  # from an exec credential plugin
        self._context: ssl.SSLContext | None = None
        self._stamp: tuple[object, ...] = ()
        self._told: str | None = None

    def update(self, material: TlsMaterial) -> None:
        """New settings from a kubeconfig reading; raises KubeconfigError when they do not parse."""
        with self._lock:
            context, stamp = self._build(material, self._exec_pair)
            self._material, self._context, self._stamp, self._told = material, context, stamp, None

    def use_exec_certificate(self, cert: bytes, key: bytes) -> None:
        """A client certificate handed out by an exec credential plugin replaces the kubeconfig's."""
        with self._lock:
            if self._exec_pair == (cert, key) and self._context is not None:
                return
            context, stamp = self._build(self._material, (cert, key))
            self._exec_pair, self._context, self._stamp = (cert, key), context, stamp

    def current(self) -> ssl.SSLContext:
        with self._lock:
            stamp = _stamp(self._material)
            if self._context is None or stamp != self._stamp:
                try:
                    self._context, self._stamp = self._build(self._material, self._exec_pair)
                    self._told = None
                except KubeconfigError as exc:
                    if self._context is None:
                        raise
                    if exc.message != self._told:  # say it once per problem, not per connection
                        self._told = exc.message
                        log.warning("%s kubetray keeps using the certificates it read before.", exc.message)
                    self._stamp = stamp
            return self._context

    def _build(self, material: TlsMaterial,
               exec_pair: tuple[bytes, bytes] | None) -> tuple[ssl.SSLContext, tuple[object, ...]]:
        stamp = _stamp(material)
        if material.ca is not None:
            ca = material.ca.read()
            if not _holds_certificate(ca):
                raise KubeconfigError(f"{material.ca.describe()} is not a PEM certificate.")
            try:
                context = ssl.create_default_context(cadata=_pem_text(material.ca, ca))
            except (ssl.SSLError, ValueError):  # a bundle with one good certificate and a broken one
                raise KubeconfigError(f"{material.ca.describe()} holds a certificate that does not parse.") from None
        else:
            context = ssl.create_default_context()  # the system's CAs
        if not material.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        cert: Pem | None
        key: Pem | None
        if exec_pair is not None:
            where = "the exec credential plugin's answer"
            cert = Pem("client certificate", where, data=exec_pair[0])
            key = Pem("client key", where, data=exec_pair[1])
        else:
            cert, key = material.cert, material.key
        if cert is not None or key is not None:
            self._load_pair(context, cert, key)
        # Streams are long-lived and carry their own framing; HTTP/2 is not spoken here.
        context.set_alpn_protocols(["http/1.1"])
        return context, stamp

    def _load_pair(self, context: ssl.SSLContext, cert: Pem | None, key: Pem | None) -> None:
        if cert is None or key is None:
            given = cert or key
            assert given is not None
            missing = "client key" if cert is not None else "client certificate"
            raise KubeconfigError(f"{given.describe()} comes without a {missing}; kubetray needs both.")
        cert_bytes, key_bytes = cert.read(), key.read()
        if not _holds_certificate(cert_bytes):
            raise KubeconfigError(f"{cert.describe()} is not a PEM certificate.")
        cert_file, key_file = self._file_for(cert, cert_bytes), self._file_for(key, key_bytes)
        try:
            context.load_cert_chain(cert_file, key_file)
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise KubeconfigError(f"{key.describe()} does not belong to the client certificate.") from None
            raise KubeconfigError(f"{key.describe()} is not a PEM private key kubetray can use.") from None
        except OSError as exc:
            raise KubeconfigError(f"{cert.describe()} could not be used ({exc.strerror or type(exc).__name__}).") from None

    def _file_for(self, pem: Pem, data: bytes) -> str:
        """load_cert_chain reads files: inline data goes to a private file first."""
        if pem.path is not None and pem.data is None:
            return str(pem.path)
        name = "client.key" if "key" in pem.what else "client.crt"
        path = self._folder / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        except OSError as exc:
            raise KubeconfigError(f"kubetray could not keep the {pem.what} of {pem.where} in its private folder "
                                  f"{self._folder} ({exc.strerror or type(exc).__name__}).") from None
        return str(path)


def _pem_text(pem: Pem, data: bytes) -> str:
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise KubeconfigError(f"{pem.describe()} is not a PEM certificate (it is not text).") from None


def _holds_certificate(data: bytes) -> bool:
    """True when `data` parses as at least one X.509 certificate in PEM."""
    try:
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        probe.load_verify_locations(cadata=data.decode("ascii"))
    except (ssl.SSLError, ValueError, UnicodeDecodeError):
        return False
    return True


def _stamp(material: TlsMaterial) -> tuple[object, ...]:
    """What tells a replaced file apart: inode, size and modification time of each named file."""
    stamp: list[object] = []
    for pem in (material.ca, material.cert, material.key):
        if pem is None or pem.path is None:
            continue
        try:
            info = pem.path.stat()
        except OSError:
            stamp.append((str(pem.path), None))
            continue
        stamp.append((str(pem.path), info.st_ino, info.st_size, info.st_mtime_ns))
    return tuple(stamp)

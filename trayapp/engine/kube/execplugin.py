"""Exec credential plugins (`users[].user.exec` in a kubeconfig), run the way client-go runs them.

The plugin is a program that prints an ExecCredential (a token, or a client certificate and key,
with an optional expiry). kubetray runs it as an asyncio subprocess with a deadline, never in a
thread, so whoever awaits it can be cancelled: stopping a tunnel or quitting kills a plugin that
hangs instead of waiting for it. It never runs through a shell and never gets a terminal:
kubetray runs in the background, so a plugin that must ask the user something fails with a
message saying so.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from trayapp.engine.aio import deadline
from trayapp.engine.kube.kubeconfig import NamedEntry, entry_path
from trayapp.errors import ApiUnreachable, KubeconfigError

log = logging.getLogger(__name__)

EXEC_TIMEOUT = 30.0  # seconds a plugin may take; `gcloud`, `aws eks get-token` take one or two
_EXEC_EXTENSION = "client.authentication.k8s.io/exec"


class ExecPluginFailed(ApiUnreachable):
    """The plugin could not hand out credentials this time; the next connection tries again."""

    title = "Credential plugin failed"


@dataclass(frozen=True)
class ExecCredential:
    token: str | None = None
    client_certificate: bytes | None = None
    client_key: bytes | None = None
    expires_at: float | None = None  # time.time() seconds; None: valid until the server refuses it


@dataclass(frozen=True)
class ExecPlugin:
    command: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    api_version: str
    interactive_mode: str
    install_hint: str
    folder: Path  # relative commands count from the kubeconfig's folder, as in client-go
    context: str
    cluster_info: Mapping[str, Any] | None  # sent to the plugin when provideClusterInfo is set

    @classmethod
    def from_entries(cls, user: NamedEntry, cluster: NamedEntry, context: str) -> ExecPlugin:
        spec = user.body.get("exec")
        where = f"the user {user.name!r} in the kubeconfig {user.source}"
        if not isinstance(spec, Mapping):
            raise KubeconfigError(f"The exec section of {where} is not a mapping.")
        command, api_version = spec.get("command"), spec.get("apiVersion")
        if not command or not api_version:
            missing = "command" if not command else "apiVersion"
            raise KubeconfigError(f"The exec section of {where} has no {missing}.")
        args = spec.get("args") or []
        env = spec.get("env") or []
        if not isinstance(args, list) or not isinstance(env, list) or not all(isinstance(e, Mapping) for e in env):
            raise KubeconfigError(f"The exec section of {where} has args or env that are not lists.")
        info = None
        if spec.get("provideClusterInfo"):
            info = _cluster_info(cluster)
        return cls(
            command=str(command), args=tuple(str(a) for a in args),
            env=tuple((str(e.get("name", "")), str(e.get("value", ""))) for e in env),
            api_version=str(api_version), interactive_mode=str(spec.get("interactiveMode") or "IfAvailable"),
            install_hint=str(spec.get("installHint") or "").strip(), folder=user.source.parent,
            context=context, cluster_info=info,
        )

    @property
    def name(self) -> str:
        return Path(self.command).name

    def _program(self) -> str | None:
        if os.sep in self.command or (os.altsep and os.altsep in self.command):
            path = Path(self.command).expanduser()
            path = path if path.is_absolute() else self.folder / path
            return str(path) if path.exists() else None
        return shutil.which(self.command)

    async def run(self, timeout: float = EXEC_TIMEOUT) -> ExecCredential:
        if self.interactive_mode == "Always":
            raise self._failed("needs a terminal to ask you something (interactiveMode: Always), and kubetray "
                               "runs without one. Get a credential once in a terminal (for example with "
                               "`kubectl get namespaces`), or set interactiveMode to IfAvailable")
        program = self._program()
        if program is None:
            hint = f" {self.install_hint}" if self.install_hint else ""
            raise self._failed(f"was not found (the kubeconfig runs {self.command!r}).{hint} kubetray tries again "
                               "at the next connection", end="")
        spec: dict[str, Any] = {"interactive": False}
        if self.cluster_info is not None:
            spec["cluster"] = dict(self.cluster_info)
        env = {**os.environ, **dict(self.env),
               "KUBERNETES_EXEC_INFO": json.dumps({"apiVersion": self.api_version, "kind": "ExecCredential",
                                                   "spec": spec})}
        try:
            process = await asyncio.create_subprocess_exec(
                program, *self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env, cwd=self.folder if self.folder.is_dir() else None,
                # Its own process group, so a timeout also ends what the plugin started.
                start_new_session=sys.platform != "win32",
            )
        except OSError as exc:
            log.debug("starting credential plugin %s failed: %s", program, exc)
            raise self._failed("could not be started (it may not be executable)") from None
        try:
            async with deadline(timeout):
                out, err = await process.communicate()
        except TimeoutError:
            raise ExecPluginFailed(
                f"The credential plugin {self.name} for context {self.context!r} did not answer within "
                f"{timeout:g} s; kubetray stopped it and tries again at the next connection. Run "
                f"`{self.name}` in a terminal to see what it waits for."
            ) from None
        finally:
            if process.returncode is None:
                _kill(process)
                with contextlib.suppress(ProcessLookupError):
                    await process.wait()
        if err.strip():
            log.info("credential plugin %s for context %s wrote: %s", self.name, self.context,
                     err.decode("utf-8", "replace").strip()[-2000:])
        if process.returncode != 0:
            raise self._failed(f"failed (exit status {process.returncode}). Run `{self.name}` in a terminal "
                               "to see why")
        return self._parse(out)

    def _parse(self, out: bytes) -> ExecCredential:
        try:
            answer = json.loads(out)
        except ValueError:
            raise self._failed("printed something that is not JSON where an ExecCredential belongs") from None
        if not isinstance(answer, dict) or answer.get("kind") != "ExecCredential":
            raise self._failed("printed JSON that is not an ExecCredential")
        if answer.get("apiVersion") != self.api_version:
            raise self._failed(f"answered with apiVersion {answer.get('apiVersion')!r} where the kubeconfig asks "
                               f"for {self.api_version!r}")
        status = answer.get("status")
        if not isinstance(status, dict):
            raise self._failed("answered without a status")
        expires = _expiry(status.get("expirationTimestamp"))
        token = status.get("token")
        if isinstance(token, str) and token:
            return ExecCredential(token=token, expires_at=expires)
        cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
        if isinstance(cert, str) and isinstance(key, str) and cert and key:
            return ExecCredential(client_certificate=cert.encode(), client_key=key.encode(), expires_at=expires)
        raise self._failed("answered without a token or a client certificate and key")

    def _failed(self, what: str, end: str = "; kubetray tries again at the next connection") -> ExecPluginFailed:
        return ExecPluginFailed(f"The credential plugin {self.name} for context {self.context!r} {what}{end}.")


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if sys.platform != "win32":
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()


def _expiry(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        log.info("a credential plugin's expirationTimestamp %r is not a time; kubetray reuses the credential "
                 "until the server refuses it", value)
        return None


def _cluster_info(cluster: NamedEntry) -> dict[str, Any]:
    """The cluster as client-go describes it to a plugin (KUBERNETES_EXEC_INFO spec.cluster)."""
    body = cluster.body
    info: dict[str, Any] = {"server": body.get("server")}
    for key in ("tls-server-name", "insecure-skip-tls-verify", "proxy-url", "disable-compression"):
        if key in body:
            info[key] = body[key]
    if body.get("certificate-authority-data"):
        info["certificate-authority-data"] = body["certificate-authority-data"]
    elif body.get("certificate-authority"):
        with contextlib.suppress(OSError):
            data = entry_path(cluster, str(body["certificate-authority"])).read_bytes()
            info["certificate-authority-data"] = base64.b64encode(data).decode()
    for extension in body.get("extensions") or []:
        if isinstance(extension, Mapping) and extension.get("name") == _EXEC_EXTENSION:
            info["config"] = extension.get("extension")
    return info

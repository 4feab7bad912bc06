"""The only place that talks to the API server: list, watch and port-forward stream dialing.

HTTP and WebSocket failures are translated here into kubetray's error types, so the rest of the
engine branches on ApiUnreachable / AuthError / NotFound / Gone and never on library exceptions.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import websockets
from websockets.asyncio.client import ClientConnection, connect

from trayapp import __version__
from trayapp.engine.auth import ClusterAccess, Credentials
from trayapp.engine.httpclient import HttpStream, open_stream, status_message
from trayapp.engine.wire import SUBPROTOCOL
from trayapp.errors import ApiError, ApiUnreachable, AuthError, Gone, NotFound

# kind (plural resource name) -> API group path
_API_PATHS: dict[str, str] = {
    "namespaces": "/api/v1",
    "pods": "/api/v1",
    "services": "/api/v1",
    "endpoints": "/api/v1",
    "replicationcontrollers": "/api/v1",
    "deployments": "/apis/apps/v1",
    "replicasets": "/apis/apps/v1",
    "statefulsets": "/apis/apps/v1",
    "daemonsets": "/apis/apps/v1",
    "jobs": "/apis/batch/v1",
    "cronjobs": "/apis/batch/v1",
}

USER_AGENT = f"kubetray/{__version__}"
WATCH_TIMEOUT_SECONDS = 290  # the server ends a watch normally after this; we resume from the last RV
# A stream's frames are our TCP reads (64 KiB); allow the server larger ones without a cap.
_WS_MAX_MESSAGE = None


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: Mapping[str, Any]


def collection_path(kind: str, namespace: str | None) -> str:
    group = _API_PATHS[kind]
    if namespace is None or kind == "namespaces":
        return f"{group}/{kind}"
    return f"{group}/namespaces/{quote(namespace, safe='')}/{kind}"


def _error_for(status: int, message: str, what: str) -> ApiError:
    if status in (401, 403):
        return AuthError(f"The API server refused kubetray's credentials for {what}: {message}", status=status)
    if status == 404:
        return NotFound(f"{what} was not found: {message}", status=status)
    if status == 410:
        return Gone(f"The watch on {what} expired: {message}", status=status)
    return ApiError(f"The API server answered {status} for {what}: {message}", status=status)


class KubeApi:
    """One context's API server, reached the way its kubeconfig says."""

    def __init__(self, access: ClusterAccess, credentials: Credentials) -> None:
        self.access = access
        self.credentials = credentials

    async def _headers(self) -> list[tuple[str, str]]:
        headers = [("Host", f"{self.access.host}:{self.access.port}"), ("User-Agent", USER_AGENT),
                   ("Accept", "application/json")]
        authorization = await self.credentials.authorization()
        if authorization:
            headers.append(("Authorization", authorization))
        return headers

    async def _get(self, path: str, query: Mapping[str, str], what: str) -> HttpStream:
        try:
            return await self._get_once(path, query, what)
        except AuthError as exc:
            if exc.status != 401:
                raise  # 403 is RBAC saying no; fresh credentials would not change its mind
            # An expired exec-plugin token or a rotated token file: ask for fresh credentials once.
            self.credentials.invalidate()
            return await self._get_once(path, query, what)

    async def _get_once(self, path: str, query: Mapping[str, str], what: str) -> HttpStream:
        target = self.access.path_prefix + path + ("?" + urlencode(query) if query else "")
        headers = await self._headers()  # first: it may bring new TLS settings (auth.py)
        reader, writer = await open_stream(self.access)
        stream = HttpStream(reader, writer)
        try:
            response = await stream.send("GET", target, headers)
            if response.status != 200:
                body = await stream.body()
                raise _error_for(response.status, status_message(body, f"HTTP {response.status}"), what)
        except BaseException:
            stream.close()
            raise
        return stream

    async def list(self, kind: str, namespace: str | None, label_selector: str | None = None) -> dict[str, Any]:
        query = {"labelSelector": label_selector} if label_selector else {}
        what = f"{kind} in namespace {namespace!r}" if namespace else kind
        stream = await self._get(collection_path(kind, namespace), query, what)
        try:
            return json.loads(await stream.body())
        except ValueError as exc:
            raise ApiError(f"The API server sent a list of {what} that is not JSON.") from exc
        finally:
            stream.close()

    async def watch(
        self, kind: str, namespace: str | None, resource_version: str, label_selector: str | None = None
    ) -> AsyncIterator[WatchEvent]:
        """Changes after resource_version until the server ends the watch. Raises Gone on 410."""
        query = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_TIMEOUT_SECONDS),
        }
        if label_selector:
            query["labelSelector"] = label_selector
        what = f"{kind} in namespace {namespace!r}" if namespace else kind
        stream = await self._get(collection_path(kind, namespace), query, what)
        try:
            async for line in stream.lines():
                try:
                    event = json.loads(line)
                except ValueError as exc:
                    raise ApiUnreachable(f"The watch on {what} sent a line that is not JSON.") from exc
                kind_of_event = event.get("type")
                obj = event.get("object") or {}
                if kind_of_event == "ERROR":
                    raise _error_for(int(obj.get("code") or 500), str(obj.get("message", "watch error")), what)
                yield WatchEvent(str(kind_of_event), obj)
        finally:
            stream.close()

    async def dial_portforward(self, namespace: str, pod: str, port: int, timeout: float = 10.0) -> ClientConnection:
        """A WebSocket carrying one TCP connection to the pod's port (v4.channel.k8s.io)."""
        try:
            return await self._dial_once(namespace, pod, port, timeout)
        except AuthError as exc:
            if exc.status != 401:
                raise
            self.credentials.invalidate()
            return await self._dial_once(namespace, pod, port, timeout)

    async def _dial_once(self, namespace: str, pod: str, port: int, timeout: float) -> ClientConnection:
        access = self.access
        scheme = "wss" if access.tls else "ws"
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}/portforward"
        uri = f"{scheme}://{access.host}:{access.port}{access.path_prefix}{path}?ports={port}"
        headers = []
        authorization = await self.credentials.authorization()
        if authorization:
            headers.append(("Authorization", authorization))
        extra: dict[str, Any] = {}
        if access.tls:
            extra["ssl"] = access.ssl_context
            if access.server_hostname:
                extra["server_hostname"] = access.server_hostname
        what = f"port-forward to pod {pod!r} in namespace {namespace!r}"
        try:
            return await connect(
                uri,
                subprotocols=[websockets.Subprotocol(SUBPROTOCOL)],
                additional_headers=headers,
                user_agent_header=USER_AGENT,
                compression=None,
                max_size=_WS_MAX_MESSAGE,
                open_timeout=timeout,
                ping_interval=None,  # the kubelet answers pings, but a busy tunnel proves liveness itself
                close_timeout=2,
                proxy=access.proxy,
                **extra,
            )
        except websockets.InvalidStatus as exc:
            response = exc.response
            raise _error_for(
                response.status_code, status_message(response.body or b"", f"HTTP {response.status_code}"), what
            ) from exc
        except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
            raise ApiUnreachable(f"kubetray could not open a {what} ({exc or type(exc).__name__}).") from exc

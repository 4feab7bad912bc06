"""List and watch calls to the API server, and the translation of its answers into kubetray's errors.

HTTP and WebSocket failures are translated here into kubetray's error types, so the rest of the
engine branches on ApiUnreachable (ApiBusy for 429/503) / AuthError / NotFound / Gone /
ResponseTooLarge and never on library exceptions. Every list and watch is bounded in time and
memory (the constants below).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from trayapp import __version__
from trayapp.engine.kube.auth import ClusterAccess, Credentials
from trayapp.engine.kube.connect import open_stream
from trayapp.engine.kube.httpclient import HttpStream, status_message
from trayapp.engine.kube.watchpace import WatchPace
from trayapp.errors import ApiBusy, ApiError, AuthError, Gone, NotFound, ResponseTooLarge

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

# How long a watch may stay silent before kubetray takes it for dead. A kube-apiserver sends a
# BOOKMARK on every watch that asked for them once a minute (the watch cache's
# defaultBookmarkFrequency in cacher.go) and one 2 s before timeoutSeconds runs out, so a watch
# silent for 75 s is one whose path died (a sleeping laptop, a dropped VPN: no FIN, no reset).
# TCP keepalive usually notices such a path sooner; this also covers a path through a proxy,
# where the keepalive only reaches the proxy. Tests and benchmarks lower it.
WATCH_SILENCE_SECONDS = 75.0
# How long the response head, and each read of a list or error body, may take. The API server
# answers a page of 500 objects in well under a second; 30 s covers a loaded server, and catches a
# request that went into a dead path, where TCP keepalive does not help (its data is unacknowledged).
READ_TIMEOUT_SECONDS = 30.0
# The whole list, every page, must arrive within this: bounds a server that sends a byte a second.
LIST_TIMEOUT_SECONDS = 120.0
# Objects per list page: client-go's pager asks for the same, so the API server is used to it.
LIST_PAGE_SIZE = 500
# Caps on what the server may make kubetray buffer. etcd refuses objects over 1.5 MiB by default,
# so one watch event is never near 16 MiB; 256 MiB of JSON is a list of some 25,000 pods, already
# well over a gigabyte once parsed; a Status error body is under a kilobyte.
MAX_WATCH_LINE_BYTES = 16 * 1024 * 1024
MAX_LIST_BYTES = 256 * 1024 * 1024
MAX_ERROR_BODY_BYTES = 1024 * 1024
# 401 means the credentials themselves are wrong or expired; say how to fix that.
_AUTH_HINT = "Refresh the credentials in your kubeconfig, or store a token with `kubetray token set {context}`."

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: Mapping[str, Any]


def collection_path(kind: str, namespace: str | None) -> str:
    group = _API_PATHS[kind]
    if namespace is None or kind == "namespaces":
        return f"{group}/{kind}"
    return f"{group}/namespaces/{quote(namespace, safe='')}/{kind}"


def portforward_path(access: ClusterAccess, namespace: str, pod: str) -> str:
    """The pod's `portforward` subresource, under the server's path prefix."""
    return (f"{access.path_prefix}/api/v1/namespaces/{quote(namespace, safe='')}"
            f"/pods/{quote(pod, safe='')}/portforward")


_T = TypeVar("_T")


async def with_fresh_credentials(credentials: Credentials, attempt: Callable[[], Awaitable[_T]]) -> _T:
    """`attempt()`, and once more with fresh credentials when the API server answered 401."""
    try:
        return await attempt()
    except AuthError as exc:
        if exc.status != 401:
            raise  # 403 is RBAC saying no; fresh credentials would not change its mind
        # An expired exec-plugin token or a rotated token file: ask for fresh credentials once.
        credentials.invalidate()
        return await attempt()


def error_for_status(
    status: int, message: str, what: str, *, context: str | None = None, retry_after: float | None = None,
    server: str | None = None,
) -> ApiError:
    """The error for an HTTP status from the API server.

    `context` (the kubeconfig context) goes into the 401 advice, `retry_after` (seconds the
    server asked for, from Retry-After or a Status) into ApiBusy, `server` (its URL) into the text.
    """
    if status == 401:
        hint = _AUTH_HINT.format(context=context or "CONTEXT")
        return AuthError(
            f"The API server refused kubetray's credentials for {what}: {message.rstrip('.')}. {hint}", status=status
        )
    if status == 403:
        return AuthError(f"The API server refused kubetray's credentials for {what}: {message}", status=status)
    if status == 404:
        return NotFound(f"{what} was not found: {message}", status=status)
    if status == 410:
        return Gone(f"The watch on {what} expired: {message}", status=status)
    if status in (429, 503):
        who = f"The API server {server}" if server else "The API server"
        when = f" and asked kubetray to come back in {retry_after:g} s" if retry_after is not None else ""
        return ApiBusy(
            f"{who} is too busy to answer for {what} (HTTP {status}: {message.rstrip('.')}){when}.",
            status=status,
            retry_after=retry_after,
        )
    return ApiError(f"The API server answered {status} for {what}: {message}", status=status)


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _status_retry_after(status: Mapping[str, Any]) -> float | None:
    """A Status object's details.retryAfterSeconds (the API server sets it with a 429)."""
    details = status.get("details")
    seconds = details.get("retryAfterSeconds") if isinstance(details, dict) else None
    return float(seconds) if isinstance(seconds, int) and seconds >= 0 else None


class KubeApi:
    """One context's API server, reached the way its kubeconfig says.

    Every call is bounded in time and in memory (see the constants above); the keyword arguments
    let tests and benchmarks shorten the deadlines and shrink the caps.
    """

    def __init__(
        self,
        access: ClusterAccess,
        credentials: Credentials,
        *,
        watch_silence: float = WATCH_SILENCE_SECONDS,
        read_timeout: float = READ_TIMEOUT_SECONDS,
        list_timeout: float = LIST_TIMEOUT_SECONDS,
        page_size: int | None = LIST_PAGE_SIZE,
        max_line: int = MAX_WATCH_LINE_BYTES,
        max_list: int = MAX_LIST_BYTES,
    ) -> None:
        self.access = access
        self.credentials = credentials
        self.watch_silence = watch_silence
        self.pace = WatchPace(ceiling=watch_silence)
        self.read_timeout = read_timeout
        self.list_timeout = list_timeout
        self.page_size = page_size
        self.max_line = max_line
        self.max_list = max_list

    async def _headers(self) -> list[tuple[str, str]]:
        headers = [("Host", f"{self.access.host}:{self.access.port}"), ("User-Agent", USER_AGENT),
                   ("Accept", "application/json")]
        authorization = await self.credentials.authorization()
        if authorization:
            headers.append(("Authorization", authorization))
        return headers

    async def _get(self, path: str, query: Mapping[str, str], what: str, until: float | None = None) -> HttpStream:
        return await with_fresh_credentials(self.credentials, lambda: self._get_once(path, query, what, until))

    def _head_timeout(self, until: float | None) -> float:
        if until is None:
            return self.read_timeout
        return max(0.0, min(self.read_timeout, until - asyncio.get_running_loop().time()))

    async def _get_once(self, path: str, query: Mapping[str, str], what: str, until: float | None) -> HttpStream:
        target = self.access.path_prefix + path + ("?" + urlencode(query) if query else "")
        headers = await self._headers()  # first: it may bring new TLS settings (auth.py)
        reader, writer = await open_stream(self.access)
        stream = HttpStream(reader, writer, self.access.server)
        try:
            response = await stream.send("GET", target, headers, timeout=self._head_timeout(until))
            if response.status != 200:
                try:
                    body = bytes(await stream.body(MAX_ERROR_BODY_BYTES, timeout=self.read_timeout))
                except ApiError:  # too big or too slow: the status alone says enough
                    body = b""
                retry_after = retry_after_seconds(response.headers.get("retry-after"))
                raise error_for_status(
                    response.status, status_message(body, f"HTTP {response.status}"), what,
                    context=self.access.context, retry_after=retry_after, server=self.access.server,
                )
        except BaseException:
            stream.close()
            raise
        return stream

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """One object (NotFound when there is none), within `read_timeout`; for `kubetray add`'s check."""
        what = f"{kind} {namespace}/{name}"
        stream = await self._get(f"{collection_path(kind, namespace)}/{quote(name, safe='')}", {}, what)
        try:
            body = await stream.body(self.max_line, timeout=self.read_timeout)
        finally:
            stream.close()
        try:
            found = json.loads(body)
        except ValueError as exc:
            raise ApiError(f"The API server sent {what} as something that is not JSON.") from exc
        return found if isinstance(found, dict) else {}

    async def list(self, kind: str, namespace: str | None, label_selector: str | None = None) -> dict[str, Any]:
        """Every object, a page of `page_size` at a time, merged into one list (its last page's metadata).

        A continue token that expired (410) lists once more without paging, as client-go's pager
        does. The whole list is bounded by `list_timeout` and `max_list` bytes.
        """
        what = f"{kind} in namespace {namespace!r}" if namespace else kind
        until = asyncio.get_running_loop().time() + self.list_timeout
        try:
            return await self._list_pages(kind, namespace, label_selector, what, until, self.page_size)
        except _ContinueExpired:
            log.debug("the continue token for %s expired; listing it whole", what)
            return await self._list_pages(kind, namespace, label_selector, what, until, None)

    async def _list_pages(
        self, kind: str, namespace: str | None, label_selector: str | None, what: str, until: float,
        page_size: int | None,
    ) -> dict[str, Any]:
        items: list[Any] = []
        budget = self.max_list
        token = ""
        while True:
            query = {"labelSelector": label_selector} if label_selector else {}
            if page_size:
                query["limit"] = str(page_size)
            if token:
                query["continue"] = token
            try:
                page, size = await self._list_page(collection_path(kind, namespace), query, what, until, budget)
            except Gone as exc:
                if token:
                    raise _ContinueExpired() from exc
                raise
            budget -= size
            page_items = page.get("items")
            if page_items is not None and not isinstance(page_items, list):
                raise ApiError(f"The API server sent a list of {what} whose items are not a list.")
            items.extend(page_items or ())
            metadata = page.get("metadata")
            following = metadata.get("continue") if isinstance(metadata, dict) else None
            if not following or not isinstance(following, str):
                return {**page, "items": items}
            if following == token:
                raise ApiError(f"The API server sent the same continue token twice while listing {what}.")
            token = following

    async def _list_page(
        self, path: str, query: Mapping[str, str], what: str, until: float, budget: int
    ) -> tuple[dict[str, Any], int]:
        stream = await self._get(path, query, what, until)
        try:
            try:
                body = await stream.body(budget, timeout=self.list_timeout, idle=self.read_timeout, until=until)
            except ResponseTooLarge as exc:
                raise ResponseTooLarge(
                    f"The list of {what} is larger than kubetray accepts ({self.max_list:,} bytes), "
                    "so kubetray stopped reading it."
                ) from exc
            try:
                page = json.loads(body)
            except ValueError as exc:
                raise ApiError(f"The API server sent a list of {what} that is not JSON.") from exc
            if not isinstance(page, dict):
                raise ApiError(f"The API server sent a list of {what} that is not a JSON object.")
            return page, len(body)
        finally:
            stream.close()

    async def watch(
        self,
        kind: str,
        namespace: str | None,
        resource_version: str,
        label_selector: str | None = None,
        on_open: Callable[[], None] | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """Changes after resource_version until the server ends the watch. Raises Gone on 410.

        `on_open` is called once the server has accepted the watch (200). A watch silent for
        `watch_silence` seconds, or for three of its server's bookmark gaps once it has seen them
        (watchpace.py), raises ApiUnreachable; a line over `max_line` bytes raises
        ResponseTooLarge; a line that is not JSON raises ApiError. An event whose envelope is
        malformed (not an object, no type) is logged and skipped.
        """
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
        skipped = 0
        collection = collection_path(kind, namespace)
        loop = asyncio.get_running_loop()
        last_bookmark: float | None = None
        try:
            if on_open is not None:
                on_open()
            async for line in stream.lines(self.max_line, lambda: self.pace.limit(collection)):
                try:
                    event = json.loads(line)
                except ValueError as exc:
                    raise ApiError(
                        f"The API server {self.access.server} sent a watch line for {what} that is not JSON, "
                        "so kubetray closed that watch."
                    ) from exc
                kind_of_event = event.get("type") if isinstance(event, dict) else None
                obj = event.get("object") if isinstance(event, dict) else None
                if not isinstance(kind_of_event, str) or not isinstance(obj, dict):
                    skipped += 1  # said once per watch, so a hostile server cannot flood the log
                    log.log(logging.WARNING if skipped == 1 else logging.DEBUG,
                            "skipped a malformed watch event for %s (not a type and an object)", what)
                    continue
                if kind_of_event == "ERROR":
                    code = obj.get("code")
                    raise error_for_status(
                        code if isinstance(code, int) else 500, str(obj.get("message") or "watch error"), what,
                        context=self.access.context, retry_after=_status_retry_after(obj), server=self.access.server,
                    )
                if kind_of_event == "BOOKMARK":
                    now = loop.time()
                    if last_bookmark is not None:
                        self.pace.bookmark(collection, now - last_bookmark)
                    last_bookmark = now
                yield WatchEvent(kind_of_event, obj)
        finally:
            stream.close()

class _ContinueExpired(Exception):
    """A 410 on a continue token: the snapshot the pages came from is gone; list again whole."""

"""The local port each automatic forward got, remembered across restarts in a small JSON file.

An automatic rule asks for its service or container port; when that is busy the engine falls
back to another one. Remembering what it got means `web:80` is on 8081 today and tomorrow, so
bookmarks and scripts keep working, as Skaffold gives a forward seen before its old port back.

The file lives in the state directory (`config.paths.state_dir()`; the caller passes the path,
as the engine does not import config). It is small and the engine touches it rarely (when an
automatic tunnel binds its listener), so plain synchronous file I/O is fine. A missing, unreadable
or corrupt file means starting empty with a warning; a failed write is logged and the memory
lives on in the process. Nothing here raises for file trouble.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trayapp.model import ResourceType, Rule

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAX_ENTRIES = 2000


@dataclass(frozen=True)
class PortKey:
    """Which forward a remembered port belongs to."""

    context: str
    namespace: str
    resource_type: ResourceType
    name: str
    port: int | str

    @classmethod
    def of(cls, context: str, rule: Rule) -> PortKey:
        return cls(context, rule.namespace, rule.resource_type, rule.resource_name, rule.port)

    def __str__(self) -> str:
        # Context names may hold "/" (EKS ARNs); namespaces, kinds, names and ports cannot, so the
        # string stays unambiguous with the context first.
        return f"{self.context}/{self.namespace}/{self.resource_type.value}/{self.name}/{self.port}"


class PortMemory:
    """Remembered local ports, most recently used last, at most `limit` of them."""

    def __init__(self, path: Path, *, limit: int = MAX_ENTRIES) -> None:
        self.path = Path(path)
        self.limit = limit
        self._ports: OrderedDict[str, int] = self._load()

    def __len__(self) -> int:
        return len(self._ports)

    def get(self, key: PortKey) -> int | None:
        return self._ports.get(str(key))

    def remember(self, key: PortKey, port: int) -> None:
        """Record `port` for `key`, writing the file only when something changed."""
        if not 1 <= port <= 65535:
            raise ValueError(f"{port} is not a port number.")
        text = str(key)
        unchanged = self._ports.get(text) == port
        self._ports[text] = port
        # Used again: it moves to the end, the last to be dropped; saved with the next change.
        self._ports.move_to_end(text)
        if unchanged:
            return
        while len(self._ports) > self.limit:
            self._ports.popitem(last=False)
        self._save()

    # ---- the file ----------------------------------------------------------------------------

    def _load(self) -> OrderedDict[str, int]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return OrderedDict()
        except (OSError, UnicodeDecodeError) as error:
            log.warning(
                "Cannot read the remembered ports in %s (%s); starting afresh.", self.path, error
            )
            return OrderedDict()
        try:
            data: Any = json.loads(raw)
        except ValueError:
            log.warning(
                "%s is not valid JSON; kubetray starts with no remembered ports.", self.path
            )
            return OrderedDict()
        ports = data.get("ports") if isinstance(data, dict) else None
        if not isinstance(ports, dict):
            log.warning("%s does not hold remembered ports; kubetray starts with none.", self.path)
            return OrderedDict()
        loaded: OrderedDict[str, int] = OrderedDict()
        for key, value in ports.items():
            # One bad entry (an edit by hand) costs only that entry.
            if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535:
                loaded[str(key)] = value
        if len(loaded) != len(ports):
            log.warning("%s has entries that are not port numbers; they are dropped.", self.path)
        while len(loaded) > self.limit:
            loaded.popitem(last=False)
        return loaded

    def _save(self) -> None:
        data = {"version": FORMAT_VERSION, "ports": dict(self._ports)}
        text = json.dumps(data, indent=1) + "\n"
        temp: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # mkstemp makes the file 0600; in the same folder so os.replace is atomic.
            handle, temp = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
            )
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, self.path)
            temp = None
        except OSError as error:
            log.warning(
                "Cannot save the remembered ports to %s (%s); they are kept until kubetray exits.",
                self.path,
                error,
            )
        finally:
            if temp is not None:
                try:
                    os.unlink(temp)
                except OSError:
                    pass

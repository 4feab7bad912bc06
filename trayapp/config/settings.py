"""The tray's own preferences (not rules): a small JSON file beside the rules file.

Only what the menu toggles lives here. A missing or broken file means the defaults; writing is
atomic so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from trayapp.config.paths import config_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UiSettings:
    notifications: bool = True


def settings_path() -> Path:
    return config_dir() / "settings.json"


def load_settings(path: Path | None = None) -> UiSettings:
    path = path or settings_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return UiSettings()
    except (OSError, ValueError) as exc:
        log.warning("kubetray could not read its settings in %s (%s); it uses the defaults.", path, exc)
        return UiSettings()
    known = {f.name: f.type for f in fields(UiSettings)}
    values = {k: v for k, v in raw.items() if k in known and isinstance(v, bool)} if isinstance(raw, dict) else {}
    return UiSettings(**values)


def save_settings(settings: UiSettings, path: Path | None = None) -> None:
    path = path or settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".settings-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(asdict(settings), out, indent=2)
        out.write("\n")
    os.replace(temp, path)

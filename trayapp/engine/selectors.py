"""Transitional: the label selector parser and matcher now live in `trayapp.selectors`.

They moved next to `model.py` because the rules file (config) validates selectors too, and config
may not import the engine. This re-export keeps `from trayapp.engine.selectors import ...` working
for code being changed concurrently (resolve.py); import `trayapp.selectors` in new code and
delete this module once nothing imports it.
"""

from __future__ import annotations

from trayapp.selectors import (
    EVERYTHING,
    NOTHING,
    Obj,
    Operator,
    Requirement,
    Selector,
    from_label_selector,
    from_map,
    matches_label_selector,
    matches_map_selector,
    parse_selector,
)

__all__ = [
    "EVERYTHING",
    "NOTHING",
    "Obj",
    "Operator",
    "Requirement",
    "Selector",
    "from_label_selector",
    "from_map",
    "matches_label_selector",
    "matches_map_selector",
    "parse_selector",
]

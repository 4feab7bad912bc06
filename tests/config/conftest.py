"""Shared helpers: write a real rules file into tmp_path and load it."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from trayapp.config import Problem, RuleSet, load_rules


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def load(tmp_path: Path) -> Callable[[str], RuleSet]:
    """Write `text` (dedented) to tmp_path/config.yaml and load it."""

    def _load(text: str) -> RuleSet:
        return load_rules(write(tmp_path / "config.yaml", text))

    return _load


def only(problems: tuple[Problem, ...]) -> Problem:
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0]

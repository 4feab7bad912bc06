"""The package's layers point one way: ui -> engine, config, platform -> model, selectors, errors.

Checked on the import statements themselves, so a stray import fails here before it ships.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trayapp"


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules(*parts: str) -> list[Path]:
    return sorted((PACKAGE.joinpath(*parts)).rglob("*.py"))


def layer_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


ALLOWED = {
    "model": set(),
    "errors": set(),
    # Pure label selectors, shared like model: config validates them, engine and sim match them.
    "selectors": set(),
    "engine": {"model", "errors", "selectors", "engine"},
    "config": {"model", "errors", "selectors", "config"},
    "platform": {"model", "errors", "platform"},
    # The simulator may reuse the engine's codec and pure helpers in the server role.
    "sim": {"model", "errors", "selectors", "sim", "engine"},
}


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_qt_only_under_ui(path: Path) -> None:
    if layer_of(path) == "ui":
        return
    qt = {name for name in imports_of(path) if name.split(".")[0] in ("PySide6", "shiboken6")}
    assert not qt, f"{path.name} imports {qt}; only trayapp/ui may import Qt"


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layers_point_one_way(layer: str) -> None:
    files = modules(layer) if (PACKAGE / layer).is_dir() else [PACKAGE / f"{layer}.py"]
    for path in files:
        for name in imports_of(path):
            parts = name.split(".")
            if parts[0] != "trayapp" or len(parts) < 2:
                continue
            assert parts[1] in ALLOWED[layer], f"{path.relative_to(PACKAGE)} imports {name}"


def test_only_the_demo_reaches_the_simulator() -> None:
    for path in modules():
        if layer_of(path) == "sim":
            continue
        sim_imports = {n for n in imports_of(path) if n.startswith("trayapp.sim")}
        if sim_imports:
            assert path.name == "demo.py", f"{path.relative_to(PACKAGE)} imports {sim_imports}"


ENGINE_LEAVES = {"trayapp.engine.aio", "trayapp.engine.backoff"}  # helpers with no engine imports of their own


def engine_imports(path: Path) -> set[str]:
    return {name for name in imports_of(path) if name.startswith("trayapp.engine")}


@pytest.mark.parametrize("path", modules("engine", "kube"), ids=lambda p: p.name)
def test_kube_never_reaches_forward_or_above(path: Path) -> None:
    """Talking to the API server needs nothing from moving bytes or from the runtime above both."""
    for name in engine_imports(path):
        assert name.startswith("trayapp.engine.kube") or name in ENGINE_LEAVES, f"kube/{path.name} imports {name}"


@pytest.mark.parametrize("path", modules("engine", "forward"), ids=lambda p: p.name)
def test_forward_uses_kube_and_nothing_above(path: Path) -> None:
    for name in engine_imports(path):
        assert name.startswith(("trayapp.engine.forward", "trayapp.engine.kube")) or name in ENGINE_LEAVES, (
            f"forward/{path.name} imports {name}"
        )


def test_outside_code_uses_the_sub_packages_public_names() -> None:
    """Above kube/ and forward/, code imports what their __init__ names, not their modules.

    The simulator is the exception: it takes the wire codecs in the server role.
    """
    for path in modules():
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(("engine/kube/", "engine/forward/", "sim/")):
            continue
        for name in engine_imports(path):
            assert name.split(".")[:3] != ["trayapp", "engine", "kube"] or name == "trayapp.engine.kube", (
                f"{relative} reaches into {name}"
            )
            assert name.split(".")[:3] != ["trayapp", "engine", "forward"] or name == "trayapp.engine.forward", (
                f"{relative} reaches into {name}"
            )


@pytest.mark.parametrize("leaf", sorted(ENGINE_LEAVES))
def test_engine_leaves_import_no_engine_module(leaf: str) -> None:
    path = PACKAGE.parent / (leaf.replace(".", "/") + ".py")
    assert engine_imports(path) == set()

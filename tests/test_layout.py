"""The package layout the data path relies on: one-way imports and readable file sizes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "speechkit"
MAX_FILE_LINES = 400  # STYLE.md: split a file by concern past about 400 lines
MAX_FUNCTION_LINES = 60


def _imports(path: Path) -> list[str]:
    """Every module a file imports, at the top or inside a function."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_media_does_not_import_models():
    files = sorted((PACKAGE / "media").rglob("*.py"))
    assert files
    offending = {f.name: m for f in files for m in _imports(f)
                 if m == "speechkit.models" or m.startswith("speechkit.models.")}
    assert offending == {}


@pytest.mark.parametrize("folder", ["models", "media"])
def test_model_and_media_files_and_functions_stay_short(folder):
    too_long: list[str] = []
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_FILE_LINES:
            too_long.append(f"{path.name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.name}:{node.name}: {length} lines")
    assert too_long == []

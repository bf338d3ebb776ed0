"""The package layout the data path relies on: one-way imports and readable file sizes."""

from __future__ import annotations

import ast
from pathlib import Path

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


def test_files_and_functions_stay_short():
    too_long: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_FILE_LINES:
            too_long.append(f"{path.relative_to(PACKAGE)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(PACKAGE)}:{node.name}: {length} lines")
    assert too_long == []


def test_the_runner_transcribe_and_bench_name_no_model_family():
    families = {"WhisperModel", "Ct2WhisperModel", "SpeechLLM", "SpeakerEmbedder", "ResemblyzerModel"}
    named = {}
    for rel in ("runtime.py", "transcribe.py", "evaluation/bench.py", "cli.py", "commands/bench.py"):
        tree = ast.parse((PACKAGE / rel).read_text(encoding="utf-8"))
        found = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
            a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        if found & families:
            named[rel] = sorted(found & families)
    assert named == {}

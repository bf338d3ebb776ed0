"""Shared fixtures: real test recordings, the ffmpeg binary, and the real default model."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEV_DIR = ROOT.parent / "shared" / "data" / "dev"  # the project's development set, when present


def pocketsphinx_dir() -> Path | None:
    """Debian's pocketsphinx-testdata (fetched by `make test` into .testdata/)."""
    for cand in (os.environ.get("SPEECHKIT_TESTDATA"), ROOT / ".testdata" / "pocketsphinx",
                 "/usr/share/pocketsphinx/test/data"):
        if cand and (Path(cand) / "librivox" / "transcription").is_file():
            return Path(cand)
    return None


@pytest.fixture(scope="session")
def testdata() -> Path:
    d = pocketsphinx_dir()
    if d is None:
        pytest.skip("pocketsphinx-testdata not found: run `bash scripts/fetch-testdata.sh`")
    return d


@pytest.fixture(scope="session")
def dev_dir() -> Path:
    if not (DEV_DIR / "manifest.jsonl").is_file():
        pytest.skip(f"development set not found at {DEV_DIR}")
    return DEV_DIR


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    from speechkit.media.ffmpeg import ffmpeg_exe

    return ffmpeg_exe()


@pytest.fixture(scope="session")
def make_media(ffmpeg, tmp_path_factory):
    """Run ffmpeg with the given arguments into a file of the given name; returns its path."""
    root = tmp_path_factory.mktemp("media")

    def make(name: str | bytes, *args: str) -> Path:
        out = os.path.join(os.fsencode(root), os.fsencode(name))
        subprocess.run([ffmpeg, "-nostdin", "-y", "-loglevel", "error", *args, out], check=True)
        return Path(os.fsdecode(out))

    return make


@pytest.fixture(scope="session")
def whisper_base():
    """The real default model (CTranslate2 engine on CPU), loaded once per test session."""
    from speechkit.models.registry import RuntimeOptions, load_model

    return load_model("whisper-base", RuntimeOptions(device="cpu"))


@pytest.fixture(scope="session")
def whisper_base_torch():
    """The default model's weights on the torch engine (the CPU default is CTranslate2)."""
    from speechkit.models.registry import RuntimeOptions, load_model

    return load_model("whisper-base", RuntimeOptions(device="cpu", engine="torch"))


@pytest.fixture()
def cli():
    """`speechkit score / compare / manifest` run in-process: cli("score", path, ...)."""
    import typer
    from typer.testing import CliRunner

    from speechkit.commands.evaluation import register

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    register(app)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])

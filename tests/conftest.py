"""Shared fixtures: real test recordings, the ffmpeg binary, talking-face clips made from them,
and the real default model."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The optional development-set group: tests that read a folder of extra real recordings
# (a `manifest.jsonl` and the files it names) run only when SPEECHKIT_DEV_SET points at one
# (`make test-dev`); otherwise they are deselected, never skipped. The core suite covers the
# same behaviours from data the project obtains itself (scripts/fetch-testdata.sh, generated media).
DEV_SET_ENV = "SPEECHKIT_DEV_SET"
DEV_DIR = Path(os.environ[DEV_SET_ENV]).resolve() if os.environ.get(DEV_SET_ENV) else None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "devset: reads the optional development set (SPEECHKIT_DEV_SET)")
    if DEV_DIR is not None and not (DEV_DIR / "manifest.jsonl").is_file():
        raise pytest.UsageError(f"{DEV_SET_ENV}={DEV_DIR} holds no manifest.jsonl; point it at the "
                                "development set's folder, or unset it to run the core suite")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that asks for `dev_dir` is in the devset group; without a dev set it is deselected."""
    keep, dropped = [], []
    for item in items:
        if "dev_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.devset)
            if DEV_DIR is None:
                dropped.append(item)
                continue
        keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pocketsphinx_dir() -> Path | None:
    """Debian's pocketsphinx-testdata (fetched by `make test` into .testdata/)."""
    for cand in (os.environ.get("SPEECHKIT_TESTDATA"), ROOT / ".testdata" / "pocketsphinx",
                 "/usr/share/pocketsphinx/test/data"):
        if cand and (Path(cand) / "librivox" / "transcription").is_file():
            return Path(cand)
    return None


def read_testdata_audio(path: Path):
    """16 kHz mono float32 samples of a pocketsphinx-testdata file; its .raw files are 16 kHz
    s16le without a header, the rest ffmpeg decodes."""
    import numpy as np

    from speechkit.media.ffmpeg import decode_audio

    if path.suffix == ".raw":
        return (np.fromfile(path, "<i2") / 32768).astype(np.float32)
    return decode_audio(str(path))


@pytest.fixture(scope="session")
def testdata() -> Path:
    d = pocketsphinx_dir()
    if d is None:
        pytest.skip("pocketsphinx-testdata not found: run `bash scripts/fetch-testdata.sh`")
    return d


@pytest.fixture(scope="session")
def dev_dir() -> Path:
    """The optional development set (only requested by tests in the devset group)."""
    assert DEV_DIR is not None, "deselected without SPEECHKIT_DEV_SET"
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
def face_clips(make_media, testdata):
    """Two talking-face clips made from a photograph and real speech (tests/face_media.py):
    "grid" (.mpg, 360x288, 3 s) and "ted" (.mp4, 224x224, 5.3 s). The mouth does not move."""
    from tests.face_media import RECIPES, make_face_clip

    return {name: make_face_clip(make_media, testdata, name) for name in RECIPES}


@pytest.fixture(scope="session")
def face_video(face_clips) -> Path:
    """The GRID-like talking-face clip: 75 frames at 25 fps with 3 s of speech."""
    return face_clips["grid"].path


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


@pytest.fixture(scope="session")
def spoken(tmp_path_factory) -> dict[str, Path]:
    """German and French speech made by eSpeak NG (tests/synth.py): {"de": wav, "fr": wav}."""
    from tests.synth import FRENCH, GERMAN, write_speech

    root = tmp_path_factory.mktemp("spoken")
    return {u.language: write_speech(root / f"{u.language}.wav", u) for u in (GERMAN, FRENCH)}

"""Every built-in Whisper transcribes a real recording on every engine, through the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from speechkit.evaluation.metrics.normalizers import get_normalizer
from speechkit.evaluation.metrics.wer import error_rates
from speechkit.models.catalogue import CATALOGUE

WHISPER_BUILTINS = sorted(name for name, e in CATALOGUE.items() if e.kind == "whisper")
ENGINES = ("ctranslate2", "torch")
CLIP = "sense_and_sensibility_01_austen_64kb-0870"
REFERENCE = ("and mister john dashwood had then leisure to consider how much there might be "
             "prudently in his power to do for them")


def test_every_whisper_builtin_is_listed():
    assert "whisper-tiny.en" in WHISPER_BUILTINS and "whisper-base" in WHISPER_BUILTINS


# Each built-in on each engine, detecting the language and told it (English-only models ignore
# neither: whisper-tiny.en on CTranslate2 failed every item with KeyError 'en' either way).
CASES = [(name, engine, language) for name in WHISPER_BUILTINS for engine in ENGINES
         for language in (None, "en")]


@pytest.mark.parametrize(("name", "engine", "language"), CASES)
def test_builtin_transcribes_on_every_engine(testdata, tmp_path, name, engine, language):
    out = tmp_path / "out.jsonl"
    args = [sys.executable, "-m", "speechkit", "transcribe", str(testdata / "librivox" / f"{CLIP}.wav"),
            "--model", name, "--engine", engine, "--device", "cpu", "--out", str(out)]
    if language:
        args += ["--language", language]
    run = subprocess.run(args, capture_output=True, text=True, timeout=300, env=os.environ)
    assert run.returncode == 0, run.stdout + run.stderr
    (line,) = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert line["status"] == "ok", line["error"]
    assert line["model"]["engine"] == engine
    assert line["language"] == "en"
    rates = error_rates([REFERENCE], [line["text"]], normalizer=get_normalizer("whisper-en"))
    assert rates.wer < 15, line["text"]

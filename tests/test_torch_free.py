"""The default CPU path (built-in Whisper on CTranslate2) starts without torch or transformers
(2 s and 220 MB of start-up): its features, tokenizer and device choice are computed without
them and equal theirs, and a whole `speechkit transcribe` run never imports them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import jiwer
import numpy as np
import pytest

from speechkit.media.ffmpeg import decode_audio
from speechkit.models.catalogue import builtin, names
from speechkit.models.whisper_mel import mel_filters, window_features
from speechkit.models.whisper_tokenizer import WhisperTokenizer
from tests.test_transcribe import librivox, words

ROOT = Path(__file__).resolve().parents[1]
SHORT_CLIP = "sense_and_sensibility_01_austen_64kb-0880.wav"  # 3 s
SHORT_TEXT = "He was not an ill-disposed young man."
FEATURE_TOLERANCE = 5e-5  # torch's float32 FFT against numpy's float64 one: 2e-5 measured

# Runs the CLI in this process, then records whether torch or transformers got imported.
RUN_CLI = """
import json, sys
from speechkit.cli import main
try:
    main(sys.argv[2:])
except SystemExit as e:
    code = e.code
with open(sys.argv[1], "w") as f:
    json.dump({"exit": code, "torch": "torch" in sys.modules,
               "transformers": "transformers" in sys.modules}, f)
"""


def _torch_engine_features(audios: list[np.ndarray], n_mels: int) -> np.ndarray:
    """The torch engine's `WhisperModel.features` with transformers' own feature extractor."""
    from transformers import WhisperFeatureExtractor

    from speechkit.models.whisper import WhisperModel

    engine = types.SimpleNamespace(processor=types.SimpleNamespace(
        feature_extractor=WhisperFeatureExtractor(feature_size=n_mels)))
    return WhisperModel.features(engine, audios).numpy()


@pytest.mark.parametrize("n_mels", [80, 128])  # 128: large-v3's
def test_mel_filters_are_transformers_slaney_filters(n_mels):
    from transformers.audio_utils import mel_filter_bank

    theirs = mel_filter_bank(num_frequency_bins=201, num_mel_filters=n_mels, min_frequency=0.0,
                             max_frequency=8000.0, sampling_rate=16000, norm="slaney",
                             mel_scale="slaney")
    np.testing.assert_allclose(mel_filters(n_mels), theirs, rtol=1e-12, atol=1e-15)


def test_numpy_features_equal_the_torch_engines(testdata):
    clips = [decode_audio(p) for p, _ in librivox(testdata)]
    long = np.concatenate(clips * 2)  # 49 s: only its first 30 s are read
    rng = np.random.default_rng(0)
    audios = [*clips, long, clips[0][:100], rng.normal(0, 0.1, 4000).astype(np.float32),
              np.zeros(16000, np.float32)]
    ours = window_features(audios, 80)
    theirs = _torch_engine_features(audios, 80)
    assert ours.shape == theirs.shape == (len(audios), 80, 3000)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=FEATURE_TOLERANCE)


@pytest.mark.parametrize("name", names("whisper"))
def test_tokenizer_decodes_and_finds_tokens_as_transformers_does(name):
    from speechkit.errors import SpeechkitError
    from speechkit.models.importers.ct2_whisper import whisper_tokenizer
    from speechkit.models.whisper_ctranslate2 import whisper_tokens

    try:
        folder = builtin(name, "whisper").weight_files()[0].parent
    except SpeechkitError:
        pytest.skip(f"{name} is not installed")
    vocab = sum(1 for _ in (folder / "vocabulary.txt").open(encoding="utf-8"))
    ours = WhisperTokenizer(folder / "tokenizer.json", vocab)
    theirs = whisper_tokenizer(folder / "tokenizer.json", vocab)
    assert len(ours) == len(theirs) == vocab
    for i in range(vocab):
        assert ours.decode([i]) == theirs.decode([i]), i
        assert ours.token(i) == theirs.convert_ids_to_tokens(i), i
    rng = np.random.default_rng(1)
    for _ in range(500):
        ids = rng.integers(0, vocab, int(rng.integers(1, 40))).tolist()
        assert ours.decode(ids) == theirs.decode(ids), ids
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    tokens = whisper_tokens(config, ours, vocab)
    for token, tid in [("<|endoftext|>", tokens.eot), ("<|startoftranscript|>", tokens.sot),
                       ("<|notimestamps|>", tokens.no_timestamps), ("<|0.00|>", tokens.timestamp_begin),
                       *((f"<|{code}|>", tid) for code, tid in tokens.languages.items()),
                       *((f"<|{task}|>", tid) for task, tid in tokens.tasks.items())]:
        assert theirs.convert_tokens_to_ids(token) == tid, token
    assert theirs.convert_ids_to_tokens(tokens.no_speech) in ("<|nospeech|>", "<|nocaptions|>")


def test_auto_device_is_the_one_torch_sees():
    import torch

    from speechkit.models.registry import resolve_device

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.slow
def test_transcribe_runs_without_importing_torch_or_transformers(testdata, make_media, tmp_path):
    """A short clip and a 49 s file (cut by the voice activity detector), with word times."""
    from speechkit.models.registry import _gpu_driver_present

    clips = [p for p, _ in librivox(testdata)]
    long = make_media("long.wav", *[a for p in clips * 2 for a in ("-i", str(p))], "-filter_complex",
                      f"concat=n={len(clips) * 2}:v=0:a=1", "-ar", "16000", "-ac", "1")
    out, report = tmp_path / "r.jsonl", tmp_path / "imports.json"
    device = ["--device", "cpu"] if _gpu_driver_present() else []  # a GPU runs the torch engine
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", RUN_CLI, str(report), "transcribe",
                           str(testdata / "librivox" / SHORT_CLIP), str(long), "--word-timestamps",
                           "--out", str(out), *device], env=env, capture_output=True, text=True)
    assert json.loads(report.read_text()) == {"exit": 0, "torch": False, "transformers": False}, \
        done.stderr[-2000:]
    results = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    short = results[SHORT_CLIP]
    assert short["text"] == SHORT_TEXT
    assert short["model"]["engine"] == "ctranslate2"
    assert [w["word"] for s in short["segments"] for w in s["words"]] == SHORT_TEXT.split()
    reference = " ".join([text for _, text in librivox(testdata)] * 2)
    whole = results["long.wav"]
    assert whole["segments"][-1]["end"] > 40 and all(s["words"] for s in whole["segments"])
    assert jiwer.wer(words(reference), words(whole["text"])) < 0.1

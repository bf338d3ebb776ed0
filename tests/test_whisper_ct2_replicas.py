"""CTranslate2 Whisper on several one-thread replicas: the same text as one replica, in any
batch, fallback sampling included."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from speechkit.media.ffmpeg import decode_audio
from speechkit.models.base import DecodeOptions, audio_inputs
from speechkit.models.builtins import ct2_model_dir, ensure_whisper
from speechkit.models.whisper_ctranslate2 import Ct2WhisperModel
from tests.test_transcribe import librivox

pytestmark = pytest.mark.slow


def write_random_whisper(out: Path) -> Path:
    """A one-layer transformers Whisper with random weights and the real multilingual
    vocabulary in `out`: its greedy text is a loop of one token."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    src = ensure_whisper("whisper-base")
    for name in ("generation_config.json", "tokenizer.json", "tokenizer_config.json",
                 "preprocessor_config.json", "processor_config.json"):
        if (src / name).exists():
            shutil.copy(src / name, out / name)
    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=51865, d_model=32, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                           decoder_ffn_dim=64, num_mel_bins=80, max_source_positions=1500,
                           max_target_positions=448, decoder_start_token_id=50258,
                           eos_token_id=50257, pad_token_id=50257, bos_token_id=50257)
    WhisperForConditionalGeneration(config).save_pretrained(out)
    shutil.copy(src / "generation_config.json", out / "generation_config.json")
    return out


@pytest.fixture(scope="module")
def random_ct2_dir(tmp_path_factory):
    """That Whisper in CTranslate2's format, with the built-in's vocabulary and config: every
    clip falls back to sampling."""
    from ctranslate2.converters import TransformersConverter

    hf = write_random_whisper(tmp_path_factory.mktemp("random-hf"))
    out = tmp_path_factory.mktemp("random-ct2") / "model"
    TransformersConverter(str(hf)).convert(str(out))
    base = ct2_model_dir("whisper-base")
    for name in ("config.json", "vocabulary.txt", "tokenizer.json"):  # as the built-in's
        shutil.copy(base / name, out / name)
    return out


def _clips(testdata, n):
    return [decode_audio(p) for p, _ in librivox(testdata, n)]


def test_fallback_samples_are_the_same_in_any_batch_on_any_replica(random_ct2_dir, testdata):
    clips = _clips(testdata, 3)
    opts = DecodeOptions(language="en", max_new_tokens=24)
    two = Ct2WhisperModel(random_ct2_dir, "random", threads=2)
    one = Ct2WhisperModel(random_ct2_dir, "random", threads=1)
    assert (two.replicas, one.replicas) == (2, 1)
    make_sampler, main_loaded = two.decoder.sampler, []

    def sampler():  # the real sampler, noting whether the main model's weights were still in
        main_loaded.append(two.decoder.model.model_is_loaded)
        return make_sampler()

    two.decoder.sampler = sampler
    first = two.generate(audio_inputs(clips), opts)
    assert all(h.extras["temperature"] > 0 for h in first)  # greedy failed the checks: sampled
    again = two.generate(audio_inputs(clips[::-1]), opts)[::-1]
    alone = [one.generate(audio_inputs([c]), opts)[0] for c in clips]
    texts = [h.text for h in first]
    assert texts == [h.text for h in again] == [h.text for h in alone]
    assert main_loaded and not any(main_loaded)  # one copy of the weights while sampling
    assert two.decoder.model.model_is_loaded  # and the main model back after


def test_batches_split_over_replicas_give_one_replicas_text(whisper_base, testdata):
    clips = _clips(testdata, 5)
    two = Ct2WhisperModel(ct2_model_dir("whisper-base"), "whisper-base", threads=2)
    one = Ct2WhisperModel(ct2_model_dir("whisper-base"), "whisper-base", threads=1)
    assert two.default_batch == 4 and one.default_batch == 2
    opts = DecodeOptions(language="en")
    batched = two.generate(audio_inputs(clips), opts)
    single = [one.generate(audio_inputs([c]), opts)[0] for c in clips]
    assert [h.text for h in batched] == [h.text for h in single]
    assert all(h.text.strip() for h in batched)
    enc2, enc1 = two._encode(clips), one._encode(clips)
    np.testing.assert_array_equal(enc2, enc1)  # each window encoded alone, on either replica

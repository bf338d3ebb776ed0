"""BEATs encoder: the official checkpoint layout, its fbank input, the 50 Hz grid, batching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.models.speechllm.checkpoint import EncoderSpec
from speechkit.models.speechllm.encoders.beats import (
    BeatsAudioEncoder,
    fbank,
    read_beats_checkpoint,
    write_beats_dir,
)
from tests.test_salmonn_tiny import TINY_BEATS, beats_official, beats_reference
from tests.test_speechllm_tiny import noise


@pytest.fixture(scope="module")
def beats_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("beats")
    beats_official(root / "beats.pt")
    cfg, state = read_beats_checkpoint(root / "beats.pt")
    write_beats_dir(root / "dir", cfg, state)
    return root


def _encoder(directory, window_s=30.0, pad_window=False):
    spec = EncoderSpec(modality="beats", type="beats", source=str(directory), window_s=window_s,
                       pad_window=pad_window)
    return BeatsAudioEncoder(directory, spec, "cpu", torch.float32)


def test_fbank_is_kaldi_framed_and_normalized_as_beats():
    assert fbank(np.zeros(16000, np.float32)).shape == (98, 128)  # 1 + (16000 - 400) // 160
    assert fbank(np.zeros(399, np.float32)).shape == (0, 128)
    silent = fbank(np.zeros(1600, np.float32))
    floor = (math.log(np.finfo(np.float32).eps) - 15.41663) / (2 * 6.55582)
    assert np.allclose(silent, floor, atol=1e-5)  # silence: every bin at the log floor
    tone = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000).astype(np.float32) * 0.5
    peak = fbank(tone).mean(0).argmax()
    assert 40 < peak < 70  # 1 kHz sits in the lower middle of 128 mel bins up to 8 kHz


@pytest.mark.parametrize("bins", [23, 80])
def test_kaldi_fbank_equals_kaldi_native_fbank_where_it_takes_the_bins(bins):
    import kaldi_native_fbank as knf

    from speechkit.models.speechllm.encoders.kaldi_fbank import kaldi_fbank

    wave = (noise(2.0, 9) * 2 ** 15).astype(np.float32)
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = bins
    bank = knf.OnlineFbank(opts)
    bank.accept_waveform(16000, wave.tolist())
    bank.input_finished()
    want = np.stack([bank.get_frame(i) for i in range(bank.num_frames_ready)])
    got = kaldi_fbank(wave, bins=bins, rate=16000, frame_ms=25.0, shift_ms=10.0)
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-3  # log energies: 0.1 %; kaldi-native-fbank is float32


def test_official_checkpoint_matches_the_reference_forward(beats_dir):
    cfg, state = read_beats_checkpoint(beats_dir / "beats.pt")
    wave = noise(2.0, 7)
    bank = torch.from_numpy(fbank(wave))
    want = beats_reference(state, cfg, bank[:len(bank) - len(bank) % 16])
    got, lengths = _encoder(beats_dir / "dir")([wave])
    assert int(lengths[0]) == 100  # 2 s on the 50 Hz grid
    assert torch.allclose(got[0, :len(want)], want, atol=1e-5)
    assert not got[0, len(want):].any()  # past BEATs' own tokens: zero rows


def test_tokens_sit_on_whispers_frame_grid_window_by_window(beats_dir):
    encoder = _encoder(beats_dir / "dir", window_s=3.0)
    feats, lengths = encoder([noise(7.5, 1), noise(0.1, 2)])
    assert lengths.tolist() == [150 + 150 + 75, 5]  # like Whisper: ceil(samples / 320)
    assert feats.shape == (2, 375, TINY_BEATS["encoder_embed_dim"])
    alone, _ = encoder([noise(7.5, 1)[48000:96000]])  # the second window encoded by itself
    assert torch.allclose(feats[0, 150:300], alone[0], atol=1e-5)
    assert not feats[1].any()  # 0.1 s: shorter than one 16-frame patch, no token
    padded, lengths = _encoder(beats_dir / "dir", window_s=3.0, pad_window=True)([noise(7.5, 1)])
    assert lengths.tolist() == [450]  # SALMONN: every window whole, zero rows after the audio
    assert torch.equal(padded[0, :375], feats[0]) and not padded[0, 375:].any()


def test_batch_equals_one_at_a_time(beats_dir):
    encoder = _encoder(beats_dir / "dir")
    waves = [noise(4.0, 3), noise(1.3, 4), noise(9.0, 5)]
    feats, lengths = encoder(waves)
    for i, w in enumerate(waves):
        one, n = encoder([w])
        assert int(n[0]) == int(lengths[i])
        assert torch.allclose(feats[i, :int(n[0])], one[0], atol=1e-5)


def test_checkpoint_with_pickled_code_or_without_cfg_is_refused(tmp_path):
    torch.save({"cfg": {"encoder_layers": 1}, "model": {"x": torch.zeros(1)},
                "extra": np.random.default_rng(0)}, tmp_path / "code.pt")
    with pytest.raises(SpeechkitError, match="pickled Python objects"):
        read_beats_checkpoint(tmp_path / "code.pt")
    torch.save({"model": {"x": torch.zeros(1)}}, tmp_path / "nocfg.pt")
    with pytest.raises(SpeechkitError, match="not a BEATs checkpoint"):
        read_beats_checkpoint(tmp_path / "nocfg.pt")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_beats_file_with_non_finite_weights_is_refused_naming_the_tensor(tmp_path, bad):
    weight = torch.zeros(4, 4)
    weight[1, 2] = bad
    torch.save({"cfg": {"encoder_layers": 1}, "model": {"encoder.layer.weight": weight}},
               tmp_path / "beats.pt")
    with pytest.raises(SpeechkitError, match="encoder.layer.weight"):
        read_beats_checkpoint(tmp_path / "beats.pt")

"""Whisper's log-mel spectrogram in numpy: the input of the CTranslate2 engine, computed without
torch or transformers (importing them costs seconds at start-up).

The same numbers as transformers' `WhisperFeatureExtractor` (to about 1e-6): a 400-sample
periodic Hann window every 160 samples over reflect-padded audio, the power spectrum through
librosa's Slaney mel filters (0-8 kHz), log10 floored at 1e-10 and at the clip's maximum
minus 8, scaled to about [-1, 1].
"""

from __future__ import annotations

import functools

import numpy as np

from speechkit.audio import SAMPLE_RATE

N_FFT = 400  # samples in one STFT window: 25 ms at 16 kHz
HOP_LENGTH = 160  # samples between windows: 10 ms, 100 frames a second
CHUNK_S = 30  # s in one Whisper window
N_SAMPLES = CHUNK_S * SAMPLE_RATE  # 480,000 samples in a window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3,000 log-mel frames in a window
MEL_MAX_HZ = 8000.0  # top of the mel filters (Nyquist at 16 kHz)
LOG_FLOOR = 1e-10  # smallest mel power taken to the log
DYNAMIC_RANGE = 8.0  # log10 units kept below the clip's loudest value (80 dB)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa, htk=False)."""
    mels = 3.0 * hz / 200.0
    log = hz >= 1000.0
    mels[log] = 15.0 + np.log(hz[log] / 1000.0) * (27.0 / np.log(6.4))
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    hz = 200.0 * mels / 3.0
    log = mels >= 15.0
    hz[log] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels[log] - 15.0))
    return hz


@functools.lru_cache(maxsize=4)
def mel_filters(n_mels: int) -> np.ndarray:
    """(frequency bins, n_mels) triangular filters, Slaney-normalized (equal area per band)."""
    edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(np.array([MEL_MAX_HZ]))[0], n_mels + 2))
    fft_hz = np.linspace(0, SAMPLE_RATE // 2, 1 + N_FFT // 2)
    slopes = edges[None, :] - fft_hz[:, None]
    widths = np.diff(edges)
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    return filters * (2.0 / (edges[2:n_mels + 2] - edges[:n_mels]))[None, :]


def log_mel(audio: np.ndarray, n_mels: int) -> np.ndarray:
    """(n_mels, len(audio) // HOP_LENGTH) log-mel frames of one clip, float32."""
    audio = np.asarray(audio, dtype=np.float32).astype(np.float64)
    padded = np.pad(audio, N_FFT // 2, mode="reflect")  # centred windows, as torch.stft
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
    mel = mel_filters(n_mels).T @ power[:-1].T  # the last frame is dropped, as Whisper does
    log_spec = np.log10(np.maximum(mel, LOG_FLOOR))
    log_spec = np.maximum(log_spec, log_spec.max() - DYNAMIC_RANGE)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


def window_features(audios: list[np.ndarray], n_mels: int) -> np.ndarray:
    """(clips, n_mels, N_FRAMES) features: each clip's first 30 s, its spectrogram computed on
    its own samples and zero-padded in the feature domain (see `WhisperModel.features`)."""
    out = np.zeros((len(audios), n_mels, N_FRAMES), dtype=np.float32)
    for i, a in enumerate(audios):
        a = np.asarray(a, dtype=np.float32)[:N_SAMPLES]
        if len(a) < HOP_LENGTH * 2:
            a = np.pad(a, (0, HOP_LENGTH * 2 - len(a)))
        f = log_mel(a, n_mels)
        n = min(f.shape[1], N_FRAMES)
        out[i, :, :n] = f[:, :n]
    return out

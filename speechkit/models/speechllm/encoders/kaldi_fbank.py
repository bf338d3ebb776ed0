"""Kaldi log-mel filterbank as BEATs computes it (torchaudio.compliance.kaldi.fbank defaults).

kaldi-native-fbank refuses BEATs' 128 bins at 16 kHz (with a 512-point FFT the lowest mel
triangles hold no FFT bin, which Kaldi treats as an error); the reference implementation
keeps those bins at log(eps). This is that computation in numpy: snip-edge framing, DC
removal, pre-emphasis 0.97, Povey window, power spectrum, HTK-style mel triangles. Where
kaldi-native-fbank accepts the bin count (23, 80) the two agree (tests/test_beats.py).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

PREEMPHASIS = 0.97
POVEY_POWER = 0.85  # Povey window: Hann^0.85
LOW_HZ = 20.0  # Kaldi --low-freq default; high = Nyquist
LOG_FLOOR = float(np.finfo(np.float32).eps)  # torchaudio clamps energies here before log


def _mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(hz) / 700.0)


@lru_cache(maxsize=4)
def mel_banks(bins: int, fft_size: int, rate: int) -> np.ndarray:
    """[bins, fft_size // 2 + 1] triangular filters on the mel scale (Nyquist column zero)."""
    lo, hi = _mel(LOW_HZ), _mel(rate / 2)
    delta = (hi - lo) / (bins + 1)
    left = lo + np.arange(bins)[:, None] * delta
    mel = _mel(rate / fft_size * np.arange(fft_size // 2))[None, :]
    up = (mel - left) / delta
    down = (left + 2 * delta - mel) / delta
    banks = np.maximum(0.0, np.minimum(up, down))
    return np.pad(banks, ((0, 0), (0, 1)))


@lru_cache(maxsize=4)
def _window(size: int) -> np.ndarray:
    n = np.arange(size)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / (size - 1))) ** POVEY_POWER


def kaldi_fbank(wave: np.ndarray, *, bins: int, rate: int, frame_ms: float,
                shift_ms: float) -> np.ndarray:
    """[frames, bins] log-mel energies of `wave` (already in 16-bit sample units)."""
    size, shift = int(rate * frame_ms / 1000), int(rate * shift_ms / 1000)
    if len(wave) < size:
        return np.zeros((0, bins), dtype=np.float32)
    n = 1 + (len(wave) - size) // shift
    idx = np.arange(size)[None, :] + shift * np.arange(n)[:, None]
    frames = wave.astype(np.float64)[idx]
    frames -= frames.mean(axis=1, keepdims=True)
    frames = frames - PREEMPHASIS * np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    frames *= _window(size)
    fft_size = 1 << (size - 1).bit_length()  # next power of two
    power = np.abs(np.fft.rfft(frames, n=fft_size)) ** 2
    energies = power @ mel_banks(bins, fft_size, rate).T
    return np.log(np.maximum(energies, LOG_FLOOR)).astype(np.float32)

"""Segmenting long audio: Silero VAD on real speech, fixed windows, silence and fallbacks."""

from __future__ import annotations

import logging
import threading
from itertools import pairwise

import numpy as np
import pytest

from speechkit.media import vad
from speechkit.media.vad import Span, fixed_windows, is_silent, split_long_audio
from tests.conftest import read_testdata_audio

SR = 16000  # Hz
GAP_S = 8.0  # s of near-silence between the clips: a "long silence" the VAD must drop
NOISE_RMS = 1e-4  # about -80 dBFS: a quiet floor, so the gaps are not digital zeros
SPEECH_DBFS = -30.0  # 50 ms frames louder than this are surely speech and must be covered
LIBRIVOX = "librivox/sense_and_sensibility_01_austen_64kb-{}.wav"
CLIPS = (  # pocketsphinx-testdata read speech from three recording sets, about 38 s; each
    # entry's files are joined back to back into one stretch of speech
    (LIBRIVOX.format("0870"), LIBRIVOX.format("0920")),  # 13.1 s: longer than a 10 s span
    (LIBRIVOX.format("0880"),),
    ("goforward.raw",),
    (LIBRIVOX.format("0890"),),
    ("numbers.raw",),
    ("cards/005.wav",),
    (LIBRIVOX.format("0930"),),
    ("something.raw",),
)


@pytest.fixture
def fresh_vad_cache():
    """Load the model anew, and leave no cached failure behind for the other tests."""
    vad._cached_model.cache_clear()
    yield
    vad._cached_model.cache_clear()


@pytest.fixture(scope="module")
def speech_with_gaps(testdata) -> tuple[np.ndarray, list[Span]]:
    """The CLIPS joined by GAP_S of quiet noise (> 60 s); returns audio and each clip's span."""
    rng = np.random.default_rng(0)
    parts, clips, t = [], [], GAP_S  # starts with a gap, too
    parts.append(rng.normal(0, NOISE_RMS, int(GAP_S * SR)).astype(np.float32))
    for files in CLIPS:
        audio = np.concatenate([read_testdata_audio(testdata / f) for f in files])
        parts.append(audio)
        clips.append(Span(t, t + len(audio) / SR))
        t += len(audio) / SR + GAP_S
        parts.append(rng.normal(0, NOISE_RMS, int(GAP_S * SR)).astype(np.float32))
    audio = np.concatenate(parts)
    assert len(audio) / SR > 60
    return audio, clips


def loud_frame_times(audio: np.ndarray, frame_s: float = 0.05) -> np.ndarray:
    """Centre times of the frames louder than SPEECH_DBFS."""
    frame = int(frame_s * SR)
    frames = audio[: len(audio) // frame * frame].reshape(-1, frame)
    power_db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    return (np.flatnonzero(power_db > SPEECH_DBFS) + 0.5) * frame_s


def assert_well_formed(spans: list[Span], max_s: float, total_s: float) -> None:
    assert spans, "no spans"
    for a, b in pairwise(spans):
        assert a.end <= b.start, f"{a} overlaps {b}"
    for s in spans:
        assert 0 <= s.start < s.end <= total_s + 1e-6
        assert s.duration <= max_s + 1e-6, f"{s} is longer than {max_s} s"


@pytest.mark.parametrize("max_s", [30.0, 10.0])
def test_vad_spans_cover_the_speech_and_skip_long_silences(speech_with_gaps, max_s):
    audio, clips = speech_with_gaps
    total_s = len(audio) / SR
    spans = split_long_audio(audio, max_s=max_s)
    assert_well_formed(spans, max_s, total_s)
    starts = np.array([s.start for s in spans])
    ends = np.array([s.end for s in spans])
    for t in loud_frame_times(audio):
        assert np.any((starts <= t) & (t <= ends)), f"speech at {t:.2f} s is in no span"
    gaps = [Span(0.0, clips[0].start)] + [Span(a.end, b.start) for a, b in pairwise(clips)]
    for g in gaps:  # the heart of each gap is silence: no span may reach into it
        heart = Span(g.start + 1.0, g.end - 1.0)
        assert not any(s.start < heart.end and heart.start < s.end for s in spans), heart
    # Speech is about 38 s of 110 s: the spans hold the speech, not the silences.
    assert sum(s.duration for s in spans) < 0.6 * total_s
    # The longest clip cannot fit a shorter span: Silero splits it (at a pause when it can).
    longest = max(c.duration for c in clips)
    assert len(spans) >= len(clips) + (1 if max_s < longest else 0)


def test_vad_merges_nearby_speech_into_one_span(speech_with_gaps):
    audio, clips = speech_with_gaps
    first = audio[int(clips[0].start * SR) : int(clips[0].end * SR)]  # 13.1 s, several pauses
    joined = np.concatenate([first, np.zeros(SR // 2, np.float32), first])  # 26.7 s
    spans = split_long_audio(joined, max_s=20.0)
    assert_well_formed(spans, 20.0, len(joined) / SR)
    assert len(spans) == 2  # each copy is one span although the VAD finds pauses inside it
    assert spans[0].start < 0.5 and spans[-1].end > len(joined) / SR - 1.0


def test_fixed_method_cuts_back_to_back_windows():
    audio = np.zeros(65 * SR, np.float32)
    spans = split_long_audio(audio, max_s=30.0, method="fixed")
    assert spans == [Span(0.0, 30.0), Span(30.0, 60.0), Span(60.0, 65.0)]
    assert fixed_windows(60.0, 30.0) == [Span(0.0, 30.0), Span(30.0, 60.0)]


@pytest.mark.parametrize("method", ["vad", "fixed"])
def test_audio_within_max_s_is_one_span_over_all_of_it(method):
    audio = np.zeros(12 * SR + 100, np.float32)
    assert split_long_audio(audio, max_s=30.0, method=method) == [Span(0.0, 12 + 100 / SR)]


def test_silent_long_audio_gives_no_spans_with_vad():
    rng = np.random.default_rng(1)
    quiet = rng.normal(0, NOISE_RMS, 31 * SR).astype(np.float32)
    assert split_long_audio(quiet, max_s=30.0) == []


def test_loader_failure_falls_back_to_fixed_windows_with_a_warning(
    monkeypatch, caplog, fresh_vad_cache
):
    def broken():
        raise RuntimeError("no model file")

    monkeypatch.setattr(vad, "_load_silero", broken)
    audio = np.zeros(70 * SR, np.float32)
    with caplog.at_level(logging.WARNING, logger="speechkit"):
        spans = split_long_audio(audio, max_s=30.0)
        split_long_audio(audio, max_s=30.0)
    assert spans == fixed_windows(70.0, 30.0)
    warnings = [r for r in caplog.records if "Silero VAD unavailable" in r.getMessage()]
    assert len(warnings) == 1 and "no model file" in warnings[0].getMessage()  # warned once


def test_vad_failure_while_running_falls_back_to_fixed_windows(monkeypatch, caplog):
    from speechkit.media import silero

    def broken(*args, **kwargs):
        raise RuntimeError("bad state")

    monkeypatch.setattr(silero.SileroVad, "probabilities", broken)
    with caplog.at_level(logging.WARNING, logger="speechkit"):
        spans = split_long_audio(np.zeros(40 * SR, np.float32), max_s=30.0)
    assert spans == fixed_windows(40.0, 30.0)
    assert "Silero VAD failed (RuntimeError: bad state)" in caplog.text


def test_unsupported_sample_rate_falls_back_to_fixed_windows(caplog):
    with caplog.at_level(logging.WARNING, logger="speechkit"):
        spans = split_long_audio(np.zeros(44100 * 40, np.float32), max_s=30.0, sample_rate=44100)
    assert spans == fixed_windows(40.0, 30.0)
    assert "44100 Hz" in caplog.text


def test_unknown_method_and_bad_max_s_are_rejected():
    with pytest.raises(ValueError, match="unknown segmentation method"):
        split_long_audio(np.zeros(SR, np.float32), method="energy")
    with pytest.raises(ValueError, match="max_s must be positive"):
        split_long_audio(np.zeros(SR, np.float32), max_s=0)


def test_merge_joins_close_regions_cuts_long_ones_and_breaks_at_long_gaps():
    regions = [Span(0.0, 4.0), Span(5.0, 9.0), Span(9.5, 12.0), Span(20.0, 45.0)]
    assert vad._merge(regions, max_s=10.0, total_s=50.0) == [
        Span(0.0, 9.0),  # 9.5-12 would make it 12 s long
        Span(9.5, 12.0),  # 8 s of silence before the next region: a new span
        Span(20.0, 30.0),
        Span(30.0, 40.0),  # a 25 s region is cut hard at max_s
        Span(40.0, 45.0),
    ]
    merged = vad._merge(regions, max_s=10.0, total_s=50.0)
    assert [s.speech for s in merged] == [((0.0, 4.0), (5.0, 9.0)), ((9.5, 12.0),), ((20.0, 30.0),),
                                          ((30.0, 40.0),), ((40.0, 45.0),)]


def test_each_span_keeps_the_speech_regions_it_was_joined_from(speech_with_gaps):
    """Whisper checks its decoding of a piece reaches each of them (`missed_speech`)."""
    audio, _ = speech_with_gaps
    spans = split_long_audio(audio, max_s=30.0)
    for s in spans:
        assert s.speech, s
        assert s.start == s.speech[0][0] and s.end == s.speech[-1][1]
        for (a, b), (c, d) in pairwise(s.speech):
            assert a < b <= c < d  # in order, apart
    assert sum(len(s.speech) for s in spans) > len(spans)  # pauses inside a span are kept


def test_concurrent_callers_get_the_same_spans(speech_with_gaps):
    audio, clips = speech_with_gaps
    piece = audio[: int(clips[0].end * SR) + 8 * SR]  # 29 s: a clip between two gaps
    expected = split_long_audio(piece, max_s=10.0)
    results: list[list[Span]] = [[], []]

    def work(i: int) -> None:
        results[i] = split_long_audio(piece, max_s=10.0)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected, expected]


def test_is_silent_looks_for_any_loud_frame():
    rng = np.random.default_rng(2)
    assert is_silent(np.zeros(0, np.float32))
    assert is_silent(np.zeros(5 * SR, np.float32))
    assert is_silent(rng.normal(0, NOISE_RMS, 5 * SR).astype(np.float32))  # -80 dBFS
    tone = 0.01 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR)  # about -43 dBFS
    assert not is_silent(tone.astype(np.float32))
    burst = np.zeros(600 * SR, np.float32)  # ten minutes with a 0.1 s click in it
    burst[300 * SR : 300 * SR + SR // 10] = 0.05
    assert not is_silent(burst)
    assert is_silent(tone.astype(np.float32), threshold_dbfs=-30)


QUIET_SPEECH_DBFS = -50.0  # RMS over the clip: speech recorded very low, but still speech


def test_is_silent_is_false_on_real_speech_even_recorded_quietly(speech_with_gaps):
    audio, clips = speech_with_gaps
    for c in clips:
        clip = audio[int(c.start * SR) : int(c.end * SR)].astype(np.float64)
        assert not is_silent(clip.astype(np.float32)), c
        quiet = clip * 10 ** (QUIET_SPEECH_DBFS / 20) / np.sqrt(np.mean(clip**2))
        assert not is_silent(quiet.astype(np.float32)), c
        assert is_silent(np.zeros_like(clip, dtype=np.float32))  # digital silence, same length


VAD_SETTINGS = {"threshold": vad.VAD_THRESHOLD, "min_speech_duration_ms": 250,
                "min_silence_duration_ms": 100, "speech_pad_ms": 400}  # as split_long_audio


@pytest.mark.parametrize("rate", [16000, 8000, 32000])
def test_vad_without_torch_finds_silero_vads_own_regions(speech_with_gaps, rate):
    """The onnxruntime-only port gives silero-vad's regions to the sample (16 kHz speech; 8 kHz
    taken every other sample; 32 kHz repeated, which silero-vad decimates back)."""
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    from speechkit.media.silero import SileroVad

    audio = speech_with_gaps[0]
    audio = {16000: audio, 8000: audio[::2].copy(), 32000: np.repeat(audio, 2)}[rate]
    max_s = 5.0  # shorter than some clips: over-long speech is cut at its pauses too
    theirs = get_speech_timestamps(torch.from_numpy(audio), load_silero_vad(onnx=True),
                                   sampling_rate=rate, max_speech_duration_s=max_s, **VAD_SETTINGS)
    ours = SileroVad().speech_timestamps(audio, rate, max_speech_duration_s=max_s, **VAD_SETTINGS)
    assert len(ours) > len(CLIPS)
    assert ours == [(t["start"], t["end"]) for t in theirs]


def test_speech_region_rules_match_silero_vad_on_varied_probabilities():
    """Every branch of the ported state machine (hysteresis, cuts of over-long speech at the
    longest pause or in place, dropped short regions, shared padding) against silero-vad's."""
    from silero_vad import get_speech_timestamps_from_probs

    from speechkit.media.silero import speech_regions

    rng = np.random.default_rng(3)
    for trial in range(600):
        n = int(rng.integers(1, 300))
        kind = trial % 3  # noise, a few levels around the thresholds, slow waves
        if kind == 0:
            probs = rng.random(n)
        elif kind == 1:
            probs = rng.choice([0.05, 0.4, 0.45, 0.6, 0.95], n)
        else:
            probs = np.clip(0.5 + 0.5 * np.sin(np.arange(n) / rng.uniform(1, 20))
                            + rng.uniform(-0.3, 0.3, n), 0, 1)
        rate = int(rng.choice([16000, 8000]))
        samples = n * (512 if rate == 16000 else 256) - int(rng.integers(0, 200))
        settings = {"threshold": float(rng.choice([0.3, 0.5, 0.7])),
                    "min_speech_duration_ms": int(rng.choice([0, 250, 1000])),
                    "max_speech_duration_s": float(rng.choice([0.5, 1.0, 2.0, 5.0, np.inf])),
                    "min_silence_duration_ms": int(rng.choice([0, 100, 300])),
                    "speech_pad_ms": int(rng.choice([0, 30, 400]))}
        theirs = get_speech_timestamps_from_probs([float(p) for p in probs], sampling_rate=rate,
                                                  audio_length_samples=samples, **settings)
        ours = speech_regions([float(p) for p in probs], rate, samples, **settings)
        assert ours == [(t["start"], t["end"]) for t in theirs], (trial, settings)

"""A VAD piece's speech that Whisper's window jumped over is decoded on its own and put back in
its place (speechkit.models.whisper_decode.missed_speech, WhisperModel._decode_missed)."""

from __future__ import annotations

import numpy as np
import pytest

from speechkit.models.base import DecodeOptions, audio_inputs
from speechkit.models.whisper_decode import TIME_PRECISION, missed_speech, split_segments
from tests.conftest import read_testdata_audio
from tests.test_longform import LIBRIVOX_PHRASES, _read_speech, words

SR = 16000
PAUSE_S = 1.2  # between the three sentences: shorter than a VAD piece's longest inner gap (2 s)
PAD_S = 0.4  # the VAD's padding around a speech region


def test_a_sentence_between_two_segments_is_missed():
    # Seen on a 3.5-min recording with beam 5: "Unless ... ill-disposed." ended at 39.77 s, the
    # next segment began at 45.77 s, and the sentence between them (40.5-44.6 s) was left out.
    covered = [(1.33, 5.33), (34.77, 39.77), (45.77, 51.77)]
    speech = [(0.9, 5.5), (34.4, 40.1), (40.5, 44.6), (45.4, 52.0)]
    assert missed_speech(covered, speech) == [(40.5, 44.6)]


def test_regions_the_segments_reach_are_not_missed():
    covered = [(0.0, 3.0), (4.0, 8.0)]
    assert missed_speech(covered, [(0.0, 3.1), (3.2, 3.6)]) == []  # under 1 s
    assert missed_speech(covered, [(2.6, 4.4)]) == []  # the pause between two segments, padded
    assert missed_speech(covered, [(5.0, 9.5)]) == []  # mostly covered: not a jump
    assert missed_speech([], [(1.0, 1.5)]) == []


def test_missed_regions_are_joined_and_trimmed_to_the_segments_around_them():
    covered = [(0.0, 10.2), (20.0, 25.0)]
    speech = [(10.0, 13.0), (13.5, 16.0), (17.0, 19.0), (19.5, 26.0)]
    assert missed_speech(covered, speech) == [(10.2, 19.0)]
    # A segment between two missed regions keeps them apart.
    assert missed_speech([(5.0, 6.0)], [(1.0, 4.0), (7.0, 9.0)]) == [(1.0, 4.0), (7.0, 9.0)]


@pytest.fixture(scope="module")
def three_sentences(testdata):
    """Three LibriVox sentences joined with PAUSE_S pauses (under 30 s: one window), and each
    sentence's padded speech region."""
    clips = _read_speech(testdata)[1:4]
    pause = np.zeros(int(PAUSE_S * SR), np.float32)
    parts, regions, t = [], [], 0.0
    for path, _ in clips:
        audio = read_testdata_audio(path)
        parts += [audio, pause]
        regions.append((max(0.0, t - PAD_S), t + len(audio) / SR + PAD_S))
        t += len(audio) / SR + PAUSE_S
    audio = np.concatenate(parts[:-1])
    assert len(audio) / SR < 30
    return audio, regions


def _without_segment(tokens: list[int], tb: int, duration_s: float, region: tuple[float, float]):
    """The window's tokens with the segments inside `region` taken out: as Whisper writes a
    window whose next timestamp jumps over that sentence."""
    out = []
    for s, e, ids in split_segments(tokens, tb, duration_s):
        if not region[0] <= (s + e) / 2 <= region[1]:
            out += [tb + round(s / TIME_PRECISION), *ids, tb + round(e / TIME_PRECISION)]
    return out


def test_a_sentence_the_window_jumped_over_is_decoded_and_put_back(whisper_base, three_sentences,
                                                                  monkeypatch):
    audio, regions = three_sentences
    tb = whisper_base.decoder.tok.timestamp_begin
    decode = whisper_base.decoder.decode
    calls = []

    def jumping(enc, prompts, beam_size, max_new_tokens):
        out = decode(enc, prompts, beam_size, max_new_tokens)
        if not calls:  # the window itself: its middle sentence left out
            out[0].tokens = _without_segment(out[0].tokens, tb, len(audio) / SR, regions[1])
        calls.append(len(prompts))
        return out

    monkeypatch.setattr(whisper_base.decoder, "decode", jumping)
    options = DecodeOptions(language="en")
    hyp = whisper_base.generate(audio_inputs([audio]), options, speech_to_end=[True],
                                speech=[regions])[0]
    assert calls == [1, 1]  # the window, then the stretch it jumped over
    text = words(hyp.text)
    found = [text.find(p) for p in LIBRIVOX_PHRASES[1:4]]
    assert all(i >= 0 for i in found) and found == sorted(found), hyp.text
    starts = [s.start for s in hyp.segments]
    assert starts == sorted(starts)
    middle = [s for s in hyp.segments if LIBRIVOX_PHRASES[2] in words(s.text)]
    assert middle and regions[1][0] <= middle[0].start < middle[0].end <= regions[1][1] + 1e-6

    calls.clear()  # without the jump nothing is decoded twice, and the text is the window's
    monkeypatch.setattr(whisper_base.decoder, "decode", decode)
    plain = whisper_base.generate(audio_inputs([audio]), options, speech_to_end=[True])[0]
    again = whisper_base.generate(audio_inputs([audio]), options, speech_to_end=[True],
                                  speech=[regions])[0]
    assert again.text == plain.text and again.segments == plain.segments

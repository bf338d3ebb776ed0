"""Whisper on CTranslate2 reads each clip's own encoder window (10, 20 or 30 s), a function of
the clip alone: batches mixing window lengths give what one clip at a time gives, the window is
recorded with each result, and results of the other window are not resumed."""

from __future__ import annotations

import numpy as np
import pytest

from speechkit.data import read_results
from speechkit.errors import SpeechkitError
from speechkit.inputs import expand_inputs
from speechkit.media.ffmpeg import decode_audio
from speechkit.media.wav import write_wav
from speechkit.models.base import DecodeOptions
from speechkit.models.registry import RuntimeOptions
from speechkit.models.whisper_ctranslate2 import encoder_frames
from speechkit.transcribe import transcribe_to_jsonl
from tests.test_transcribe import cards, librivox, run

SAMPLE_RATE = 16000


@pytest.mark.parametrize(("seconds", "frames"), [
    (0.5, 1000), (8.9, 1000), (9.1, 2000), (18.9, 2000), (19.5, 3000), (29.0, 3000), (45.0, 3000)])
def test_the_window_is_the_clip_and_a_second_in_10_s_steps_up_to_30(seconds, frames):
    assert encoder_frames(int(seconds * SAMPLE_RATE)) == frames
    assert encoder_frames(int(seconds * SAMPLE_RATE), short_windows=False) == 3000


def _joined(paths, out):
    """The clips one after another with 0.5 s of silence between them, as one WAV file."""
    gap = np.zeros(SAMPLE_RATE // 2, np.float32)
    return str(write_wav(out, np.concatenate([part for p in paths for part in (decode_audio(p), gap)])))


def test_a_batch_mixing_window_lengths_equals_one_clip_at_a_time(whisper_base, testdata, tmp_path):
    clips = [str(p) for p, _ in librivox(testdata, 5)]
    paths = [str(cards(testdata, 1)[0][0]), clips[0],
             _joined(clips[:2], tmp_path / "twelve.wav"), _joined(clips, tmp_path / "long.wav")]
    frames = [encoder_frames(len(decode_audio(p))) for p in paths]
    assert sorted(set(frames)) == [1000, 2000, 3000], frames  # one clip of each window, and two of 10 s
    items = expand_inputs(paths)
    _, batched = run(items, whisper_base, tmp_path, "b.jsonl", batch_size=len(paths))
    _, single = run(items, whisper_base, tmp_path, "s.jsonl", batch_size=1)
    assert {k: r.text for k, r in batched.items()} == {k: r.text for k, r in single.items()}
    assert all(r.model["encoder_window"] == "short" for r in batched.values())
    assert "he was not an ill-disposed young man" in batched[paths[2]].text.lower()


def test_the_30_s_window_is_recorded_and_not_resumed_as_the_short_one(testdata, tmp_path):
    clip = str(librivox(testdata, 1)[0][0])
    out = tmp_path / "r.jsonl"
    full = RuntimeOptions(device="cpu", encoder_window="30s")
    transcribe_to_jsonl(expand_inputs([clip]), "whisper-base", DecodeOptions(), out, runtime=full,
                        progress=False)
    (result,) = read_results(out).values()
    assert result.model["encoder_window"] == "30s" and result.status == "ok"
    assert "dashwood" in result.text.lower()
    with pytest.raises(SpeechkitError, match="encoder_window"):
        transcribe_to_jsonl(expand_inputs([clip]), "whisper-base", DecodeOptions(), out,
                            runtime=RuntimeOptions(device="cpu"), progress=False)

"""Word times: in order, inside their segments, not stretched over pauses, on real speech with
both Whisper engines; and the JSON file's words as openai-whisper writes them."""

import json
import re
import wave

import numpy as np
import pytest

from speechkit.data import Segment, Word, read_results
from speechkit.inputs import expand_inputs
from speechkit.models.base import DecodeOptions
from speechkit.models.whisper_words import fit_word_times, split_words
from speechkit.transcribe import transcribe_items

PAUSES_S = (0.4, 1.0, 2.0, 0.7, 3.0)  # silence after each LibriVox clip, cycled
# faster-whisper 1.x on the same recording and weights (int8) starts a word after a pause at
# most 0.14 s into the silence where its alignment holds; 0.25 s leaves room for rounding.
MAX_INTO_PAUSE_S = 0.25


def speech_with_pauses(testdata, out, times: int = 2):
    """The five LibriVox clips `times` over, joined by PAUSES_S of silence into one 16 kHz WAV:
    its path and the (start, end) of each clip's speech in it."""
    from speechkit.media.ffmpeg import decode_audio

    lines = (testdata / "librivox" / "transcription").read_text().splitlines()[:5]
    clips = [testdata / "librivox" / (re.search(r"\((.*)\)", line).group(1) + ".wav") for line in lines]
    pcm, spans, t = [], [], 0.0
    for k in range(5 * times):
        audio = decode_audio(clips[k % 5])
        spans.append((t, t + len(audio) / 16000))
        pause = PAUSES_S[k % 5] if k < 5 * times - 1 else 0.0
        pcm += [audio, np.zeros(round(pause * 16000), np.float32)]
        t += len(audio) / 16000 + pause
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(np.concatenate(pcm), -1, 1) * 32767).astype("<i2").tobytes())
    return out, spans


def into_pauses(word: Word, spans) -> float:
    """Seconds of the word that lie in the silence between two clips."""
    return sum(max(0.0, min(word.end, b[0]) - max(word.start, a[1]))
               for a, b in zip(spans, spans[1:], strict=False))


def assert_word_times_hold(result, spans):
    words = [(w, s) for s in result.segments for w in s.words]
    assert len(words) > 12 * len(spans)  # the clips hold 67 words
    for w, seg in words:
        assert w.end >= w.start, w
        assert seg.start <= w.start and w.end <= seg.end, (w, seg.start, seg.end)
        assert 0.0 <= w.probability <= 1.0
    for (a, _), (b, _) in zip(words, words[1:], strict=False):
        assert b.start >= a.end, (a, b)  # in order, no overlap, across segments too
    worst = max((w for w, _ in words), key=lambda w: into_pauses(w, spans))
    assert into_pauses(worst, spans) <= MAX_INTO_PAUSE_S, worst
    # A word before punctuation ends where it is spoken, not after the pause that follows.
    for w, _ in words:
        if w.word.endswith((",", ".")):
            assert w.end - w.start < 1.0, w


@pytest.fixture(scope="module")
def recording(testdata, ffmpeg, tmp_path_factory):
    return speech_with_pauses(testdata, tmp_path_factory.mktemp("words") / "long.wav")


@pytest.mark.slow
def test_word_times_are_ordered_inside_segments_and_off_the_pauses(whisper_base, recording, tmp_path):
    path, spans = recording
    transcribe_items(expand_inputs([str(path)]), whisper_base,
                     DecodeOptions(language="en", word_timestamps=True), tmp_path / "r.jsonl",
                     formats=("json",), format_dir=tmp_path)
    r = next(iter(read_results(tmp_path / "r.jsonl").values()))  # as users read it back
    assert_word_times_hold(r, spans)
    doc = json.loads((tmp_path / "long.json").read_text())
    assert [[set(w) for w in s["words"]] for s in doc["segments"]] == [
        [{"word", "start", "end", "probability"}] * len(s.words) for s in r.segments]
    assert [w["word"] for s in doc["segments"] for w in s["words"]] == [
        w.word for s in r.segments for w in s.words]


@pytest.mark.slow
def test_torch_engine_word_times_hold_and_agree_with_ctranslate2(whisper_base_torch, whisper_base,
                                                                 testdata, tmp_path):
    path, spans = speech_with_pauses(testdata, tmp_path / "long.wav", times=1)
    found = {}
    for name, model in (("torch", whisper_base_torch), ("ct2", whisper_base)):
        transcribe_items(expand_inputs([str(path)]), model,
                         DecodeOptions(language="en", word_timestamps=True), tmp_path / f"{name}.jsonl")
        found[name] = next(iter(read_results(tmp_path / f"{name}.jsonl").values()))
        assert found[name].status == "ok", found[name].error
    assert_word_times_hold(found["torch"], spans)
    torch_words, ct2_words = ([w for s in found[k].segments for w in s.words] for k in ("torch", "ct2"))
    assert [w.word for w in torch_words] == [w.word for w in ct2_words]
    # The same heads, filter and DTW: times agree to a frame or two (one token late before).
    gaps = [abs(a.start - b.start) for a, b in zip(torch_words, ct2_words, strict=True)]
    assert np.median(gaps) <= 0.02 and max(gaps) <= 0.1, max(gaps)


def test_json_has_no_words_without_word_timestamps():
    from speechkit.data import Result
    from speechkit.formats import to_json

    r = Result(id="x", path="x.wav", text="one", segments=[Segment(0.0, 1.0, "one")])
    assert "words" not in json.loads(to_json(r))["segments"][0]


def test_a_word_past_its_segment_is_brought_inside_and_never_ends_before_it_starts():
    # What the alignment gave on a 3:37 talk: "He" aligned after its segment's end timestamp.
    seg = Segment(128.0, 129.312, "and then. He", [
        Word("and", 128.0, 128.3, 0.9), Word("then.", 128.3, 128.6, 0.9), Word("He", 129.632, 129.9, 0.8)])
    (fitted,) = fit_word_times([seg])
    for w in fitted.words:
        assert fitted.start <= w.start <= w.end <= fitted.end
    assert [w.start for w in fitted.words] == sorted(w.start for w in fitted.words)


def test_a_sentence_end_stretched_over_the_pause_is_cut_to_twice_the_median_word():
    words = [Word(f"w{i}", i * 0.3, i * 0.3 + 0.3) for i in range(9)] + [Word("end.", 2.7, 5.0)]
    (fitted,) = fit_word_times([Segment(0.0, 5.0, "...", words)])
    assert fitted.words[-1].end == pytest.approx(2.7 + 2 * 0.3)
    assert fitted.words[0].end == pytest.approx(0.3)


@pytest.mark.slow
def test_punctuation_is_written_with_its_word_but_not_timed_with_it(whisper_base):
    tok = whisper_base.processor.tokenizer
    ids = tok.encode(' Americans, he said "yes."')
    words = split_words(tok, ids, "en")
    assert [w.text for w in words] == [" Americans,", " he", " said", ' "yes."']
    for w in words:  # the timed tokens are the word's letters only
        sounding = tok.decode(w.tokens[w.first:w.last])
        assert sounding.strip().strip("\"") == re.sub(r"[^\w]", "", w.text), w

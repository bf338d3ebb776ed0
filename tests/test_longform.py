"""Long recordings, Whisper's decoding rules, subtitle cues and per-input output files."""

import json
import re

import jiwer
import pytest

from speechkit.data import Result, Segment, read_results
from speechkit.formats import MAX_LINE_CHARS, MAX_LINES, cues, output_stems, parse_formats, to_srt, to_tsv
from speechkit.inputs import expand_inputs
from speechkit.models.base import DecodeOptions, audio_inputs
from speechkit.models.whisper_decode import TIME_PRECISION, compression_ratio, resume_point, split_segments
from speechkit.transcribe import transcribe_items

TB = 50364  # <|0.00|> of the multilingual Whisper vocabulary


def ts(seconds: float) -> int:
    return TB + round(seconds / TIME_PRECISION)


def words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " ")).split())


# -- decoding rules (no model) ----------------------------------------------------------------


def test_window_ending_on_a_closing_timestamp_is_complete():
    tokens = [ts(0), 1, 2, ts(3.0)]
    assert resume_point(tokens, TB) == (tokens, None)


def test_window_ending_on_a_timestamp_pair_resumes_at_the_pair():
    tokens = [ts(0), 1, 2, ts(3.0), ts(3.0), 4, 5, ts(6.5), ts(6.5)]
    kept, resume = resume_point(tokens, TB)
    assert kept == tokens[:-1] and resume == pytest.approx(6.5)


def test_text_cut_off_after_a_pair_is_dropped_and_decoded_again():
    tokens = [ts(0), 1, ts(2.0), ts(2.2), 7, 8]  # stopped in mid-segment (max tokens)
    kept, resume = resume_point(tokens, TB)
    assert kept == [ts(0), 1, ts(2.0)] and resume == pytest.approx(2.0)


def test_segments_follow_the_timestamp_tokens():
    tokens = [ts(0), 1, 2, ts(2.4), ts(2.6), 3, ts(5.0), ts(5.0), 4, 5]
    segs = split_segments(tokens, TB, duration_s=6.0)
    assert [(s, e) for s, e, _ in segs] == [(0.0, 2.4), (2.6, 5.0), (5.0, 6.0)]
    assert [t for _, _, t in segs] == [[1, 2], [3], [4, 5]]


def test_timestamps_past_the_clip_are_clamped_to_its_end():
    assert split_segments([ts(0), 1, ts(9.0)], TB, duration_s=4.0) == [(0.0, 4.0, [1])]


def test_repetition_loops_have_a_high_compression_ratio():
    assert compression_ratio("The word is a word of the word of the word " * 8) > 2.4
    assert compression_ratio("And Mr. John Dashwood had then leisure to consider how much") < 2.4


# -- subtitles and output files ----------------------------------------------------------------


def test_a_long_segment_becomes_several_bounded_cues_in_its_own_time():
    text = ("Had he married a more amiable woman he might have been made still more respectable "
            "than he was and he might even have been made amiable himself for he was very young")
    r = Result(id="x", path="x.wav", text=text, segments=[Segment(10.0, 24.7, text)])
    got = cues(r)
    assert len(got) >= 2
    assert got[0][0] == 10.0 and got[-1][1] == 24.7
    assert all(a[1] == b[0] for a, b in zip(got, got[1:], strict=False))  # back to back
    for _, _, cue in got:
        lines = cue.split("\n")
        assert len(lines) <= MAX_LINES and all(len(line) <= MAX_LINE_CHARS for line in lines)
    assert " ".join(c.replace("\n", " ") for _, _, c in got) == text
    assert to_srt(r).count(" --> ") == len(got)


def test_tsv_is_whispers_millisecond_table():
    r = Result(id="x", path="x.wav", text="a b", segments=[Segment(0.0, 1.5, "a"), Segment(1.5, 2.25, "b")])
    assert to_tsv(r) == "start\tend\ttext\n0\t1500\ta\n1500\t2250\tb\n"


def test_output_files_are_named_after_the_input_with_a_hash_only_on_a_clash():
    stems = output_stems([("/a/intro.wav", "/a/intro.wav"), ("/b/intro.wav", "/b/intro.wav"),
                          ("/c/talk.mp4", "/c/talk.mp4")])
    assert stems["/c/talk.mp4"] == "talk"
    assert stems["/a/intro.wav"] != stems["/b/intro.wav"]
    assert all(s.startswith("intro.") for k, s in stems.items() if "intro" in k)


def test_output_format_all_means_every_format():
    assert parse_formats("all") == ("srt", "vtt", "txt", "tsv", "json")


# -- long real recordings ----------------------------------------------------------------------


def _long_recording(clips, tmp_path, times: int):
    """The clips, repeated `times`, decoded and joined into one 16 kHz WAV; and its reference."""
    import wave

    import numpy as np

    from speechkit.media.ffmpeg import decode_audio

    pcm = np.concatenate([decode_audio(p) for _ in range(times) for p, _ in clips])
    out = tmp_path / "long.wav"
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())
    return out, " ".join(ref for _ in range(times) for _, ref in clips)


def _read_speech(testdata):
    """Real read speech with references: the five LibriVox clips of pocketsphinx-testdata."""
    lines = (testdata / "librivox" / "transcription").read_text().splitlines()
    clips = []
    for line in lines[:5]:
        m = re.match(r"<s> (.*) </s> \((.*)\)", line.strip())
        clips.append((testdata / "librivox" / f"{m.group(2)}.wav", m.group(1)))
    return clips


# A phrase of each LibriVox sentence that whisper-base gets word for word, without the first
# word: int8 decoding may lose a leading "he" at feature rounding noise (1e-6).
LIBRIVOX_PHRASES = ("john dashwood had then leisure", "not an ill disposed young man",
                    "rather cold hearted and rather selfish", "might have been made still more respectable",
                    "might even have been made amiable himself")


def _dev_speech(dev_dir):
    """The development set's English clips with their references."""
    clips = []
    for line in (dev_dir / "manifest.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["task"] == "asr" and rec["language"] == "en":
            clips.append((dev_dir / rec["path"], rec["reference"]))
    return clips


def _assert_same_words_with_and_without_language(model, clips, times, tmp_path):
    """The clips joined `times` over into one recording longer than a window: detecting the
    language gives the same transcript as naming it, at least one segment a sentence (not one
    line per VAD piece), each LibriVox sentence once a repetition, at the clips' own WER; the
    piece the language is detected on is encoded once, not twice."""
    from speechkit.media.ffmpeg import decode_audio
    from speechkit.media.vad import split_long_audio

    path, reference = _long_recording(clips, tmp_path, times=times)
    pieces = split_long_audio(decode_audio(str(path)), max_s=model.max_input_s)
    assert len(pieces) >= 2  # long enough to be cut, so detection and decoding span pieces
    items = expand_inputs([str(path)])
    texts, encoded = {}, {}
    encode = model.decoder.encode
    for lang in (None, "en"):
        out = tmp_path / f"{lang}.jsonl"
        windows = []
        model.decoder.encode = lambda f, windows=windows: windows.append(len(f)) or encode(f)
        try:
            stats = transcribe_items(items, model, DecodeOptions(language=lang), out)
        finally:
            model.decoder.encode = encode
        encoded[lang] = sum(windows)
        assert stats.ok == 1
        r = next(iter(read_results(out).values()))
        texts[lang] = r.text
        assert r.language == "en"
        assert len(r.segments) >= len(clips) * times  # each sentence joined in has its segment
        assert all(a.start <= b.start for a, b in zip(r.segments, r.segments[1:], strict=False))
    assert texts[None] == texts["en"]
    assert encoded[None] == encoded["en"]
    hyp = words(texts[None])
    assert len(hyp.split()) == pytest.approx(len(words(reference).split()), rel=0.1)
    for phrase in LIBRIVOX_PHRASES:  # once a repetition: neither dropped nor repeated at a piece's edge
        assert hyp.count(phrase) == times, phrase
    assert jiwer.wer(words(reference), hyp) < 0.1


@pytest.mark.slow
def test_long_recording_same_words_with_and_without_language(whisper_base, testdata, tmp_path):
    # the five LibriVox sentences four times over: about 100 s, more than three 30 s windows
    _assert_same_words_with_and_without_language(whisper_base, _read_speech(testdata), 4, tmp_path)


@pytest.mark.slow
def test_long_recording_of_many_speakers_same_words_with_and_without_language(
        whisper_base, testdata, dev_dir, tmp_path):
    clips = _read_speech(testdata) + _dev_speech(dev_dir)  # twice over: about 100 s, six speakers
    _assert_same_words_with_and_without_language(whisper_base, clips, 2, tmp_path)


@pytest.mark.slow
def test_subtitle_files_use_whisper_segments(whisper_base, testdata, tmp_path):
    clips = _read_speech(testdata)
    path, _ = _long_recording(clips, tmp_path, times=2)
    transcribe_items(expand_inputs([str(path)]), whisper_base, DecodeOptions(language="en"),
                     tmp_path / "r.jsonl", formats=("srt", "vtt", "json"), format_dir=tmp_path)
    r = next(iter(read_results(tmp_path / "r.jsonl").values()))
    srt = (tmp_path / "long.srt").read_text()
    assert srt.count(" --> ") >= len(r.segments) >= 8  # 49 s: two VAD pieces, many cues
    starts = [s for s in re.findall(r"(\d\d:\d\d:\d\d,\d\d\d) -->", srt)]
    assert starts == sorted(starts)
    assert (tmp_path / "long.vtt").read_text().startswith("WEBVTT")
    doc = json.loads((tmp_path / "long.json").read_text())
    assert doc["text"] == r.text and len(doc["segments"]) == len(r.segments)


@pytest.mark.slow
def test_each_result_is_written_as_soon_as_its_item_is_done(whisper_base, testdata, tmp_path):
    clips = [str(p) for p, _ in _read_speech(testdata)[:3]]
    out = tmp_path / "r.jsonl"
    seen = []

    def on_result(result, stats):
        seen.append(len(out.read_text().splitlines()))

    transcribe_items(expand_inputs(clips), whisper_base, DecodeOptions(language="en"), out,
                     batch_size=1, on_result=on_result)
    assert seen == [1, 2, 3]


# -- the fallback on a real-shaped Whisper with random weights ---------------------------------


@pytest.fixture(scope="module")
def random_whisper(tmp_path_factory):
    """A one-layer Whisper with random weights and the real multilingual vocabulary: its
    greedy output is a loop of one token, which the fallback must catch."""
    from speechkit.models.whisper import WhisperModel
    from tests.test_whisper_ct2_replicas import write_random_whisper

    out = write_random_whisper(tmp_path_factory.mktemp("random-whisper"))
    return WhisperModel(out, name="random-whisper")


def test_unlikely_or_looping_text_is_decoded_again_hotter_and_reproducibly(random_whisper, testdata):
    from speechkit.media.ffmpeg import decode_audio

    clips = [decode_audio(p) for p, _ in _read_speech(testdata)[:2]]
    opts = DecodeOptions(language="en", max_new_tokens=24)
    first = random_whisper.generate(audio_inputs(clips), opts)
    assert all(h.extras["temperature"] > 0 for h in first)  # greedy failed the checks
    again = random_whisper.generate(audio_inputs(clips), opts)
    one = [random_whisper.generate(audio_inputs([c]), opts)[0] for c in clips]
    assert [h.text for h in first] == [h.text for h in again] == [h.text for h in one]


def test_a_loop_that_survives_every_temperature_is_flagged(random_whisper, testdata):
    from speechkit.media.ffmpeg import decode_audio
    from speechkit.models.whisper_decode import Decoded

    clip = decode_audio(_read_speech(testdata)[0][0])
    loop = Decoded(tokens=[TB, *([440] * 60)], avg_logprob=-0.1, compression_ratio=9.0,
                   no_speech_prob=0.0, temperature=1.0, truncated=True)
    hyp = random_whisper._hypothesis([(0.0, loop, len(clip) / 16000)], "en", clip, DecodeOptions())
    assert "repetition loop" in hyp.extras["warning"] and hyp.text


@pytest.mark.slow
def test_without_a_terminal_progress_is_plain_lines(whisper_base, testdata, tmp_path, monkeypatch):
    import io

    from rich.console import Console

    import speechkit.transcribe as tr

    monkeypatch.setattr(tr, "PROGRESS_LINE_EVERY_S", 0.0)
    log = io.StringIO()
    clips = [str(p) for p, _ in _read_speech(testdata)[:2]]
    tr.transcribe_to_jsonl(expand_inputs(clips), whisper_base, DecodeOptions(language="en"),
                           tmp_path / "r.jsonl", console=Console(file=log, force_terminal=False),
                           batch_size=1)
    lines = [ln for ln in log.getvalue().splitlines() if ln.startswith("transcribing: ")]
    assert lines and lines[-1].startswith("transcribing: 2/2 files, 0:00:")
    assert "\x1b[" not in log.getvalue()  # no live bar or colour codes in a log


@pytest.mark.slow
def test_word_timestamps_cover_each_segment_in_order(whisper_base, testdata, tmp_path):
    clip, ref = _read_speech(testdata)[0]
    out = tmp_path / "r.jsonl"
    transcribe_items(expand_inputs([str(clip)]), whisper_base,
                     DecodeOptions(language="en", word_timestamps=True), out,
                     formats=("srt",), format_dir=tmp_path)
    r = next(iter(read_results(out).values()))  # read back through the results file
    assert r.decode["word_timestamps"] is True and r.segments
    for seg in r.segments:
        assert seg.words and " ".join(w.word for w in seg.words) == seg.text
        starts = [w.start for w in seg.words]
        assert starts == sorted(starts)
        assert all(seg.start <= w.start <= w.end <= seg.end for w in seg.words)
    spoken = [w for s in r.segments for w in s.words]
    assert spoken[-1].end > spoken[0].start + 4.0  # a 7 s sentence spread over its time
    assert words(" ".join(w.word for w in spoken)) == words(r.text)
    assert (tmp_path / f"{clip.stem}.srt").read_text().count(" --> ") >= 2  # 42-column cues

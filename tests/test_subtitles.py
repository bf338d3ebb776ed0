"""Subtitle cues as subtitle guidelines lay them out: checked on a real long recording through
the command line, and on the cases that made scraps of cues before."""

import re

import pytest

from speechkit.data import Result, Segment, read_results
from speechkit.errors import SpeechkitError
from speechkit.formats import to_srt, to_vtt
from speechkit.subtitles import (
    MAX_CHARS_PER_S,
    MIN_CUE_S,
    MIN_CUE_WORDS,
    SubtitleOptions,
    cues,
    ends_sentence,
)
from tests.test_cli import speechkit
from tests.test_word_times import speech_with_pauses

SRT_CUE = re.compile(r"\d+\n(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)\n(.*?)\n(?:\n|$)",
                     re.S)


def _seconds(h, m, s, ms) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def read_srt(text: str) -> list[tuple[float, float, str]]:
    return [(_seconds(*m.groups()[:4]), _seconds(*m.groups()[4:8]), m.group(9))
            for m in SRT_CUE.finditer(text)]


def assert_cue_rules(got, options: SubtitleOptions, transcript: str):
    """Every rule a cue of this recording (long read sentences, pauses between them) keeps."""
    assert got and " ".join(t.replace("\n", " ") for *_, t in got).split() == transcript.split()
    for (_, end, _), (start, _, _) in zip(got, got[1:], strict=False):
        assert start >= end  # in order, never two on screen
    for k, (start, end, text) in enumerate(got):
        lines = text.split("\n")
        assert len(lines) <= options.max_line_count, text
        assert all(len(line) <= options.max_line_width for line in lines), text
        if options.max_words_per_line:
            assert all(len(line.split()) <= options.max_words_per_line for line in lines), text
        assert end - start >= MIN_CUE_S and len(text.split()) >= min(MIN_CUE_WORDS, len(lines) * (
            options.max_words_per_line or 99)), (start, end, text)
        # Up long enough to read, or until the next cue: the speech leaves no more time.
        assert (len(text) / (end - start) <= MAX_CHARS_PER_S + 0.05
                or (k + 1 < len(got) and end == got[k + 1][0])), (start, end, text)
        words = text.split()
        for w, nxt in zip(words, words[1:], strict=False):  # a sentence ends its cue (these are long ones)
            assert not ends_sentence(w, nxt), text


@pytest.mark.slow
def test_cues_of_a_long_recording_keep_the_rules_with_and_without_word_times(testdata, ffmpeg, tmp_path):
    path, _ = speech_with_pauses(testdata, tmp_path / "long.wav")  # 65 s, ten sentences
    r = speechkit("transcribe", path, "--language", "en", "--word-timestamps", "-f", "srt,vtt",
                  "--max-line-width", "32", "--max-line-count", "1", "--max-words-per-line", "5",
                  "-d", tmp_path, "--no-progress", timeout=600)
    assert r.returncode == 0, r.stderr
    result = next(iter(read_results(tmp_path / "transcripts.jsonl").values()))
    narrow = SubtitleOptions(32, 1, 5)
    srt = (tmp_path / "long.srt").read_text()
    assert srt == to_srt(result, narrow)
    assert (tmp_path / "long.vtt").read_text() == to_vtt(result, narrow)
    assert_cue_rules(read_srt(srt), narrow, result.text)
    assert_cue_rules(read_srt(to_srt(result)), SubtitleOptions(), result.text)
    for seg in result.segments:  # the segments' own times, shared out over their words
        seg.words = None
    assert_cue_rules(read_srt(to_srt(result)), SubtitleOptions(), result.text)


def test_a_sentence_cut_over_three_segments_makes_no_scrap_of_a_cue():
    # Whisper's segments on two LibriVox clips joined without a pause (before: `in his power`
    # alone for 0.75 s, then `to do for them.`).
    r = Result(id="x", path="x.wav", duration_s=12.0, segments=[
        Segment(0.0, 5.215, "And Mr. John Dashwood had then leisure to consider how much there "
                            "might be prudently"),
        Segment(5.215, 5.96, "in his power"), Segment(5.96, 7.0, "to do for them."),
        Segment(7.3, 9.8, "He was not an ill-disposed young man.")])
    got = cues(r)
    for start, end, text in got:
        assert end - start >= MIN_CUE_S and len(text.split()) >= MIN_CUE_WORDS, got
    assert got[-1][2] == "He was not an ill-disposed young man."  # its own cue
    assert got[-2][2].endswith("to do for them.")


def test_a_short_line_that_stands_alone_in_time_keeps_its_cue_and_gets_a_second():
    r = Result(id="x", path="x.wav", duration_s=20.0, segments=[
        Segment(0.0, 4.0, "He was not an ill-disposed young man."), Segment(8.0, 8.4, "Yes."),
        Segment(12.0, 15.0, "He might even have been made amiable himself.")])
    got = cues(r)
    assert [t for *_, t in got][1] == "Yes."
    assert got[1][:2] == (8.0, 8.0 + MIN_CUE_S)


def test_lines_are_balanced_and_break_before_a_conjunction():
    text = "Unless to be rather cold-hearted and rather selfish is to be ill-disposed."
    (cue,) = cues(Result(id="x", path="x.wav", segments=[Segment(0.0, 4.6, text)]))
    assert cue[2] == "Unless to be rather cold-hearted\nand rather selfish is to be ill-disposed."


def test_words_per_line_and_lines_per_cue_are_honoured():
    text = "He might even have been made amiable himself."
    got = cues(Result(id="x", path="x.wav", segments=[Segment(0.0, 6.0, text)]),
               SubtitleOptions(max_line_width=42, max_line_count=1, max_words_per_line=4))
    assert [t for *_, t in got] == ["He might even have", "been made amiable himself."]


def test_abbreviations_and_initials_end_no_sentence():
    assert ends_sentence("man.", "Unless") and ends_sentence('said."', "He")
    assert ends_sentence("himself.", None) and ends_sentence("now?", "And")
    assert not ends_sentence("Mr.", "John") and not ends_sentence("J.", "Smith")
    assert not ends_sentence("etc.", "and") and not ends_sentence("man,", "Unless")


def test_layout_options_must_be_positive():
    with pytest.raises(SpeechkitError, match="--max-line-width"):
        SubtitleOptions(max_line_width=0)

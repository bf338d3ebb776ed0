"""Hallucination metrics and the non-speech suites: words where nobody spoke, loops, pauses."""

import hashlib
import json

import pytest

from speechkit.evaluation.bench import run_bench
from speechkit.evaluation.metrics.hallucination import hallucination_metrics, is_loop
from speechkit.evaluation.metrics.normalizers import get_normalizer
from speechkit.evaluation.metrics.scorers import Scoreable
from speechkit.evaluation.scoring import score_predictions
from speechkit.evaluation.suites import load_suite, suite_items
from speechkit.media.wav import write_wav
from speechkit.models.base import DecodeOptions

WHISPER_EN = get_normalizer("whisper-en")


def test_clips_without_speech_given_words_are_counted_per_clip_and_per_minute():
    items = [Scoreable("noise", "I'm sorry.", reference="", duration_s=30.0),
             Scoreable("music", "[Music]", reference="", duration_s=30.0),  # a tag, not words
             Scoreable("hum", "", reference="", duration_s=60.0),
             Scoreable("speech", "he was not ill", reference="he was not ill", duration_s=3.0)]
    assert "false_transcription_rate" not in hallucination_metrics(items, WHISPER_EN, nonspeech=False)
    m = hallucination_metrics(items, WHISPER_EN)
    assert m["false_transcription_rate"] == pytest.approx(100 / 3)
    assert m["inserted_words_per_min"] == pytest.approx(3 / 2.0)  # "i am sorry" over 2 minutes
    assert [x["id"] for x in m["transcribed_nonspeech"]] == ["noise"]
    assert m["repetition_loop_rate"] == 0 and m["speech_items"] == 1


def test_a_repetition_loop_is_a_group_repeated_back_to_back_not_a_short_echo():
    assert is_loop("thank you thank you thank you thank you".split())
    assert is_loop("so the the the the end".split())
    assert not is_loop("no no no".split())
    assert is_loop("the text you are looking for is in the text you are looking for is in".split())
    assert not is_loop("he said it was fine and then he said it was fine".split())  # 6 words, twice
    assert not is_loop("he was not an ill disposed young man".split())


def test_words_inside_a_pause_count_only_where_the_times_put_them_there():
    pauses = [[0.0, 5.0], [8.0, 14.0]]
    segs = [{"start": 0.0, "end": 8.0, "text": "spans speech and pause"},
            {"start": 9.0, "end": 12.0, "text": "thank you for watching"}]
    rec = Scoreable("p", "spans speech and pause thank you for watching", reference="spans speech",
                    duration_s=14.0, segments=segs, pauses=pauses)
    m = hallucination_metrics([rec], WHISPER_EN)
    assert m["pause_insertions"] == 4 and m["pause_insertions_per_min"] == pytest.approx(4 / (11 / 60))
    timed = [{"start": 0.0, "end": 12.0, "text": "x", "words": [
        {"word": "spans", "start": 5.5, "end": 6.0}, {"word": "hello", "start": 9.0, "end": 9.4}]}]
    rec.segments = timed
    assert hallucination_metrics([rec], WHISPER_EN)["pause_insertions"] == 1


def test_a_non_speech_suite_of_clips_without_speech_is_complete_with_its_rate():
    lines = [{"id": "a", "text": "you", "reference": "", "duration_s": 10.0},
             {"id": "b", "text": "", "reference": "", "duration_s": 10.0}]
    assert not score_predictions(lines, task="asr")["complete"]  # outside a non-speech suite
    s = score_predictions(lines, task="asr", suite=load_suite("nonspeech"))
    assert s["complete"] and s["metrics"]["false_transcription_rate"] == 50.0
    assert s["metrics"]["inserted_words_per_min"] == pytest.approx(3.0)
    assert "wer" not in s["metrics"]


def _digest(paths):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def test_the_offline_mini_builds_the_same_clips_on_every_build(testdata, tmp_path, monkeypatch):
    monkeypatch.setenv("SPEECHKIT_HOME", str(tmp_path / "a"))
    items, report = suite_items("nonspeech-mini", testdata)
    assert report.complete and len(items) == 8
    first = _digest(sorted((tmp_path / "a").rglob("*.wav")))
    monkeypatch.setenv("SPEECHKIT_HOME", str(tmp_path / "b"))
    suite_items("nonspeech-mini", testdata)
    assert _digest(sorted((tmp_path / "b").rglob("*.wav"))) == first and len(first) == 8
    by_id = {it.id: it for it in items}
    assert by_id["white-noise"].reference == "" and by_id["pauses-b"].meta["pauses"][0] == [0.0, 7.0]
    assert by_id["pauses-a"].reference.startswith("he was not an ill disposed young man he might")


def test_the_nonspeech_suite_reads_esc50_and_any_folder(tmp_path):
    import numpy as np

    (tmp_path / "meta").mkdir()
    (tmp_path / "audio").mkdir()
    (tmp_path / "meta" / "esc50.csv").write_text(
        "filename,fold,target,category,esc10,src_file,take\n"
        "1-100032-A-0.wav,1,0,dog,True,100032,A\n1-100038-A-14.wav,1,14,chirping_birds,False,100038,A\n")
    write_wav(tmp_path / "audio" / "1-100032-A-0.wav", np.zeros(1600))
    items, report = suite_items("nonspeech", tmp_path)
    assert [it.id for it in items] == ["1-100032-A-0"] and report.missing and not report.complete
    assert items[0].reference == "" and items[0].meta["kind"] == "dog"
    folder, _ = suite_items("nonspeech", tmp_path / "audio", split="folder")
    assert [it.id for it in folder] == ["1-100032-A-0.wav"]


@pytest.mark.slow
def test_whisper_writes_words_over_noise_once_its_no_speech_safeguard_is_off(whisper_base, testdata,
                                                                             tmp_path):
    kw = dict(data_root=testdata, split="generated", progress=False)
    guarded = run_bench("nonspeech-mini", whisper_base, out_dir=tmp_path / "on", **kw).summary
    off = run_bench("nonspeech-mini", whisper_base, out_dir=tmp_path / "off",
                    decode=DecodeOptions(no_speech_threshold=1.0), **kw).summary
    assert guarded["complete"] and off["complete"]
    assert guarded["metrics"]["false_transcription_rate"] == 0
    assert off["metrics"]["false_transcription_rate"] > 50  # "you", "I'm sorry." over noise
    assert off["metrics"]["inserted_words_per_min"] > 0
    assert off["run"]["decode"]["no_speech_threshold"] == 1.0
    saved = json.loads((tmp_path / "off" / "scores.json").read_text())
    assert saved["details"]["transcribed_nonspeech"]


def test_a_model_without_a_no_speech_probability_says_it_ignores_the_threshold():
    from speechkit.models.registry import RuntimeOptions
    from speechkit.settings import ignored_options

    lines = ignored_options("my-llm", frozenset({"device", "beam_size"}), RuntimeOptions(),
                            DecodeOptions(no_speech_threshold=1.0), None)
    assert lines == ["--no-speech-threshold is ignored by my-llm: only Whisper has a no-speech "
                     "probability"]

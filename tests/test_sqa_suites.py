"""Multiple-choice spoken QA in MMAU's layout: prompts with lettered options, answers parsed
without guessing, the unparseable ones counted wrong and listed."""

import json

import pytest

from speechkit.errors import SpeechkitError
from speechkit.evaluation.metrics.sqa import PARSE_RULE
from speechkit.evaluation.scoring import score_predictions
from speechkit.evaluation.suites import load_suite, suite_items
from speechkit.media.wav import write_wav


def test_the_sqa_mini_scores_an_unparseable_answer_as_wrong_and_lists_it(testdata, tmp_path):
    items, report = suite_items("sqa-mini", testdata)
    assert report.complete and len(items) == 6
    by_id = {it.id: it for it in items}
    assert by_id["sqa-mini-04"].prompt.splitlines()[1:3] == ["(A) Ten of clubs", "(B) Ten of hearts"]
    answers = {
        "sqa-mini-01": "B",  # right, as a letter
        "sqa-mini-02": "The answer is (A).",  # right
        "sqa-mini-03": "He might have been made amiable.",  # right: the one option named in full
        "sqa-mini-04": "I think it is a card.",  # names no option: wrong, listed
        "sqa-mini-05": "A or C",  # two letters: wrong, listed, not a coin toss
        "sqa-mini-06": "D",  # parsed, wrong
    }
    lines = tmp_path / "predictions.jsonl"
    lines.write_text("".join(json.dumps({"id": i, "text": t, "status": "ok"}) + "\n"
                             for i, t in answers.items()))
    s = score_predictions(lines, suite=load_suite("sqa-mini"), expected=items)
    assert s["complete"] and s["metrics"]["accuracy"] == pytest.approx(50.0)
    unparsed = s["details"]["unparsed_answers"]
    assert [u["id"] for u in unparsed] == ["sqa-mini-04", "sqa-mini-05"]
    assert s["details"]["parse_rule"] == PARSE_RULE and "never a random" in PARSE_RULE
    assert any("sqa-mini-04" in w and "count as wrong" in w for w in s["warnings"])


def test_mmau_layout_reads_questions_and_counts_missing_audio(tmp_path):
    import numpy as np

    audio = tmp_path / "test-mini-audios"
    audio.mkdir()
    write_wav(audio / "q1.wav", np.zeros(1600))
    questions = [
        {"id": "q1", "audio_id": "./test-mini-audios/q1.wav", "question": "What is heard?",
         "choices": ["Rain", "Speech", "Music"], "answer": "Rain", "task": "sound"},
        {"id": "q2", "audio_id": "./test-mini-audios/q2.wav", "question": "Which instrument?",
         "choices": ["Piano", "Drums"], "answer": "Drums"},
        {"id": "q3", "audio_id": "./test-mini-audios/q1.wav", "question": "No answer among them",
         "choices": ["Yes", "No"], "answer": "Maybe"},
    ]
    (tmp_path / "mmau-test-mini.json").write_text(json.dumps(questions))
    items, report = suite_items("mmau", tmp_path)
    assert [it.id for it in items] == ["q1"] and items[0].choices == ["Rain", "Speech", "Music"]
    assert items[0].reference == "Rain" and items[0].meta["task"] == "sound"
    assert len(report.missing) == 1 and sum(report.skipped.values()) == 1 and not report.complete
    (tmp_path / "mmau-test-mini.json").unlink()
    with pytest.raises(SpeechkitError, match="mmau-test-mini.json"):
        suite_items("mmau", tmp_path)

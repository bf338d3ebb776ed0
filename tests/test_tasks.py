"""The task registry: names and aliases resolve once, and every reader agrees with it."""

from __future__ import annotations

import pytest

from speechkit.errors import SpeechkitError
from speechkit.evaluation.compare import direction
from speechkit.evaluation.metrics.scorers import SCORERS
from speechkit.tasks import TASKS, WHISPER_TASKS, get_task


def test_aliases_resolve_to_their_task():
    assert get_task("transcribe").name == "asr"
    assert get_task("Translate").name == "st"
    assert get_task("captioning").name == "aac"
    assert get_task("sv").yes_no and not get_task("asr").yes_no


def test_unknown_task_names_the_known_ones():
    with pytest.raises(SpeechkitError, match="unknown task 'dictation'; choose one of: asr, st"):
        get_task("dictation")


def test_every_task_has_a_scorer_and_metrics_compare_can_gate():
    assert set(SCORERS) == set(TASKS)
    for task in TASKS.values():
        assert task.primary_metric == task.metrics[0]
        assert all(direction(m) is not None for m in task.metrics), task.name


def test_whisper_does_what_the_records_say():
    assert WHISPER_TASKS == ("transcribe", "translate")
    assert [t.name for t in TASKS.values() if t.whisper] == ["asr", "st", "avsr"]


def test_answers_are_parsed_by_the_task_parser():
    assert get_task("sv").parse_answer("Yes, the same person.") is True
    assert get_task("er").parse_answer("The speaker sounds furious.") == "angry"
    assert get_task("sqa").parse_answer("I think (B) is right", ["red", "blue"]) == "B"
    assert get_task("asr").parse_answer("hello") == "hello"


def test_modalities_name_the_inputs_each_task_needs():
    assert get_task("vsr").modalities == ("video",)
    assert get_task("avsr").modalities == ("audio", "video")
    assert get_task("sv").modalities == ("audio", "enroll")

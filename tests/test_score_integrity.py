"""A run is complete only with every expected item scored; the gate fails on non-finite
scores; everything speechkit writes is strict JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from speechkit import strict_json
from speechkit.data import Item, Result
from speechkit.evaluation.compare import compare_scores
from speechkit.evaluation.scoring import score_predictions
from speechkit.results import ResultWriter


def _lines(path: Path, rows: list[dict | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _strict(text: str):
    """json.loads that refuses NaN and the infinities, as RFC 8259 readers do."""

    def refuse(name: str):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


# --- score: incomplete runs -------------------------------------------------------------------


def test_empty_predictions_file_is_an_incomplete_run(tmp_path, cli):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    s = score_predictions(empty, task="asr")
    assert not s["complete"] and s["counts"]["scored"] == 0
    assert s["incomplete"] == [f"nothing to score: {empty} is empty"]
    res = cli("score", empty, "--task", "asr")
    assert res.exit_code == 1 and "status      incomplete: nothing to score" in res.stdout
    blank = _lines(tmp_path / "blank.jsonl", ["{not json", '{"no": "id"}'])
    assert "has no usable lines" in score_predictions(blank, task="asr")["incomplete"][0]


def test_empty_expected_items_are_an_incomplete_run(tmp_path):
    p = _lines(tmp_path / "p.jsonl", [{"id": "a", "text": "x", "reference": "x"}])
    s = score_predictions(p, task="asr", expected=[])
    assert not s["complete"] and "the expected items are empty" in s["incomplete"][0]


@pytest.mark.parametrize("task", ["asr", "st", "er", "sqa"])
def test_every_reference_empty_is_an_incomplete_run(tmp_path, task, cli):
    rows = [{"id": str(i), "text": "some words", "reference": r} for i, r in enumerate(["", " "])]
    p = _lines(tmp_path / "p.jsonl", rows)
    s = score_predictions(p, task=task)
    assert not s["complete"] and s["counts"]["scored"] == 2
    assert any("every reference is empty" in r for r in s["incomplete"])
    assert cli("score", p, "--task", task).exit_code == 1


def test_references_that_normalize_to_nothing_give_no_metric_and_an_incomplete_run(tmp_path):
    p = _lines(tmp_path / "p.jsonl", [{"id": "a", "text": "hello", "reference": "[noise] uh"}])
    s = score_predictions(p, task="asr")
    assert s["metrics"] == {} and not s["complete"]
    assert s["incomplete"] == [
        "no metric could be computed: every reference is empty after normalization"
    ]


# --- score: what counts as text ---------------------------------------------------------------


def test_number_references_are_scored_as_their_text(tmp_path):
    rows = [
        {"id": "a", "text": "42", "reference": 42},
        {"id": "b", "text": "2.5", "reference": 2.5},
    ]
    s = score_predictions(_lines(tmp_path / "p.jsonl", rows), task="asr", normalizer="none")
    assert s["complete"] and s["metrics"]["wer"] == 0.0


def test_non_text_references_and_predictions_are_named_not_scored(tmp_path):
    rows = [
        {"id": "ok", "text": "hello world", "reference": "hello world"},
        {"id": "one", "text": "hello world", "reference": ["hello world"]},
        {"id": "two", "text": "hello world", "reference": ["hello world", "hello word"]},
        {"id": "obj", "text": "hello world", "reference": {"text": "hello world"}},
        {"id": "bool", "text": "hello world", "reference": True},
        {"id": "nested", "text": "hello world", "reference": [["hello"]]},
        {"id": "hyp", "text": {"words": ["hello"]}, "reference": "hello world"},
    ]
    s = score_predictions(_lines(tmp_path / "p.jsonl", rows), task="asr")
    assert s["counts"]["scored"] == 2 and s["counts"]["bad_value"] == 5 and not s["complete"]
    why = {b["id"]: b["error"] for b in s["problems"]["bad_values"]}
    assert "list of 2 texts and asr scores against one" in why["two"]
    assert why["obj"] == "reference is a JSON object, not text"
    assert why["bool"] == "reference is true/false, not text"
    assert why["nested"] == "a reference in the list is a list, not text"
    assert why["hyp"] == "prediction is a JSON object, not text"
    assert "scored 2 of 7 items (5 with a value that is not text)" in s["incomplete"]
    assert any("not text (not scored): two" in w for w in s["warnings"])


def test_several_references_count_where_the_metric_takes_several(tmp_path):
    st = [
        {"id": "1", "text": "the cat sat on the mat", "reference": ["a cat sat on a mat",
                                                                    "the cat sat on the mat"]},
        {"id": "2", "text": "hello there", "reference": "hello there"},
    ]
    s = score_predictions(_lines(tmp_path / "st.jsonl", st), task="st")
    assert s["complete"] and s["metrics"]["bleu"] == pytest.approx(100.0)
    assert "nrefs:var" in s["details"]["bleu_signature"]
    qa = [{"id": "1", "text": "Paris", "reference": ["paris", "the city of paris"]}]
    s = score_predictions(_lines(tmp_path / "qa.jsonl", qa), task="sqa")
    assert s["complete"] and s["metrics"]["exact_match"] == 100.0


def test_a_non_finite_sv_score_is_named_not_scored(tmp_path):
    rows = [
        '{"id": "1", "text": "yes", "extras": {"p_yes": 0.9}, "label": 1}',
        '{"id": "2", "text": "no", "extras": {"p_yes": 0.1}, "label": 0}',
        '{"id": "3", "text": "no", "extras": {"p_yes": NaN}, "label": 0}',
    ]
    s = score_predictions(_lines(tmp_path / "sv.jsonl", rows), task="sv")
    assert s["counts"]["scored"] == 2 and not s["complete"]
    assert s["problems"]["bad_values"] == [
        {"id": "3", "error": "score is nan, not a finite number"}
    ]


def test_an_sv_label_that_is_not_a_label_is_named(tmp_path):
    rows = [{"id": "1", "text": "yes", "label": 1}, {"id": "2", "text": "no", "label": 2},
            {"id": "3", "text": "no", "label": {"same": True}}, {"id": "4", "text": "no"}]
    s = score_predictions(_lines(tmp_path / "sv.jsonl", rows), task="sv")
    assert s["problems"]["bad_values"] == [
        {"id": "2", "error": "label is 2, not 1/0, yes/no or target/nontarget"},
        {"id": "3", "error": "label is a JSON object, not 1/0, yes/no or target/nontarget"},
    ]
    assert s["problems"]["missing_reference_ids"] == ["4"] and not s["complete"]


def test_an_id_listed_twice_in_the_expected_items_is_counted_not_merged(tmp_path):
    items = [Item(id="a", path="/x.wav", reference="hi"), Item(id="a", path="/x.wav",
             reference="hi", offset_s=5.0), Item(id="b", path="/y.wav", reference="yo")]
    p = _lines(tmp_path / "p.jsonl", [{"id": "a", "text": "hi"}, {"id": "b", "text": "yo"}])
    s = score_predictions(p, task="asr", expected=items)
    assert s["counts"]["expected"] == 3 and s["counts"]["repeated_expected"] == 1
    assert s["problems"]["repeated_expected_ids"] == {"a": 1} and not s["complete"]
    assert "scored 2 of 3 items (1 repeated id(s) in the expected items)" in s["incomplete"]


# --- compare: non-finite values fail the gate -------------------------------------------------


def test_compare_fails_on_nan_and_infinite_scores_in_either_file(tmp_path, cli):
    good = tmp_path / "good.json"
    good.write_text('{"metrics": {"wer": 5.0, "cer": 2.0}, "counts": {"scored": 10}}')
    bad = tmp_path / "bad.json"
    bad.write_text('{"metrics": {"wer": NaN, "cer": -Infinity}, "counts": {"scored": 10}}')
    for base, new in ((good, bad), (bad, good)):
        res = cli("compare", base, new, "--max-regression", "1")
        assert res.exit_code == 1, res.output
        which = "new" if new == bad else "baseline"
        assert f"regression: wer: {which} value is NaN: not a finite number" in res.output
        assert f"regression: cer: {which} value is -Infinity: not a finite number" in res.output
    res = cli("compare", good, bad, "--json")
    rows = {r["metric"]: r for r in _strict(res.stdout)}
    assert rows["wer"]["regressed"] and rows["wer"]["new"] is None
    assert rows["wer"]["non_finite"] == {"new": "NaN"}


def test_compare_fails_on_a_null_metric_and_on_an_incomplete_new_run():
    base = {"metrics": {"wer": 5.0}, "complete": True}
    rows = {r["metric"]: r for r in compare_scores(base, {"metrics": {"wer": None}}, 1.0)}
    assert rows["wer"]["regressed"] and "null" in rows["wer"]["note"]
    new = {"metrics": {"wer": 5.0}, "complete": False, "incomplete": ["scored 9 of 10 items"]}
    rows = {r["metric"]: r for r in compare_scores(base, new, 1.0)}
    assert not rows["wer"]["regressed"] and rows["complete"]["regressed"]
    assert rows["complete"]["note"] == "the new run is incomplete: scored 9 of 10 items"
    assert "complete" not in {r["metric"] for r in compare_scores(new, new, 1.0)}


# --- strict JSON out --------------------------------------------------------------------------


def test_non_finite_numbers_are_written_as_null_with_a_note(tmp_path):
    summary = {"metrics": {"wer": math.nan}, "details": {"spread": [1.0, math.inf]}}
    text = strict_json.dumps(summary)
    data = _strict(text)
    assert data["metrics"] == {"wer": None} and data["details"]["spread"] == [1.0, None]
    assert data["non_finite"] == {"metrics.wer": "NaN", "details.spread[1]": "Infinity"}
    path = strict_json.write_json(tmp_path / "s" / "scores.json", summary)
    assert _strict(path.read_text())["non_finite"]["metrics.wer"] == "NaN"


def test_result_lines_are_strict_json_and_read_back(tmp_path):
    out = tmp_path / "r.jsonl"
    with ResultWriter(out) as w:
        w.write(Result(id="a", path="/a.wav", text="yes", extras={"p_yes": -math.inf}))
    line = _strict(out.read_text())
    assert line["extras"]["p_yes"] is None and line["non_finite"] == {"extras.p_yes": "-Infinity"}
    s = score_predictions(out, task="sv", expected=[Item(id="a", path="/a.wav", label=1)])
    assert s["counts"]["scored"] == 1  # the answer still counts; the score is gone, not faked


def test_score_out_and_json_are_strict_json(tmp_path, cli):
    rows = ['{"id": "1", "text": "yes", "extras": {"p_yes": Infinity}, "label": 1}',
            '{"id": "2", "text": "no", "extras": {"p_yes": 0.2}, "label": 0}']
    p = _lines(tmp_path / "sv.jsonl", rows)
    res = cli("score", p, "--task", "sv", "--json", "--out", tmp_path / "s.json")
    assert res.exit_code == 1
    assert _strict(res.stdout)["counts"]["bad_value"] == 1
    assert _strict((tmp_path / "s.json").read_text())["task"] == "sv"



def test_ids_that_look_like_markup_are_printed_as_they_are(tmp_path, cli):
    rows = [{"id": "[/bold]", "text": "hi", "reference": {"x": 1}}, {"text": "no id [red]"}]
    res = cli("score", _lines(tmp_path / "p.jsonl", rows), "--task", "asr")
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)  # no markup error
    assert "[/bold] (reference is a JSON object, not text)" in res.output

"""Scoring predictions files (good and bad input), compare, tables, and the CLI commands."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from speechkit.data import Item, Result, dumps_line
from speechkit.errors import SpeechkitError
from speechkit.evaluation.compare import compare_scores, direction, flatten_scores, parse_thresholds
from speechkit.evaluation.report import csv_table, markdown_table, table_rows
from speechkit.evaluation.scoring import score_predictions
from speechkit.evaluation.suites import load_suite


def _write(path: Path, rows: list[dict | bytes | str]) -> Path:
    with open(path, "wb") as fh:
        for r in rows:
            if isinstance(r, dict):
                fh.write(dumps_line(r).encode("utf-8"))
            else:
                fh.write(r if isinstance(r, bytes) else r.encode("utf-8"))
    return path


def _result(i: str, text: str, ref: str | None = "hello world", **kw) -> dict:
    return Result(id=i, path=f"/a/{i}.wav", text=text, reference=ref, **kw).to_dict()


# --- formats ----------------------------------------------------------------------------------


def test_speechkit_results_are_scored_with_the_default_normalizer(tmp_path):
    p = _write(tmp_path / "p.jsonl", [_result("a", "Hello, World!"), _result("b", "hello word")])
    s = score_predictions(p, task="asr")
    assert s["normalizer"] == "whisper-en" and s["task"] == "asr"
    assert s["metrics"]["wer"] == pytest.approx(25.0)
    assert s["counts"]["scored"] == 2 and s["complete"] and s["warnings"] == []


def test_nemo_and_other_tools_fields(tmp_path):
    p = _write(
        tmp_path / "n.jsonl",
        [
            {"audio_filepath": "/x/1.wav", "text": "the cat", "pred_text": "the hat"},
            {"id": "2", "hypothesis": "a dog", "reference": "a dog"},
            {"id": "3", "prediction": "yes", "text": "yes"},
        ],
    )
    s = score_predictions(p, task="asr", normalizer="none")
    assert s["counts"]["scored"] == 3
    assert s["details"]["substitutions"] == 1 and s["details"]["ref_words"] == 5
    assert any("audio path was used" in w for w in s["warnings"])


def test_task_and_normalizer_defaults_are_recorded(tmp_path):
    p = _write(tmp_path / "p.jsonl", [_result("a", "IT'S", task="avsr", ref="it's")])
    s = score_predictions(p)  # task read from the lines
    assert s["task"] == "avsr" and s["normalizer"] == "lrs3" and s["metrics"]["wer"] == 0.0
    assert score_predictions(p, task="transcribe")["task"] == "asr"
    with pytest.raises(SpeechkitError, match="normalizer"):
        score_predictions(p, task="asr", normalizer="fancy")
    with pytest.raises(SpeechkitError, match="unknown task"):
        score_predictions(p, task="dance")


# --- bad input --------------------------------------------------------------------------------


def test_bad_lines_duplicates_and_missing_ids_are_counted_and_named(tmp_path):
    expected = [Item(id=i, path=f"/a/{i}.wav", reference="hello world") for i in "abcd"]
    p = _write(
        tmp_path / "bad.jsonl",
        [
            _result("a", "hello world"),
            "{not json\n",
            b'{"id": "b", "text": "caf\xe9"}\n',  # not UTF-8
            {"text": "no id at all"},
            _result("c", "first try"),
            _result("c", "hello world"),  # duplicate: the last line wins
            Result(id="d", path="/a/d.wav", status="error", error="decode failed").to_dict(),
            _result("zzz", "hello"),  # not an expected item
        ],
    )
    s = score_predictions(p, task="asr", expected=expected)
    c = s["counts"]
    assert (c["lines"], c["bad_lines"], c["duplicate_lines"]) == (8, 3, 1)
    assert (c["expected"], c["scored"], c["errored"], c["missing"], c["unexpected"]) == (
        4,
        2,
        1,
        1,
        1,
    )
    assert s["metrics"]["wer"] == 0.0  # "c" scored from its last line
    assert s["problems"]["missing_ids"] == ["b"]
    assert s["problems"]["duplicate_ids"] == {"c": 1}
    assert [b["line"] for b in s["problems"]["bad_lines"]] == [2, 3, 4]
    assert "not UTF-8" in s["problems"]["bad_lines"][1]["error"]
    assert not s["complete"]
    text = " ".join(s["warnings"])
    for needle in (
        "scored 2 of 4",
        "duplicate",
        "no prediction: b",
        "not in the expected",
        "failed during the run",
        "not UTF-8",
    ):
        assert needle in text


def test_missing_references_are_counted_not_scored(tmp_path):
    p = _write(tmp_path / "p.jsonl", [_result("a", "hi", ref=None), _result("b", "hello world")])
    s = score_predictions(p, task="asr")
    assert s["counts"]["missing_reference"] == 1 and s["counts"]["scored"] == 1
    assert s["problems"]["missing_reference_ids"] == ["a"]


def test_empty_reference_is_scored_as_insertions_with_a_warning(tmp_path):
    p = _write(tmp_path / "p.jsonl", [_result("a", "yes", ref=""), _result("b", "hello world")])
    s = score_predictions(p, task="asr")
    assert s["counts"]["scored"] == 2 and s["metrics"]["wer"] == pytest.approx(50.0)
    assert any("empty after normalization" in w for w in s["warnings"])


def test_references_come_from_the_expected_manifest(tmp_path):
    man = _write(tmp_path / "m.jsonl", [{"id": "a", "path": "/a.wav", "reference": "good day"}])
    p = _write(tmp_path / "p.jsonl", [{"id": "a", "text": "good"}])
    s = score_predictions(p, task="asr", expected=man)
    assert s["metrics"]["wer"] == pytest.approx(50.0) and s["complete"]


def test_undecodable_text_is_flagged_and_still_scored(tmp_path):
    p = _write(tmp_path / "p.jsonl", ['{"id": "a", "text": "caf\\udce9", "reference": "cafe"}\n'])
    s = score_predictions(p, task="asr", normalizer="none")
    assert s["counts"]["undecodable_text"] == 1 and s["counts"]["scored"] == 1
    assert any("not valid UTF-8" in w for w in s["warnings"])


def test_missing_predictions_file_is_a_user_error(tmp_path):
    with pytest.raises(SpeechkitError, match="no such predictions file"):
        score_predictions(tmp_path / "nope.jsonl", task="asr")


# --- other tasks ------------------------------------------------------------------------------


def test_sv_uses_p_yes_and_labels(tmp_path):
    rows = [
        {"id": str(k), "text": t, "extras": {"p_yes": s}, "label": lab}
        for k, (t, s, lab) in enumerate(
            [("yes", 0.9, 1), ("no", 0.2, 0), ("yes", 0.8, 0), ("no", 0.7, 1)]
        )
    ]
    s = score_predictions(_write(tmp_path / "sv.jsonl", rows), task="sv")
    assert s["metrics"]["accuracy"] == pytest.approx(50.0)
    assert s["metrics"]["eer"] == pytest.approx(50.0)
    assert {"mindcf_0.01", "mindcf_0.05"} <= set(s["metrics"]) and s["normalizer"] is None


def test_er_sqa_and_st_tasks(tmp_path):
    er = _write(
        tmp_path / "er.jsonl",
        [
            {"id": "1", "text": "Joy.", "reference": "hap"},
            {"id": "2", "text": "hmm", "reference": "sad"},
        ],
    )
    s = score_predictions(er, task="er")
    assert s["metrics"]["weighted_accuracy"] == pytest.approx(50.0)
    assert s["details"]["unmapped_answers"] == [{"id": "2", "answer": "hmm"}]
    qa = _write(tmp_path / "qa.jsonl", [{"id": "1", "text": "The answer is C", "reference": "C"}])
    assert score_predictions(qa, task="sqa")["metrics"]["accuracy"] == 100.0
    st = _write(tmp_path / "st.jsonl", [{"id": "1", "text": "我喜欢猫", "reference": "我喜欢猫"}])
    s = score_predictions(st, task="st", target_language="zh")
    assert (
        s["metrics"]["bleu"] == pytest.approx(100.0) and "tok:zh" in s["details"]["bleu_signature"]
    )


@pytest.mark.skipif(
    importlib.util.find_spec("pycocoevalcap") is None, reason="pycocoevalcap not installed"
)
def test_aac_takes_references_from_the_items(tmp_path):
    items = [
        Item(id="a", path="/a.wav", references=["a dog barks", "dogs bark"]),
        Item(id="b", path="/b.wav", references=["rain falls", "it rains"]),
    ]
    p = _write(
        tmp_path / "c.jsonl",
        [{"id": "a", "text": "a dog barks"}, {"id": "b", "text": "rain falls"}],
    )
    s = score_predictions(p, task="aac", expected=items, use_java=False)
    assert s["metrics"]["bleu_1"] == pytest.approx(1.0, abs=1e-6) and "cider_d" in s["metrics"]
    assert "meteor" not in s["metrics"] and "meteor" in s["details"]["not_run"]


# --- compare ----------------------------------------------------------------------------------


def test_direction_aware_compare():
    base = {"metrics": {"wer": 5.0, "bleu": 20.0}, "counts": {"scored": 10}}
    ok = {"metrics": {"wer": 5.3, "bleu": 19.6}, "counts": {"scored": 10}}
    rows = {r["metric"]: r for r in compare_scores(base, ok, 0.5)}
    assert not any(r["regressed"] for r in rows.values())
    bad = {"metrics": {"wer": 5.6, "bleu": 21.0}, "counts": {"scored": 10}}
    rows = {r["metric"]: r for r in compare_scores(base, bad, 0.5)}
    assert rows["wer"]["regressed"] and not rows["bleu"]["regressed"]
    assert rows["wer"]["delta"] == pytest.approx(0.6)


def test_per_metric_thresholds_missing_metrics_and_fewer_items():
    base = {"metrics": {"wer": 5.0, "cer": 2.0, "bleu": 20.0}, "counts": {"scored": 10}}
    new = {"metrics": {"wer": 5.4, "cer": 9.0}, "counts": {"scored": 9}}
    rows = {r["metric"]: r for r in compare_scores(base, new, {"wer": 0.5, "bleu": 1.0})}
    assert not rows["wer"]["regressed"]
    assert not rows["cer"]["regressed"] and rows["cer"]["note"] == "not gated"
    assert rows["bleu"]["regressed"] and "missing" in rows["bleu"]["note"]
    assert rows["items_scored"]["regressed"]


def test_thresholds_parse_and_directions():
    assert parse_thresholds(["0.5"]) == 0.5
    assert parse_thresholds(["wer=0.5", "BLEU=1"]) == {"wer": 0.5, "bleu": 1.0}
    with pytest.raises(SpeechkitError):
        parse_thresholds(["wer"])
    assert direction("test-clean/wer") == -1 and direction("mindcf_0.01") == -1
    assert direction("cider_d") == 1 and direction("unweighted_accuracy") == 1
    assert direction("frobnication") is None
    nested = {"splits": {"test-clean": {"metrics": {"wer": 5.0}, "counts": {"scored": 3}}}}
    assert flatten_scores(nested) == {"test-clean/wer": 5.0, "test-clean/items_scored": 3.0}


# --- tables -----------------------------------------------------------------------------------


def test_table_rows_put_published_numbers_beside_the_run():
    suite = load_suite("lrs3")
    summary = {
        "metrics": {"wer": 1.2, "cer": 0.5},
        "counts": {"scored": 1321, "expected": 1321},
        "normalizer": "lrs3",
    }
    rows = table_rows(summary, suite, "test", system="whisper-base", modality="audio")
    assert rows[0]["system"] == "whisper-base" and rows[0]["items"] == "1321/1321"
    published = [r for r in rows if r["source"] != "this run"]
    assert published and all(r["modality"] == "audio" for r in published)
    assert any(r["value"] == 0.79 for r in published)
    md = markdown_table(rows)
    assert md.startswith("| system |") and "0.79" in md
    assert csv_table(rows).splitlines()[0].startswith("system,split,modality,metric,value")


# --- CLI --------------------------------------------------------------------------------------


def test_score_command_prints_a_short_summary_and_writes_the_full_one(tmp_path, cli):
    p = _write(tmp_path / "p.jsonl", [_result("a", "hello world"), _result("b", "hello")])
    res = cli("score", p, "--task", "asr", "--out", tmp_path / "s.json")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    w = len("repetition_loop_rate  ")  # the longest name sets the column (every ASR run has it)
    assert lines[:2] == ["task".ljust(w) + "asr", "normalizer".ljust(w) + "whisper-en"]
    assert "wer".ljust(w) + "25.00" in lines and "cer".ljust(w) + "27.27" in lines  # 6 of 22 chars
    assert "repetition_loop_rate".ljust(w) + "0" in lines
    assert lines[-2:] == ["items".ljust(w) + "2 scored of 2 predictions", "status".ljust(w) + "complete"]
    written = json.loads((tmp_path / "s.json").read_text())
    assert written["normalizer"] == "whisper-en" and written["counts"]["scored"] == 2


def test_score_command_prints_the_full_json_behind_the_json_flag(tmp_path, cli):
    p = _write(tmp_path / "p.jsonl", [_result(f"u{i}", "hello world") for i in range(30)])
    res = cli("score", p, "--task", "asr", "--json")
    assert res.exit_code == 0, res.output
    printed = json.loads(res.stdout)
    assert printed["metrics"]["wer"] == 0.0 and printed["counts"]["scored"] == 30
    assert printed["complete"] and printed["incomplete"] == [] and "per_item" not in printed


def test_score_command_exits_1_when_items_are_missing(tmp_path, cli):
    man = _write(
        tmp_path / "m.jsonl",
        [
            {"id": "a", "path": "/a.wav", "reference": "x"},
            {"id": "b", "path": "/b.wav", "reference": "y"},
        ],
    )
    p = _write(tmp_path / "p.jsonl", [{"id": "a", "text": "x"}])
    res = cli("score", p, "--task", "asr", "--expected", man)
    assert res.exit_code == 1
    w = len("repetition_loop_rate  ")
    assert "items".ljust(w) + "1 scored of 2 expected; 1 missing" in res.stdout
    assert "status".ljust(w) + "incomplete: scored 1 of 2 items (1 missing)" in res.stdout
    assert json.loads(cli("score", p, "--task", "asr", "--expected", man, "--json").stdout)[
        "counts"
    ]["missing"] == 1


def test_compare_command_exit_codes(tmp_path, cli):
    base = _write(tmp_path / "base.json", [json.dumps({"metrics": {"wer": 5.0, "bleu": 20.0}})])
    new = _write(tmp_path / "new.json", [json.dumps({"metrics": {"wer": 5.4, "bleu": 19.0}})])
    assert cli("compare", base, new, "--max-regression", "0.5").exit_code == 1  # bleu -1.0
    assert (
        cli(
            "compare", base, new, "--max-regression", "wer=0.5", "--max-regression", "bleu=1.0"
        ).exit_code
        == 0
    )
    res = cli("compare", base, new, "--max-regression", "wer=0.3")
    assert res.exit_code == 1 and "wer" in res.output
    assert cli("compare", base, tmp_path / "absent.json").exit_code != 0


def test_manifest_command(tmp_path, cli):
    chapter = tmp_path / "data" / "test-other" / "1" / "2"
    chapter.mkdir(parents=True)
    (chapter / "1-2.trans.txt").write_text("1-2-0000 HELLO\n")
    (chapter / "1-2-0000.flac").write_bytes(b"")
    out = tmp_path / "m.jsonl"
    res = cli(
        "manifest",
        "librispeech",
        "--data-root",
        tmp_path / "data",
        "--split",
        "test-other",
        "--out",
        out,
    )
    assert res.exit_code == 1  # 1 of 2,939 items: incomplete, but the manifest is written
    assert json.loads(res.stdout)["found"] == 1 and out.is_file()
    assert "2939" in res.output


def test_expected_ids_count_missing_and_unexpected(tmp_path):
    p = _write(tmp_path / "p.jsonl", [_result("a", "hello world"), _result("z", "hello")])
    s = score_predictions(p, task="asr", expected_ids=["a", "b"])
    c = s["counts"]
    assert (c["expected"], c["scored"], c["missing"], c["unexpected"]) == (2, 1, 1, 1)
    assert s["problems"]["missing_ids"] == ["b"] and not s["complete"]

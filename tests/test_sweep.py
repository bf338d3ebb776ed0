"""`bench --sweep`: one run per setting, resumable, one table with the difference to the first row."""

import json

import pytest

from speechkit.errors import SpeechkitError
from speechkit.evaluation.sweep import (
    SweepRow,
    apply_setting,
    parse_sweep,
    setting_dir,
    table_records,
)
from speechkit.models.base import DecodeOptions
from speechkit.models.registry import RuntimeOptions


def cli(*args):
    from typer.testing import CliRunner

    from speechkit.cli import _register_subcommands, app

    _register_subcommands()
    return CliRunner().invoke(app, list(args))


def test_every_combination_is_a_setting_in_the_order_given():
    got = parse_sweep(["dtype=int8,float32", "beam=1,5"])
    assert got == [{"dtype": "int8", "beam": "1"}, {"dtype": "int8", "beam": "5"},
                   {"dtype": "float32", "beam": "1"}, {"dtype": "float32", "beam": "5"}]
    assert setting_dir(got[1]) == "dtype-int8_beam-5"


@pytest.mark.parametrize("spec", ["dtype", "dtype=", "colour=red,blue"])
def test_a_sweep_that_names_nothing_runnable_is_a_usage_error(spec):
    with pytest.raises(SpeechkitError, match="--sweep"):
        parse_sweep([spec])
    with pytest.raises(SpeechkitError, match="twice"):
        parse_sweep(["beam=1", "beam=5"])


def test_a_setting_lands_in_the_options_it_belongs_to():
    decode, runtime, batch = apply_setting(
        {"dtype": "int8", "beam": "5", "batch": "4", "quant": "none", "no_speech_threshold": "1"},
        DecodeOptions(language="en"), RuntimeOptions(quant="4bit"), None)
    assert (decode.beam_size, decode.language, decode.no_speech_threshold) == (5, "en", 1.0)
    assert (runtime.dtype, runtime.quant, batch) == ("int8", None, 4)
    with pytest.raises(SpeechkitError, match="beam=five"):
        apply_setting({"beam": "five"}, DecodeOptions(), RuntimeOptions(), None)


def test_each_row_shows_its_difference_to_the_first():
    rows = [SweepRow("beam=1", "a", {"wer": 6.5, "rtfx": 10.0, "peak_gpu_mb": None}, True),
            SweepRow("beam=5", "b", {"wer": 6.0, "rtfx": 4.0, "peak_gpu_mb": None}, True)]
    first, second = table_records(rows)
    assert first["wer_delta"] == 0 and second["wer_delta"] == pytest.approx(-0.5)
    assert second["rtfx_delta"] == pytest.approx(-6.0) and "peak_gpu_mb" not in second


@pytest.mark.slow
def test_a_sweep_runs_each_setting_in_its_own_directory_and_resumes(testdata, tmp_path):
    args = ["bench", "librivox-mini", "--data-root", str(testdata), "--limit", "2",
            "--sweep", "beam=1,2", "--out-dir", str(tmp_path), "--no-progress"]
    res = cli(*args)
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert [r["setting"] for r in saved["rows"]] == ["beam=1", "beam=2"]
    for row, beam in zip(saved["rows"], (1, 2), strict=True):
        scores = json.loads((tmp_path / f"beam-{beam}" / "scores.json").read_text())
        assert scores["run"]["decode"]["beam_size"] == beam
        assert row["wer"] == scores["metrics"]["wer"] and row["rtfx"] > 0 and row["peak_rss_mb"] > 0
    assert saved["rows"][1]["wer_delta"] == saved["rows"][1]["wer"] - saved["rows"][0]["wer"]
    assert "| beam | wer | cer | rtfx | peak_rss_mb |" in (tmp_path / "sweep.md").read_text()
    assert "beam" in res.stdout and "rtfx" in res.stdout and "speed on" in res.stdout
    lines = (tmp_path / "beam-2" / "predictions.jsonl").read_text()
    again = cli(*args)  # nothing left to decode: the same table from the finished runs
    assert again.exit_code == 0, again.output
    assert (tmp_path / "beam-2" / "predictions.jsonl").read_text() == lines
    assert json.loads((tmp_path / "sweep.json").read_text())["rows"] == saved["rows"]

"""Converting once into the cache: staged beside the target, checked, renamed into place."""

from __future__ import annotations

import json

import pytest

from speechkit.errors import SpeechkitError
from speechkit.models.cache import MARKER, convert_once, is_converted

STAMP = {"source": "weights.bin", "version": 1}


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _writer(calls: list[str], text: str = "converted"):
    def build(tmp):
        calls.append(tmp.name)
        (tmp / "model.safetensors").write_text(text)
        (tmp / "config.json").write_text("{}")
    return build


def test_conversion_that_raises_midway_leaves_no_partial_directory(tmp_path):
    out = tmp_path / "models" / "m"

    def build(tmp):
        (tmp / "model.safetensors").write_text("half")
        raise RuntimeError("converter crashed")

    with pytest.raises(RuntimeError, match="converter crashed"):
        convert_once(out, STAMP, build)
    assert not out.exists() and _leftovers(out.parent) == []


def test_failed_reconversion_keeps_the_previous_directory_as_it_was(tmp_path):
    out = tmp_path / "m"
    convert_once(out, STAMP, _writer([], "old"))
    with pytest.raises(SpeechkitError, match="wrote no model.safetensors"):
        convert_once(out, {**STAMP, "version": 2}, lambda tmp: None, ("model.safetensors",))
    assert (out / "model.safetensors").read_text() == "old" and _leftovers(tmp_path) == []


def test_second_call_reuses_the_finished_conversion(tmp_path):
    out, calls = tmp_path / "m", []
    assert convert_once(out, STAMP, _writer(calls), ("model.safetensors",)) == out
    assert convert_once(out, STAMP, _writer(calls), ("model.safetensors",)) == out
    assert len(calls) == 1 and is_converted(out, STAMP)
    assert json.loads((out / MARKER).read_text()) == STAMP
    convert_once(out, {**STAMP, "version": 2}, _writer(calls, "new"))  # a converter fix redoes it
    assert len(calls) == 2 and (out / "model.safetensors").read_text() == "new"


def test_directory_without_its_marker_is_converted_again(tmp_path):
    out, calls = tmp_path / "m", []
    out.mkdir()
    (out / "config.json").write_text("{half written")  # an interrupted run from before
    convert_once(out, STAMP, _writer(calls))
    assert calls and (out / "config.json").read_text() == "{}" and _leftovers(tmp_path) == []


def test_a_concurrent_run_that_finished_first_is_kept(tmp_path):
    out, calls = tmp_path / "m", []

    def slow_build(tmp):
        convert_once(out, STAMP, _writer(calls, "first"))  # another process finishes meanwhile
        (tmp / "model.safetensors").write_text("second")

    convert_once(out, STAMP, slow_build)
    assert (out / "model.safetensors").read_text() == "first" and _leftovers(tmp_path) == []

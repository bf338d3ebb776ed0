"""`speechkit checkpoint new`, `speechkit models` and `speechkit models show` with tiny parts."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from speechkit.cli import _register_subcommands, app
from tests.test_speechllm_tiny import tiny_llm, tiny_whisper

runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def _commands():
    _register_subcommands()


def test_checkpoint_new_then_models_show(tmp_path):
    enc, llm = tiny_whisper(tmp_path / "enc"), tiny_llm(tmp_path / "llm")
    out = tmp_path / "ck"
    res = runner.invoke(app, ["checkpoint", "new", "--audio-encoder", str(enc), "--bridge",
                              "conv1d", "--llm", str(llm), "--out", str(out), "--lora-r", "4",
                              "--lora-alpha", "8", "--rate", "2"])
    assert res.exit_code == 0, res.output
    spec = json.loads((out / "speechkit.json").read_text())
    assert spec["bridge"]["type"] == "conv1d" and spec["llm"]["lora"]["r"] == 4
    assert spec["prompt"]["template"] == "salmonn"  # the tiny tokenizer has no chat template
    res = runner.invoke(app, ["models", "show", str(out)])
    assert res.exit_code == 0, res.output
    assert "conv1d: 32 -> 64" in res.output and "r=4 alpha=8 scaling=2" in res.output
    res = runner.invoke(app, ["checkpoint", "new", "--audio-encoder", str(enc), "--llm",
                              str(llm), "--out", str(out)])
    assert res.exit_code != 0 and "not empty" in str(res.exception)


def test_models_lists_builtins():
    res = runner.invoke(app, ["models"])
    assert res.exit_code == 0, res.output
    for name in ("whisper-base", "smollm2-135m", "linear", "conv1d", "llama-avsr"):
        assert name in res.output

"""End to end on real weights: whisper-base encoder + SmolLM2-135M in 4-bit on CPU, real speech."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner


@pytest.mark.slow
def test_new_checkpoint_transcribes_real_speech_in_4bit(tmp_path, testdata):
    files = sorted(str(p) for p in (testdata / "librivox").glob("*.wav"))[:4]
    from speechkit.cli import _register_subcommands, app
    from speechkit.media.ffmpeg import decode_audio
    from speechkit.models.base import DecodeOptions, audio_inputs
    from speechkit.models.speechllm import load_speechllm

    _register_subcommands()
    runner = CliRunner()
    ck = tmp_path / "ck"
    res = runner.invoke(app, ["checkpoint", "new", "--audio-encoder", "whisper-base", "--bridge",
                              "linear", "--llm", "smollm2-135m", "--out", str(ck)])
    assert res.exit_code == 0, res.output
    out = tmp_path / "out.jsonl"
    res = runner.invoke(app, ["transcribe", *files, "--model", str(ck), "--quant", "4bit",
                              "--device", "cpu", "--max-new-tokens", "6", "--out", str(out)])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == len(files) and all(x["status"] == "ok" and x["text"].strip() for x in lines)
    assert lines[0]["model"]["quant"] == "4bit"

    model = load_speechllm(str(ck), device="cpu", quant="4bit")
    audios = [decode_audio(f) for f in files]
    asr = DecodeOptions(task="asr", max_new_tokens=12)
    batched = [h.text for h in model.generate(audio_inputs(audios), asr)]
    assert batched == [model.generate(audio_inputs([a]), asr)[0].text for a in audios]
    sv = DecodeOptions(task="sv", max_new_tokens=3)
    first = model.generate(audio_inputs(audios), sv)
    assert all(0.0 <= h.extras["p_yes"] <= 1.0 for h in first)
    again = model.generate(audio_inputs(audios), sv)
    assert [h.text for h in first] == [h.text for h in again]
    assert [h.extras["p_yes"] for h in first] == [h.extras["p_yes"] for h in again]

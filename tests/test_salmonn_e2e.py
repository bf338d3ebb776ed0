"""A SALMONN-shaped checkpoint on real parts: the whisper-base encoder, SmolLM2-135M in 4-bit
on the CPU and a random BEATs, converted from the official layout and run by `speechkit bench`
on real recordings (LibriVox sentences from pocketsphinx-testdata)."""

from __future__ import annotations

import json
import re

import pytest
import torch

from speechkit.models.base import DecodeOptions, audio_inputs
from tests.test_salmonn_tiny import beats_official, salmonn_official

WHISPER_BASE_DIM = 512
SMOLLM_HIDDEN, SMOLLM_LAYERS, SMOLLM_KV = 576, 30, 192  # 3 key/value heads of 64


@pytest.mark.slow
def test_salmonn_shaped_checkpoint_benches_real_clips_in_4bit(tmp_path, testdata):
    from typer.testing import CliRunner

    from speechkit.cli import _register_subcommands, app
    from speechkit.media.ffmpeg import decode_audio
    from speechkit.models.speechllm import load_speechllm

    cfg, _ = beats_official(tmp_path / "beats.pt")
    state = salmonn_official(WHISPER_BASE_DIM, cfg["encoder_embed_dim"], SMOLLM_HIDDEN,
                             SMOLLM_LAYERS, SMOLLM_KV)
    torch.save({"model": state}, tmp_path / "salmonn.pth")
    _register_subcommands()
    runner = CliRunner()
    ck = tmp_path / "ck"
    res = runner.invoke(app, ["convert", "salmonn", "--ckpt", str(tmp_path / "salmonn.pth"),
                              "--whisper", "whisper-base", "--beats", str(tmp_path / "beats.pt"),
                              "--llm", "smollm2-135m", "--out", str(ck)])
    assert res.exit_code == 0, res.output
    lines = (testdata / "librivox" / "transcription").read_text().splitlines()[:4]
    clips = [{"path": str(testdata / "librivox" / f"{m[2]}.wav"), "reference": m[1], "task": "asr"}
             for m in (re.match(r"<s> (.*) </s> \((.*)\)", x.strip()) for x in lines)]
    manifest = tmp_path / "librivox-asr.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in clips))
    out = tmp_path / "bench"
    res = runner.invoke(app, ["bench", str(manifest), "--model", str(ck), "--quant", "4bit",
                              "--device", "cpu", "--max-new-tokens", "8", "--beam-size", "2",
                              "--lora-scale", "2", "--out-dir", str(out), "--no-progress"])
    assert res.exit_code in (0, 1), res.output  # 1: scored, but some clip failed
    predictions = [json.loads(x) for x in next(out.glob("*.jsonl")).read_text().splitlines()]
    assert len(predictions) == len(clips) and all(p["status"] == "ok" for p in predictions)
    assert predictions[0]["model"]["quant"] == "4bit"
    assert predictions[0]["model"]["lora_scaling"] == 2.0
    scores = json.loads((out / "scores.json").read_text())
    assert "wer" in json.dumps(scores)

    model = load_speechllm(str(ck), device="cpu", quant="4bit")
    audios = [decode_audio(x["path"]) for x in clips]
    asr = DecodeOptions(task="asr", max_new_tokens=8)
    model.generate(audio_inputs(audios), asr)
    batched = model.last_tokens
    alone = []
    for a in audios:
        model.generate(audio_inputs([a]), asr)
        alone.extend(model.last_tokens)
    assert batched == alone

"""WavLLM: conversion of its state dict, the dual-encoder bridge and the prompt-aware LoRA."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.models.base import AUDIO, ENROLL, DecodeOptions
from speechkit.models.speechllm import generate as gen
from speechkit.models.speechllm import load_speechllm
from speechkit.models.speechllm.importers.wavllm import convert_wavllm
from speechkit.models.speechllm.prompt_lora import check_gate_mode
from speechkit.models.speechllm.prompts import prompt_ids
from speechkit.models.speechllm.prompts import task_prompt as make_prompt
from speechkit.models.speechllm.sources import builtin_llms
from tests.conftest import read_testdata_audio
from tests.wavllm_reference import component_dirs, ref_logits, wavllm_state

# pocketsphinx-testdata; the weights are random, so any speech serves: 1.1, 3.0, 2.8 and 3.0 s
# from three recording sets (the cards, LibriVox, the raw clips)
CLIPS = ["cards/001.wav", "librivox/sense_and_sensibility_01_austen_64kb-0880.wav",
         "goforward.raw", "something.raw"]
SV = [("librivox/sense_and_sensibility_01_austen_64kb-0930.wav", "numbers.raw")]
LONG = "librivox/sense_and_sensibility_01_austen_64kb-0870.wav"  # 7.1 s


@pytest.fixture(scope="module")
def wavllm(tmp_path_factory):
    """A synthetic WavLLM final.pt, its component dirs, and the converted checkpoint."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("wavllm")
    dirs = component_dirs(root, builtin_llms()["smollm2-135m"]())
    tok = AutoTokenizer.from_pretrained(dirs["llm"])
    state = wavllm_state(dirs, len(tok))
    torch.save({"model": state, "cfg": {"model": {"_name": "speechllm_model"}}}, root / "final.pt")
    report = convert_wavllm(root / "final.pt", root / "ckpt", whisper=dirs["whisper"],
                            wavlm=dirs["wavlm"], llm=dirs["llm"])
    return {"root": root, "dirs": dirs, "state": state, "tok": tok, "report": report,
            "ckpt": root / "ckpt"}


@pytest.fixture(scope="module")
def model(wavllm):
    return load_speechllm(str(wavllm["ckpt"]))


def _clip(testdata, name: str) -> np.ndarray:
    return read_testdata_audio(testdata / name)


def _logits(model, audio: np.ndarray, prompt: str) -> torch.Tensor:
    """The converted model's next-token logits after the prompt, gated as generate gates them."""
    ids = prompt_ids(model.spec.prompt, prompt, model.tokenizer)
    x, mask = gen.left_pad(model.prompt_embeds([{AUDIO: audio}], [ids]))
    with model.prompt_lora.gated([prompt], model.tokenizer), torch.inference_mode():
        return model.llm(inputs_embeds=x, attention_mask=mask).logits[0, -1].float()


def test_every_key_is_converted_or_reported(wavllm):
    report = wavllm["report"]
    assert report["keys"] == len(wavllm["state"])
    assert sum(report["converted"].values()) + len(report["ignored"]) == report["keys"]
    assert set(report["ignored"]) == {"audio_proj.weight", "audio_proj.bias"}
    spec = json.loads((wavllm["ckpt"] / "speechkit.json").read_text())
    assert [e["modality"] for e in spec["encoders"]] == ["audio", "wavlm"]
    assert spec["bridge"]["type"] == "dual" and spec["prompt"]["template"] == "wavllm"
    assert spec["llm"]["prompt_lora"]["interleaved_gate"] is True


@pytest.mark.parametrize("prompt", [
    "Based on the attached audio, generate a comprehensive text transcription of the spoken "
    "content.", "Can you describe the emotional condition of the speaker in the provided audio "
    "clip?"])
def test_converted_logits_match_the_official_layout(wavllm, model, testdata, prompt):
    audio = _clip(testdata, CLIPS[0])
    want = ref_logits(wavllm["state"], wavllm["dirs"], wavllm["tok"], audio, prompt)
    got = _logits(model, audio, prompt)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)  # float32 on both sides
    assert int(got.argmax()) == int(want.argmax())


def test_long_audio_logits_match_the_official_layout(wavllm, model, testdata):
    """Past 30 s WavLLM encodes Whisper in 30 s chunks batched and cut to the longest (the last
    chunk keeps Whisper's output over its padding), subsamples each chunk alone, and runs WavLM
    over the whole clip: 43 s here."""
    from tests.wavllm_reference import ref_speech

    audio = np.concatenate([_clip(testdata, LONG)] * 6)
    got, n = model.encode([{AUDIO: audio}])["audio"]
    want = ref_speech(wavllm["state"], wavllm["dirs"], audio)
    assert int(n[0]) == len(want)
    torch.testing.assert_close(got[0], want, rtol=1e-5, atol=1e-5)
    want = ref_logits(wavllm["state"], wavllm["dirs"], wavllm["tok"], audio, "Transcribe.")
    torch.testing.assert_close(_logits(model, audio, "Transcribe."), want, rtol=1e-5, atol=1e-5)


def test_the_gate_follows_the_prompt_and_can_be_overridden(wavllm, model, testdata):
    audio = _clip(testdata, CLIPS[1])
    gates = [model.prompt_lora.prompt_gate(p, model.tokenizer) for p in ("Describe it.", "Transcribe.")]
    assert not torch.allclose(gates[0], gates[1])
    assert float(gates[0].min()) >= 0.0 and float(gates[0].max()) <= 3.0
    gated = _logits(model, audio, "Transcribe.")
    try:
        model.prompt_lora.mode = "off"
        off = _logits(model, audio, "Transcribe.")
        assert model.used_settings()["lora_gate"] == "off"
        model.prompt_lora.mode = 0.0
        torch.testing.assert_close(_logits(model, audio, "Transcribe."), off)
    finally:
        model.prompt_lora.mode = "prompt"
    assert not torch.allclose(gated, off)
    assert model.describe()["prompt_lora"]["lora_gate"] == "prompt"


def test_lora_gate_values_are_checked():
    assert check_gate_mode(None) == "prompt" and check_gate_mode("1.5") == 1.5
    with pytest.raises(SpeechkitError, match="--lora-gate"):
        check_gate_mode("loud")


def _inputs(testdata, task: str) -> tuple[list[dict], list[str | None]]:
    if task == "sv":
        pairs = SV + [(SV[0][1], SV[0][0])]
        return [{ENROLL: _clip(testdata, a), AUDIO: _clip(testdata, b)} for a, b in pairs], [None] * 2
    items = [{AUDIO: _clip(testdata, c)} for c in CLIPS[:3]]
    questions = ["What is said?", "Who speaks?", "Is it loud?"] if task == "sqa" else [None] * 3
    return items, questions


@pytest.mark.parametrize("task", ["asr", "st", "er", "sv", "sqa", "aac"])
def test_every_task_batched_equals_one_at_a_time(model, testdata, task):
    items, prompts = _inputs(testdata, task)
    options = DecodeOptions(task=task, target_language="de" if task == "st" else None,
                            max_new_tokens=4)
    batched = model.generate(items, options, prompts=prompts)
    single = [model.generate([x], options, prompts=[p])[0] for x, p in zip(items, prompts, strict=True)]
    assert [h.text for h in batched] == [h.text for h in single]
    assert [h.extras["n_tokens"] for h in batched] == [h.extras["n_tokens"] for h in single]
    if task == "sv":
        for b, s in zip(batched, single, strict=True):
            assert 0.0 <= b.extras["p_yes"] <= 1.0
            assert b.extras["p_yes"] == pytest.approx(s.extras["p_yes"], abs=1e-5)


def test_dual_bridge_batch_equals_single(model, testdata):
    items = [{AUDIO: _clip(testdata, c)} for c in CLIPS]
    both = model.encode(items)["audio"]
    for i, x in enumerate(items):
        one = model.encode([x])["audio"]
        n = int(one[1][0])
        assert int(both[1][i]) == n
        torch.testing.assert_close(both[0][i, :n], one[0][0, :n], rtol=1e-5, atol=1e-5)


def test_long_audio_with_beams_batched_equals_one_at_a_time(model, testdata):
    long = np.concatenate([_clip(testdata, LONG)] * 6)
    items = [{AUDIO: _clip(testdata, CLIPS[0])}, {AUDIO: long}]  # 1.1 s and 43 s
    options = DecodeOptions(task="asr", max_new_tokens=3, beam_size=2)
    batched = model.generate(items, options)
    assert [h.text for h in batched] == [model.generate([x], options)[0].text for x in items]
    frames = int(model.encode([items[1]])["audio"][1][0])
    assert abs(frames - len(long) / 16000 * 12.5) <= 2  # 12.5 tokens a second, nothing cut


def test_wavllm_task_prompts_are_its_own(model):
    asr = make_prompt(model.spec.prompt, "asr")
    assert asr.startswith("Based on the attached audio")
    assert make_prompt(model.spec.prompt, "st", "de") == "Translate the audio clip into German."


def test_an_unknown_key_refuses_the_conversion(wavllm, tmp_path):
    state = dict(wavllm["state"], **{"gpt_model.model_llama.extra.weight": torch.zeros(2)})
    torch.save({"model": state}, tmp_path / "odd.pt")
    d = wavllm["dirs"]
    with pytest.raises(SpeechkitError, match="extra.weight"):
        convert_wavllm(tmp_path / "odd.pt", tmp_path / "out", whisper=d["whisper"],
                       wavlm=d["wavlm"], llm=d["llm"])


def test_a_missing_weight_refuses_the_conversion(wavllm, tmp_path):
    state = {k: v for k, v in wavllm["state"].items()
             if k != "gpt_model.model_llama.layers.1.attention.wv_lora_B"}
    torch.save({"model": state}, tmp_path / "short.pt")
    d = wavllm["dirs"]
    with pytest.raises(SpeechkitError, match="incomplete mapping refused"):
        convert_wavllm(tmp_path / "short.pt", tmp_path / "out", whisper=d["whisper"],
                       wavlm=d["wavlm"], llm=d["llm"])
    assert not (tmp_path / "out").exists()


def test_convert_and_transcribe_from_the_command_line(wavllm, testdata, tmp_path):
    from typer.testing import CliRunner

    from speechkit.cli import _register_subcommands, app

    _register_subcommands()
    runner, d = CliRunner(), wavllm["dirs"]
    res = runner.invoke(app, ["convert", "wavllm", "--ckpt", str(wavllm["root"] / "final.pt"),
                              "--whisper", str(d["whisper"]), "--wavlm", str(d["wavlm"]),
                              "--llm", str(d["llm"]), "--out", str(tmp_path / "ck")])
    assert res.exit_code == 0, res.output
    assert "not converted: audio_proj.weight (used only without WavLM)" in res.output
    out = tmp_path / "out.jsonl"
    res = runner.invoke(app, ["transcribe", str(testdata / CLIPS[0]), "--model", str(tmp_path / "ck"),
                              "--task", "asr", "--max-new-tokens", "2", "--lora-gate", "0.5",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    line = json.loads(out.read_text().splitlines()[0])
    assert line["status"] == "ok"
    assert line["model"]["runtime"]["lora_gate"] == 0.5
    res = runner.invoke(app, ["transcribe", str(testdata / CLIPS[0]), "--model", str(tmp_path / "ck"),
                              "--lora-gate", "loud", "--out", str(tmp_path / "x.jsonl")])
    assert res.exit_code != 0


def test_a_safetensors_state_dict_converts_like_final_pt(wavllm, tmp_path):
    from safetensors.torch import load_file, save_file

    save_file({k: v.contiguous() for k, v in wavllm["state"].items()}, tmp_path / "final.safetensors")
    d = wavllm["dirs"]
    convert_wavllm(tmp_path / "final.safetensors", tmp_path / "out", whisper=d["whisper"],
                   wavlm=d["wavlm"], llm=d["llm"])
    for name in ("bridge.safetensors", "prompt_lora.safetensors", "llm/model.safetensors"):
        a, b = load_file(tmp_path / "out" / name), load_file(wavllm["ckpt"] / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_holding_python_objects_is_refused(wavllm, tmp_path):
    import argparse

    torch.save({"model": wavllm["state"], "args": argparse.Namespace(lr=1.0)}, tmp_path / "obj.pt")
    d = wavllm["dirs"]
    with pytest.raises(SpeechkitError, match="pickled Python objects"):
        convert_wavllm(tmp_path / "obj.pt", tmp_path / "out", whisper=d["whisper"],
                       wavlm=d["wavlm"], llm=d["llm"])

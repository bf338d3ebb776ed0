"""SALMONN checkpoints: conversion from the official layout, the window Q-Former against a
reference forward, every task on real recordings, long audio windowed with both encoders aligned,
and the LoRA scaling override."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.models.base import AUDIO, ENROLL, DecodeOptions, audio_inputs
from speechkit.models.speechllm import load_speechllm
from speechkit.models.speechllm.checkpoint import SPEC_FILE
from speechkit.models.speechllm.importers.salmonn import convert_salmonn
from speechkit.models.speechllm.prompts import render, task_prompt
from tests.conftest import read_testdata_audio
from tests.test_salmonn_tiny import (
    lora_merged_llm,
    salmonn_parts,
    salmonn_speech_embeds,
)

ASR_PROMPT = "Recognize the speech and give me the transcription."


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return salmonn_parts(tmp_path_factory.mktemp("salmonn"))


def cli(*args):
    """The speechkit CLI in-process."""
    from typer.testing import CliRunner

    from speechkit.cli import _register_subcommands, app

    _register_subcommands()
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def converted(parts):
    out = parts["root"] / "converted"
    res = cli("convert", "salmonn", "--ckpt", str(parts["ckpt"]), "--whisper", str(parts["whisper"]),
              "--beats", str(parts["beats"]), "--llm", str(parts["llm"]), "--out", str(out))
    assert res.exit_code == 0, res.output
    # position_ids, 2 rotary inv_freq; BEATs: its classifier (2), a copy of the shared bias
    assert "dropped 6 keys" in res.output
    return out


@pytest.fixture(scope="module")
def model(converted):
    return load_speechllm(str(converted), device="cpu")


SENTENCE = "librivox/sense_and_sensibility_01_austen_64kb-0880.wav"  # 3.0 s, pocketsphinx-testdata


_clip = read_testdata_audio


def _reference_logits(parts, model, wave, scaling):
    """SALMONN's forward from the official keys: Whisper (transformers) on 30 s features, the
    BEATs tokens, Q-Former, the LLM with its LoRA added by hand, the prompt wrapped as
    SALMONN's prompt_wrap does. BEATs' tokens are the encoder's here: test_beats pins them to
    the official layout (its rescaled attention scores differ from these in the 7th digit,
    which the tiny random LLM amplifies past 1e-5)."""
    from transformers import WhisperFeatureExtractor, WhisperModel

    mel = WhisperFeatureExtractor(feature_size=80)(wave, sampling_rate=16000,
                                                   return_tensors="pt").input_features
    speech = WhisperModel.from_pretrained(parts["whisper"]).encoder(mel).last_hidden_state
    tokens, _ = model.encoders[1]([wave])
    audio = tokens[:, :int((tokens[0] != 0).any(-1).sum())]  # BEATs' own tokens, unpadded
    assert audio.shape[1] == (len(wave) // 160 - 1) // 16 * 8  # 8 per 16 fbank frames
    embeds = salmonn_speech_embeds(parts["state"], speech, audio)
    assert embeds.shape[1] == 88  # 1,500 frames in windows of 17
    prompt = f"USER: <Speech><SpeechHere></Speech> {ASR_PROMPT}\nASSISTANT:"
    before, after = prompt.split("<SpeechHere>")
    tok = model.tokenizer
    llm = lora_merged_llm(parts["llm"], parts["state"], scaling)
    table = llm.get_input_embeddings()
    ids = [tok.bos_token_id, *tok(before, add_special_tokens=False).input_ids]
    x = torch.cat([table(torch.tensor(ids)), embeds[0],
                   table(torch.tensor(tok(after, add_special_tokens=False).input_ids))])
    return llm(inputs_embeds=x[None]).logits


def _speechkit_logits(model, wave):
    text = render(model.spec.prompt, task_prompt(model.spec.prompt, "asr"), model.tokenizer)
    embeds = model.prompt_embeds(audio_inputs([wave]), [text])[0]
    return model.llm(inputs_embeds=embeds[None]).logits


@pytest.mark.parametrize(("scale", "seconds"), [(None, 30.0), (2.0, None)])
@torch.inference_mode()
def test_converted_logits_match_the_official_layout(parts, converted, testdata, scale, seconds):
    wave = _clip(testdata / SENTENCE)  # 3.0 s; SALMONN encodes it as 30 s (88 windows) as speechkit does here
    if seconds:
        wave = np.resize(wave, int(seconds * 16000))
    model = load_speechllm(str(converted), device="cpu", lora_scale=scale)
    want = _reference_logits(parts, model, wave, scaling=scale or 32 / 4)
    got = _speechkit_logits(model, wave)
    assert got.shape[:2] == want.shape[:2] and got.shape[2] == want.shape[2] + 1  # SALMONN's [PAD]
    assert torch.allclose(got[..., :-1], want, atol=1e-5, rtol=0)
    assert model.describe()["lora_scaling"] == (scale or 8.0)


def test_spec_carries_salmonn_prompts_and_decoding(converted):
    spec = json.loads((converted / SPEC_FILE).read_text())
    assert spec["prompt"]["template"] == "salmonn"
    assert spec["prompt"]["tasks"]["asr"] == ASR_PROMPT
    assert spec["decode"]["beam_size"] == 4 and spec["decode"]["max_new_tokens"] == 200
    assert [e["type"] for e in spec["encoders"]] == ["whisper", "beats"]
    assert spec["bridge"]["qformer"]["window"] == 17 and spec["bridge"]["qformer"]["queries"] == 1
    assert spec["llm"]["lora"]["r"] == 4 and spec["llm"]["lora"]["target_modules"] == ["q_proj", "v_proj"]


def _convert(parts, tmp_path, state):
    torch.save({"model": state}, tmp_path / "edited.pth")
    return convert_salmonn(tmp_path / "edited.pth", str(parts["whisper"]), parts["beats"],
                           str(parts["llm"]), tmp_path / "out")


def test_unknown_key_refuses_the_conversion(parts, tmp_path):
    state = {**parts["state"], "speech_Qformer.cls.predictions.bias": torch.zeros(3)}
    with pytest.raises(SpeechkitError, match=r"1 keys have no place.*cls\.predictions"):
        _convert(parts, tmp_path, state)
    assert not (tmp_path / "out").exists()


def test_missing_weight_or_lora_half_refuses_the_conversion(parts, tmp_path):
    key = "speech_Qformer.bert.encoder.layer.1.crossattention.self.key.weight"
    state = {k: v for k, v in parts["state"].items() if k != key}
    with pytest.raises(SpeechkitError, match=r"missing \['layers\.1\.cross_attn\.key\.weight'\]"):
        _convert(parts, tmp_path, state)
    lora_b = "llama_model.base_model.model.model.layers.1.self_attn.v_proj.lora_B.default.weight"
    state = {k: v for k, v in parts["state"].items() if k != lora_b}
    with pytest.raises(SpeechkitError, match=r"layers\.1\.self_attn\.v_proj lacks its lora_A or lora_B"):
        _convert(parts, tmp_path, state)


def test_conversion_reports_each_dropped_key(parts, tmp_path):
    done = _convert(parts, tmp_path, parts["state"])
    dropped = set(done.dropped)
    assert "speech_Qformer.bert.embeddings.position_ids" in dropped
    assert {k for k in dropped if k.endswith("inv_freq")} == {
        f"llama_model.base_model.model.model.layers.{i}.self_attn.rotary_emb.inv_freq" for i in (0, 1)}
    assert any(k.endswith(":predictor.weight") for k in dropped)
    placed = len(parts["state"]) - 3  # every other key is a weight in the checkpoint
    assert done.mapped == placed


def _task_batch(testdata, spoken):
    """One batch per task: (task, inputs, per-item prompts, options). The weights are random, so
    any speech serves: LibriVox sentences (one reader), the cards and raw clips (recorded apart)."""
    librivox = sorted((testdata / "librivox").glob("*.wav"))  # 7.1, 3.0, 5.3, 6.0, 3.3 s
    asr = [_clip(p) for p in (librivox[1], librivox[4], testdata / "cards/001.wav")]
    er = [_clip(testdata / f"cards/{n}.wav") for n in ("002", "004")]
    trials = [(librivox[0], librivox[2]), (librivox[3], testdata / "goforward.raw"),
              (testdata / "cards/003.wav", testdata / "numbers.raw")]  # one reader, then mixed sources
    sv = [{ENROLL: _clip(e), AUDIO: _clip(t)} for e, t in trials]
    return [
        ("asr", audio_inputs(asr), None, {}),
        ("st", audio_inputs([_clip(spoken["fr"]), asr[0]]), None, {"target_language": "de"}),
        ("er", audio_inputs(er), None, {}),
        ("sv", sv, None, {}),
        ("sqa", audio_inputs(asr[:2]), ["Who was not ill disposed?", "What might he have been made?"],
         {}),
        ("aac", audio_inputs([_clip(testdata / "something.raw"), asr[1]]), None, {}),
    ]


def test_every_task_runs_and_a_batch_decodes_like_one_at_a_time(model, testdata, spoken):
    for task, batch, prompts, extra in _task_batch(testdata, spoken):
        options = DecodeOptions(task=task, max_new_tokens=5, **extra)
        hyps = model.generate(batch, options, prompts=prompts)
        batched = model.last_tokens
        alone = []
        for i, item in enumerate(batch):
            one = model.generate([item], options, prompts=[prompts[i]] if prompts else None)
            alone.append(model.last_tokens[0])
            if task == "sv":
                assert 0.0 <= one[0].extras["p_yes"] <= 1.0
                assert hyps[i].extras["p_yes"] == pytest.approx(one[0].extras["p_yes"], abs=1e-5)
            assert one[0].text == hyps[i].text, task
        assert batched == alone, task
        assert all(h.extras["windows"] == 1 and h.extras["window_s"] == 30.0 for h in hyps)


def _variant(converted, out, window_s=30.0, pad_window=True):
    """The converted checkpoint with other encoder windows."""
    shutil.copytree(converted, out)
    spec = json.loads((out / SPEC_FILE).read_text())
    for enc in spec["encoders"]:
        enc["window_s"], enc["pad_window"] = window_s, pad_window
        if not pad_window:
            enc["min_s"] = 0.0  # nor SALMONN's padding of short clips to 1 s
    spec["bridge"]["qformer"]["segment"] = round(window_s * 50)
    (out / SPEC_FILE).write_text(json.dumps(spec))
    return load_speechllm(str(out), device="cpu")


@pytest.fixture(scope="module")
def short_windows(converted, tmp_path_factory):
    """3 s encoder windows (150 frames), to test long audio on short clips."""
    return _variant(converted, tmp_path_factory.mktemp("short") / "ck", window_s=3.0)


@torch.inference_mode()
def test_long_audio_is_windowed_through_both_encoders_in_step(short_windows, testdata):
    librivox = sorted((testdata / "librivox").glob("*.wav"))
    wave = np.concatenate([_clip(p) for p in librivox[:2]])[:int(7.5 * 16000)]
    out, n = short_windows.encode(audio_inputs([wave]))["audio"]
    assert int(n[0]) == 8 + 8 + 8  # per 3 s window (the last padded as SALMONN): 150 frames -> 8
    chunks = [wave[i:i + 48000] for i in range(0, len(wave), 48000)]
    alone = [short_windows.encode(audio_inputs([c]))["audio"] for c in chunks]
    joined = torch.cat([x[0, :int(k[0])] for x, k in alone])
    assert torch.allclose(out[0, :int(n[0])], joined, atol=1e-5)  # each window keeps its timing
    hyp = short_windows.generate(audio_inputs([wave]), DecodeOptions(task="asr", max_new_tokens=2))
    assert hyp[0].extras["windows"] == 3 and hyp[0].extras["window_s"] == 3.0


def test_lora_scale_is_applied_and_recorded_by_transcribe(converted, testdata, tmp_path):
    out = tmp_path / "out.jsonl"
    clip = testdata / SENTENCE
    res = cli("transcribe", str(clip), "--model", str(converted), "--device", "cpu",
              "--lora-scale", "2", "--max-new-tokens", "3", "--beam-size", "1", "--out", str(out))
    assert res.exit_code == 0, res.output
    line = json.loads(out.read_text().splitlines()[0])
    assert line["status"] == "ok" and line["model"]["lora_scaling"] == 2.0
    assert line["extras"]["windows"] == 1
    res = cli("transcribe", str(clip), "--model", str(converted), "--device", "cpu",
              "--lora-scale", "3", "--max-new-tokens", "3", "--beam-size", "1", "--out", str(out))
    assert isinstance(res.exception, SpeechkitError)  # resume never mixes two scalings
    assert "finished item(s) were made with" in str(res.exception)
    res = cli("transcribe", str(clip), "--model", str(converted), "--lora-scale", "0")
    assert isinstance(res.exception, SpeechkitError)
    assert "--lora-scale must be > 0" in str(res.exception)


@torch.inference_mode()
def test_without_window_padding_only_frames_with_audio_reach_the_llm(converted, testdata, tmp_path):
    model = _variant(converted, tmp_path / "ck", pad_window=False)
    wave = _clip(testdata / SENTENCE)
    short = wave[:3200]  # 0.2 s: 10 frames, fewer than a window's 17
    out, n = model.encode(audio_inputs([short, wave]))["audio"]
    alone, k = model.encode(audio_inputs([short]))["audio"]
    assert int(n[0]) == int(k[0]) == 1
    assert torch.allclose(out[0, :1], alone[0, :1], atol=1e-5)
    frames = -(-len(wave) // 320)
    assert int(n[1]) == (frames - 17) // 17 + 1  # SALMONN's F.unfold: the leftover frames drop

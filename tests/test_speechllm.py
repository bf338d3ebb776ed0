"""Speech-LLM runtime with tiny random parts: batching, long audio, bridges, checks, prompts."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from speechkit.errors import SpeechkitError
from speechkit.models.base import DecodeOptions, audio_inputs
from speechkit.models.safe_load import load_weights
from speechkit.models.speechllm import load_speechllm, new_checkpoint, read_spec
from speechkit.models.speechllm.checkpoint import SPEC_FILE, WEIGHTS_FILE
from tests.test_speechllm_tiny import noise, tiny_llm, tiny_wavlm, tiny_whisper


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts")
    return {"whisper": tiny_whisper(root / "whisper"), "wavlm": tiny_wavlm(root / "wavlm"),
            "llm": tiny_llm(root / "llm")}


@pytest.fixture(scope="module")
def whisper_ckpt(parts, tmp_path_factory):
    out = tmp_path_factory.mktemp("ck") / "whisper-linear"
    new_checkpoint(out, audio_encoder=str(parts["whisper"]), llm=str(parts["llm"]),
                   bridge="linear", rate=4, hidden_dim=48, template="salmonn")
    return out


@pytest.fixture(scope="module")
def whisper_model(whisper_ckpt):
    return load_speechllm(str(whisper_ckpt), device="cpu")


AUDIOS = [noise(1.0, 1), noise(25.0, 2), noise(6.5, 3)]  # very different lengths


def _one_by_one(model, audios, options):
    tokens = []
    for a in audios:
        model.generate(audio_inputs([a]), options)
        tokens.extend(model.last_tokens)
    return tokens


@pytest.mark.parametrize("beam", [1, 3])
def test_batch_outputs_equal_one_at_a_time(whisper_model, beam):
    options = DecodeOptions(task="transcribe", beam_size=beam, max_new_tokens=8)
    hyps = whisper_model.generate(audio_inputs(AUDIOS), options)
    batched = whisper_model.last_tokens
    assert batched == _one_by_one(whisper_model, AUDIOS, options)
    assert all(len(t) > 0 for t in batched)
    assert [h.extras["n_tokens"] for h in hyps] == [len(t) for t in batched]


def test_decoding_is_deterministic(whisper_model):
    options = DecodeOptions(task="asr", beam_size=2, max_new_tokens=6)
    first = [h.text for h in whisper_model.generate(audio_inputs(AUDIOS[:2]), options)]
    assert first == [h.text for h in whisper_model.generate(audio_inputs(AUDIOS[:2]), options)]


def test_long_audio_is_windowed_not_cut(whisper_model):
    encoder = whisper_model.encoders[0]
    feats, lengths = encoder([noise(65.0, 4), noise(2.0, 5)])
    assert lengths.tolist() == [1500 + 1500 + 250, 100]  # 50 Hz frames: 30 s + 30 s + 5 s
    assert feats.shape[1] == 3250
    embeds = whisper_model.prompt_embeds(audio_inputs([noise(65.0, 4)]), ["x<|speechkit-speech|>y"])
    assert embeds[0].shape[0] >= 3250 // 4


def test_sv_records_p_yes_from_first_token(whisper_model):
    hyps = whisper_model.generate(audio_inputs(AUDIOS[:2]), DecodeOptions(task="sv", max_new_tokens=2))
    for h in hyps:
        assert 0.0 <= h.extras["p_yes"] <= 1.0
        assert 0.0 <= h.extras["p_yes_vs_no"] <= 1.0
        assert h.extras["p_yes"] <= h.extras["p_yes_vs_no"] + 1e-6
    asr = whisper_model.generate(audio_inputs(AUDIOS[:1]), DecodeOptions(task="asr", max_new_tokens=2))
    assert "p_yes" not in asr[0].extras


def test_conv1d_bridge_wavlm_layer_sum_batch_equals_single(parts, tmp_path):
    out = tmp_path / "wavlm-conv"
    new_checkpoint(out, audio_encoder=str(parts["wavlm"]), llm=str(parts["llm"]),
                   bridge="conv1d", rate=2, layer_weights=True, template="wavllm")
    weights = load_file(str(out / WEIGHTS_FILE))
    assert weights["encoders.audio.layer_weights"].shape == (3,)  # embeddings + 2 layers
    model = load_speechllm(str(out))
    audios = [noise(0.5, 6), noise(9.0, 7)]
    options = DecodeOptions(task="asr", beam_size=2, max_new_tokens=6)
    model.generate(audio_inputs(audios), options)
    assert model.last_tokens == _one_by_one(model, audios, options)


def test_mean_pooling_and_added_tokens(parts, tmp_path):
    out = tmp_path / "avsr"
    new_checkpoint(out, audio_encoder=str(parts["whisper"]), llm=str(parts["llm"]),
                   pooling="mean", rate=3, template="llama-avsr",
                   added_tokens=["<audio>", "</audio>"])
    spec = read_spec(out)
    model = load_speechllm(str(out))
    assert spec.llm.vocab_size == len(model.tokenizer)
    stored = load_file(str(out / WEIGHTS_FILE))["llm.added_embeddings"]
    ids = model.tokenizer.convert_tokens_to_ids(["<audio>", "</audio>"])
    assert torch.equal(model.llm.get_input_embeddings().weight[ids], stored)
    options = DecodeOptions(task="asr", max_new_tokens=5)
    model.generate(audio_inputs(AUDIOS), options)
    assert model.last_tokens == _one_by_one(model, AUDIOS, options)


def test_spec_round_trips_and_records_sizes(whisper_ckpt):
    data = json.loads((whisper_ckpt / SPEC_FILE).read_text())
    spec = read_spec(whisper_ckpt)
    assert spec.to_dict() == data
    assert data["encoders"][0]["dim"] == 32 and data["bridge"]["out_dim"] == 64
    assert data["llm"]["lora"]["r"] == 8
    assert (whisper_ckpt / "lora" / "adapter_model.safetensors").is_file()


def _edit(ckpt, tmp_path, change):
    import shutil

    out = tmp_path / "edited"
    shutil.copytree(ckpt, out)
    data = json.loads((out / SPEC_FILE).read_text())
    change(data)
    (out / SPEC_FILE).write_text(json.dumps(data))
    return out


def test_bridge_llm_size_mismatch_names_both_sides(whisper_ckpt, tmp_path):
    def change(d):
        d["bridge"]["out_dim"] = 99
        d["llm"]["hidden_size"] = 0

    with pytest.raises(SpeechkitError, match=r"bridge.out_dim is 99.*hidden size 64"):
        load_speechllm(str(_edit(whisper_ckpt, tmp_path, change)))


def test_encoder_bridge_mismatch_names_both_sides(whisper_ckpt, tmp_path):
    def change(d):
        d["encoders"][0]["dim"] = 0
        d["bridge"]["inputs"]["audio"]["in_dim"] = 40

    with pytest.raises(SpeechkitError, match=r"outputs 32 features.*in_dim is 40"):
        load_speechllm(str(_edit(whisper_ckpt, tmp_path, change)))


def test_vocab_mismatch_names_both_sides(whisper_ckpt, tmp_path):
    def change(d):
        d["llm"]["vocab_size"] = 12345

    with pytest.raises(SpeechkitError, match=r"vocab_size 12345.*has \d+"):
        load_speechllm(str(_edit(whisper_ckpt, tmp_path, change)))


def test_bridge_key_problems_in_one_message(whisper_ckpt, tmp_path):
    out = _edit(whisper_ckpt, tmp_path, lambda d: None)
    state = load_file(str(out / WEIGHTS_FILE))
    state.pop(sorted(state)[0])
    state["bridge.extra.weight"] = torch.zeros(2)
    save_file(state, str(out / WEIGHTS_FILE))
    with pytest.raises(SpeechkitError, match=r"missing \['bridge\..*unexpected \['bridge.extra"):
        load_speechllm(str(out))


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_refused(tmp_path):
    torch.save({"model": {"w": torch.zeros(1)}, "x": _Evil()}, tmp_path / "bad.pth")
    with pytest.raises(SpeechkitError, match="refused"):
        load_weights(tmp_path / "bad.pth")
    torch.save({"model": {"w": torch.ones(1)}}, tmp_path / "ok.pth")
    assert torch.equal(load_weights(tmp_path / "ok.pth")["w"], torch.ones(1))


def test_unknown_spec_key_is_an_error(whisper_ckpt, tmp_path):
    def change(d):
        d["bridge"]["kind"] = "linear"

    with pytest.raises(SpeechkitError, match=r"unknown key bridge.kind"):
        read_spec(_edit(whisper_ckpt, tmp_path, change))


def test_lora_scaling_override(whisper_ckpt, tmp_path):
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForCausalLM

    from speechkit.models.speechllm.checkpoint import LoraSpec
    from speechkit.models.speechllm.llm import attach_lora

    spec = read_spec(whisper_ckpt)
    llm = AutoModelForCausalLM.from_pretrained(spec.llm.source)
    model = attach_lora(llm, whisper_ckpt / "lora", LoraSpec(scaling=0.125), merge=False)
    scales = [s for m in model.modules() if isinstance(m, LoraLayer) for s in m.scaling.values()]
    assert scales and all(s == 0.125 for s in scales)


@pytest.mark.parametrize("quant", ["4bit", "8bit"])
def test_quantized_llm_runs_on_cpu(whisper_ckpt, quant):
    model = load_speechllm(str(whisper_ckpt), device="cpu", quant=quant)
    import bitsandbytes as bnb

    layer = bnb.nn.Linear4bit if quant == "4bit" else bnb.nn.Linear8bitLt
    assert any(isinstance(m, layer) for m in model.llm.modules())
    assert model.describe()["quant"] == quant
    options = DecodeOptions(task="asr", max_new_tokens=4)
    model.generate(audio_inputs(AUDIOS), options)
    assert model.last_tokens == _one_by_one(model, AUDIOS, options)
    # P(yes) of a batch equals each item's alone up to float rounding (LLM.int8 picks its
    # outlier columns per batch, so 8-bit agrees less tightly than 4-bit).
    sv = DecodeOptions(task="sv", max_new_tokens=1)
    batched = [h.extras["p_yes"] for h in model.generate(audio_inputs(AUDIOS), sv)]
    alone = [model.generate(audio_inputs([a]), sv)[0].extras["p_yes"] for a in AUDIOS]
    assert batched == pytest.approx(alone, rel=1e-5 if quant == "4bit" else 5e-2)
    options = DecodeOptions(task="asr", max_new_tokens=4)
    model.generate(audio_inputs(AUDIOS[:2]), options)
    assert model.last_tokens == _one_by_one(model, AUDIOS[:2], options)


def test_generate_takes_position_ids_from_the_left_padded_mask(whisper_model):
    from speechkit.models.speechllm.generate import GenerationSettings, generate

    inner = whisper_model.llm.get_decoder()
    seen = []
    original = inner.forward

    def spy(*args, **kwargs):
        seen.append(kwargs.get("position_ids"))
        return original(*args, **kwargs)

    inner.forward = spy
    try:
        h = whisper_model.llm.get_input_embeddings().weight.shape[1]
        generate(whisper_model.llm, whisper_model.tokenizer, [torch.randn(3, h), torch.randn(6, h)],
                 GenerationSettings(max_new_tokens=2))
    finally:
        del inner.forward
    assert seen[0][0, 3:].tolist() == [0, 1, 2] and seen[0][1].tolist() == list(range(6))
    assert seen[1][:, -1].tolist() == [3, 6]


def test_prompt_templates_and_tasks():
    from speechkit.models.speechllm.checkpoint import PromptSpec
    from speechkit.models.speechllm.prompts import SPEECH, render, task_prompt

    class Tok:
        bos_token = "<s>"

    salmonn = PromptSpec(template="salmonn")
    asr = task_prompt(salmonn, "transcribe")
    assert asr == "Recognize the speech and give me the transcription."
    assert render(salmonn, asr, Tok()) == f"<s>USER: <Speech>{SPEECH}</Speech> {asr}\nASSISTANT:"
    avsr = PromptSpec(template="llama-avsr")
    assert render(avsr, task_prompt(avsr, "asr"), Tok()) == (
        f"<s><audio>{SPEECH}</audio>Transcribe speech to text.")
    wavllm = PromptSpec(template="wavllm", system="Be brief.")
    assert render(wavllm, "Hi", Tok()) == (
        f"<s>[INST]<<SYS>>\nBe brief.\n<</SYS>>\n\n<SPEECH>{SPEECH} </SPEECH> Hi [/INST]")
    assert task_prompt(salmonn, "st", target_language="de").endswith("into German.")
    assert task_prompt(salmonn, "sqa", item_prompt="Who speaks?") == "Who speaks?"
    assert task_prompt(salmonn, "asr", override="Say it.") == "Say it."
    with pytest.raises(SpeechkitError, match="target-language"):
        task_prompt(salmonn, "st")
    with pytest.raises(SpeechkitError, match="question"):
        task_prompt(salmonn, "sqa")


def test_checkpoint_decode_defaults_apply_unless_given(whisper_ckpt, tmp_path):
    from speechkit.data import Item, read_results
    from speechkit.transcribe import transcribe_items

    def change(d):
        d["decode"] = {"beam_size": 2, "max_new_tokens": 3}

    model = load_speechllm(str(_edit(whisper_ckpt, tmp_path, change)), device="cpu")
    assert model.resolve(DecodeOptions(task="asr")).beam_size == 2
    assert model.resolve(DecodeOptions(task="asr", beam_size=1)).beam_size == 1
    model.generate(audio_inputs([noise(2.0, 7)]), DecodeOptions(task="asr"))
    assert all(len(t) <= 3 for t in model.last_tokens)
    wav = tmp_path / "a.wav"
    import wave

    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((noise(1.5, 8) * 20000).astype("<i2").tobytes())
    transcribe_items([Item(id="a", path=str(wav))], model, DecodeOptions(task="asr"),
                     tmp_path / "r.jsonl")
    (r,) = read_results(tmp_path / "r.jsonl").values()
    assert r.decode["beam_size"] == 2 and r.decode["max_new_tokens"] == 3


def test_checkpoint_hash_is_recorded_and_follows_the_weights(whisper_ckpt, tmp_path):
    import shutil

    a = load_speechllm(str(whisper_ckpt), device="cpu").describe()["sha256"]
    copy = tmp_path / "copy"
    shutil.copytree(whisper_ckpt, copy)
    assert load_speechllm(str(copy), device="cpu").describe()["sha256"] == a  # location-free
    state = load_file(copy / WEIGHTS_FILE)
    key = next(iter(state))
    state[key] = state[key] + 1.0
    save_file(state, copy / WEIGHTS_FILE)
    assert load_speechllm(str(copy), device="cpu").describe()["sha256"] != a


def test_random_shaped_checkpoint_loads_in_4bit(tmp_path):
    """The GPU benchmark's path (random encoder and LLM of given shapes, the SmolLM2
    tokenizer, 4-bit), at a size a CPU test can afford."""
    from tests.test_speechllm_tiny import TINY_WHISPER

    llama = dict(model_type="llama", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, intermediate_size=128, vocab_size=49152,
                 max_position_embeddings=2048, bos_token_id=1, eos_token_id=2)
    new_checkpoint(tmp_path / "ck", audio_encoder="random", encoder_kind="whisper",
                   encoder_config={"model_type": "whisper", **TINY_WHISPER}, llm="random",
                   llm_config_dict=llama, tokenizer="smollm2-135m", template="salmonn")
    model = load_speechllm(str(tmp_path / "ck"), device="cpu", quant="4bit")
    options = DecodeOptions(task="asr", max_new_tokens=3)
    model.generate(audio_inputs(AUDIOS), options)
    batched = model.last_tokens
    assert batched == _one_by_one(model, AUDIOS, options)
    again = load_speechllm(str(tmp_path / "ck"), device="cpu", quant="4bit")
    again.generate(audio_inputs(AUDIOS), options)
    assert again.last_tokens == batched  # "random" is seeded: the same weights on every load

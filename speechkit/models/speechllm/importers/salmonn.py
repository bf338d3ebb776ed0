"""SALMONN checkpoints (`salmonn_v1.pth`, `salmonn_7b_v0.pth`; bytedance/SALMONN) as speechkit
checkpoints.

A SALMONN checkpoint is `{"model": state_dict, ...}` holding only what was trained: the
window-level Q-Former (`speech_Qformer.bert.*`, `speech_query_tokens`), its projection into the
LLM (`speech_llama_proj.*`), the layer norms over the Whisper and BEATs streams (`ln_speech.*`,
`ln_audio.*`) and the peft LoRA of Vicuna (`llama_model.base_model.model.model.layers.*`).
Buffers saved beside them (the Q-Former's `position_ids`, Llama's rotary `inv_freq`) are
recomputed and reported as dropped. Any other key makes the conversion fail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from speechkit.errors import SpeechkitError
from speechkit.models.speechllm.checkpoint import (
    BridgeInput,
    BridgeSpec,
    CheckpointSpec,
    DecodeDefaults,
    EncoderSpec,
    LLMSpec,
    LoraSpec,
    PromptSpec,
    QFormerSpec,
)
from speechkit.models.speechllm.importers.keys import key_families
from speechkit.models.speechllm.output import check_new_output, staged_directory
from speechkit.models.speechllm.prompts import DEFAULT_TASK_PROMPTS

SPEECH, AUDIO_EVENTS = "audio", "beats"  # the two encoders' names (bridge inputs)
# The task registry's prompts are SALMONN's test prompts (bytedance/SALMONN
# prompts/test_prompt.json; translation is into German there, the target language here).
# The checkpoint records them, so it keeps them whatever speechkit's defaults become.
SALMONN_TASKS = ("asr", "st", "aac", "er", "sv", "sqa")
SALMONN_BEAM, SALMONN_MAX_NEW_TOKENS = 4, 200  # configs/decode_config.yaml generate settings
SALMONN_LORA_ALPHA = 32.0  # configs/decode_config.yaml: lora_rank 8, lora_alpha 32
BERT_BASE_HEADS = 12  # the Q-Former is bert-base-uncased's config with 2 layers
# SALMONN adds "[PAD]" as the pad token and resizes Vicuna's embeddings (vocab 32001); the
# checkpoint holds no row for it, so speechkit gives it the mean row.
SALMONN_PAD = "[PAD]"
SALMONN_MIN_S = 1.0  # utils.py prepare_one_sample: clips under 1 s are zero-padded to 1 s
WINDOW_FRAMES = 17  # second_per_window 0.333333 x 1500 / 30 s (SALMONN's kernel and stride)

LORA_KEY = re.compile(r"^llama_model\.base_model\.model\.(model\.layers\.(\d+)\.[\w.]+?\."
                      r"(\w+_proj))\.(lora_[AB])(?:\.default)?\.weight$")
QFORMER_LAYER = re.compile(r"^speech_Qformer\.bert\.encoder\.layer\.(\d+)\.(.+)$")
BUFFERS = (re.compile(r"^speech_Qformer\.bert\.embeddings\.position_ids$"),
           re.compile(r"^llama_model\..*\.rotary_emb\.inv_freq$"))
# BEATs shares layer 0's relative position bias with every layer; named_parameters() lists it
# once, so the runner's filter (drop what does not require grad) keeps layers 1.. as copies.
BEATS_BIAS_COPY = re.compile(r"^beats\.encoder\.layers\.(\d+)\.self_attn\."
                             r"relative_attention_bias\.weight$")
# Q-Former layer parts: SALMONN (BERT) name -> speechkit WindowQFormer name
LAYER_PARTS = {
    "attention.self.query": "self_attn.query", "attention.self.key": "self_attn.key",
    "attention.self.value": "self_attn.value", "attention.output.dense": "self_attn.dense",
    "attention.output.LayerNorm": "self_attn.norm",
    "crossattention.self.query": "cross_attn.query", "crossattention.self.key": "cross_attn.key",
    "crossattention.self.value": "cross_attn.value",
    "crossattention.output.dense": "cross_attn.dense",
    "crossattention.output.LayerNorm": "cross_attn.norm",
    "intermediate_query.dense": "up", "output_query.dense": "down", "output_query.LayerNorm": "norm",
}
TOP_LEVEL = {"ln_speech": f"norms.{SPEECH}", "ln_audio": f"norms.{AUDIO_EVENTS}",
             "speech_query_tokens": "query_tokens", "speech_llama_proj": "proj",
             "speech_Qformer.bert.embeddings.LayerNorm": "embed_norm"}


@dataclass
class SalmonnWeights:
    """A SALMONN state dict sorted into speechkit's parts."""

    bridge: dict[str, torch.Tensor] = field(default_factory=dict)  # WindowQFormer names
    lora: dict[str, torch.Tensor] = field(default_factory=dict)  # peft adapter file names
    dropped: dict[str, str] = field(default_factory=dict)  # key -> why it is not needed
    unmapped: list[str] = field(default_factory=list)  # keys nothing here knows: an error


def split_salmonn_state(state: dict[str, torch.Tensor]) -> SalmonnWeights:
    """Each key of a SALMONN state dict mapped onto the bridge or the adapter, dropped as a
    recomputed buffer, or listed as unmapped."""
    out = SalmonnWeights()
    for key, value in state.items():
        name = _bridge_name(key)
        if name is not None:
            out.bridge[name] = value
        elif (lora := LORA_KEY.match(key)) is not None:
            out.lora[f"base_model.model.{lora.group(1)}.{lora.group(4)}.weight"] = value
        elif any(b.match(key) for b in BUFFERS):
            out.dropped[key] = "buffer recomputed when the model is built"
        elif (copy := BEATS_BIAS_COPY.match(key)) is not None and copy.group(1) != "0":
            out.dropped[key] = "copy of BEATs' shared relative position bias (from --beats)"
        else:
            out.unmapped.append(key)
    return out


def _bridge_name(key: str) -> str | None:
    """The WindowQFormer parameter a SALMONN key holds, or None."""
    for prefix, name in TOP_LEVEL.items():
        if key == prefix:
            return name
        if key.startswith(prefix + ".") and key.count(".") == prefix.count(".") + 1:
            return name + key[len(prefix):]
    layer = QFORMER_LAYER.match(key)
    if layer is None:
        return None
    part, _, leaf = layer.group(2).rpartition(".")
    if part not in LAYER_PARTS or leaf not in ("weight", "bias"):
        return None
    return f"layers.{layer.group(1)}.{LAYER_PARTS[part]}.{leaf}"


def qformer_spec(bridge: dict[str, torch.Tensor], heads: int = BERT_BASE_HEADS) -> QFormerSpec:
    """The Q-Former sizes read off the weights' shapes (heads: BERT-base's 12)."""
    need = ("query_tokens", "layers.0.up.weight")
    missing = [k for k in need if k not in bridge]
    if missing:
        raise SpeechkitError(f"SALMONN checkpoint: no Q-Former weights ({missing[0]} missing); "
                             "pass a SALMONN checkpoint with speech_Qformer.* keys")
    tokens = bridge["query_tokens"]
    layers = 1 + max(int(k.split(".")[1]) for k in bridge if k.startswith("layers."))
    return QFormerSpec(hidden_size=int(tokens.shape[-1]), layers=layers, heads=heads,
                       intermediate_size=int(bridge["layers.0.up.weight"].shape[0]),
                       queries=int(tokens.shape[1]), window=WINDOW_FRAMES, stride=WINDOW_FRAMES)


def lora_spec(lora: dict[str, torch.Tensor], alpha: float = SALMONN_LORA_ALPHA) -> LoraSpec:
    """Rank and target modules read off the LoRA keys; each A has its B and one rank."""
    if not lora:
        raise SpeechkitError("SALMONN checkpoint: no LoRA weights (llama_model.base_model."
                             "model.model.layers.*.lora_A/B); pass a SALMONN checkpoint")
    stems = {k.rsplit(".lora_", 1)[0] for k in lora}
    unpaired = [s for s in sorted(stems) if f"{s}.lora_A.weight" not in lora
                or f"{s}.lora_B.weight" not in lora]
    if unpaired:
        raise SpeechkitError(f"SALMONN checkpoint: LoRA {unpaired[0]} lacks its lora_A or lora_B "
                             "weight; the checkpoint is incomplete")
    ranks = {int(v.shape[0]) for k, v in lora.items() if ".lora_A." in k}
    if len(ranks) != 1:
        raise SpeechkitError(f"SALMONN checkpoint: LoRA layers have different ranks {sorted(ranks)}")
    targets = sorted({s.rsplit(".", 1)[1] for s in stems})
    return LoraSpec(r=ranks.pop(), alpha=alpha, target_modules=targets)


def salmonn_spec(bridge: dict[str, torch.Tensor], lora: LoraSpec, *, whisper: str, beats: str,
                 llm: str, whisper_dim: int, beats_dim: int, hidden: int, vocab: int,
                 heads: int = BERT_BASE_HEADS, window_s: float = 30.0) -> CheckpointSpec:
    """The speechkit spec of a SALMONN model: Whisper + BEATs -> window Q-Former -> LoRA LLM,
    SALMONN's prompt template, task prompts and decoding defaults."""
    q = qformer_spec(bridge, heads)
    q.segment = round(window_s * 50)  # 50 Hz frames per encoder window
    return CheckpointSpec(
        encoders=[EncoderSpec(modality=SPEECH, type="whisper", source=whisper, dim=whisper_dim,
                              window_s=window_s, pad_window=True, min_s=SALMONN_MIN_S),
                  EncoderSpec(modality=AUDIO_EVENTS, type="beats", source=beats, dim=beats_dim,
                              window_s=window_s, pad_window=True, min_s=SALMONN_MIN_S)],
        bridge=BridgeSpec(type="qformer", out_dim=hidden, qformer=q,
                          inputs={SPEECH: BridgeInput(in_dim=whisper_dim),
                                  AUDIO_EVENTS: BridgeInput(in_dim=beats_dim)}),
        llm=LLMSpec(source=llm, hidden_size=hidden, vocab_size=vocab + 1, lora=lora),
        added_tokens=[SALMONN_PAD],
        prompt=PromptSpec(template="salmonn", tasks={t: DEFAULT_TASK_PROMPTS[t] for t in SALMONN_TASKS}),
        decode=DecodeDefaults(beam_size=SALMONN_BEAM, max_new_tokens=SALMONN_MAX_NEW_TOKENS))


def check_shapes(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> None:
    """The mapped bridge weights against the bridge the spec builds: one error naming every
    missing, surplus or misshapen tensor."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = [f"{k} {tuple(found[k].shape)} (expected {tuple(v.shape)})"
             for k, v in expected.items() if k in found and found[k].shape != v.shape]
    if missing or extra or wrong:
        raise SpeechkitError(f"SALMONN checkpoint does not fit the Whisper/BEATs/LLM given: "
                             f"missing {missing[:4] or 'none'}, surplus {extra[:4] or 'none'}, "
                             f"shapes {wrong[:4] or 'ok'}; pass the Whisper, BEATs and LLM it "
                             "was trained with")


def read_salmonn_state(file: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a SALMONN `.pth` (torch's weights-only loader; pickled code refused)."""
    from speechkit.models.safe_load import check_weights_file, load_plain_pickle, refuse_non_finite

    if not Path(file).exists():
        raise SpeechkitError(f"--ckpt {file}: no such file; pass salmonn_v1.pth or salmonn_7b_v0.pth")
    obj = load_plain_pickle(check_weights_file(file, "--ckpt"))
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or not all(
            isinstance(v, torch.Tensor) for v in state.values()):
        raise SpeechkitError(f"{file}: not a SALMONN checkpoint ({{'model': state dict}}); pass "
                             "salmonn_v1.pth or salmonn_7b_v0.pth")
    refuse_non_finite(state, file)
    return state


@dataclass
class SalmonnConversion:
    """What `convert_salmonn` wrote: the spec, how many tensors it placed, what it dropped."""

    spec: CheckpointSpec
    mapped: int
    dropped: dict[str, str]


def convert_salmonn(ckpt: str | Path, whisper: str, beats: str | Path, llm: str,
                    out: str | Path, *, overwrite: bool = False,
                    lora_alpha: float = SALMONN_LORA_ALPHA) -> SalmonnConversion:
    """Write a speechkit checkpoint directory for a SALMONN checkpoint and its parts: every
    key is placed or reported; an incomplete or unknown one refuses the conversion before
    anything is written. BEATs is stored inside as safetensors (`beats/`)."""
    from speechkit.models.speechllm.bridges.qformer import WindowQFormer
    from speechkit.models.speechllm.encoders.beats import BeatsConfig, read_beats_checkpoint

    out = Path(out)
    check_new_output(out, overwrite, (ckpt, whisper, beats, llm))
    parts = split_salmonn_state(read_salmonn_state(ckpt))
    if parts.unmapped:
        raise SpeechkitError(f"{ckpt}: {len(parts.unmapped)} keys have no place in a SALMONN "
                             f"checkpoint as its runner saves it (key families "
                             f"{', '.join(key_families(parts.unmapped))}, e.g. {parts.unmapped[0]}); "
                             "conversion refused: SALMONN trains only speech_Qformer, "
                             "speech_query_tokens, speech_llama_proj, ln_speech, ln_audio and the "
                             "LoRA (a run with freeze_whisper/freeze_beats false or lora false saves "
                             "other weights, which speechkit does not load)")
    cfg, beats_state = read_beats_checkpoint(beats)
    beats_dim = BeatsConfig.from_dict(cfg).encoder_embed_dim
    whisper_src, whisper_dim = _whisper(whisper)
    llm_src, hidden, vocab, layers = _llm(llm)
    lora = lora_spec(parts.lora, lora_alpha)
    too_deep = sorted({k for k in parts.lora if int(k.split(".")[4]) >= layers})
    if too_deep:
        raise SpeechkitError(f"SALMONN checkpoint has LoRA for layer {too_deep[0].split('.')[4]} "
                             f"but the LLM {llm} has {layers} layers; pass the LLM it was trained on")
    spec = salmonn_spec(parts.bridge, lora, whisper=whisper_src, beats=BEATS_DIR, llm=llm_src,
                        whisper_dim=whisper_dim, beats_dim=beats_dim, hidden=hidden, vocab=vocab)
    check_shapes(WindowQFormer(spec.bridge).state_dict(), parts.bridge)
    dropped = dict(parts.dropped)
    dropped.update(_checked_beats(cfg, beats_state, beats))
    _write(out, spec, parts, cfg, beats_state)
    return SalmonnConversion(spec=spec, mapped=len(parts.bridge) + len(parts.lora),
                             dropped=dropped)


BEATS_DIR = "beats"  # inside the checkpoint: config.json + model.safetensors


def _checked_beats(cfg: dict, state: dict[str, torch.Tensor], file: str | Path) -> dict[str, str]:
    """BEATs weights must build the model they describe; returns the keys not used."""
    from speechkit.models.speechllm.checkpoint import load_state_strict
    from speechkit.models.speechllm.encoders.beats_model import Beats, BeatsConfig, official_state

    folded, dropped = official_state(state)
    load_state_strict(Beats(BeatsConfig.from_dict(cfg)), folded, f"BEATs {file}")
    return {f"{file}:{k}": ("AudioSet classifier head, unused" if k.startswith("predictor.")
                            else "copy of layer 0's shared relative position bias") for k in dropped}


def _whisper(source: str) -> tuple[str, int]:
    """The Whisper source as the spec records it, and its encoder width."""
    from transformers import AutoConfig

    from speechkit.models.safe_load import pretrained
    from speechkit.models.speechllm.sources import builtin_encoders, resolve_source

    directory = resolve_source(source, builtin_encoders(), "Whisper")
    config = pretrained(AutoConfig, directory)
    if config.model_type != "whisper":
        raise SpeechkitError(f"--whisper {source} is a {config.model_type!r} model; pass the "
                             "Whisper (large-v2 for SALMONN) directory")
    return _recorded(source, directory), int(config.d_model)


def _llm(source: str) -> tuple[str, int, int, int]:
    """The LLM source as recorded, its hidden size, tokenizer length and layer count."""
    from speechkit.models.speechllm.llm import llm_config, load_tokenizer
    from speechkit.models.speechllm.sources import builtin_llms, resolve_source

    directory = resolve_source(source, builtin_llms(), "LLM")
    spec = LLMSpec(source=_recorded(source, directory))
    config = llm_config(spec)
    return (spec.source, int(config.hidden_size), len(load_tokenizer(spec, [])),
            int(config.num_hidden_layers))


def _recorded(source: str, directory: Path) -> str:
    """A local directory made absolute (the checkpoint records where it is); names stay."""
    local = Path(source).expanduser()
    return str(directory.resolve()) if local.is_dir() else source


def _write(out: Path, spec: CheckpointSpec, parts: SalmonnWeights, cfg: dict,
           beats_state: dict[str, torch.Tensor]) -> None:
    """All files into a temporary sibling, then moved into place in one step."""
    import json

    from peft import LoraConfig
    from safetensors.torch import save_file

    from speechkit.models.speechllm.checkpoint import (
        ADAPTER_DIR,
        WEIGHTS_FILE,
        save_weights,
        write_spec,
    )
    from speechkit.models.speechllm.encoders.beats import write_beats_dir

    with staged_directory(out) as tmp:
        write_beats_dir(tmp / BEATS_DIR, cfg, beats_state)
        save_weights(tmp / WEIGHTS_FILE, {f"bridge.{k}": v for k, v in parts.bridge.items()})
        lora = spec.llm.lora
        assert lora is not None
        LoraConfig(r=lora.r, lora_alpha=lora.alpha, target_modules=lora.target_modules,
                   lora_dropout=0.0, bias="none", task_type="CAUSAL_LM").save_pretrained(
            str(tmp / ADAPTER_DIR))
        meta_file = tmp / ADAPTER_DIR / "adapter_config.json"
        meta = json.loads(meta_file.read_text())
        meta["base_model_name_or_path"] = spec.llm.source
        meta_file.write_text(json.dumps(meta, indent=2) + "\n")
        save_file({k: v.contiguous() for k, v in parts.lora.items()},
                  str(tmp / ADAPTER_DIR / "adapter_model.safetensors"))
        write_spec(tmp, spec)

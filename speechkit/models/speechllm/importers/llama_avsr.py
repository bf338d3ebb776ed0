"""Llama-AVSR (umbertocappellazzo/Llama-AVSR) full state dicts onto speechkit checkpoints.

The release is one state dict: `audio_encoder.*` (a Whisper encoder), `video_encoder.*`
(AV-HuBERT), `audio_proj.*` / `video_proj.*` (Linear-ReLU-Linear on k stacked frames) and
`llm.*` (Llama with its embedding matrix resized for `<pad> <audio> </audio> <video> </video>`
and its own LoRA on q and v: `lora_down_{Q,V}` [hidden/64, hidden], `lora_up_{Q,V}`, output
scaled by alpha / reduction = 8 / 64). The result is a speechkit checkpoint directory with
each part in its own folder, a peft adapter for the LoRA, and Llama-AVSR's prompts
(`BOS <audio>A</audio><video>V</video> prompt`) and decoding (beam 15, 32 new tokens, no
sampling). Every key is mapped or dropped with its reason; anything else stops the conversion.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from speechkit.errors import SpeechkitError
from speechkit.models.safe_load import (
    check_weights_file,
    load_plain_pickle,
    pretrained,
    read_safetensors,
    refuse_non_finite,
)
from speechkit.models.speechllm.checkpoint import (
    ADAPTER_DIR,
    WEIGHTS_FILE,
    BridgeInput,
    BridgeSpec,
    CheckpointSpec,
    DecodeDefaults,
    EncoderSpec,
    LLMSpec,
    LoraSpec,
    PromptSpec,
    save_weights,
    write_spec,
)
from speechkit.models.speechllm.encoders.video import CONFIG_FILE
from speechkit.models.speechllm.importers import avhubert
from speechkit.models.speechllm.importers.keys import KeyLedger, check_fits, refuse_leftover
from speechkit.models.speechllm.output import check_new_output, staged_directory
from speechkit.models.speechllm.sources import builtin_llms, resolve_source

DEFAULT_LLM = "meta-llama/Meta-Llama-3.1-8B"  # the LLM of the released checkpoints
ADDED_TOKENS = ["<pad>", "<audio>", "</audio>", "<video>", "</video>"]  # added in this order
LORA_SCALING = 8 / 64  # Llama-AVSR: alpha 8 over reduction 64
LORA_TARGETS = {"Q": "q_proj", "V": "v_proj"}
BEAM_SIZE, MAX_NEW_TOKENS = 15, 32  # Llama-AVSR decoding (its README: sampling was left on)
WHISPER_HEAD_DIM = 64  # every Whisper size: d_model / heads = 64
COMPRESSIONS = ("stack", "avg-pooling")  # Llama-AVSR's --compression-mode
MIN_WHISPER_FRAMES = 25  # encode_audio keeps max(int(n / 16000 * 50), 25) Whisper frames
# Keys that other Llama-AVSR training options save, named when the conversion refuses them
OPTION_KEYS = {
    "audiovisual_proj.": ": audiovisual_proj.* is the one projector of AV-HuBERT audio-visual "
                         "features (--single-projector-avhubert), which speechkit does not build"}
WRAP = {"audio": ["<audio>", "</audio>"], "video": ["<video>", "</video>"]}
PARTS = ("audio_encoder.", "video_encoder.", "audio_proj.", "video_proj.", "llm.")
_LORA_KEY = "llm.model.layers.{}.self_attn.lora_{}_{}.weight"


@dataclass
class ConversionReport:
    """What the conversion did: the spec written and what became of the source keys."""

    out: Path
    spec: CheckpointSpec
    mapped: int
    dropped: dict[str, int]  # reason -> number of keys


def read_state_dict(file: Path) -> dict[str, torch.Tensor]:
    """The released state dict (torch file read with weights_only=True, or safetensors);
    a Lightning `{"state_dict": {"model.…": …}}` wrapper is unwrapped."""
    check_weights_file(file, "--ckpt")
    obj = read_safetensors(file) if file.suffix == ".safetensors" else load_plain_pickle(file)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
        if all(k.startswith("model.") for k in obj):
            obj = {k[len("model."):]: v for k, v in obj.items()}
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SpeechkitError(f"{file}: not a state dict of tensors (Llama-AVSR saves one)")
    if not any(k.startswith(PARTS) for k in obj):
        raise SpeechkitError(f"{file}: no audio_encoder.*, video_encoder.*, *_proj.* or llm.* "
                             "keys; not a Llama-AVSR checkpoint")
    refuse_non_finite(obj, file)
    return obj


def convert_llama_avsr(ckpt: str | Path, out: str | Path, *, llm: str = DEFAULT_LLM,
                       lora_scaling: float = LORA_SCALING, video_norm_first: bool | None = None,
                       video_lora_scaling: float = avhubert.AVHUBERT_LORA_SCALING,
                       compression: str | None = None, ratios: dict[str, int] | None = None,
                       overwrite: bool = False) -> ConversionReport:
    """Convert a Llama-AVSR state dict into a speechkit checkpoint directory at `out`.
    `compression` and `ratios` (modality -> k) are the training run's --compression-mode and
    --downsample-ratio-{audio,video}: stacking reads k off the projector, averaging cannot."""
    if compression is not None and compression not in COMPRESSIONS:
        raise SpeechkitError(f"--compression-mode {compression!r}: use {' or '.join(COMPRESSIONS)}")
    out = Path(out)
    check_new_output(out, overwrite, (ckpt, llm))
    ledger = KeyLedger(read_state_dict(Path(ckpt)), str(ckpt), options=dict(OPTION_KEYS))
    llm_dir = resolve_source(llm, builtin_llms(), "LLM")
    check_new_output(out, overwrite, (llm_dir,))  # a built-in resolves to its folder in the cache
    with staged_directory(out) as tmp:
        encoders, bridge = [], BridgeSpec(type="llama-avsr")
        tensors: dict[str, torch.Tensor] = {}
        if ledger.under("audio_encoder."):
            encoders.append(_whisper(ledger, tmp / "audio_encoder"))
        if ledger.under("video_encoder."):
            config = avhubert.video_config(ledger, "video_encoder.", video_norm_first)
            state = avhubert.video_tensors(ledger, "video_encoder.", config, video_lora_scaling)
            _save_dir(tmp / "video_encoder", state, config.to_dict())
            encoders.append(EncoderSpec(modality="video", stream="video", type="avhubert",
                                        source="video_encoder", dim=config.dim))
        if not encoders:
            raise SpeechkitError(f"{ckpt}: no audio_encoder.* or video_encoder.* weights")
        lspec = _llm(ledger, llm_dir, tmp / "llm", lora_scaling)
        bridge.out_dim = lspec.hidden_size
        for enc in encoders:
            bridge.inputs[enc.modality], part = _projector(ledger, enc, lspec.hidden_size,
                                                           compression, (ratios or {}).get(enc.modality))
            tensors.update(part)
        refuse_leftover(ledger)
        spec = CheckpointSpec(encoders=encoders, bridge=bridge, llm=lspec,
                              prompt=PromptSpec(template="llama-avsr", wrap=dict(WRAP)),
                              added_tokens=list(ADDED_TOKENS),
                              decode=DecodeDefaults(beam_size=BEAM_SIZE,
                                                    max_new_tokens=MAX_NEW_TOKENS))
        save_weights(tmp / WEIGHTS_FILE, tensors)
        write_spec(tmp, spec)
    return ConversionReport(out, spec, len(ledger.used), ledger.dropped_summary())


def _save_dir(directory: Path, state: dict[str, torch.Tensor], config: dict) -> None:
    import json

    directory.mkdir(parents=True)
    save_weights(directory / "model.safetensors", state)
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


def _whisper(ledger: KeyLedger, directory: Path) -> EncoderSpec:
    """`audio_encoder.*` (transformers WhisperEncoder keys) as a Whisper model directory."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    p = "audio_encoder."
    if not ledger.has(p + "conv1.weight"):
        raise SpeechkitError(f"{ledger.source}: audio_encoder.* is not a Whisper encoder; "
                             "speechkit converts Llama-AVSR checkpoints with Whisper audio "
                             "(the released ones); WavLM and AV-HuBERT audio are not supported")
    conv1 = ledger.state[p + "conv1.weight"]
    layers = {k[len(p):].split(".")[1] for k in ledger.under(p + "layers.")}
    dim = conv1.shape[0]
    config = WhisperConfig(
        d_model=dim, encoder_layers=len(layers), encoder_attention_heads=max(1, dim // WHISPER_HEAD_DIM),
        encoder_ffn_dim=ledger.state[p + "layers.0.fc1.weight"].shape[0], num_mel_bins=conv1.shape[1],
        max_source_positions=ledger.state[p + "embed_positions.weight"].shape[0],
        decoder_layers=1, decoder_attention_heads=1, decoder_ffn_dim=4)
    state = {k[len(p):]: ledger.take(k) for k in ledger.under(p)}
    with torch.device("meta"):
        check_fits(WhisperEncoder(config).state_dict(), state, "Whisper audio encoder", ledger.source)
    directory.mkdir(parents=True)
    config.save_pretrained(directory)
    save_weights(directory / "model.safetensors", {f"model.encoder.{k}": v for k, v in state.items()})
    # Llama-AVSR's test transform layer-normalizes the waveform; it keeps int(n / 320) frames, 25 at least
    return EncoderSpec(modality="audio", stream="audio", type="whisper", source="audio_encoder",
                       dim=dim, wave_norm=True, frame_rounding="floor", min_frames=MIN_WHISPER_FRAMES)


def _projector(ledger: KeyLedger, enc: EncoderSpec, hidden: int, compression: str | None,
               ratio: int | None) -> tuple[BridgeInput, dict[str, torch.Tensor]]:
    """`<modality>_proj.{0,2}` (and `.3`, the --layernorm-projector LayerNorm) -> the bridge's
    projector. Stacking: the rate is the input width over the encoder's. Averaging: the input
    is one frame wide whatever the rate, so the rate must be given."""
    p = f"{enc.modality}_proj."
    first, last = ledger.take(p + "0.weight"), ledger.take(p + "2.weight")
    rate, rest = divmod(first.shape[1], enc.dim)
    if rest or rate < 1 or last.shape[0] != hidden:
        raise SpeechkitError(f"{ledger.source}: {p}0.weight {tuple(first.shape)} / {p}2.weight "
                             f"{tuple(last.shape)} do not fit a {enc.dim}-d encoder and a "
                             f"{hidden}-d LLM")
    flag = f"--downsample-ratio-{enc.modality}"
    if compression == "avg-pooling":
        if rate != 1:
            raise SpeechkitError(f"{ledger.source}: {p}0.weight takes {rate} stacked frames: the "
                                 "checkpoint was trained with --compression-mode stack; drop "
                                 "--compression-mode avg-pooling")
        if not ratio:
            raise SpeechkitError(f"{ledger.source}: a projector trained with --compression-mode "
                                 f"avg-pooling does not record its rate: pass {flag} K as in training")
        rate, pooling = ratio, "mean"
    else:
        pooling = "stack"
        if rate == 1 and compression is None:
            raise SpeechkitError(
                f"{ledger.source}: {p}0.weight takes one {enc.dim}-d frame per LLM token, as "
                "Llama-AVSR's --compression-mode avg-pooling gives whatever its rate: pass "
                f"--compression-mode avg-pooling {flag} K as in training (or --compression-mode "
                "stack for a run with rate 1)")
        if ratio and ratio != rate:
            raise SpeechkitError(f"{ledger.source}: {p}0.weight stacks {rate} frames, not "
                                 f"{flag} {ratio}")
    norm = ledger.has(p + "3.weight")  # --layernorm-projector: nn.LayerNorm after the MLP
    tensors = {f"bridge.proj.{enc.modality}.{i}.{kind}": ledger.take(f"{p}{i}.{kind}")
               for i in ((0, 2, 3) if norm else (0, 2)) for kind in ("weight", "bias")}
    extra = [k for k in ledger.under(p) if k not in ledger.used]
    if extra:
        raise SpeechkitError(f"{ledger.source}: unexpected projector keys {extra[:4]}; speechkit "
                             "knows Llama-AVSR's Linear-ReLU-Linear projector, with the LayerNorm "
                             "of --layernorm-projector")
    return BridgeInput(in_dim=enc.dim, rate=rate, pooling=pooling, hidden_dim=first.shape[0],
                       norm=norm), tensors


def _llm(ledger: KeyLedger, llm_dir: Path, directory: Path, scaling: float) -> LLMSpec:
    """`llm.*` as a transformers LLM directory (resized embeddings kept) plus a peft adapter."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if not ledger.has("llm.model.embed_tokens.weight"):
        raise SpeechkitError(f"{ledger.source}: no llm.model.embed_tokens.weight; speechkit "
                             "converts the full Llama-AVSR state dict (LLM weights included)")
    config = pretrained(AutoConfig, llm_dir)
    tokenizer = pretrained(AutoTokenizer, llm_dir)
    rows, hidden = ledger.state["llm.model.embed_tokens.weight"].shape
    if rows != len(tokenizer) + len(ADDED_TOKENS) or hidden != config.hidden_size:
        raise SpeechkitError(
            f"{ledger.source}: the LLM embeddings are {rows}x{hidden} but {llm_dir} has "
            f"{len(tokenizer)} tokens (+{len(ADDED_TOKENS)} added) and hidden size "
            f"{config.hidden_size}; pass the --llm the checkpoint was trained from")
    config.vocab_size = rows
    config.pad_token_id = len(tokenizer)  # <pad>, the first added token
    lora = _lora_tensors(ledger, config.num_hidden_layers)
    state = {k[len("llm."):]: ledger.take(k) for k in ledger.under("llm.")
             if "lora_" not in k and not k.endswith("rotary_emb.inv_freq")}
    for k in ledger.under("llm."):
        if k.endswith("rotary_emb.inv_freq"):
            ledger.drop(k, "rotary frequencies (recomputed from the LLM config)")
    if getattr(config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    expected = {k: v for k, v in model.state_dict().items()
                if not (config.tie_word_embeddings and k == "lm_head.weight")}
    check_fits(expected, state, "LLM", ledger.source)
    directory.mkdir(parents=True)
    config.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    if (llm_dir / "generation_config.json").is_file():
        shutil.copy(llm_dir / "generation_config.json", directory / "generation_config.json")
    save_weights(directory / "model.safetensors", state)
    inner = next(iter(lora.values())).shape[0] if lora else 0
    spec = LLMSpec(source="llm", hidden_size=hidden, vocab_size=rows)
    if lora:
        spec.lora = LoraSpec(r=inner, alpha=scaling * inner, target_modules=sorted(
            set(LORA_TARGETS.values())), scaling=scaling)
        _write_adapter(directory.parent / ADAPTER_DIR, lora, spec.lora)
    return spec


def _lora_tensors(ledger: KeyLedger, layers: int) -> dict[str, torch.Tensor]:
    """Llama-AVSR's LoRA keys as peft adapter keys (down -> lora_A, up -> lora_B)."""
    out: dict[str, torch.Tensor] = {}
    present = [k for k in ledger.under("llm.") if "lora_" in k]
    if not present:
        return out
    for i in range(layers):
        for which, module in LORA_TARGETS.items():
            for part, peft in (("down", "lora_A"), ("up", "lora_B")):
                key = _LORA_KEY.format(i, part, which)
                out[f"base_model.model.model.layers.{i}.self_attn.{module}.{peft}.weight"] = (
                    ledger.take(key))
    return out


def _write_adapter(directory: Path, tensors: dict[str, torch.Tensor], lora: LoraSpec) -> None:
    from peft import LoraConfig

    LoraConfig(r=lora.r, lora_alpha=lora.alpha, target_modules=lora.target_modules,
               lora_dropout=0.0, bias="none", task_type="CAUSAL_LM").save_pretrained(str(directory))
    save_weights(directory / "adapter_model.safetensors", tensors)

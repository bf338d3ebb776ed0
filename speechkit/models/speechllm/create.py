"""Write a new (untrained) checkpoint from components: random bridge, fresh LoRA adapter."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from speechkit.errors import SpeechkitError
from speechkit.models.speechllm.bridges import build_bridge
from speechkit.models.speechllm.checkpoint import (
    ADAPTER_DIR,
    SPEC_FILE,
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
from speechkit.models.speechllm.encoders import (
    ENCODERS,
    encoder_config,
    encoder_dim,
    encoder_directory,
    encoder_type,
)
from speechkit.models.speechllm.llm import llm_config, llm_directory, load_tokenizer
from speechkit.models.speechllm.output import check_new_output, staged_directory
from speechkit.models.speechllm.sources import RANDOM, builtin_encoders, builtin_llms, resolve_source

NEW_SEED = 0  # bridge and LoRA initialisation: the same checkpoint every time
DEFAULT_RATE = 4  # 50 Hz Whisper frames -> 12.5 Hz LLM tokens (Llama-AVSR audio rate 3-4)
LORA_TARGETS = ["q_proj", "v_proj"]  # SALMONN and Llama-AVSR adapt q and v


def new_checkpoint(out: str | Path, *, audio_encoder: str = "whisper-base",
                   encoder_kind: str | None = None, bridge: str = "linear",
                   llm: str = "smollm2-135m", rate: int = DEFAULT_RATE, pooling: str = "stack",
                   hidden_dim: int = 0, lora_r: int = 8, lora_alpha: float = 32.0,
                   lora_targets: list[str] | None = None, template: str | None = None,
                   layer_weights: bool = False, added_tokens: list[str] | None = None,
                   encoder_config: dict | None = None, llm_config_dict: dict | None = None,
                   tokenizer: str | None = None, overwrite: bool = False) -> CheckpointSpec:
    """Assemble and save a checkpoint dir; an existing `out` is refused unless `overwrite`."""
    out = Path(out)
    check_new_output(out, overwrite, (audio_encoder, llm, tokenizer))
    audio_encoder = _checked(audio_encoder, builtin_encoders(), "encoder")
    llm = _checked(llm, builtin_llms(), "LLM")
    tokenizer = _checked(tokenizer, builtin_llms(), "tokenizer") if tokenizer else None
    kind = encoder_kind or (encoder_config or {}).get("model_type") or encoder_type(audio_encoder)
    if kind not in ENCODERS:
        raise SpeechkitError(f"audio encoder {audio_encoder} is a {kind!r} model; supported: "
                             f"{', '.join(ENCODERS)}")
    enc = EncoderSpec(modality="audio", type=kind, source=audio_encoder,
                      layer_weights=layer_weights, config=encoder_config)
    enc.dim = encoder_dim(enc)
    lspec = LLMSpec(source=llm, config=llm_config_dict, tokenizer=tokenizer)
    cfg = llm_config(lspec)
    lspec.hidden_size = int(cfg.hidden_size)
    tok = load_tokenizer(lspec, list(added_tokens or []))
    lspec.vocab_size = len(tok)
    targets = lora_targets or LORA_TARGETS
    lspec.lora = LoraSpec(r=lora_r, alpha=lora_alpha, target_modules=targets) if lora_r else None
    spec = CheckpointSpec(
        encoders=[enc],
        bridge=BridgeSpec(type=bridge, out_dim=lspec.hidden_size, inputs={"audio": BridgeInput(
            in_dim=enc.dim, rate=rate, pooling=pooling, hidden_dim=hidden_dim)}),
        llm=lspec,
        prompt=PromptSpec(template=template or ("chat" if tok.chat_template else "salmonn")),
        added_tokens=list(added_tokens or []),
        decode=DecodeDefaults())
    spec.validate(str(out / SPEC_FILE))
    with staged_directory(out) as tmp:
        _write_parts(tmp, spec, cfg)
        write_spec(tmp, spec)
    return spec


def _checked(source: str, builtins: dict, what: str) -> str:
    """A local directory source made absolute (the checkpoint records where it is), after
    its custom-code check; every source is checked before anything loads."""
    if source == RANDOM:
        return source
    directory = resolve_source(source, builtins, what)
    local = source not in builtins and Path(source).expanduser().is_dir()
    return str(directory.resolve()) if local else source


def _write_parts(tmp: Path, spec: CheckpointSpec, cfg: object) -> None:
    torch.manual_seed(NEW_SEED)
    tensors = {f"bridge.{k}": v for k, v in build_bridge(spec.bridge).state_dict().items()}
    for enc in spec.encoders:
        if enc.layer_weights:
            n = _encoder_layers(enc)
            tensors[f"encoders.{enc.modality}.layer_weights"] = torch.zeros(n + 1)  # uniform
    if spec.added_tokens:
        std = getattr(cfg, "initializer_range", 0.02)  # the LLM's own init scale
        tensors["llm.added_embeddings"] = torch.randn(len(spec.added_tokens),
                                                      spec.llm.hidden_size) * std
    save_weights(tmp / WEIGHTS_FILE, tensors)
    if spec.llm.lora is not None:
        _write_lora(tmp / ADAPTER_DIR, spec, cfg)


def _encoder_layers(enc: EncoderSpec) -> int:
    config = encoder_config(enc, encoder_directory(enc))
    return int(getattr(config, "encoder_layers", None) or config.num_hidden_layers)


def _write_lora(adapter_dir: Path, spec: CheckpointSpec, cfg: object) -> None:
    """A fresh peft adapter (B = 0: the untrained LLM answers as before) without LLM weights."""
    from accelerate import init_empty_weights
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForCausalLM

    lora = spec.llm.lora
    assert lora is not None
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(cfg, trust_remote_code=False)
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, target_modules=lora.target_modules,
                        lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as e:
        raise SpeechkitError(f"LoRA targets {lora.target_modules} do not match LLM "
                             f"{spec.llm.source}: {str(e).splitlines()[0]}") from None
    for module in peft_model.modules():
        if isinstance(module, LoraLayer):
            for name in module.lora_A:
                module.lora_A[name].to_empty(device="cpu")
                module.lora_B[name].to_empty(device="cpu")
                module.reset_lora_parameters(name, init_lora_weights=True)
    peft_model.save_pretrained(str(adapter_dir))
    if llm_directory(spec.llm) is not None:  # record the base model as peft does, for humans
        meta = json.loads((adapter_dir / "adapter_config.json").read_text())
        meta["base_model_name_or_path"] = spec.llm.source
        (adapter_dir / "adapter_config.json").write_text(json.dumps(meta, indent=2) + "\n")

"""Write a converted WavLLM: check the mapping is complete, then the checkpoint directory with
its Whisper, WavLM and LLM parts, the bridge, the prompt-aware LoRA and the spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from speechkit.errors import SpeechkitError
from speechkit.models.safe_load import pretrained
from speechkit.models.speechllm.bridges import build_bridge
from speechkit.models.speechllm.checkpoint import (
    WEIGHTS_FILE,
    save_weights,
    write_spec,
)
from speechkit.models.speechllm.importers.keys import key_families
from speechkit.models.speechllm.importers.wavllm import (
    RMS_EPS,
    TOKENIZER_FILES,
    Mapped,
    build_spec,
    copy_files,
    load_configs,
    map_wavllm,
    read_wavllm,
)
from speechkit.models.speechllm.output import check_new_output, staged_directory

PREPROCESSOR = ("preprocessor_config.json",)
PART_WEIGHTS = "model.safetensors"


def write_checkpoint(ckpt: Path, out: Path, whisper: Path, wavlm: Path, llm: Path,
                     overwrite: bool) -> dict[str, Any]:
    """Convert `ckpt` into `out` (refused when anything is unmapped or missing)."""
    from transformers import AutoTokenizer

    check_new_output(out, overwrite, (ckpt, whisper, wavlm, llm))
    configs = load_configs(whisper, wavlm, llm)
    cfg = configs["llm"]
    heads = int(cfg.num_attention_heads)
    if int(getattr(cfg, "num_key_value_heads", None) or heads) != heads:
        raise SpeechkitError(f"--llm {llm}: WavLLM's Llama has as many key/value heads as query "
                             "heads; give the Llama-2-7B(-chat) config")
    state = read_wavllm(ckpt)
    mapped = map_wavllm(state, heads)
    if mapped.unknown:
        raise SpeechkitError(f"{ckpt}: {len(mapped.unknown)} keys have no place in a WavLLM "
                             f"checkpoint (key families {', '.join(key_families(mapped.unknown))}; "
                             f"{mapped.unknown[:4]}); conversion refused: speechkit converts the "
                             "released model (use_wavlm, LoRA on wq/wk/wv/wo with the prompt gate); "
                             "other ModelArgs options (lora_moe, use_llama_adapter, add_bias, "
                             "add_scale) save weights it does not build")
    rows = mapped.llm.get("model.embed_tokens.weight")
    if rows is not None:
        cfg.vocab_size = int(rows.shape[0])
    cfg.rms_norm_eps = RMS_EPS
    cfg.tie_word_embeddings = False
    tokenizer = pretrained(AutoTokenizer, llm)
    spec = build_spec(mapped, configs, len(tokenizer))
    _check_complete(mapped, configs, spec)
    with staged_directory(out) as tmp:
        _write_parts(tmp, mapped, configs, {"whisper": whisper, "wavlm": wavlm, "llm": llm})
        save_weights(tmp / WEIGHTS_FILE, mapped.bridge)
        save_weights(tmp / spec.llm.prompt_lora.path, mapped.lora)  # type: ignore[union-attr]
        write_spec(tmp, spec)
    return {"out": str(out), "keys": len(state), "ignored": dict(mapped.ignored),
            "converted": {name: len(getattr(mapped, name)) for name in
                          ("whisper", "wavlm", "llm", "bridge", "lora")}}


def _expected(configs: dict[str, Any]) -> dict[str, dict[str, tuple[int, ...]]]:
    """Key -> shape of each transformers part, built without memory (meta tensors)."""
    from accelerate import init_empty_weights
    from transformers import LlamaForCausalLM, WavLMModel
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    with init_empty_weights():
        parts = {"whisper": WhisperEncoder(configs["whisper"]), "wavlm": WavLMModel(configs["wavlm"]),
                 "llm": LlamaForCausalLM(configs["llm"])}
    prefix = {"whisper": "model.encoder.", "wavlm": "", "llm": ""}
    return {name: {prefix[name] + k: tuple(v.shape) for k, v in m.state_dict().items()}
            for name, m in parts.items()}


def _check_complete(mapped: Mapped, configs: dict[str, Any], spec: Any) -> None:
    """Every weight each part needs is present with its shape; otherwise one refusal."""
    from speechkit.models.speechllm.prompt_lora import GATE_PREFIX

    want = _expected(configs)
    bridge = {f"bridge.{k}": tuple(v.shape) for k, v in build_bridge(spec.bridge).state_dict().items()}
    bridge["encoders.wavlm.layer_weights"] = (int(configs["wavlm"].num_hidden_layers) + 1,)
    want["bridge"] = bridge
    lora = {k: tuple(v.shape) for k, v in mapped.lora.items() if not k.startswith(GATE_PREFIX)}
    layers = int(configs["llm"].num_hidden_layers)
    need = {f"model.layers.{i}.self_attn.{p}.lora_{ab}.weight" for i in range(layers)
            for p in spec.llm.prompt_lora.target_modules for ab in "AB"}
    problems = [f"lora: missing {sorted(need - set(lora))[:3]}"] if need - set(lora) else []
    for name, shapes in want.items():
        have = getattr(mapped, name)
        missing = sorted(set(shapes) - set(have))
        extra = sorted(set(have) - set(shapes))
        wrong = [f"{k} {tuple(have[k].shape)} vs {s}" for k, s in shapes.items()
                 if k in have and tuple(have[k].shape) != s]
        if missing or extra or wrong:
            problems.append(f"{name}: missing {missing[:3]}, unexpected {extra[:3]}, "
                            f"shape (file vs config) {wrong[:3]}")
    if problems:
        raise SpeechkitError("the WavLLM checkpoint does not fit the given configs ("
                             + "; ".join(problems) + "); incomplete mapping refused")


def _write_parts(tmp: Path, mapped: Mapped, configs: dict[str, Any], dirs: dict[str, Path]) -> None:
    """whisper/, wavlm/ and llm/: config, weights, and the preprocessor or tokenizer files."""
    for name in ("whisper", "wavlm", "llm"):
        part = tmp / name
        part.mkdir()
        configs[name].save_pretrained(str(part))
        tensors: dict[str, torch.Tensor] = getattr(mapped, name)
        save_weights(part / PART_WEIGHTS, tensors)
        copy_files(dirs[name], part, TOKENIZER_FILES if name == "llm" else PREPROCESSOR)

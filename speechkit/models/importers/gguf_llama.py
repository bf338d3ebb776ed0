"""GGUF causal LMs (llama.cpp files) -> a float32 transformers directory."""

from __future__ import annotations

from pathlib import Path


def convert_gguf_causal_lm(gguf_file: Path, out: Path) -> None:
    """Dequantize a GGUF causal LM and its tokenizer into `out` (float32 safetensors)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from speechkit.models.safe_load import pretrained

    gguf_model = pretrained(AutoModelForCausalLM, gguf_file.parent, gguf_file=gguf_file.name,
                            dtype=torch.float32)
    tokenizer = pretrained(AutoTokenizer, gguf_file.parent, gguf_file=gguf_file.name)
    # save_pretrained refuses a GGUF-loaded model: rebuild it from its config instead.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the saved copy is plain float32, not GGUF
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, trust_remote_code=False)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config = gguf_model.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)

"""Load a transformers audio-text-to-text directory: its family from config.json, the family's
own processor, weights from safetensors only (no remote code, ever), 4-bit NF4 on a GPU."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from speechkit.errors import SpeechkitError
from speechkit.hashing import MODEL_SUFFIXES, dir_sha256
from speechkit.models.hf_audio.family import Family
from speechkit.models.safe_load import pretrained, refuse_non_finite

QUANTS = ("4bit", "8bit", "bf16", "fp16", "fp32")
FLOAT_QUANTS = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}  # torch dtype names
GPU_COMPUTE = "bfloat16"  # 4-bit compute dtype on a GPU (QLoRA recipe)
CPU_COMPUTE = "float32"  # CPUs without bf16 units are far slower in bf16


def model_type_of(path: Path) -> str | None:
    """config.json's `model_type` of a directory, or None when it has no readable one."""
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return cfg.get("model_type") if isinstance(cfg, dict) else None


def family_of(path: str | Path) -> Family | None:
    """The family a model directory belongs to (None: not an audio-text-to-text model)."""
    from speechkit.models.hf_audio import FAMILIES

    path = Path(path).expanduser()
    return FAMILIES.get(model_type_of(path) or "") if path.is_dir() else None


DTYPE_QUANTS = {"float32": "fp32", "fp32": "fp32", "bfloat16": "bf16", "bf16": "bf16",
                "float16": "fp16", "fp16": "fp16"}  # --dtype asks for a float type: its --quant


def default_quant(device: str) -> str:
    """4-bit NF4 on a GPU (a 7B model fits 8 GB), float32 on a CPU."""
    return "4bit" if device.startswith("cuda") else "fp32"


def chosen_quant(quant: str | None, dtype: str, device: str) -> str:
    """What the weights run as: --quant, else a float --dtype, else the device's default."""
    if dtype == "int8" and quant is None:
        raise SpeechkitError("--dtype int8 is Whisper's CPU quantization; audio LLMs take "
                             "--quant 4bit or 8bit")
    return quant or DTYPE_QUANTS.get(dtype) or default_quant(device)


def quantization(quant: str, device: str, family: Family) -> tuple[Any, Any]:
    """The bitsandbytes config (None for float types) and the float dtype to load in; the
    audio encoder, projector and output layer stay in float (the family's `keep_float`)."""
    import torch
    from transformers import BitsAndBytesConfig

    if quant not in QUANTS:
        raise SpeechkitError(f"unknown --quant {quant!r}; use one of {', '.join(QUANTS)}")
    compute = getattr(torch, GPU_COMPUTE if device.startswith("cuda") else CPU_COMPUTE)
    if quant == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
            llm_int8_skip_modules=list(family.keep_float)), compute
    if quant == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True,
                                  llm_int8_skip_modules=list(family.keep_float)), compute
    return None, getattr(torch, FLOAT_QUANTS[quant])


def load_hf_audio(name: str, device: str = "cpu", quant: str | None = None,
                  dtype: str = "auto") -> Any:
    """Load the directory `name` as its family's model, with its processor and weights hash."""
    import transformers
    from transformers import AutoProcessor

    from speechkit.models.hf_audio.model import AudioTextModel
    from speechkit.models.speechllm.llm import batch_invariant_4bit_on_cpu

    path = Path(name).expanduser()
    family = family_of(path)
    if family is None:
        raise SpeechkitError(f"{name}: not an audio-text-to-text model speechkit runs (config.json "
                             f"model_type {model_type_of(path)!r}); see `speechkit models`")
    if family.needs and importlib.util.find_spec(family.needs[0]) is None:
        raise SpeechkitError(f"{name} is a {family.title} model, whose processor needs "
                             f"{family.needs[0]}: {family.needs[1]}")
    quant = chosen_quant(quant, dtype, device)
    qconfig, torch_dtype = quantization(quant, device, family)
    sha256 = dir_sha256(path, MODEL_SUFFIXES)  # before loading: what was read is what is named
    processor = pretrained(AutoProcessor, path)
    cls = getattr(transformers, family.model_class)
    try:
        model = pretrained(cls, path, dtype=torch_dtype, quantization_config=qconfig,
                           device_map={"": device}, use_safetensors=True)
    except (ImportError, RuntimeError) as e:
        raise SpeechkitError(f"could not load {name} with --quant {quant} on {device}: "
                             f"{str(e).splitlines()[0]}") from None
    if quant == "4bit" and not device.startswith("cuda"):
        batch_invariant_4bit_on_cpu(model)
    model.eval().requires_grad_(False)
    refuse_non_finite(dict(model.named_parameters()), name)
    return AudioTextModel(model, processor, family, name=name, device=device, quant=quant,
                          sha256=sha256)

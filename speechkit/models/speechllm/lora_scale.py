"""LoRA scaling override at inference: SALMONN's activation tuning.

SALMONN's paper finds that lowering the LoRA scaling factor (alpha / r: 32 / 8 = 4 as trained)
at inference brings back abilities that instruction tuning on ASR/captioning suppressed, such
as following an unseen instruction. `--lora-scale S` sets every LoRA layer's scaling to S when
the LLM loads (before any merge); results record the scaling used.
"""

from __future__ import annotations

from dataclasses import replace

from speechkit.errors import SpeechkitError
from speechkit.models.speechllm.checkpoint import LoraSpec


def scaled_lora(lora: LoraSpec | None, scale: float | None, where: str) -> LoraSpec | None:
    """The checkpoint's LoRA spec with the scaling override applied (None: unchanged)."""
    if scale is None:
        return lora
    if lora is None:
        raise SpeechkitError(f"--lora-scale {scale:g}: {where} has no LoRA adapter (llm.lora); "
                             "drop --lora-scale")
    if not scale > 0:
        raise SpeechkitError(f"--lora-scale must be > 0, got {scale:g}; the trained scaling is "
                             f"{lora_scaling(lora):g}")
    return replace(lora, scaling=float(scale))


def lora_scaling(lora: LoraSpec | None) -> float | None:
    """The scaling a LoRA layer applies: the spec's override, else alpha / r."""
    if lora is None:
        return None
    return lora.scaling if lora.scaling is not None else lora.alpha / lora.r

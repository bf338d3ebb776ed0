"""Batched generation from spliced embeddings: left padding, greedy or beam, deterministic."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from speechkit.models.speechllm.beam_4_28 import beam_search_4_28

BEAM_4_28 = "transformers-4.28"  # GenerationSettings.beam_rules of SALMONN checkpoints
YES_VARIANTS = ("yes", "Yes", "YES", " yes", " Yes", " YES")
NO_VARIANTS = ("no", "No", "NO", " no", " No", " NO")


@dataclass(frozen=True)
class GenerationSettings:
    """Every decoding setting; recorded with the results."""

    beam_size: int = 1
    max_new_tokens: int = 200
    stop: tuple[str, ...] = ()
    do_sample: bool = False  # always: deterministic decoding (Llama-AVSR left sampling on)
    length_penalty: float = 1.0
    padding_side: str = "left"
    # Beam search rules: "transformers" (the installed one's generate) or "transformers-4.28"
    # (SALMONN's pinned version, which scores and stops differently: see beam_4_28.py)
    beam_rules: str = "transformers"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GenerationOutput:
    """Generated ids per item (prompt excluded, EOS cut) and first-step logits when asked."""

    tokens: list[list[int]]
    first_logits: torch.Tensor | None = None  # [B, V], float32
    extras: dict[str, Any] = field(default_factory=dict)


def left_pad(embeds: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack [L_i, H] sequences into [B, L, H] padded on the left, plus the attention mask."""
    longest = max(e.shape[0] for e in embeds)
    x = embeds[0].new_zeros(len(embeds), longest, embeds[0].shape[-1])
    mask = torch.zeros(len(embeds), longest, dtype=torch.long, device=x.device)
    for i, e in enumerate(embeds):
        x[i, longest - e.shape[0]:] = e
        mask[i, longest - e.shape[0]:] = 1
    return x, mask


def eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """EOS ids from the tokenizer and the model's generation config."""
    ids = {tokenizer.eos_token_id}
    cfg_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(cfg_eos if isinstance(cfg_eos, list) else [cfg_eos])
    return sorted(i for i in ids if i is not None)


@torch.inference_mode()
def generate(model: Any, tokenizer: Any, embeds: list[torch.Tensor],
             settings: GenerationSettings, first_logits: bool = False) -> GenerationOutput:
    """Decode a batch of prompt embeddings; HF derives position ids from the left-padded mask."""
    from transformers import GenerationConfig

    x, mask = left_pad(embeds)
    eos = eos_ids(model, tokenizer)
    if settings.beam_size > 1 and settings.beam_rules == BEAM_4_28:
        tokens, logits = beam_search_4_28(model, x, mask, settings.beam_size,
                                          settings.max_new_tokens, eos, settings.length_penalty)
        return GenerationOutput(tokens=tokens, first_logits=logits if first_logits else None)
    config = GenerationConfig(
        max_new_tokens=settings.max_new_tokens, num_beams=settings.beam_size,
        do_sample=False, length_penalty=settings.length_penalty,
        # early_stopping left at transformers' default (False), as SALMONN and Llama-AVSR call
        # generate: True ends beam search once num_beams hypotheses are done (17 vs 60 tokens).
        early_stopping=False,
        eos_token_id=eos, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, stop_strings=list(settings.stop) or None,
        return_dict_in_generate=True, output_logits=first_logits)
    out = model.generate(inputs_embeds=x, attention_mask=mask, generation_config=config,
                         tokenizer=tokenizer if settings.stop else None)
    tokens = []
    for row in out.sequences.tolist():
        cut = next((j for j, t in enumerate(row) if t in eos), len(row))
        tokens.append(row[:cut])
    logits = None
    if first_logits:
        # Step 0 of beam search holds num_beams identical rows per item: keep the first.
        logits = out.logits[0][::settings.beam_size].float()
    return GenerationOutput(tokens=tokens, first_logits=logits)


def variant_ids(tokenizer: Any, variants: tuple[str, ...]) -> list[int]:
    """First token id of each spelling variant, deduplicated."""
    ids = {tokenizer(v, add_special_tokens=False)["input_ids"][0] for v in variants}
    return sorted(ids)


def yes_probabilities(logits: torch.Tensor, yes: list[int],
                      no: list[int]) -> list[dict[str, float]]:
    """P(yes) summed over yes variants, and P(yes) normalized against the no variants."""
    probs = torch.softmax(logits.float(), dim=-1)
    p_yes = probs[:, yes].sum(-1)
    p_no = probs[:, no].sum(-1)
    ratio = p_yes / (p_yes + p_no).clamp(min=1e-30)
    return [{"p_yes": float(a), "p_yes_vs_no": float(b)} for a, b in zip(p_yes, ratio, strict=True)]


def stop_text(text: str, stop: tuple[str, ...]) -> str:
    """Cut the text at the first stop string."""
    for s in stop:
        if s and s in text:
            text = text[:text.index(s)]
    return text

"""Random weights for the official sides of `benchmarks/parity.py` (plain torch: imported by
the official code's Python, beside no speechkit)."""

from __future__ import annotations

from collections import Counter

import torch

EOS_LIKE = 1.02  # the EOS row: this times the row of the token the random LLM writes most


def randomize(params) -> None:
    """Every tensor random: constants (norm ones, zero LoRA halves, biases) get noise too."""
    with torch.no_grad():
        for p in params:
            spread = float(p.std()) if p.numel() > 1 else 0.0
            p.add_(torch.randn_like(p) * (0.5 * spread if spread else 0.1))


@torch.inference_mode()
def eos_prone(llm, eos: int, seed: int = 0) -> int:
    """Make the random LLM end its answers: its output row for EOS becomes a scaled copy of the
    row of the token it writes most (greedy from random embeddings), so EOS wins wherever that
    token would; answers then end before the token budget, beams at different steps (which
    tells beam search's stopping rules apart). Returns that token."""
    gen = torch.Generator().manual_seed(seed)
    hidden = llm.get_input_embeddings().weight.shape[1]
    written = Counter()
    for _ in range(3):
        embeds = torch.randn(1, 8, hidden, generator=gen) * 0.5
        out = llm.generate(inputs_embeds=embeds, attention_mask=torch.ones(1, 8, dtype=torch.long),
                           max_new_tokens=40, do_sample=False, num_beams=1, eos_token_id=None,
                           pad_token_id=0)
        written.update(out[0].tolist())
    written.pop(eos, None)
    token = written.most_common(1)[0][0]
    head = llm.get_output_embeddings().weight
    head[eos] = EOS_LIKE * head[token]
    return token

"""Random weights for the official sides of `benchmarks/parity.py` (plain torch: imported by
the official code's Python, beside no speechkit)."""

from __future__ import annotations

import torch

EOS_RATE = 0.05  # of the random LLM's steps on which EOS is made to win


def randomize(params) -> None:
    """Every tensor random: constants (norm ones, zero LoRA halves, biases) get noise too.
    Zero biases get less (0.02, BERT's init scale): larger, they would drown what the weights
    carry from the audio, and every clip would give the same answer."""
    with torch.no_grad():
        for p in params:
            spread = float(p.std()) if p.numel() > 1 else 0.0
            if spread:
                p.add_(torch.randn_like(p) * 0.5 * spread)
            else:
                p.add_(torch.randn_like(p) * (0.02 if p.dim() == 1 and not p.any() else 0.1))


@torch.inference_mode()
def eos_prone(llm, eos: int, seed: int = 0) -> float:
    """Make the random LLM end its answers: its output row for EOS becomes the mean direction
    of its last hidden states, scaled so that EOS wins on about EOS_RATE of the steps of
    greedy runs from random embeddings. Answers then end before the token budget, beams at
    different steps (which tells beam search's stopping rules apart). Returns the scale."""
    gen = torch.Generator().manual_seed(seed)
    hidden = llm.get_input_embeddings().weight.shape[1]
    states = []
    for _ in range(4):
        embeds = torch.randn(1, 8, hidden, generator=gen) * 0.5
        ids = llm.generate(inputs_embeds=embeds, attention_mask=torch.ones(1, 8, dtype=torch.long),
                           max_new_tokens=40, do_sample=False, num_beams=1, pad_token_id=0)
        ids = ids[:, -40:]  # the generated ids (older transformers put one BOS before them)
        x = torch.cat([embeds, llm.get_input_embeddings()(ids)], dim=1)
        states.append(llm(inputs_embeds=x, output_hidden_states=True).hidden_states[-1][0])
    h = torch.cat(states)
    head = llm.get_output_embeddings().weight
    scale, direction = eos_row(h, head)
    head[eos] = scale * direction
    return scale


def eos_row(h: torch.Tensor, head: torch.Tensor) -> tuple[float, torch.Tensor]:
    """The scale and direction of an EOS output row that wins on about EOS_RATE of the steps
    whose last hidden states are `h` [N, H] (the mean direction of those states)."""
    direction = h.mean(0)
    along = h @ direction
    best = (h @ head.T).max(-1).values
    keep = along > 0
    return float(torch.quantile(best[keep] / along[keep], EOS_RATE)), direction

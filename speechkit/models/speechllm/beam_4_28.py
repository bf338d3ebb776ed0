"""Beam search with the rules of transformers 4.28, the version SALMONN's code pins.

Newer transformers (4.36 on) changed how beam search from `inputs_embeds` counts a hypothesis'
length; no setting brings the old rules back, so SALMONN checkpoints decode with this loop:
- 4.28 starts `generate(inputs_embeds=...)` from one placeholder id, and every length counts
  it: a hypothesis ending in EOS scores sum / (1 + its tokens), EOS not counted; one cut at
  max_new_tokens scores sum / (1 + max_new_tokens);
- the search stops when the worst of `beams` finished hypotheses scores at least the best of
  this step's candidates (EOS ones too) over 1 + the tokens so far + 1;
- finished scores are Python floats (float64) of the float32 sums, the list of finished
  hypotheses drops its worst (the earliest among equals) past `beams`, and the best is the
  last added among equals.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch

PLACEHOLDER_IDS = 1  # the id 4.28's generate starts from when given inputs_embeds
NEVER = -1.0e9  # 4.28's start score of beams 1.. (only beam 0 is searched at step 0)


@dataclass
class Finished:
    """One item's finished hypotheses: (score, ids) in the order they were added."""

    beams: int
    length_penalty: float
    hyps: list[tuple[float, list[int]]] = field(default_factory=list)
    done: bool = False

    def add(self, ids: list[int], total: float) -> None:
        score = total / (PLACEHOLDER_IDS + len(ids)) ** self.length_penalty
        if len(self.hyps) < self.beams or score > self.worst():
            self.hyps.append((score, ids))
            if len(self.hyps) > self.beams:
                del self.hyps[min(range(len(self.hyps)), key=lambda i: self.hyps[i][0])]

    def worst(self) -> float:
        return min(s for s, _ in self.hyps)

    def stop(self, best_total: float, n_tokens: int) -> bool:
        """Whether no candidate can beat the worst kept hypothesis (4.28's heuristic)."""
        length = PLACEHOLDER_IDS + n_tokens
        self.done = self.done or (len(self.hyps) >= self.beams
                                  and self.worst() >= best_total / length ** self.length_penalty)
        return self.done

    def best(self) -> list[int]:
        return max(enumerate(self.hyps), key=lambda h: (h[1][0], h[0]))[1][1]


@torch.inference_mode()
def beam_search_4_28(model: Any, x: torch.Tensor, mask: torch.Tensor, beams: int,
                     max_new_tokens: int, eos: list[int],
                     length_penalty: float = 1.0) -> tuple[list[list[int]], torch.Tensor]:
    """Generated ids (EOS cut) per item of the left-padded prompt embeddings `x` [B, L, H],
    and the first step's logits [B, V] (float32)."""
    from transformers import DynamicCache

    n_items = x.shape[0]
    x, mask = x.repeat_interleave(beams, 0), mask.repeat_interleave(beams, 0)
    totals = torch.zeros(n_items, beams, device=x.device)
    totals[:, 1:] = NEVER
    ids: list[list[int]] = [[] for _ in range(n_items * beams)]
    finished = [Finished(beams, length_penalty) for _ in range(n_items)]
    cache, args = DynamicCache(), _forward_arguments(model)
    out = model(inputs_embeds=x, attention_mask=mask, position_ids=_positions(mask),
                use_cache=True, **{args["cache"]: cache, args["keep"]: 1})
    first_logits = out.logits[::beams, -1].float()
    for step in range(max_new_tokens):
        logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        scores, index = (logp + totals.view(-1, 1)).view(n_items, -1).topk(2 * beams, dim=1)
        rows, tokens, totals = _next_beams(finished, ids, scores.cpu(), index.cpu(),
                                           logp.shape[-1], beams, eos, step)
        totals = totals.to(x.device)
        ids = [ids[r] + [t] for r, t in zip(rows, tokens, strict=True)]
        if all(f.done for f in finished) or step + 1 == max_new_tokens:
            break
        cache.reorder_cache(torch.tensor(rows, device=x.device))
        mask = torch.cat([mask[rows], mask.new_ones(len(rows), 1)], dim=1)
        step_in = model.get_input_embeddings()(torch.tensor(tokens, device=x.device)[:, None])
        out = model(inputs_embeds=step_in, attention_mask=mask, position_ids=_positions(mask)[:, -1:],
                    use_cache=True, **{args["cache"]: cache, args["keep"]: 1})
    for item, done in enumerate(finished):
        if not done.done:  # cut at max_new_tokens: every running beam is a candidate
            for b in range(beams):
                done.add(ids[item * beams + b], float(totals[item, b]))
    return [f.best() for f in finished], first_logits


def _next_beams(finished: list[Finished], ids: list[list[int]], scores: torch.Tensor,
                index: torch.Tensor, vocab: int, beams: int, eos: list[int],
                step: int) -> tuple[list[int], list[int], torch.Tensor]:
    """Per item, the first `beams` candidates that are not EOS go on; an EOS among the first
    `beams` candidates finishes its hypothesis. A finished item keeps beam 0 (4.28 pads it).
    On the CPU: one copy a step, not one a candidate."""
    rows, tokens, totals = [], [], torch.zeros(len(finished), beams)
    for item, done in enumerate(finished):
        kept = []
        if not done.done:
            for rank in range(index.shape[1]):
                row = item * beams + int(index[item, rank]) // vocab
                token, total = int(index[item, rank]) % vocab, scores[item, rank]
                if token in eos:
                    if rank < beams:
                        done.add(ids[row], total.item())
                else:
                    kept.append((row, token, total))
                if len(kept) == beams:
                    break
            done.stop(scores[item, 0].item(), step + 1)
        kept = kept if len(kept) == beams else [(item * beams, eos[0], scores.new_zeros(()))] * beams
        for b, (row, token, total) in enumerate(kept):
            rows.append(row)
            tokens.append(token)
            totals[item, b] = total
    return rows, tokens, totals


def _forward_arguments(model: Any) -> dict[str, str]:
    """The names the LLM's forward gives the KV cache (`cache` in transformers 5, before it
    `past_key_values`) and the number of last positions to compute logits for (`logits_to_keep`,
    before 4.50 `num_logits_to_keep`): only the last one is needed, not the prompt's."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = inspect.signature(type(base).forward).parameters
    return {"cache": "cache" if "cache" in names else "past_key_values",
            "keep": "logits_to_keep" if "logits_to_keep" in names else "num_logits_to_keep"}


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip the left padding (as generate derives them from the mask)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)

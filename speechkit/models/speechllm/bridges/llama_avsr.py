"""Llama-AVSR's projectors: per modality, stack (or average) k consecutive frames, then
Linear -> ReLU -> Linear, and a LayerNorm where trained with `--layernorm-projector`.

Each modality has its own compression rate (Llama-AVSR: audio 3 or 4 Whisper frames, video 2
AV-HuBERT frames per LLM token); `--compression-mode avg-pooling` averages the k frames
(AvgPool1d) where `stack` concatenates them. As in the official code, an incomplete last group
of frames is dropped, except when it is all an item has (a very short clip keeps one token).
"""

from __future__ import annotations

import torch
from torch import nn

from speechkit.errors import SpeechkitError
from speechkit.models.speechllm.bridges.base import Bridge, Features, mask_padding
from speechkit.models.speechllm.checkpoint import BridgeInput, BridgeSpec


class LlamaAVSRBridge(Bridge):
    """Stack `rate` frames per modality, then a two-layer ReLU MLP to the LLM width."""

    description = ("stack or average k frames per modality (tail dropped), Linear-ReLU-Linear "
                   "(Llama-AVSR)")

    def __init__(self, spec: BridgeSpec) -> None:
        super().__init__(spec)
        for m, inp in spec.inputs.items():
            if inp.hidden_dim < 1:
                raise SpeechkitError(f"bridge.inputs.{m}: the llama-avsr bridge has a hidden "
                                     "layer; set hidden_dim > 0 (Llama-AVSR: the projector's "
                                     "intermediate size)")
        self.proj = nn.ModuleDict({m: _projector(inp, spec.out_dim) for m, inp in spec.inputs.items()})

    def forward(self, features: Features) -> Features:
        out: Features = {}
        for m, (x, lengths) in features.items():
            k = self.spec.inputs[m].rate
            b, t, d = x.shape
            x = mask_padding(x, lengths)
            pad = (-t) % k
            if pad:
                x = torch.cat([x, x.new_zeros(b, pad, d)], dim=1)
            merged = x.reshape(b, (t + pad) // k, k * d)
            if self.spec.inputs[m].pooling == "mean":  # avg-pooling: AvgPool1d(k) over time
                merged = merged.reshape(b, (t + pad) // k, k, d).mean(2)
            lengths = lengths.to(x.device)
            new_len = torch.where(lengths >= k, lengths // k, (lengths > 0).long())
            proj = self.proj[m]
            y = proj(merged.to(next(proj.parameters()).dtype))
            out[m] = (mask_padding(y, new_len), new_len)
        return out


def _projector(inp: BridgeInput, out_dim: int) -> nn.Sequential:
    """Linear -> ReLU -> Linear (-> LayerNorm); stacked frames come in k times wider."""
    width = inp.in_dim * inp.rate if inp.pooling == "stack" else inp.in_dim
    layers = [nn.Linear(width, inp.hidden_dim), nn.ReLU(), nn.Linear(inp.hidden_dim, out_dim)]
    return nn.Sequential(*layers, *([nn.LayerNorm(out_dim)] if inp.norm else []))

"""Llama-AVSR style projector: compress k frames (stack or average), then a linear/MLP map."""

from __future__ import annotations

import torch
from torch import nn

from speechkit.models.speechllm.bridges.base import Bridge, Features, mask_padding, mlp
from speechkit.models.speechllm.checkpoint import BridgeSpec


class LinearBridge(Bridge):
    """Per modality: merge `rate` frames (concatenate or mean), then project to the LLM size."""

    description = "stack or average k frames per modality, then linear/MLP (Llama-AVSR)"

    def __init__(self, spec: BridgeSpec) -> None:
        super().__init__(spec)
        self.proj = nn.ModuleDict({
            m: mlp(inp.in_dim * (inp.rate if inp.pooling == "stack" else 1), inp.hidden_dim,
                   spec.out_dim)
            for m, inp in spec.inputs.items()})

    def forward(self, features: Features) -> Features:
        out: Features = {}
        for m, (x, lengths) in features.items():
            inp = self.spec.inputs[m]
            k = inp.rate
            b, t, d = x.shape
            x = mask_padding(x, lengths)
            pad = (-t) % k
            if pad:
                x = torch.cat([x, x.new_zeros(b, pad, d)], dim=1)
            groups = x.reshape(b, (t + pad) // k, k, d)
            if inp.pooling == "stack":
                merged = groups.reshape(b, (t + pad) // k, k * d)
            else:  # mean over the valid frames of each group only
                valid = (torch.arange(t + pad, device=x.device)[None, :]
                         < lengths.to(x.device)[:, None]).reshape(b, -1, k).sum(-1)
                merged = groups.sum(2) / valid.clamp(min=1)[..., None].to(x.dtype)
            new_len = (lengths + k - 1) // k
            proj = self.proj[m]
            out[m] = (proj(merged.to(_dtype(proj))), new_len)
        return out


def _dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype

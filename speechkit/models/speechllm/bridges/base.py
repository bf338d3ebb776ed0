"""The bridge interface: per-modality encoder features in, LLM-sized embeddings out."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from speechkit.models.speechllm.checkpoint import BridgeSpec

Features = dict[str, tuple[torch.Tensor, torch.Tensor]]  # modality -> ([B, T, D], lengths [B])


class Bridge(nn.Module, ABC):
    """Maps each modality's padded frames to LLM embeddings; padding never leaks into outputs."""

    description: str = ""  # one line for `speechkit models`

    def __init__(self, spec: BridgeSpec) -> None:
        super().__init__()
        self.spec = spec

    @abstractmethod
    def forward(self, features: Features) -> Features:
        """Returns modality -> (embeddings [B, T', out_dim], lengths [B])."""


def mask_padding(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero the frames at or past each item's length, so batch and single runs see the same."""
    keep = torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]
    return x * keep[..., None].to(x.dtype)


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Module:
    """One linear layer, or Linear -> GELU -> Linear when hidden_dim > 0."""
    if hidden_dim <= 0:
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim))

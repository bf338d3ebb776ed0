"""Bridges between encoders and the LLM, one file each behind one interface."""

from __future__ import annotations

from speechkit.models.speechllm.bridges.base import Bridge, Features
from speechkit.models.speechllm.bridges.conv1d import Conv1dBridge
from speechkit.models.speechllm.bridges.dual import DualBridge
from speechkit.models.speechllm.bridges.linear import LinearBridge
from speechkit.models.speechllm.bridges.llama_avsr import LlamaAVSRBridge
from speechkit.models.speechllm.bridges.qformer import WindowQFormer
from speechkit.models.speechllm.checkpoint import BridgeSpec

BRIDGES: dict[str, type[Bridge]] = {"linear": LinearBridge, "conv1d": Conv1dBridge,
                                    "llama-avsr": LlamaAVSRBridge, "dual": DualBridge,
                                    "qformer": WindowQFormer}


def build_bridge(spec: BridgeSpec) -> Bridge:
    """A fresh bridge of the spec's type (weights loaded separately)."""
    return BRIDGES[spec.type](spec)


__all__ = ["BRIDGES", "Bridge", "Features", "build_bridge"]
